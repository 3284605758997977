//! Cases and decisions (contract §8): the file audit's `--cases` output on
//! a generated ledger with its rectification ledger, and decisions posted
//! through the API against a real broker: durable before 201, none lost
//! when posted in parallel or when the service is killed, and rebuilt by a
//! service started on a fresh state directory.

use super::common::kafka::{api_call as call, free_port, service_config, tool, Broker, Service};
use super::common::*;
use paywatch::generate::OutFormat;
use paywatch::model::decision::case_id;
use paywatch::model::Rule;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

fn by_subject(cases: &[serde_json::Value], rule: &str) -> BTreeMap<String, serde_json::Value> {
    cases.iter().filter(|c| c["rule"] == rule).map(|c| (c["subject"].as_str().unwrap().to_owned(), c.clone())).collect()
}

#[test]
fn the_audit_ends_with_the_state_of_every_case() {
    let dir = tempfile::tempdir().unwrap();
    let g = ledger(&dir.path().join("ledger"), 600, OutFormat::Jsonl, 61);
    let out = dir.path().join("alerts.jsonl");
    let cases_path = dir.path().join("cases.jsonl");
    let o = run_ok(audit(&g, &out, &["--cases", cases_path.to_str().unwrap()]));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("cases 问题") && stderr.contains("relapsed 反弹"), "{stderr}");
    let alerts = alerts(&out);
    let cases: Vec<serde_json::Value> = read_jsonl(&cases_path);

    // Every alert is in exactly its case, by the §8 formula.
    let mut filed: BTreeMap<String, String> = BTreeMap::new();
    for c in &cases {
        for a in c["alert_ids"].as_array().unwrap() {
            assert!(filed.insert(a.as_str().unwrap().to_owned(), c["case_id"].as_str().unwrap().to_owned()).is_none());
        }
        let rule = Rule::from_code(c["rule"].as_str().unwrap()).unwrap();
        assert_eq!(c["case_id"], case_id(rule, c["subject"].as_str().unwrap()));
        assert_eq!(c["alert_count"], c["alert_ids"].as_array().unwrap().len());
    }
    assert_eq!(filed.len(), alerts.len());
    for a in &alerts {
        assert_eq!(filed[&a.alert_id], a.case_id, "{}", a.alert_id);
    }

    // The planted decisions: a relapse, a clean rectification, a false
    // positive and a confirmation with alerts after them.
    let nm = by_subject(&cases, "NAME_MISMATCH");
    let controls: BTreeMap<&str, Vec<&str>> = g.truth.controls.iter().fold(BTreeMap::new(), |mut m, c| {
        m.entry(c.case.as_str()).or_default().push(c.subject.as_str());
        m
    });
    for bid in &controls["rectified and clean since"] {
        let c = &nm[*bid];
        assert_eq!((c["status"].as_str(), c["relapsed"].as_bool()), (Some("rectified"), Some(false)), "{c}");
        assert_eq!(c["amount_recovered"], "585.00");
    }
    for (case, status) in [("decided a false positive, alerts after it", "false_positive"), ("confirmed, alerts after it", "confirmed")] {
        for bid in &controls[case] {
            let c = &nm[*bid];
            assert_eq!((c["status"].as_str(), c["relapsed"].as_bool()), (Some(status), Some(false)), "{c}");
            assert_eq!(c["alert_count"], 3, "{c}");
        }
    }
    let relapses: Vec<_> = alerts.iter().filter(|a| a.rule == Rule::RectificationRelapse).collect();
    assert!(!relapses.is_empty());
    for r in relapses {
        let c = cases.iter().find(|c| c["case_id"] == r.case_id.as_str()).unwrap();
        assert_eq!((c["status"].as_str(), c["relapsed"].as_bool()), (Some("open"), Some(true)), "{c}");
        assert_eq!(c["alert_count"], 4, "three mismatches and the relapse: {c}");
        assert_eq!(c["decisions"].as_array().unwrap().len(), 2);
        assert_eq!(c["decisions"][1]["outcome"], "rectified");
        assert_eq!(r.evidence.record_ids, [c["decisions"][1]["decision_id"].as_str().unwrap()]);
    }
}

const DISTRICT: &str = "district-token-for-cases";
const TOWNSHIP: &str = "township-token-for-cases";
const READONLY: &str = "readonly-token-for-cases";

