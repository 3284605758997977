//! The review page in a real headless Chromium (Debian's chromium and
//! chromium-driver), driven over WebDriver: log in, list, filter, open an
//! alert, submit a review, see the status change. The screenshot is kept
//! under the target directory.

use super::common::kafka::{fed, free_port, service_config, Fed, Service};
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
fn a_supervisor_reviews_an_alert_on_the_page_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let Fed { want, broker, .. } = fed(dir.path(), 300, 51);
    let name_mismatch = want.iter().filter(|a| a.rule == Rule::NameMismatch).count();
    let port = free_port();
    let token = "district-token-for-the-page";
    let cfg = service_config(dir.path(), &broker, port, "");
    let text = std::fs::read_to_string(&cfg).unwrap()
        + &format!("[[api.tokens]]\nname = \"区民政局\"\ntoken_sha256 = \"{}\"\nrole = \"district\"\n", hex::encode(Sha256::digest(token)));
    std::fs::write(&cfg, text).unwrap();
    let mut svc = Service::start(&cfg, port, dir.path());
    svc.wait_idle();

    let d = Driver::start(&dir.path().join("chromium-profile"));
    d.call("POST", "/url", Some(json!({"url": format!("http://127.0.0.1:{port}/ui/")})));
    let input = d.find("#token");
    d.call("POST", &format!("/element/{input}/value"), Some(json!({"text": token})));
    let login = d.find("#login");
    d.call("POST", &format!("/element/{login}/click"), Some(json!({})));
    let n = d.wait_for("the alert list", &format!("const n = document.querySelectorAll('tr.row').length; return n === {} ? n : null", want.len()));
    assert_eq!(n, json!(want.len()));

    // Filter by rule.
    d.script("document.getElementById('f-rule').value = 'NAME_MISMATCH'; document.getElementById('search').click();");
    d.wait_for(
        "the filtered list",
        &format!("const r = [...document.querySelectorAll('tr.row')]; return r.length === {name_mismatch} && r.every(t => t.children[2].textContent === '户名不符')"),
    );

    // Open the first alert, review it as corrected, see the status change.
    // (one whose case nobody decided yet: the ledger's decisions are on
    // name-mismatch cases too).
    let id = d
        .script("const r = [...document.querySelectorAll('tr.row')].find(t => t.children[4].textContent === '待复核'); r.click(); return r.dataset.id")
        .as_str()
        .unwrap()
        .to_owned();
    d.wait_for("the detail", "return document.getElementById('detail-status')?.textContent === '待复核'");
    d.script("document.getElementById('outcome').value = 'corrected';");
    let note = d.find("#note");
    d.call("POST", &format!("/element/{note}/value"), Some(json!({"text": "已追回多发资金"})));
    let submit = d.find("#submit");
    d.call("POST", &format!("/element/{submit}/click"), Some(json!({})));
    d.wait_for("the new status", "return document.getElementById('detail-status')?.textContent === '已整改'");
    let history = d.script("return document.getElementById('history').textContent").as_str().unwrap().to_owned();
    assert!(history.contains("区民政局") && history.contains("已整改") && history.contains("已追回多发资金"), "{history}");
    d.wait_for("the list row updated", &format!("return document.querySelector('tr.row[data-id=\"{id}\"]')?.children[4].textContent === '已整改'"));

    // Kept for people to look at.
    let png = d.call("GET", "/screenshot", None);
    let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap()).unwrap();
    assert!(bytes.starts_with(b"\x89PNG"));
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-review.png");
    std::fs::write(&shot, bytes).unwrap();
    eprintln!("screenshot: {}", shot.display());
    drop(d);
    assert!(svc.terminate().success());
}
