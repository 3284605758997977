//! `paywatch run` against a real broker (tansu on 127.0.0.1), fed by an
//! independent client: parity with `paywatch audit`, kill -9 during the
//! replay, a rebalance, dead letters with their position, and a broker that
//! is not there at start.

use super::common::kafka::{applied_total, consume, free_port, produce_ledger, service_config, tool, Broker, Service};
use super::common::{alerts, audit, dead_by_reason, ids, ledger, run_ok};
use paywatch::generate::{Generated, OutFormat};
use paywatch::model::Alert;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

/// The audit of the same files: the alert ids the service must reach.
fn audited(g: &Generated, dir: &Path) -> (BTreeSet<String>, serde_json::Value) {
    let out = dir.join("audit.jsonl");
    let dl = dir.join("audit-dead.jsonl");
    let state = dir.join("audit-state");
    run_ok(audit(g, &out, &["--deadletter", dl.to_str().unwrap(), "--state", state.to_str().unwrap()]));
    let a = alerts(&out);
    // The engine's totals, read back through a status-shaped value.
    let counts = serde_json::json!({ "dead": dead_by_reason(&dl) });
    (ids(&a), counts)
}

fn alert_ids_on_topic(b: &Broker, dir: &Path, expect: usize) -> (BTreeSet<String>, usize) {
    let msgs = consume(b, "dibao.alerts.v1", &dir.join("alerts-topic.jsonl"), Some(expect));
    let mut set = BTreeSet::new();
    for m in &msgs {
        let a: Alert = serde_json::from_str(&m.value).expect("alert JSON");
        assert_eq!(m.key, a.alert_id, "alerts are keyed by alert_id");
        set.insert(a.alert_id);
    }
    (set, msgs.len())
}

/// Set equality, showing only the differences.
fn assert_same(got: &BTreeSet<String>, want: &BTreeSet<String>, what: &str) {
    let missing: Vec<_> = want.difference(got).take(10).collect();
    let extra: Vec<_> = got.difference(want).take(10).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: {} ids against {} wanted; missing (first 10) {missing:?}; extra (first 10) {extra:?}",
        got.len(),
        want.len()
    );
}


#[test]
fn stream_replay_equals_the_audit_and_dead_letters_carry_their_position() {
    let dir = tempfile::tempdir().unwrap();
    let g = ledger(&dir.path().join("ledger"), 300, OutFormat::Jsonl, 11);
    let (want, audit_counts) = audited(&g, dir.path());
    let broker = Broker::start(dir.path());
    broker.create_contract_topics();
    produce_ledger(&broker, &g, "roster,deaths,payments,decisions,vulnerable");

    let port = free_port();
    let cfg = service_config(dir.path(), &broker, port, "");
    let mut svc = Service::start(&cfg, port, dir.path());
    assert_eq!(svc.get("/healthz").map(|r| r.0), Some(200));
    let st = svc.wait_idle();
    assert_eq!(svc.get("/readyz").map(|r| r.0), Some(200));
    assert_eq!(st["alerts"].as_u64(), Some(want.len() as u64), "{st}");

    let (got, messages) = alert_ids_on_topic(&broker, dir.path(), want.len());
    assert_same(&got, &want, "the alerts topic holds exactly the audit's alert ids");
    assert_eq!(messages, want.len(), "no alert published twice in a clean run");

    // Every bad record is on the dead-letter topic with its original bytes,
    // its source position and reason, as many per reason as the audit found.
    let dead = consume(&broker, "dibao.deadletter.v1", &dir.path().join("dead-topic.jsonl"), None);
    let mut by_reason: BTreeMap<String, u64> = BTreeMap::new();
    for m in &dead {
        let topic = &m.headers["source_topic"];
        assert!(["dibao.payments.v1", "dibao.roster.v1", "civil.deaths.v1", "dibao.decisions.v1", "civil.vulnerable.v1"].contains(&topic.as_str()), "{m:?}");
        let partition: i32 = m.headers["source_partition"].parse().unwrap();
        let offset: i64 = m.headers["source_offset"].parse().unwrap();
        assert!(partition >= 0 && offset >= 0);
        let reason = &m.headers["reason"];
        *by_reason.entry(reason.split(':').next().unwrap().to_owned()).or_default() += 1;
    }
    let audit_dead: BTreeMap<String, u64> =
        serde_json::from_value(audit_counts["dead"].clone()).unwrap();
    assert_eq!(by_reason, audit_dead);

    // /metrics shows the same.
    let (_, metrics) = svc.get("/metrics").unwrap();
    assert!(metrics.contains("paywatch_records_total{outcome=\"ok\",topic=\"payments\"}"), "{metrics}");
    assert!(metrics.contains("paywatch_dead_letters_total"), "{metrics}");

    assert!(svc.terminate().success(), "SIGTERM ends the service with exit 0");
}

