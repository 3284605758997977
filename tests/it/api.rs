//! The supervisors' API on `paywatch run`'s port: tokens and roles, the
//! alert list (filters, paging, newest first), one alert with its history,
//! reviews, and the errors a client gets.

use super::common::kafka::{api_call as call, fed, free_port, service_config, Fed, Service};
use paywatch::model::Rule;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn path_escape(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

fn hash(t: &str) -> String {
    hex::encode(Sha256::digest(t.as_bytes()))
}

const DISTRICT: &str = "district-token-0123456789";
const TOWNSHIP: &str = "township-token-0123456789";
const READONLY: &str = "readonly-token-0123456789";

#[test]
fn supervisors_list_filter_page_and_review_alerts_within_their_scope() {
    let dir = tempfile::tempdir().unwrap();
    let Fed { want, broker, .. } = fed(dir.path(), 300, 41);
    // An alert of a case nobody decided yet (the ledger's decisions are on
    // name-mismatch cases).
    let mine = want.iter().find(|a| !matches!(a.rule, Rule::NameMismatch | Rule::RectificationRelapse)).unwrap().clone();
    let township = mine.township.clone();
    let in_township: BTreeSet<String> = want.iter().filter(|a| a.township == township).map(|a| a.alert_id.clone()).collect();
    let other = want.iter().find(|a| a.township != township).unwrap().clone();

    let port = free_port();
    let tokens = format!(
        "[[api.tokens]]\nname = \"district\"\ntoken_sha256 = \"{}\"\nrole = \"district\"\n\
         [[api.tokens]]\nname = \"township\"\ntoken_sha256 = \"{}\"\nrole = \"township:{township}\"\n\
         [[api.tokens]]\ntoken_sha256 = \"{}\"\nrole = \"readonly\"\n",
        hash(DISTRICT),
        hash(TOWNSHIP),
        hash(READONLY)
    );
    // The tokens' [[api.tokens]] tables go after everything service_config writes.
    let cfg = service_config(dir.path(), &broker, port, "");
    let text = std::fs::read_to_string(&cfg).unwrap() + &tokens;
    std::fs::write(&cfg, text).unwrap();
    let mut svc = Service::start(&cfg, port, dir.path());
    svc.wait_idle();

    // /status names townships and counts: a district or operator token
    // only. The operator reads nothing under /api/v1/; /metrics stays open.
    let status = |token: Option<&str>| super::common::kafka::http_get_with(port, "/status", token).unwrap();
    assert_eq!(status(None).0, 401);
    assert_eq!(status(Some("nope")).0, 401);
    assert_eq!(status(Some(TOWNSHIP)).0, 403);
    assert_eq!(status(Some(READONLY)).0, 403);
    let (code, body) = status(Some(DISTRICT));
    assert_eq!(code, 200, "{body}");
    assert!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["idle"].as_bool().unwrap());
    assert_eq!(status(Some(super::common::kafka::OPERATOR_TOKEN)).0, 200);
    assert_eq!(call(port, "GET", "/api/v1/alerts", Some(super::common::kafka::OPERATOR_TOKEN), None).0, 403);
    assert_eq!(call(port, "GET", "/api/v1/cases", Some(super::common::kafka::OPERATOR_TOKEN), None).0, 403);
    assert_eq!(super::common::kafka::http_get(port, "/metrics").unwrap().0, 200);

    // No token, a wrong token: 401.
    assert_eq!(call(port, "GET", "/api/v1/alerts", None, None).0, 401);
    assert_eq!(call(port, "GET", "/api/v1/alerts", Some("nope"), None).0, 401);

    // The district pages through everything, newest first, no id twice.
    let mut seen = Vec::new();
    let mut path = "/api/v1/alerts?limit=7".to_owned();
    loop {
        let (code, page) = call(port, "GET", &path, Some(DISTRICT), None);
        assert_eq!(code, 200, "{page}");
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 7);
        seen.extend(items.iter().map(|a| a["alert_id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/alerts?limit=7&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), want.len(), "no alert twice across pages");
    assert_eq!(seen.iter().cloned().collect::<BTreeSet<_>>(), want.iter().map(|a| a.alert_id.clone()).collect());
    let (_, all) = call(port, "GET", "/api/v1/alerts?limit=500", Some(DISTRICT), None);
    assert_eq!(all["items"][0]["alert_id"].as_str(), Some(seen[0].as_str()));
    // An alert's status is its case's: open unless the ledger decided it.
    let statuses: BTreeSet<&str> = all["items"].as_array().unwrap().iter().map(|a| a["status"].as_str().unwrap()).collect();
    assert!(statuses.iter().all(|s| ["open", "in_progress", "confirmed", "false_positive", "rectified"].contains(s)), "{statuses:?}");
    assert!(statuses.contains("open") && statuses.contains("rectified"), "{statuses:?}");
    let open_before = all["items"].as_array().unwrap().iter().filter(|a| a["status"] == "open").count();
    let (_, mine_case) = call(port, "GET", &format!("/api/v1/cases/{}", mine.case_id), Some(DISTRICT), None);
    let in_mine_case = mine_case["alert_count"].as_u64().unwrap() as usize;
    assert_eq!(mine_case["status"], "open");

    // Filters.
    let (_, nm) = call(port, "GET", "/api/v1/alerts?rule=NAME_MISMATCH&limit=500", Some(DISTRICT), None);
    let nm = nm["items"].as_array().unwrap().clone();
    assert_eq!(nm.len(), want.iter().filter(|a| a.rule == Rule::NameMismatch).count());
    assert!(nm.iter().all(|a| a["rule"] == "NAME_MISMATCH"));
    let (_, high) = call(port, "GET", "/api/v1/alerts?severity=high&from=2019-01-01&to=2019-12-31&limit=500", Some(DISTRICT), None);
    assert!(high["items"].as_array().unwrap().iter().all(|a| a["severity"] == "high" && a["event_time"].as_str().unwrap().starts_with("2019")));

    // A township sees its own alerts only.
    let (_, t) = call(port, "GET", "/api/v1/alerts?limit=500", Some(TOWNSHIP), None);
    let t_ids: BTreeSet<String> = t["items"].as_array().unwrap().iter().map(|a| a["alert_id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(t_ids, in_township);
    let q = format!("/api/v1/alerts?township={}", path_escape(&other.township));
    assert_eq!(call(port, "GET", &q, Some(TOWNSHIP), None).0, 403);
    // Another township's alert answers exactly as an unknown one.
    let (code_other, body_other) = call(port, "GET", &format!("/api/v1/alerts/{}", other.alert_id), Some(TOWNSHIP), None);
    let unknown = "0".repeat(32);
    let (code_unknown, body_unknown) = call(port, "GET", &format!("/api/v1/alerts/{unknown}"), Some(TOWNSHIP), None);
    assert_eq!((code_other, code_unknown), (404, 404));
    assert_eq!(body_other["error"].as_str().unwrap().replace(&other.alert_id, "ID"), body_unknown["error"].as_str().unwrap().replace(&unknown, "ID"));
    assert_eq!(call(port, "GET", &format!("/api/v1/cases/{}", other.case_id), Some(TOWNSHIP), None).0, 404, "a case is as unknown outside the township");

    // Bad parameters: 400 with a JSON error.
    for bad in ["limit=0", "limit=501", "rule=NOPE", "severity=urgent", "from=2019-02-30", "status=done", "cursor=x", "colour=red"] {
        let (code, body) = call(port, "GET", &format!("/api/v1/alerts?{bad}"), Some(DISTRICT), None);
        assert_eq!(code, 400, "{bad}: {body}");
        assert!(body["error"].is_string(), "{bad}: {body}");
    }

    // Reviews: the township corrects its alert; history and status follow.
    // A review is a decision of the alert's case (corrected = rectified).
    let rpath = format!("/api/v1/alerts/{}/reviews", mine.alert_id);
    let (code, body) = call(port, "POST", &rpath, Some(TOWNSHIP), Some(r#"{"outcome":"in_progress","note":"入户核查"}"#));
    assert_eq!(code, 201, "{body}");
    let (code, body) = call(port, "POST", &rpath, Some(TOWNSHIP), Some(r#"{"outcome":"corrected","note":"已追回资金"}"#));
    assert_eq!(code, 201, "{body}");
    let (_, one) = call(port, "GET", &format!("/api/v1/alerts/{}", mine.alert_id), Some(DISTRICT), None);
    assert_eq!(one["status"], "rectified");
    let h = one["reviews"].as_array().unwrap();
    assert_eq!(h.len(), 2);
    assert_eq!(h[0]["outcome"], "in_progress");
    assert_eq!(h[1]["outcome"], "rectified");
    assert_eq!(h[1]["reviewer"], "township");
    assert_eq!(h[1]["note"], "已追回资金");
    assert_eq!(one["decisions"][1]["action"], "other");
    let (_, c) = call(port, "GET", "/api/v1/alerts?status=corrected&limit=500", Some(DISTRICT), None);
    let (_, r) = call(port, "GET", "/api/v1/alerts?status=rectified&limit=500", Some(DISTRICT), None);
    assert_eq!(c["items"], r["items"], "corrected is the earlier name of rectified");
    assert!(r["items"].as_array().unwrap().iter().any(|a| a["alert_id"] == mine.alert_id.as_str()));
    let (_, o) = call(port, "GET", "/api/v1/alerts?status=open&limit=500", Some(DISTRICT), None);
    assert_eq!(o["items"].as_array().unwrap().len(), open_before - in_mine_case);

    // What may not be done.
    assert_eq!(call(port, "POST", &rpath, Some(READONLY), Some(r#"{"outcome":"confirmed"}"#)).0, 403);
    let other_path = format!("/api/v1/alerts/{}/reviews", other.alert_id);
    assert_eq!(call(port, "POST", &other_path, Some(TOWNSHIP), Some(r#"{"outcome":"confirmed"}"#)).0, 404);
    assert_eq!(call(port, "POST", &rpath, Some(DISTRICT), Some(r#"{"outcome":"maybe"}"#)).0, 400);
    assert_eq!(call(port, "POST", &rpath, Some(DISTRICT), Some(r#"{"outcome":"confirmed","by":"me"}"#)).0, 400);
    assert_eq!(call(port, "POST", &rpath, Some(DISTRICT), Some("not json")).0, 400);
    assert_eq!(call(port, "POST", "/api/v1/alerts/nope/reviews", Some(DISTRICT), Some(r#"{"outcome":"confirmed"}"#)).0, 404);
    let big = format!(r#"{{"outcome":"confirmed","note":"{}"}}"#, "x".repeat(70_000));
    assert_eq!(call(port, "POST", &rpath, Some(DISTRICT), Some(&big)).0, 413);

    // The township work ledger of a quarter, as CSV (with a BOM) and XLSX.
    let quarter = mine.event_time[..4].to_owned() + "Q" + &mine.event_time[5..7].parse::<u32>().unwrap().div_ceil(3).to_string();
    let (code, csv_text) = raw(port, &format!("/api/v1/reports/ledger?quarter={quarter}&format=csv"), TOWNSHIP);
    assert_eq!(code, 200);
    assert!(csv_text.starts_with('\u{feff}'), "a UTF-8 BOM for Excel");
    let lines: Vec<&str> = csv_text.trim_start_matches('\u{feff}').lines().collect();
    assert!(lines[0].starts_with("序号,问题编号,乡镇,问题类型"), "{}", lines[0]);
    // One row per case active in the quarter: found by its end and not
    // closed before it began.
    let q = mine.event_time[5..7].parse::<u32>().unwrap().div_ceil(3);
    let year: i32 = mine.event_time[..4].parse().unwrap();
    let start = format!("{year}-{:02}-01T00:00:00+08:00", (q - 1) * 3 + 1);
    let end = if q == 4 { format!("{}-01-01T00:00:00+08:00", year + 1) } else { format!("{year}-{:02}-01T00:00:00+08:00", q * 3 + 1) };
    let (_, cases) = call(port, "GET", "/api/v1/cases?limit=500", Some(TOWNSHIP), None);
    let active = cases["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["first_event_time"].as_str().unwrap() < end.as_str())
        .filter(|c| {
            let before: Vec<&serde_json::Value> =
                c["decisions"].as_array().unwrap().iter().filter(|d| d["decided_at"].as_str().unwrap() < start.as_str()).collect();
            let closed = before.last().is_some_and(|d| d["outcome"] == "rectified" || d["outcome"] == "false_positive");
            !(c["newest_event_time"].as_str().unwrap() < start.as_str() && closed)
        })
        .count();
    let rows: Vec<&&str> = lines.iter().skip(1).take_while(|l| !l.trim().is_empty() && !l.trim().trim_matches('"').is_empty()).collect();
    assert_eq!(rows.len(), active, "{csv_text}");
    assert!(
        csv_text.contains(&mine.case_id) && csv_text.contains("已整改") && csv_text.contains("已追回资金"),
        "{csv_text}\nmine {mine:?}\ncases {cases}"
    );
    let totals = lines.iter().position(|l| l.starts_with("乡镇,本季度发现,已整改")).expect("totals");
    let mine_totals: Vec<&str> = lines[totals + 1].split(',').collect();
    assert_eq!(mine_totals[0], township);
    assert!(mine_totals[2].parse::<u32>().unwrap() >= 1, "{}", lines[totals + 1]);
    let (code, xlsx) = raw(port, &format!("/api/v1/reports/ledger?quarter={quarter}&format=xlsx"), DISTRICT);
    assert_eq!(code, 200);
    assert!(xlsx.as_bytes().starts_with(b"PK"), "an XLSX is a zip");
    assert!(xlsx.contains("xl/worksheets/sheet4.xml"), "four sheets: 台账, 汇总, 摸排名单 and 图表");
    assert!(xlsx.contains("xl/charts/chart1.xml") && xlsx.contains("xl/charts/chart2.xml"), "two charts");
    assert_eq!(raw(port, "/api/v1/reports/ledger?quarter=2021Q9", DISTRICT).0, 400);
    let q = format!("/api/v1/reports/ledger?quarter={quarter}&township={}", path_escape(&other.township));
    assert_eq!(raw(port, &q, TOWNSHIP).0, 403);
    assert!(svc.terminate().success());
}

/// A GET whose body is not JSON: (status, body as lossy text).
fn raw(port: u16, path: &str, token: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").map_or(buf.len(), |i| i + 4);
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, String::from_utf8_lossy(&buf[split..]).into_owned())
}
