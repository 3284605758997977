//! `[kafka.standby]` on the real broker: three instances of one consumer
//! group, one active and the others standing by. The active one is
//! `kill -9`ed mid-replay and a standby takes over from the changelog; one
//! more is added later and stands by; a live active instance keeps its
//! role while others join; an instance whose state the changelog has
//! overtaken sets it aside when elected and restores. Every alert of the
//! audit reaches the alerts topic, and the totals are a clean run's:
//! nothing lost, nothing applied twice.

use super::common::kafka::{api_call, applied_total, consume, free_port, produce_ledger, service_config, Broker, Service};
use super::common::{alerts, audit, ids, ledger, run_ok};
use paywatch::generate::OutFormat;
use paywatch::model::Alert;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

fn role(s: &Service) -> Option<String> {
    s.status().and_then(|st| st["role"].as_str().map(str::to_owned))
}

fn active(s: &serde_json::Value) -> bool {
    s["role"] == "active" && s["lanes"].as_u64() > Some(0)
}

fn start(root: &Path, name: &str, broker: &Broker, extra: &str) -> Service {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    Service::start(&service_config(&dir, broker, port, extra), port, &dir)
}

#[test]
fn standbys_take_over_from_the_changelog_and_the_alerts_are_the_audits() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let g = ledger(&root.join("ledger"), 1500, OutFormat::Jsonl, 23);
    let out = root.join("audit.jsonl");
    run_ok(audit(&g, &out, &[]));
    let want = ids(&alerts(&out));
    let broker = Broker::start(root);
    broker.create_contract_topics();
    broker.create_topics(&["paywatch.ha.changelog:1"]);
    let produced = produce_ledger(&broker, &g, "roster,deaths,payments,decisions,vulnerable");

    // A clean run for the totals, alone in its group.
    let mut clean = start(root, "clean", &broker, "group_id = \"clean\"\n");
    let clean_status = clean.wait_idle();
    assert!(clean.terminate().success());

    // A tansu member's session ends only at another's join: the standbys
    // rejoin after the dead one's session (6 s) is over.
    let extra = "group_id = \"ha\"\n[kafka.consumer]\n\"session.timeout.ms\" = \"6000\"\n\
                 [kafka.changelog]\nenabled = true\n[kafka.standby]\nenabled = true\nrejoin_after = \"8s\"\n";
    let mut a = start(root, "a", &broker, extra);
    a.wait_until(Duration::from_secs(60), "active", active);
    let mut b = start(root, "b", &broker, extra);
    assert_eq!(role(&b).as_deref(), Some("standby"));
    let (code, body) = b.get("/readyz").unwrap();
    assert_eq!(code, 503);
    assert!(body.contains("standing by") && body.contains("\"ha\""), "{body}");
    let (code, body) = api_call(b.http_port, "GET", "/api/v1/alerts", None, None);
    assert_eq!(code, 503, "a standby sends supervisors to the active one: {body}");
    assert!(b.get("/metrics").unwrap().1.contains("paywatch_active 0"));
    assert!(a.get("/metrics").unwrap().1.contains("paywatch_active 1"));

    // A is killed once half the ledger is applied and a later commit is
    // acknowledged by the changelog.
    let half = a.wait_until(Duration::from_secs(120), "half-way", |s| applied_total(s) >= produced / 2);
    let sent = half["changelog"]["commits"].as_u64().unwrap();
    a.wait_until(Duration::from_secs(60), "published", |s| s["changelog"]["commits"].as_u64() > Some(sent) && s["changelog"]["behind"] == 0);
    a.kill9();
    let killed = std::time::Instant::now();
    assert_eq!(role(&b).as_deref(), Some("standby"), "B waits for the election, not for A's port");

    // B is elected, restores A's state from the changelog and goes on.
    let first = b.wait_until(Duration::from_secs(150), "active after A's death", active);
    eprintln!("B active {:.1} s after A's kill, at {} of {produced} records", killed.elapsed().as_secs_f64(), applied_total(&first));
    assert!(applied_total(&first) >= applied_total(&half), "B starts from A's published state, not from the start: {first}");
    let log = b.log_text();
    assert!(log.contains("elected") && log.contains("empty state directory restored from the changelog"), "{log}");

    // C joins later: it stands by, and B keeps its role.
    let mut c = start(root, "c", &broker, extra);
    assert_eq!(role(&c).as_deref(), Some("standby"));
    let st = b.wait_idle();
    assert_eq!(st["counts"], clean_status["counts"], "nothing lost, nothing applied twice\nB {st}\nclean {clean_status}");
    assert_eq!(role(&b).as_deref(), Some("active"));
    let msgs = consume(&broker, "dibao.alerts.v1", &root.join("alerts-topic.jsonl"), Some(want.len()));
    let got: BTreeSet<String> = msgs.iter().map(|m| serde_json::from_str::<Alert>(&m.value).unwrap().alert_id).collect();
    assert_eq!(got, want, "the alerts topic holds the audit's alert ids");

    // A comes back with its old state and stands by; a standby stops
    // cleanly.
    a.restart();
    a.wait_until(Duration::from_secs(30), "standing by", |s| s["role"] == "standby");
    assert!(c.terminate().success());
    assert_eq!(role(&b).as_deref(), Some("active"), "a live active instance keeps its role while others come and go");

    // B stops cleanly and leaves the election: A is elected, finds the
    // changelog has gone on without it, sets its state aside, restores B's
    // and has B's totals.
    assert!(b.terminate().success());
    let stopped = std::time::Instant::now();
    let back = a.wait_until(Duration::from_secs(90), "active after B's stop", active);
    eprintln!("A active {:.1} s after B's stop", stopped.elapsed().as_secs_f64());
    assert_eq!(back["counts"], st["counts"], "A starts from B's state, not its own older one");
    assert!(a.log_text().contains("set aside"), "{}", a.log_text());
    assert!(root.join("a").join("state.superseded").is_dir());
    assert!(a.terminate().success());
}