#[test]
fn kill_9_three_times_during_the_replay_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let g = ledger(&dir.path().join("ledger"), 1500, OutFormat::Jsonl, 12);
    let (want, _) = audited(&g, dir.path());
    let broker = Broker::start(dir.path());
    broker.create_contract_topics();
    let produced = produce_ledger(&broker, &g, "roster,deaths,payments,decisions,vulnerable");

    // A clean run for the totals, on its own state directory and group,
    // with its cross-key facts through the repartition records (#16): the
    // killed runs must come to the same totals and alerts.
    let clean_dir = dir.path().join("clean");
    std::fs::create_dir_all(&clean_dir).unwrap();
    let port = free_port();
    let extra = "group_id = \"clean\"\n[kafka.consumer]\n\"session.timeout.ms\" = \"6000\"\n[engine]\nrepartition_records = true\nlanes = 2\n";
    let cfg = service_config(&clean_dir, &broker, port, extra);
    let mut clean = Service::start(&cfg, port, &clean_dir);
    let clean_status = clean.wait_idle();
    // /metrics counts what the records carried: at least one account step
    // per payment on by-account (the idle loop observes once a second).
    let payments = clean_status["counts"]["payments"].as_u64().unwrap();
    let series = |text: &str, s: &str| text.lines().find_map(|l| l.strip_prefix(s)).and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(0);
    let started = std::time::Instant::now();
    let metrics = loop {
        let (_, text) = clean.get("/metrics").unwrap();
        if series(&text, "paywatch_repartition_records_total{kind=\"fact\",topic=\"by-account\"}") >= payments || started.elapsed() > Duration::from_secs(15) {
            break text;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(payments > 0 && series(&metrics, "paywatch_repartition_records_total{kind=\"fact\",topic=\"by-account\"}") >= payments, "{metrics}");
    for topic in ["by-account", "by-custodian", "by-household", "by-person"] {
        assert!(series(&metrics, &format!("paywatch_repartition_records_total{{kind=\"mark\",topic=\"{topic}\"}}")) > 0, "{topic}: {metrics}");
        assert!(series(&metrics, &format!("paywatch_repartition_bytes_total{{topic=\"{topic}\"}}")) > 0, "{topic}: {metrics}");
    }
    assert!(clean.terminate().success());

    let port = free_port();
    // A killed member leaves the group only when its session times out.
    // The person side runs in 3 lanes, then 2, 1 and 4 after each kill
    // (#16): each restart moves the deadline buckets to the new lanes.
    let killed = |lanes: u32| {
        let extra = format!("group_id = \"killed\"\n[kafka.consumer]\n\"session.timeout.ms\" = \"6000\"\n[engine]\nlanes = {lanes}\n");
        service_config(dir.path(), &broker, port, &extra)
    };
    let mut svc = Service::start(&killed(3), port, dir.path());
    // Killed when a quarter, a half and three quarters of the records are
    // committed (the committed totals survive the restarts).
    for (kill, lanes) in (1..=3u64).zip([2, 1, 4]) {
        let mark = produced * kill / 4;
        svc.wait_until(Duration::from_secs(120), "further along", |s| s["counts"].is_object() && applied_total(s) >= mark);
        svc.kill9();
        killed(lanes);
        svc.restart();
        eprintln!("kill -9 number {kill} done; {lanes} lanes now");
    }
    let st = svc.wait_idle();
    // The last start's 4 lanes applied most of what was left in runs, each
    // lane on a thread of its own.
    assert_eq!(st["lanes"], 4, "{st}");
    let in_runs = st["records_in_runs"].as_u64().unwrap();
    assert!(in_runs > 0 && in_runs <= st["applied"].as_u64().unwrap(), "{st}");
    // The committed totals equal the clean run's: no record applied twice
    // (redeliveries are counted, and equal), none lost.
    assert_eq!(st["counts"], clean_status["counts"], "killed {st}\nclean {clean_status}");
    assert_eq!(applied_total(&st), applied_total(&clean_status));
    assert_eq!(st["outbox"].as_i64(), Some(0));

    // Both groups published to the one alerts topic: the set is the audit's.
    let (got, _) = alert_ids_on_topic(&broker, dir.path(), want.len());
    assert_same(&got, &want, "alerts topic against the audit");
    assert!(svc.terminate().success());
}

#[test]
fn a_second_consumer_in_the_group_holding_partitions_for_a_while_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let g = ledger(&dir.path().join("ledger"), 1500, OutFormat::Jsonl, 13);
    let (want, _) = audited(&g, dir.path());
    let broker = Broker::start(dir.path());
    broker.create_contract_topics();
    produce_ledger(&broker, &g, "roster,deaths,payments,decisions,vulnerable");

    // A second member is in the group first and keeps some partitions for
    // a while; paywatch must not run ahead of what it cannot read yet.
    let addr = broker.addr.clone();
    let joiner = std::thread::spawn(move || {
        tool(&["join-group", &addr, "paywatch", "10", "dibao.payments.v1", "dibao.roster.v1", "civil.deaths.v1", "dibao.decisions.v1", "civil.vulnerable.v1"])
    });
    std::thread::sleep(Duration::from_secs(3));
    let port = free_port();
    let cfg = service_config(dir.path(), &broker, port, "[kafka.consumer]\n\"session.timeout.ms\" = \"6000\"");
    let mut svc = Service::start(&cfg, port, dir.path());
    let shared = svc.wait_until(Duration::from_secs(60), "given a share", |s| s["assigned_partitions"].as_u64().unwrap_or(0) > 0);
    let joined: serde_json::Value = serde_json::from_str(&joiner.join().unwrap()).unwrap();
    assert!(joined["assigned"].as_u64().unwrap() > 0, "the second member held partitions: {joined}");
    assert!(shared["assigned_partitions"].as_u64().unwrap() < 13, "paywatch shared the group: {shared}");

    svc.wait_until(Duration::from_secs(60), "given every partition", |s| s["assigned_partitions"] == 13);
    svc.wait_idle();
    let (got, _) = alert_ids_on_topic(&broker, dir.path(), want.len());
    assert_same(&got, &want, "alerts topic against the audit");
    assert!(svc.terminate().success());
}

