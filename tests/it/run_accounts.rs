//! `paywatch run` with `[kafka.accounts]` (#16 step 2), on a real broker:
//! the person side sends its accounts away through `by-account`, the
//! instance's account worker runs the tasks the group gives it, and
//! together they publish the audit's alerts, through a `kill -9` during
//! the replay. A `by-account` topic with another partition count is
//! refused at start, by name.

use super::common::kafka::{api_call, consume, free_port, produce_ledger, service_config, Broker, Service, OPERATOR_TOKEN};
use super::common::{alerts, audit, ids, ledger, run_ok, run_refused};
use paywatch::generate::OutFormat;
use paywatch::model::{Alert, Rule};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const ACCOUNTS: &str = "[kafka.accounts]\npartitions = 3\n";

#[test]
fn run_with_account_tasks_publishes_the_audit_s_alerts_through_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let g = ledger(&dir.path().join("ledger"), 1_000, OutFormat::Jsonl, 21);
    let out = dir.path().join("audit.jsonl");
    run_ok(audit(&g, &out, &[]));
    let want_alerts = alerts(&out);
    let want = ids(&want_alerts);
    let accounts: BTreeSet<String> =
        want_alerts.iter().filter(|a| matches!(a.rule, Rule::SharedAccount | Rule::FrequentPayments)).map(|a| a.alert_id.clone()).collect();
    assert!(!accounts.is_empty(), "the ledger has accounts' alerts");
    let broker = Broker::start(dir.path());
    broker.create_contract_topics();
    let produced = produce_ledger(&broker, &g, "roster,deaths,payments,decisions,vulnerable");

    let port = free_port();
    let extra = format!("group_id = \"acc\"\n[kafka.consumer]\n\"session.timeout.ms\" = \"6000\"\n[engine]\nlanes = 2\n{ACCOUNTS}");
    let cfg = service_config(dir.path(), &broker, port, &extra);
    let mut svc = Service::start(&cfg, port, dir.path());
    // Killed half way through the replay, and started again.
    svc.wait_until(Duration::from_secs(120), "half the records applied", |s| {
        s["counts"].is_object() && super::common::kafka::applied_total(s) >= produced / 2
    });
    svc.kill9();
    svc.restart();
    let st = svc.wait_idle();
    // The account tasks are this instance's, open, and read to the end.
    let by = Instant::now() + Duration::from_secs(120);
    let st = loop {
        let s = svc.status().unwrap_or(st.clone());
        let t = &s["account_tasks"];
        let open = t["holding"].as_object().is_some_and(|h| h.len() == 3 && h.values().all(|v| v == "open"));
        if open && t["unsent"] == 0 && t["held"] == 0 && t["alerts"].as_u64().unwrap_or(0) > 0 {
            break s;
        }
        assert!(Instant::now() < by, "account tasks: {t}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(st["account_tasks"]["partitions"], 3, "{st}");
    assert!(st["account_tasks"]["error"].is_null(), "{st}");

    // The alerts topic holds the audit's alerts: the person side's from
    // the state directory's outbox, the accounts' from the tasks'.
    let msgs = consume(&broker, "dibao.alerts.v1", &dir.path().join("alerts-topic.jsonl"), Some(want.len()));
    let mut got = BTreeSet::new();
    for m in &msgs {
        let a: Alert = serde_json::from_str(&m.value).expect("alert JSON");
        assert_eq!(m.key, a.alert_id);
        got.insert(a.alert_id);
    }
    let missing: Vec<_> = want.difference(&got).take(10).collect();
    let extra: Vec<_> = got.difference(&want).take(10).collect();
    assert!(missing.is_empty() && extra.is_empty(), "{} of {}: missing {missing:?}, extra {extra:?}", got.len(), want.len());
    // The account tasks' state lives beside the state directory.
    let tasks = dir.path().join("state-tasks").join("tasks");
    for p in 0..3 {
        assert!(tasks.join(format!("account-{p}")).is_dir(), "{}", tasks.display());
    }
    assert!(svc.terminate().success());
    eprintln!("{} alerts ({} of the accounts), {} messages on the topic", want.len(), accounts.len(), msgs.len());
}

#[test]
fn a_by_account_topic_with_another_partition_count_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    broker.create_contract_topics();
    broker.create_topics(&["paywatch.acc2.by-account:5"]);
    let port = free_port();
    let cfg = service_config(dir.path(), &broker, port, &format!("group_id = \"acc2\"\n{ACCOUNTS}"));
    let (status, text) = run_refused(&cfg, &dir.path().join("refused.log"), Duration::from_secs(60));
    assert_eq!(status.and_then(|s| s.code()), Some(2), "{text}");
    assert!(text.contains("paywatch.acc2.by-account") && text.contains("has 5 partitions") && text.contains("needs 3"), "{text}");
}

