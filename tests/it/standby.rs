//! `[kafka.standby]` on the real broker.
//! - Instances of one consumer group, one active and one standing by with
//!   a warm copy of its state. The active one is `kill -9`ed mid-replay
//!   and the standby takes over from its copy; one more is added later and
//!   copies the new line; a live active instance keeps its role while
//!   others come and go; an instance whose state the changelog has
//!   overtaken sets it aside and copies the active one's, and is elected
//!   from its copy after a clean stop.
//! - An active instance frozen past its session (SIGSTOP) while a standby
//!   without a copy (`follow = false`) restores and takes over: woken, it
//!   finds the role gone and exits with code 3.
//! Every alert of the audit reaches the alerts topic, and the totals are a
//! clean run's: nothing lost, nothing applied twice.

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

/// A ledger, its audit's alert ids, a broker holding it (and group
/// `group`'s changelog topic), and a clean run's status alone in its
/// group; with how many records were produced.
struct Setup {
    broker: Broker,
    want: BTreeSet<String>,
    produced: u64,
    clean: serde_json::Value,
}

fn setup(root: &Path, households: usize, seed: u64, group: &str) -> Setup {
    let g = ledger(&root.join("ledger"), households, OutFormat::Jsonl, seed);
    let out = root.join("audit.jsonl");
    run_ok(audit(&g, &out, &[]));
    let want = ids(&alerts(&out));
    let broker = Broker::start(root);
    broker.create_contract_topics();
    broker.create_topics(&[&format!("paywatch.{group}.changelog:1")]);
    let produced = produce_ledger(&broker, &g, "roster,deaths,payments,decisions,vulnerable");
    let mut clean = start(root, "clean", &broker, "group_id = \"clean\"\n");
    let status = clean.wait_idle();
    assert!(clean.terminate().success());
    Setup { broker, want, produced, clean: status }
}

/// An instance of `group` with the changelog and standby on (and `more`
/// under `[kafka.standby]`). A tansu member's session ends only at
/// another's join: a standby rejoining after `rejoin_after` ("8s": after
/// a dead one's 6 s session) hands the role on.
fn standby_config(group: &str, rejoin_after: &str, more: &str) -> String {
    format!(
        "group_id = \"{group}\"\n[kafka.consumer]\n\"session.timeout.ms\" = \"6000\"\n\
         [kafka.changelog]\nenabled = true\n[kafka.standby]\nenabled = true\nrejoin_after = \"{rejoin_after}\"\n{more}"
    )
}

/// The alert ids on the alerts topic.
fn on_the_alerts_topic(root: &Path, broker: &Broker, expect: usize) -> BTreeSet<String> {
    let msgs = consume(broker, "dibao.alerts.v1", &root.join("alerts-topic.jsonl"), Some(expect));
    msgs.iter().map(|m| serde_json::from_str::<Alert>(&m.value).unwrap().alert_id).collect()
}

/// A standby's warm copy as `/status` shows it: consistent, and of
/// `origin` when one is given.
fn warm(s: &serde_json::Value, origin: Option<&serde_json::Value>) -> bool {
    let f = &s["following"];
    f["consistent"] == true && origin.is_none_or(|o| &f["origin"] == o)
}

