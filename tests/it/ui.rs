//! The review page in a real headless Chromium (Debian's chromium and
//! chromium-driver), driven over WebDriver: log in, list the cases, filter
//! them, open one (its alerts' evidence in labelled Chinese fields), decide
//! it, see the status and history change. The screenshot is kept
//! under the target directory.

use super::common::kafka::{api_call, fed, free_port, service_config, Fed, Service};
use base64::Engine as _;
use paywatch::model::Rule;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Driver {
    child: Child,
    port: u16,
    session: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = wd(self.port, "DELETE", &format!("/session/{}", self.session), None);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One WebDriver call: the `value` of the JSON answer.
fn wd(port: u16, method: &str, path: &str, body: Option<Value>) -> Value {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("chromedriver");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // Read the head, then exactly Content-Length bytes (the driver may keep
    // the connection open).
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let split = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).unwrap_or(0);
        if n == 0 {
            break buf.len();
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..split]).to_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
        .unwrap_or(0);
    while buf.len() < split + len {
        let n = s.read(&mut chunk).unwrap_or(0);
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let v: Value = serde_json::from_slice(&buf[split..]).unwrap_or(Value::Null);
    v["value"].clone()
}

impl Driver {
    fn start(profile: &std::path::Path) -> Driver {
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver; scripts/deps.sh installs it)");
        let end = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < end, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--window-size=1400,900", format!("--user-data-dir={}", profile.display())]
        }}}});
        let v = wd(port, "POST", "/session", Some(caps));
        let session = v["sessionId"].as_str().unwrap_or_else(|| panic!("no WebDriver session: {v}")).to_owned();
        Driver { child, port, session }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        wd(self.port, method, &format!("/session/{}{path}", self.session), body)
    }

    fn find(&self, css: &str) -> String {
        let v = self.call("POST", "/element", Some(json!({"using": "css selector", "value": css})));
        v["element-6066-11e4-a52e-4f735466cecf"].as_str().unwrap_or_else(|| panic!("no {css}: {v}")).to_owned()
    }

    fn script(&self, js: &str) -> Value {
        self.call("POST", "/execute/sync", Some(json!({"script": js, "args": []})))
    }

    fn wait_for(&self, what: &str, js: &str) -> Value {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.script(js);
            if v != Value::Null && v != json!(false) {
                return v;
            }
            assert!(Instant::now() < end, "the page never showed {what}; error line: {}", self.script("return document.getElementById('error').textContent"));
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn a_supervisor_works_a_case_on_the_page_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let Fed { want, broker, .. } = fed(dir.path(), 300, 51);
    assert!(want.iter().any(|a| a.rule == Rule::NameMismatch));
    let port = free_port();
    let token = "district-token-for-the-page";
    let cfg = service_config(dir.path(), &broker, port, "");
    let text = std::fs::read_to_string(&cfg).unwrap()
        + &format!("[[api.tokens]]\nname = \"区民政局\"\ntoken_sha256 = \"{}\"\nrole = \"district\"\n", hex::encode(Sha256::digest(token)));
    std::fs::write(&cfg, text).unwrap();
    let mut svc = Service::start(&cfg, port, dir.path());
    svc.wait_idle();
    // What the page must show, from the API.
    let count = |q: &str| api_call(port, "GET", &format!("/api/v1/cases?limit=1{q}"), Some(token), None).1["total"].as_u64().unwrap();
    let (all, name_mismatch, relapsed) = (count(""), count("&rule=NAME_MISMATCH"), count("&relapsed=true"));
    assert!(all > 0 && name_mismatch > 0 && relapsed > 0, "{all} {name_mismatch} {relapsed}");

    let d = Driver::start(&dir.path().join("chromium-profile"));
    d.call("POST", "/url", Some(json!({"url": format!("http://127.0.0.1:{port}/ui/")})));
    let input = d.find("#token");
    d.call("POST", &format!("/element/{input}/value"), Some(json!({"text": token})));
    let login = d.find("#login");
    d.call("POST", &format!("/element/{login}/click"), Some(json!({})));
    d.wait_for("the case list", &format!("return document.getElementById('count').textContent === '共 {all} 个问题' && document.querySelectorAll('tr.row').length === {}", all.min(50)));

    // Filter by rule, then by relapse.
    d.script("document.getElementById('f-rule').value = 'NAME_MISMATCH'; document.getElementById('search').click();");
    d.wait_for(
        "the rule filter",
        &format!("const r = [...document.querySelectorAll('tr.row')]; return document.getElementById('count').textContent === '共 {name_mismatch} 个问题' && r.length === {} && r.every(t => t.children[2].textContent === '户名不符')", name_mismatch.min(50)),
    );
    d.script("document.getElementById('f-rule').value = ''; document.getElementById('f-relapsed').checked = true; document.getElementById('search').click();");
    d.wait_for(
        "the relapse filter",
        &format!("const r = [...document.querySelectorAll('tr.row')]; return document.getElementById('count').textContent === '共 {relapsed} 个问题' && r.length === {} && r.every(t => t.querySelector('.tag.relapsed'))", relapsed.min(50)),
    );

    // Open a name-mismatch case nobody decided yet: its evidence is in
    // labelled Chinese fields with the payments it names, not raw JSON.
    d.script("document.getElementById('f-relapsed').checked = false; document.getElementById('f-rule').value = 'NAME_MISMATCH'; document.getElementById('f-status').value = 'open'; document.getElementById('search').click();");
    d.wait_for("open name-mismatch cases", "const r = [...document.querySelectorAll('tr.row')]; return r.length > 0 && r.every(t => t.children[6].textContent.startsWith('待复核'))");
    let id = d.script("const r = document.querySelector('tr.row'); r.click(); return r.dataset.id").as_str().unwrap().to_owned();
    let (_, case) = api_call(port, "GET", &format!("/api/v1/cases/{id}"), Some(token), None);
    let alerts = case["alerts"].as_array().unwrap();
    d.wait_for("the case", &format!("return document.getElementById('detail-status')?.textContent === '待复核' && document.querySelectorAll('#timeline > li').length === {}", alerts.len()));
    let detail = d.script("return document.getElementById('timeline').textContent").as_str().unwrap().to_owned();
    let first = &alerts[0];
    for (label, value) in [
        ("收款户名", first["evidence"]["figures"]["account_name"].as_str().unwrap()),
        ("对象姓名", first["evidence"]["figures"]["beneficiary_name"].as_str().unwrap()),
        ("金额", first["amount"].as_str().unwrap()),
        ("涉及支付", first["evidence"]["event_ids"][0].as_str().unwrap()),
    ] {
        assert!(detail.contains(label) && detail.contains(value), "{label} {value} not in {detail}");
    }
    assert!(!detail.contains("\"evidence\"") && !detail.contains('{'), "no raw JSON: {detail}");

    // Decide it: rectified, information corrected, with the amount
    // recovered and the document number; the status and history change.
    d.script("const o = document.getElementById('outcome'); o.value = 'rectified'; o.onchange(); document.getElementById('action').value = 'corrected';");
    for (field, value) in [("#amount_recovered", "585.00"), ("#document_no", "水民〔2026〕12号"), ("#note", "已更正收款账户")] {
        let e = d.find(field);
        d.call("POST", &format!("/element/{e}/value"), Some(json!({"text": value})));
    }
    let submit = d.find("#submit");
    d.call("POST", &format!("/element/{submit}/click"), Some(json!({})));
    d.wait_for("the new status", "return document.getElementById('detail-status')?.textContent === '已整改'");
    let history = d.script("return document.getElementById('history').textContent").as_str().unwrap().to_owned();
    for part in ["区民政局", "已整改", "更正信息", "585.00", "水民〔2026〕12号", "已更正收款账户"] {
        assert!(history.contains(part), "{part} not in {history}");
    }
    let (_, after) = api_call(port, "GET", &format!("/api/v1/cases/{id}"), Some(token), None);
    assert_eq!((after["status"].as_str(), after["decisions"][0]["action"].as_str()), (Some("rectified"), Some("corrected")));
    d.script("document.getElementById('f-status').value = ''; document.getElementById('search').click();");
    d.wait_for("the list row updated", &format!("return document.querySelector('tr.row[data-id=\"{id}\"]')?.children[6].textContent.startsWith('已整改')"));

    // Kept for people to look at: the list and the case decided.
    d.script(&format!("document.querySelector('tr.row[data-id=\"{id}\"]').click(); window.scrollTo(0, 0);"));
    d.wait_for("the case again", "return document.getElementById('detail-status')?.textContent === '已整改'");
    let png = d.call("GET", "/screenshot", None);
    let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap()).unwrap();
    assert!(bytes.starts_with(b"\x89PNG"));
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-review.png");
    std::fs::write(&shot, bytes).unwrap();
    eprintln!("screenshot: {}", shot.display());
    drop(d);
    assert!(svc.terminate().success());
}