/// Hardening item 12: until paywatch scales out, a second member of its
/// consumer group splits the state silently. A member that has not held
/// every input partition for longer than `kafka.revoked_grace` answers
/// `/readyz` 503 and says why in its log (once a minute), and is ready
/// again once it holds them all.
#[test]
fn a_member_that_shares_its_group_past_the_grace_is_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let g = ledger(&dir.path().join("ledger"), 100, OutFormat::Jsonl, 16);
    let broker = Broker::start(dir.path());
    broker.create_contract_topics();
    produce_ledger(&broker, &g, "roster,deaths,payments,decisions,vulnerable");
    let port = free_port();
    let cfg = service_config(dir.path(), &broker, port, "revoked_grace = \"2s\"\n[kafka.consumer]\n\"session.timeout.ms\" = \"6000\"");
    let mut svc = Service::start(&cfg, port, dir.path());
    svc.wait_until(Duration::from_secs(60), "given every partition", |s| s["assigned_partitions"] == 13);
    let st = svc.wait_idle();
    assert_eq!(svc.get("/readyz").map(|r| r.0), Some(200));
    assert_eq!(st["owned"]["dibao.payments.v1"], serde_json::json!([0, 1, 2]), "{st}");
    assert_eq!(st["owned"]["dibao.roster.v1"], serde_json::json!([0, 1, 2]), "{st}");
    assert_eq!(st["held_elsewhere"], 0);

    // Another instance joins the group and holds some partitions for 15 s.
    let addr = broker.addr.clone();
    let joiner = std::thread::spawn(move || {
        tool(&["join-group", &addr, "paywatch", "15", "dibao.payments.v1", "dibao.roster.v1", "civil.deaths.v1", "dibao.decisions.v1", "civil.vulnerable.v1"])
    });
    let end = std::time::Instant::now() + Duration::from_secs(60);
    let body = loop {
        if let Some((503, body)) = svc.get("/readyz") {
            if body.contains("another member of consumer group") {
                break body;
            }
        }
        assert!(std::time::Instant::now() < end, "never said it shares its group; last /readyz {:?}", svc.get("/readyz"));
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(body.contains("\"paywatch\"") && body.contains("must be the only member"), "{body}");
    let (_, metrics) = svc.get("/metrics").unwrap();
    assert!(metrics.contains("paywatch_ready 0") && !metrics.contains("paywatch_partitions_held_elsewhere 0"), "{metrics}");
    // /status names what this instance owns, and how much it does not.
    let st = svc.status().unwrap();
    let owned: usize = st["owned"].as_object().unwrap().values().map(|v| v.as_array().unwrap().len()).sum();
    assert_eq!(owned as u64, st["assigned_partitions"].as_u64().unwrap(), "{st}");
    assert_eq!(owned + st["held_elsewhere"].as_u64().unwrap() as usize, 13, "{st}");
    let joined: serde_json::Value = serde_json::from_str(&joiner.join().unwrap()).unwrap();
    assert!(joined["assigned"].as_u64().unwrap() > 0, "{joined}");

    // Alone again: ready again.
    svc.wait_until(Duration::from_secs(60), "given every partition back", |s| s["assigned_partitions"] == 13);
    let end = std::time::Instant::now() + Duration::from_secs(30);
    while svc.get("/readyz").map(|r| r.0) != Some(200) {
        assert!(std::time::Instant::now() < end, "not ready again when alone: {:?}", svc.get("/readyz"));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(svc.log_text().contains("another member of consumer group"), "logged");
    assert!(svc.terminate().success());
}

#[test]
fn no_broker_at_start_is_not_ready_but_keeps_trying_then_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let g = ledger(&dir.path().join("ledger"), 100, OutFormat::Jsonl, 14);
    let (want, _) = audited(&g, dir.path());
    let broker_port = free_port();
    // A config pointing at a port where no broker listens yet.
    let placeholder = Broker::placeholder(broker_port);
    let http = free_port();
    let cfg = service_config(dir.path(), &placeholder, http, "[log]\nformat = \"json\"");
    let mut svc = Service::start(&cfg, http, dir.path());
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(svc.get("/healthz").map(|r| r.0), Some(200), "alive");
    assert_eq!(svc.get("/readyz").map(|r| r.0), Some(503), "not ready without a broker");

    let broker = Broker::start_on(dir.path(), broker_port);
    broker.create_contract_topics();
    produce_ledger(&broker, &g, "roster,deaths,payments,decisions,vulnerable");
    svc.wait_until(Duration::from_secs(120), "ready", |s| s["assigned_partitions"] == 13);
    assert_eq!(svc.get("/readyz").map(|r| r.0), Some(200));
    svc.wait_idle();
    let (got, _) = alert_ids_on_topic(&broker, dir.path(), want.len());
    assert_same(&got, &want, "alerts topic against the audit");
    assert!(svc.terminate().success());

    // `[log] format = "json"`: one JSON object per line, saying what
    // happened, and never an identity number.
    let log = svc.log_text();
    let lines: Vec<serde_json::Value> =
        log.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    assert!(lines.iter().any(|l| l["message"].as_str().is_some_and(|m| m.contains("partitions assigned"))), "{log}");
    assert!(lines.iter().any(|l| l["level"] == "WARN"), "the missing broker was logged: {log}");
    let digits = log.as_bytes().windows(18).any(|w| w[..17].iter().all(u8::is_ascii_digit) && (w[17].is_ascii_digit() || w[17] == b'X'));
    assert!(!digits, "an identity number in the log: {log}");
}