#[test]
fn standbys_take_over_from_the_changelog_and_the_alerts_are_the_audits() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let Setup { broker, want, produced, clean: clean_status } = setup(root, 1500, 23, "ha");

    // One standby at a time may be elected: on tansu a join within
    // seconds of an election can hand the role on a second time
    // (docs/changelog.md, "Standby instances"), so C joins once the group
    // has settled. How a copy changes line is `it::follow`'s.
    let extra = &standby_config("ha", "8s", "");
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
    assert!(b.get("/metrics").unwrap().1.contains("paywatch_standby_behind_frames"));
    assert!(a.get("/metrics").unwrap().1.contains("paywatch_active 1"));

    // A is killed once half the ledger is applied and a later commit is
    // acknowledged by the changelog, which B is copying.
    let half = a.wait_until(Duration::from_secs(120), "half-way", |s| applied_total(s) >= produced / 2);
    let sent = half["changelog"]["commits"].as_u64().unwrap();
    a.wait_until(Duration::from_secs(60), "published", |s| s["changelog"]["commits"].as_u64() > Some(sent) && s["changelog"]["behind"] == 0);
    let st = b.wait_until(Duration::from_secs(60), "a warm copy", |s| warm(s, None) && s["following"]["commits"].as_u64() > Some(0));
    let a_line = st["following"]["origin"].clone();
    a.kill9();
    let killed = std::time::Instant::now();
    assert_eq!(role(&b).as_deref(), Some("standby"), "B waits for the election, not for A's port");

    // B is elected, opens its copy read to the changelog's end and goes on.
    let first = b.wait_until(Duration::from_secs(150), "active after A's death", active);
    eprintln!("B active {:.1} s after A's kill, at {} of {produced} records", killed.elapsed().as_secs_f64(), applied_total(&first));
    assert!(applied_total(&first) >= applied_total(&half), "B starts from A's published state, not from the start: {first}");
    let log = b.log_text();
    assert!(log.contains("elected") && log.contains("warm copy is read to the changelog's end"), "{log}");
    assert!(!log.contains("restored from the changelog"), "the copy, not a restore: {log}");
    let st = b.wait_idle();
    assert_eq!(st["counts"], clean_status["counts"], "nothing lost, nothing applied twice\nactive {st}\nclean {clean_status}");
    assert_eq!(on_the_alerts_topic(root, &broker, want.len()), want, "the alerts topic holds the audit's alert ids");

    // C joins later and copies the active one's line; A comes back with
    // its old state, overtaken: it is set aside and A copies the line too.
    let mut c = start(root, "c", &broker, extra);
    let line = c.wait_until(Duration::from_secs(60), "standing by with a warm copy", |s| s["role"] == "standby" && warm(s, None))["following"]["origin"].clone();
    assert_ne!(line, a_line, "B's line, begun when it was elected");
    a.restart();
    a.wait_until(Duration::from_secs(60), "standing by with a warm copy", |s| s["role"] == "standby" && warm(s, Some(&line)));
    assert!(a.log_text().contains("set aside"), "{}", a.log_text());
    assert!(root.join("a").join("state.superseded").is_dir());
    assert!(c.terminate().success());
    assert_eq!(role(&b).as_deref(), Some("active"), "a live active instance keeps its role while others come and go");

    // The active one stops cleanly and leaves the election: A is elected
    // and opens its copy, with the stopped one's totals.
    assert!(b.terminate().success());
    let stopped = std::time::Instant::now();
    let back = a.wait_until(Duration::from_secs(90), "active after the active one's stop", active);
    eprintln!("A active {:.1} s after the active one's stop", stopped.elapsed().as_secs_f64());
    assert_eq!(back["counts"], st["counts"], "A starts from the copied state, not its own older one");
    assert!(a.log_text().contains("warm copy is read to the changelog's end"), "{}", a.log_text());
    assert!(a.terminate().success());
}

#[test]
fn an_active_instance_frozen_past_its_session_loses_the_role_and_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let Setup { broker, want, produced, clean: clean_status } = setup(root, 1200, 29, "fz");

    let extra = &standby_config("fz", "8s", "follow = false\n");
    let mut a = start(root, "a", &broker, extra);
    a.wait_until(Duration::from_secs(60), "active", active);
    let mut b = start(root, "b", &broker, extra);
    assert_eq!(role(&b).as_deref(), Some("standby"));
    assert!(b.status().unwrap()["following"].is_null(), "follow = false: no copy");

    // A stalls mid-replay (SIGSTOP: a paused VM) with a commit past
    // half-way acknowledged by the changelog.
    let half = a.wait_until(Duration::from_secs(120), "half-way", |s| applied_total(s) >= produced / 2);
    let sent = half["changelog"]["commits"].as_u64().unwrap();
    a.wait_until(Duration::from_secs(60), "published", |s| s["changelog"]["commits"].as_u64() > Some(sent) && s["changelog"]["behind"] == 0);
    a.freeze(true);
    let frozen = std::time::Instant::now();

    // B is elected once A's session is over, and goes on from A's
    // changelog.
    let first = b.wait_until(Duration::from_secs(150), "active while A is frozen", active);
    eprintln!("B active {:.1} s after A froze", frozen.elapsed().as_secs_f64());
    assert!(applied_total(&first) >= applied_total(&half), "B starts from A's published state: {first}");
    assert!(b.log_text().contains("empty state directory restored from the changelog"), "{}", b.log_text());

    // A wakes, finds the role gone, halts and exits 3 by itself.
    a.freeze(false);
    let woke = std::time::Instant::now();
    let code = a.exit_within(Duration::from_secs(90)).expect("the fenced instance stops by itself");
    eprintln!("A stopped {:.1} s after waking", woke.elapsed().as_secs_f64());
    assert_eq!(code.code(), Some(3), "{}", a.log_text());
    let log = a.log_text();
    assert!(log.contains("lost the active role"), "{log}");
    assert!(!log.contains("panicked"), "{log}");

    // B keeps the role and ends at the clean run's totals, every audit
    // alert on the alerts topic.
    let st = b.wait_idle();
    assert_eq!(role(&b).as_deref(), Some("active"));
    assert_eq!(st["counts"], clean_status["counts"], "nothing lost, nothing applied twice\nB {st}\nclean {clean_status}");
    assert_eq!(on_the_alerts_topic(root, &broker, want.len()), want, "the alerts topic holds the audit's alert ids");

    // Started again, A stands by.
    a.restart();
    a.wait_until(Duration::from_secs(30), "standing by", |s| s["role"] == "standby");
    assert!(a.terminate().success());
    assert!(b.terminate().success());
}
