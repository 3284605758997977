//! The changelog against a real broker: a machine lost mid-replay is
//! restored on another from the changelog and goes on from where its
//! last published commit left it, a restore after a clean stop is the
//! stopped state, entry for entry, and `paywatch run` restores an empty
//! state directory by itself.

use super::common::kafka::{applied_total, consume, free_port, produce_ledger, service_config, Broker, Service};
use super::common::{alerts, audit, bin, dump_state, ids, ledger, run_ok};
use paywatch::generate::OutFormat;
use paywatch::model::Alert;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn restore(config: &Path) -> serde_json::Value {
    let o = run_ok(Command::new(bin()).arg("restore").arg("--config").arg(config).env("PAYWATCH_LOG", "info"));
    serde_json::from_slice(&o.stdout).expect("restore prints its figures as JSON")
}

#[test]
fn a_machine_lost_mid_replay_is_restored_from_the_changelog_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let g = ledger(&dir.path().join("ledger"), 1500, OutFormat::Jsonl, 21);
    let out = dir.path().join("audit.jsonl");
    run_ok(audit(&g, &out, &[]));
    let want = ids(&alerts(&out));
    let broker = Broker::start(dir.path());
    broker.create_contract_topics();
    broker.create_topics(&["paywatch.lost.changelog:1"]);
    let produced = produce_ledger(&broker, &g, "roster,deaths,payments,decisions,vulnerable");
    let extra = "group_id = \"lost\"\n[kafka.consumer]\n\"session.timeout.ms\" = \"6000\"\n[kafka.changelog]\nenabled = true\n";

    // A clean run for the totals, without a changelog.
    let clean_dir = dir.path().join("clean");
    std::fs::create_dir_all(&clean_dir).unwrap();
    let port = free_port();
    let cfg = service_config(&clean_dir, &broker, port, "group_id = \"clean\"\n");
    let mut clean = Service::start(&cfg, port, &clean_dir);
    let clean_status = clean.wait_idle();
    assert!(clean.terminate().success());

    // Machine A publishes its changelog and is killed half-way.
    let a_dir = dir.path().join("a");
    std::fs::create_dir_all(&a_dir).unwrap();
    let port = free_port();
    let mut a = Service::start(&service_config(&a_dir, &broker, port, extra), port, &a_dir);
    let half = a.wait_until(Duration::from_secs(120), "half-way", |s| s["counts"].is_object() && applied_total(s) >= produced / 2);
    // Then a commit after it published and acknowledged.
    let sent = half["changelog"]["commits"].as_u64().unwrap();
    let before = a.wait_until(Duration::from_secs(60), "published", |s| {
        s["changelog"]["commits"].as_u64() > Some(sent) && s["changelog"]["behind"] == 0
    });
    a.kill9();
    assert!(a.log_text().contains("changelog snapshot published"), "A began with a snapshot");

    // Machine B: its state restored from A's changelog, not replayed.
    let b_dir = dir.path().join("b");
    std::fs::create_dir_all(&b_dir).unwrap();
    let port = free_port();
    // In A's group. B joins within A's session (the restore takes about a
    // second), so it is handed nothing while the dead A is still a member,
    // and tansu does not rebalance when A's session ends: B leaves the
    // group and joins again after 30 s (`rejoin_when_left_out`). Without
    // that, B waited for ever (seen three times).
    let b_cfg = service_config(&b_dir, &broker, port, extra);
    let restored = restore(&b_cfg);
    assert!(restored["commits"].as_u64().unwrap() > 0, "{restored}");
    assert_eq!(restored["gap"], false, "{restored}");
    let mut b = Service::start(&b_cfg, port, &b_dir);
    let first = b.wait_until(Duration::from_secs(30), "up", |s| s["counts"].is_object() && s["lanes"].as_u64() > Some(0));
    let resumed = applied_total(&first);
    // The changelog's last commits may always be lost with a machine: B
    // reads their records again.
    assert!(resumed >= applied_total(&half) && resumed <= applied_total(&before), "B starts from A's published state: {resumed} of {produced}; restored {restored}; A {before}");
    eprintln!("B resumed at {resumed} of {produced} records");
    let st = b.wait_idle();
    // Nothing lost, nothing applied twice: the clean run's totals.
    assert_eq!(st["counts"], clean_status["counts"], "restored {st}\nclean {clean_status}");
    assert_eq!(st["outbox"].as_i64(), Some(0));
    // Every alert reached the alerts topic (A's before the kill, B's after).
    let msgs = consume(&broker, "dibao.alerts.v1", &dir.path().join("alerts-topic.jsonl"), Some(want.len()));
    let got: BTreeSet<String> = msgs.iter().map(|m| serde_json::from_str::<Alert>(&m.value).unwrap().alert_id).collect();
    assert_eq!(got, want, "the alerts topic holds the audit's alert ids");
    assert!(b.terminate().success());

    // After B's clean stop, its changelog (a new origin in the same topic,
    // after A's frames) restores into C entry for entry.
    let c_dir = dir.path().join("c");
    std::fs::create_dir_all(&c_dir).unwrap();
    let c_cfg = service_config(&c_dir, &broker, free_port(), extra);
    let again = restore(&c_cfg);
    assert_eq!(again["gap"], false, "{again}");
    let (bs, cs) = (dump_state(&b_dir.join("state")), dump_state(&c_dir.join("state")));
    assert_eq!(bs.len(), cs.len(), "entries of B and of its restored copy");
    assert!(bs == cs, "the restored copy differs from B");

    // D: `paywatch run` on an empty state directory restores it by itself
    // and starts where B stopped.
    let d_dir = dir.path().join("d");
    std::fs::create_dir_all(&d_dir).unwrap();
    let port = free_port();
    let mut d = Service::start(&service_config(&d_dir, &broker, port, extra), port, &d_dir);
    let d_first = d.wait_until(Duration::from_secs(60), "up", |s| s["counts"].is_object() && s["lanes"].as_u64() > Some(0));
    assert_eq!(d_first["counts"], st["counts"], "D starts with B's totals");
    assert!(d.log_text().contains("empty state directory restored from the changelog"));
    assert!(d.terminate().success());

    // A restore into a state directory that exists is refused.
    let o = Command::new(bin()).arg("restore").arg("--config").arg(&c_cfg).output().unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("already holds a state"), "{}", String::from_utf8_lossy(&o.stderr));
}