/// The open account tasks an instance's `/status` shows.
fn open_tasks(s: &serde_json::Value) -> BTreeSet<String> {
    let holding = s["account_tasks"]["holding"].as_object().cloned().unwrap_or_default();
    holding.into_iter().filter(|(_, h)| h == "open").map(|(t, _)| t).collect()
}

/// A second instance with `person_side = false` runs account tasks only:
/// the group gives it some of the person side's, restored from their
/// changelog partitions; its API sends supervisors to the person side;
/// the alerts topic holds the audit's alerts; and when it stops, the
/// person side's instance takes its tasks back.
#[test]
fn an_instance_of_account_tasks_only_takes_its_share_and_hands_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let g = ledger(&dir.path().join("ledger"), 800, OutFormat::Jsonl, 22);
    let out = dir.path().join("audit.jsonl");
    run_ok(audit(&g, &out, &[]));
    let want_alerts = alerts(&out);
    let want = ids(&want_alerts);
    let accounts = want_alerts.iter().filter(|a| matches!(a.rule, Rule::SharedAccount | Rule::FrequentPayments)).count() as u64;
    let broker = Broker::start(dir.path());
    broker.create_contract_topics();
    produce_ledger(&broker, &g, "roster,deaths,payments,decisions,vulnerable");
    let start = |name: &str, more: &str| {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        let port = free_port();
        let extra = format!("group_id = \"share\"\n[engine]\nlanes = 2\n{ACCOUNTS}{more}");
        Service::start(&service_config(&d, &broker, port, &extra), port, &d)
    };
    let mut p = start("p", "");
    let mut a = start("a", "person_side = false\n");
    let all: BTreeSet<String> = (0..3).map(|i| format!("account-{i}")).collect();
    let by = Instant::now() + Duration::from_secs(120);
    let (on_p, on_a) = loop {
        let (sp, sa) = (p.status().unwrap_or_default(), a.status().unwrap_or_default());
        let (x, y) = (open_tasks(&sp), open_tasks(&sa));
        if !x.is_empty() && !y.is_empty() && x.is_disjoint(&y) && x.union(&y).cloned().collect::<BTreeSet<_>>() == all {
            assert_eq!(sa["role"], "accounts", "{sa}");
            break (x, y);
        }
        assert!(Instant::now() < by, "the tasks are not shared: person side {x:?}, accounts only {y:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let (code, body) = api_call(a.http_port, "GET", "/api/v1/alerts", Some(OPERATOR_TOKEN), None);
    assert_eq!(code, 503, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("account tasks only")), "{body}");
    p.wait_idle();
    let msgs = consume(&broker, "dibao.alerts.v1", &dir.path().join("alerts-topic.jsonl"), Some(want.len()));
    let got: BTreeSet<String> = msgs.iter().map(|m| m.key.clone()).collect();
    let missing: Vec<_> = want.difference(&got).take(10).collect();
    let extra: Vec<_> = got.difference(&want).take(10).collect();
    assert!(missing.is_empty() && extra.is_empty(), "{} of {}: missing {missing:?}, extra {extra:?}", got.len(), want.len());
    // Each account alert was raised once, by the task that held it.
    let raised = |s: &serde_json::Value| s["account_tasks"]["alerts"].as_u64().unwrap_or(0);
    let by = Instant::now() + Duration::from_secs(30);
    while raised(&p.status().unwrap_or_default()) + raised(&a.status().unwrap_or_default()) != accounts {
        assert!(Instant::now() < by, "person side {}, accounts only {}, the audit {accounts}", p.status().unwrap_or_default()["account_tasks"], a.status().unwrap_or_default()["account_tasks"]);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(open_tasks(&a.status().unwrap()), on_a, "the tasks stayed where they were");
    // The accounts-only instance stops; the person side's takes its tasks.
    assert!(a.terminate().success());
    p.wait_until(Duration::from_secs(120), "every account task back on the person side", |s| open_tasks(s) == all);
    assert!(p.terminate().success());
    eprintln!("tasks shared: person side {on_p:?}, accounts only {on_a:?}; {} alerts", want.len());
}