fn tokens(township: &str) -> String {
    let h = |t: &str| hex::encode(Sha256::digest(t.as_bytes()));
    format!(
        "[[api.tokens]]\nname = \"区民政局\"\ntoken_sha256 = \"{}\"\nrole = \"district\"\n\
         [[api.tokens]]\nname = \"乡镇\"\ntoken_sha256 = \"{}\"\nrole = \"township:{township}\"\n\
         [[api.tokens]]\ntoken_sha256 = \"{}\"\nrole = \"readonly\"\n",
        h(DISTRICT),
        h(TOWNSHIP),
        h(READONLY)
    )
}

fn config_with_tokens(dir: &std::path::Path, broker: &Broker, port: u16, extra: &str, township: &str) -> std::path::PathBuf {
    let cfg = service_config(dir, broker, port, extra);
    let text = std::fs::read_to_string(&cfg).unwrap() + &tokens(township);
    std::fs::write(&cfg, text).unwrap();
    cfg
}

fn decisions_of(port: u16, id: &str) -> Vec<String> {
    let (code, c) = call(port, "GET", &format!("/api/v1/cases/{id}"), Some(DISTRICT), None);
    assert_eq!(code, 200, "{c}");
    c["decisions"].as_array().unwrap().iter().map(|d| d["decision_id"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn decisions_are_durable_before_201_kept_in_parallel_and_rebuilt_from_the_topic() {
    let dir = tempfile::tempdir().unwrap();
    let g = ledger(&dir.path().join("ledger"), 300, OutFormat::Jsonl, 62);
    let broker = Broker::start(dir.path());
    broker.create_contract_topics();
    tool(&["produce-ledger", &broker.addr, g.payments.parent().unwrap().to_str().unwrap()]);
    let first = dir.path().join("first");
    std::fs::create_dir_all(&first).unwrap();
    let port = free_port();
    // The township of some name-mismatch case, for the role checks.
    let out = dir.path().join("audit.jsonl");
    run_ok(audit(&g, &out, &[]));
    let nm = alerts(&out).into_iter().find(|a| a.rule == Rule::NameMismatch).unwrap();
    // Live records wait kafka.max_out_of_order to be merged in event time;
    // a short one, so the posted decisions are applied within the test.
    // A killed member leaves the group when its session times out: short.
    let cfg = config_with_tokens(&first, &broker, port, "max_out_of_order = \"2s\"\n[kafka.consumer]\n\"session.timeout.ms\" = \"6000\"", &nm.township);
    let mut svc = Service::start(&cfg, port, &first);
    svc.wait_idle();

    // The list and one case; roles.
    let (code, page) = call(port, "GET", "/api/v1/cases?rule=NAME_MISMATCH&limit=500", Some(DISTRICT), None);
    assert_eq!(code, 200, "{page}");
    assert!(page["items"].as_array().unwrap().iter().all(|c| c["rule"] == "NAME_MISMATCH"));
    let (code, relapsed) = call(port, "GET", "/api/v1/cases?relapsed=true", Some(DISTRICT), None);
    assert_eq!(code, 200);
    assert!(!relapsed["items"].as_array().unwrap().is_empty(), "the planted relapse came in on the decisions topic");
    let other = page["items"].as_array().unwrap().iter().find(|c| c["township"] != nm.township.as_str()).cloned();
    if let Some(other) = other {
        let (code_other, body_other) = call(port, "GET", &format!("/api/v1/cases/{}", other["case_id"].as_str().unwrap()), Some(TOWNSHIP), None);
        let (code_unknown, _) = call(port, "GET", &format!("/api/v1/cases/{}", "0".repeat(32)), Some(TOWNSHIP), None);
        assert_eq!((code_other, code_unknown), (404, 404), "another township's case is as unknown: {body_other}");
    }
    let id = nm.case_id.clone();
    let (code, _) = call(port, "POST", &format!("/api/v1/cases/{id}/decisions"), Some(READONLY), Some(r#"{"outcome":"confirmed"}"#));
    assert_eq!(code, 403);
    let (code, e) = call(port, "POST", &format!("/api/v1/cases/{id}/decisions"), Some(DISTRICT), Some(r#"{"outcome":"rectified"}"#));
    assert_eq!(code, 400, "rectified needs an action: {e}");
    assert!(e["error"].as_str().unwrap().contains("action"), "{e}");
    let before = decisions_of(port, &id).len();
    let applied_before = svc.status().unwrap()["counts"]["decisions"].as_u64().unwrap();

    // 50 in parallel: 50 kept, each shown at once and then applied.
    let posted: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..50)
            .map(|i| {
                let path = format!("/api/v1/cases/{id}/decisions");
                s.spawn(move || {
                    let body = format!(r#"{{"outcome":"in_progress","note":"核查第{i}次"}}"#);
                    let (code, c) = call(port, "POST", &path, Some(DISTRICT), Some(&body));
                    assert_eq!(code, 201, "{c}");
                    c["decision"]["decision_id"].as_str().unwrap().to_owned()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let shown = decisions_of(port, &id);
    assert!(posted.iter().all(|d| shown.contains(d)), "every posted decision is shown at once");
    assert_eq!(shown.len(), before + 50);
    // Hardening item 3: 50 reviews posted in parallel on one alert through
    // the earlier endpoint are 50 more in its history (each a decision).
    std::thread::scope(|s| {
        for i in 0..50 {
            let path = format!("/api/v1/alerts/{}/reviews", nm.alert_id);
            s.spawn(move || {
                let body = format!(r#"{{"outcome":"in_progress","note":"复核{i}"}}"#);
                let (code, a) = call(port, "POST", &path, Some(DISTRICT), Some(&body));
                assert_eq!(code, 201, "{a}");
            });
        }
    });
    let (_, alert) = call(port, "GET", &format!("/api/v1/alerts/{}", nm.alert_id), Some(DISTRICT), None);
    assert_eq!(alert["reviews"].as_array().unwrap().len(), before + 100, "no review lost");
    let applied_before = applied_before + 50;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while svc.status().unwrap()["counts"]["decisions"].as_u64().unwrap() < applied_before + 50 {
        assert!(std::time::Instant::now() < deadline, "the posted decisions were never applied");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // kill -9 right after a 201: the decision is there after the restart.
    let (code, c) = call(port, "POST", &format!("/api/v1/cases/{id}/decisions"), Some(DISTRICT), Some(r#"{"outcome":"rectified","action":"corrected","document_no":"民整〔2026〕1号"}"#));
    assert_eq!(code, 201, "{c}");
    let last = c["decision"]["decision_id"].as_str().unwrap().to_owned();
    svc.kill9();
    // The broker (tansu) hands a member that joins while a dead one is
    // still in the group nothing, and does not rebalance when the dead
    // one's session ends: restart once it has ended, as an operator's
    // restart after a crash would.
    std::thread::sleep(std::time::Duration::from_secs(8));
    let mut svc = Service::start(&cfg, port, &first);
    svc.wait_idle();
    // Shown at once from its pending entry, then applied from the topic.
    assert!(decisions_of(port, &id).contains(&last), "the decision acknowledged before the kill is shown");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while svc.status().unwrap()["counts"]["decisions"].as_u64().unwrap() < applied_before + 51 {
        assert!(std::time::Instant::now() < deadline, "the last decision was never applied after the restart");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let after = decisions_of(port, &id);
    assert!(after.contains(&last), "the decision acknowledged before the kill is kept");
    assert_eq!(after.len(), before + 101);
    let (_, c) = call(port, "GET", &format!("/api/v1/cases/{id}"), Some(DISTRICT), None);
    assert_eq!(c["status"], "rectified");
    assert!(svc.terminate().success());

    // A fresh state directory (and group) rebuilds every case and decision.
    let fresh = dir.path().join("fresh");
    std::fs::create_dir_all(&fresh).unwrap();
    let port2 = free_port();
    let cfg2 = config_with_tokens(&fresh, &broker, port2, "group_id = \"rebuild\"\nmax_out_of_order = \"2s\"", &nm.township);
    let mut svc2 = Service::start(&cfg2, port2, &fresh);
    svc2.wait_idle();
    let rebuilt = decisions_of(port2, &id);
    assert_eq!(rebuilt.len(), after.len(), "every decision rebuilt from the topic");
    assert!(svc2.terminate().success());
}