#[test]
fn paywatch_produce_loads_csv_exports_that_the_service_audits_like_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let g = ledger(&dir.path().join("ledger"), 200, OutFormat::Csv, 15);
    let (want, _) = audited(&g, dir.path());
    let broker = Broker::start(dir.path());
    broker.create_contract_topics();
    let http = free_port();
    let cfg = service_config(dir.path(), &broker, http, "");
    for (topic, file) in [
        ("dibao.roster.v1", &g.roster),
        ("civil.deaths.v1", &g.deaths),
        ("dibao.payments.v1", &g.payments),
        ("dibao.decisions.v1", &g.decisions),
        ("civil.vulnerable.v1", &g.vulnerable),
    ] {
        let dead = dir.path().join(format!("{topic}-dead.jsonl"));
        let o = run_ok(std::process::Command::new(super::common::bin()).args([
            "produce",
            "--config",
            cfg.to_str().unwrap(),
            "--topic",
            topic,
            "--deadletter",
            dead.to_str().unwrap(),
            file.to_str().unwrap(),
        ]));
        assert!(String::from_utf8_lossy(&o.stderr).contains("produced"), "{}", String::from_utf8_lossy(&o.stderr));
    }
    // Keys are the contract's: beneficiary_id for payments.
    let payments = consume(&broker, "dibao.payments.v1", &dir.path().join("payments-topic.jsonl"), None);
    assert!(!payments.is_empty());
    for m in &payments {
        let v: serde_json::Value = serde_json::from_str(&m.value).expect("CSV rows become contract JSON");
        assert_eq!(v["beneficiary_id"].as_str(), Some(m.key.as_str()));
    }
    let mut svc = Service::start(&cfg, http, dir.path());
    svc.wait_idle();
    let (got, _) = alert_ids_on_topic(&broker, dir.path(), want.len());
    assert_same(&got, &want, "alerts from produced CSV against the audit of the CSV files");
    assert!(svc.terminate().success());

    // A topic that is not an input topic needs --kind.
    let o = std::process::Command::new(super::common::bin())
        .args(["produce", "--config", cfg.to_str().unwrap(), "--topic", "other", g.payments.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--kind"));
}

#[test]
fn run_refuses_a_state_directory_made_by_audit() {
    let dir = tempfile::tempdir().unwrap();
    let g = ledger(&dir.path().join("ledger"), 50, OutFormat::Jsonl, 16);
    audited(&g, dir.path());
    let placeholder = Broker::placeholder(free_port());
    let cfg = dir.path().join("run.toml");
    std::fs::write(
        &cfg,
        format!(
            "[kafka]\nbrokers = \"{}\"\n[state]\ndir = \"{}\"\n[http]\nlisten = \"127.0.0.1:{}\"\n",
            placeholder.addr,
            dir.path().join("audit-state").display(),
            free_port()
        ),
    )
    .unwrap();
    let o = std::process::Command::new(super::common::bin()).args(["run", "--config", cfg.to_str().unwrap()]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("paywatch audit"), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn audit_refuses_a_state_directory_made_by_run() {
    let dir = tempfile::tempdir().unwrap();
    let g = ledger(&dir.path().join("ledger"), 50, OutFormat::Jsonl, 17);
    let state = dir.path().join("stream-state");
    {
        use paywatch::store::{keys, Cf, Store, StoreOptions};
        let store = Store::open(&state, StoreOptions { block_cache_mb: 8, write_buffer_mb: 4, sync: false, statistics: false }).unwrap();
        let mut b = store.batch();
        b.put(Cf::Meta, keys::META_STREAM, &paywatch::run::StreamMeta::default()).unwrap();
        store.commit(b).unwrap();
    }
    let o = audit(&g, &dir.path().join("a.jsonl"), &["--state", state.to_str().unwrap()]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("paywatch run"), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn a_broker_gone_for_a_while_during_the_replay_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let g = ledger(&dir.path().join("ledger"), 1500, OutFormat::Jsonl, 18);
    let (want, _) = audited(&g, dir.path());
    let broker = Broker::start(dir.path());
    broker.create_contract_topics();
    let produced = produce_ledger(&broker, &g, "roster,deaths,payments,decisions,vulnerable");
    let port = free_port();
    let cfg = service_config(dir.path(), &broker, port, "");
    let mut svc = Service::start(&cfg, port, dir.path());
    svc.wait_until(Duration::from_secs(60), "a third along", |s| s["counts"].is_object() && applied_total(s) >= produced / 3);
    broker.freeze(true);
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(svc.get("/healthz").map(|r| r.0), Some(200), "alive while the broker is gone");
    broker.freeze(false);
    svc.wait_idle();
    let (got, _) = alert_ids_on_topic(&broker, dir.path(), want.len());
    assert_same(&got, &want, "alerts topic against the audit");
    assert!(svc.terminate().success());
}

/// Until the partitioned engine, two `paywatch run` instances in one
/// consumer group must not judge on half of each person's records: while
/// another member holds input partitions, an instance applies nothing, so
/// nothing the audit would not raise reaches the alerts topic. Once the
/// second stops, the first holds every partition and its alerts equal the
/// audit's.
#[test]
fn two_instances_in_one_group_publish_nothing_wrong_and_the_survivor_equals_the_audit() {
    let dir = tempfile::tempdir().unwrap();
    let g = ledger(&dir.path().join("ledger"), 600, OutFormat::Jsonl, 17);
    let (want, _) = audited(&g, dir.path());
    let broker = Broker::start(dir.path());
    broker.create_contract_topics();
    let extra = "revoked_grace = \"2s\"\n[kafka.consumer]\n\"session.timeout.ms\" = \"6000\"";
    let (pa, pb) = (free_port(), free_port());
    let (da, db) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&da).unwrap();
    std::fs::create_dir_all(&db).unwrap();
    let mut a = Service::start(&service_config(&da, &broker, pa, extra), pa, &da);
    let mut b = Service::start(&service_config(&db, &broker, pb, extra), pb, &db);
    let split = |s: &serde_json::Value| s["held_elsewhere"].as_u64().unwrap_or(0) > 0 && s["assigned_partitions"].as_u64().unwrap_or(0) > 0;
    a.wait_until(Duration::from_secs(60), "sharing the group", split);
    b.wait_until(Duration::from_secs(60), "sharing the group", split);
    // The ledger arrives while the group is split, past the grace: each
    // instance would judge its half (decisions on cases of the other
    // half's persons refused as unknown, households and accounts seen in
    // part).
    std::thread::sleep(Duration::from_secs(3));
    produce_ledger(&broker, &g, "roster,deaths,payments,decisions,vulnerable");
    std::thread::sleep(Duration::from_secs(5));
    let sa = a.status().unwrap();
    let sb = b.status().unwrap();
    assert!(split(&sa) && split(&sb), "{sa} {sb}");
    assert_eq!(a.get("/readyz").unwrap().0, 503);
    let seen = consume(&broker, "dibao.alerts.v1", &dir.path().join("while-split.jsonl"), None);
    let wrong: Vec<String> = seen.iter().map(|m| m.key.clone()).filter(|k| !want.contains(k)).take(5).collect();
    assert!(wrong.is_empty(), "alerts raised on half the records: {wrong:?} ({} on the topic)", seen.len());

    assert!(b.terminate().success());
    a.wait_until(Duration::from_secs(60), "given every partition", |s| s["assigned_partitions"] == 13);
    a.wait_idle();
    let (got, _) = alert_ids_on_topic(&broker, dir.path(), want.len());
    assert_same(&got, &want, "alerts topic against the audit");
    assert!(a.terminate().success());
}
