//! Hardening item 8 against the real broker: an input topic deleted and
//! recreated under the stored offsets is noticed and stopped, the stop
//! survives a restart (even once the new topic has grown past the stored
//! position), and `paywatch offsets reset` lets it be read again.

use super::common::kafka::{free_port, service_config, tool, Broker, Service};
use super::common::{bin, ledger, run_refused};
use paywatch::generate::OutFormat;
use std::process::Command;
use std::time::Duration;

const DEATHS: &str = "civil.deaths.v1";

fn stopped(s: &serde_json::Value) -> bool {
    s["stopped_topics"].get(DEATHS).is_some()
}

fn metric(svc: &Service, line_start: &str) -> Option<f64> {
    let (_, text) = svc.get("/metrics")?;
    text.lines().find(|l| l.starts_with(line_start)).and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn a_recreated_input_topic_is_stopped_until_an_operator_resets_it() {
    let dir = tempfile::tempdir().unwrap();
    let g = ledger(&dir.path().join("ledger"), 120, OutFormat::Jsonl, 31);
    let folder = g.payments.parent().unwrap().display().to_string();
    let deaths = std::fs::read_to_string(&g.deaths).unwrap();
    let n_deaths = deaths.lines().count();
    assert!(n_deaths >= 3, "the ledger needs a few deaths, has {n_deaths}");
    let b = Broker::start(dir.path());
    b.create_contract_topics();
    tool(&["produce-ledger", &b.addr, &folder]);
    let port = free_port();
    let cfg = service_config(dir.path(), &b, port, "");
    let mut svc = Service::start(&cfg, port, dir.path());
    let first = svc.wait_idle();
    assert!(first["alerts"].as_u64().unwrap() > 0);
    assert!(!stopped(&first));
    assert_eq!(svc.terminate().code(), Some(0));

    // The deaths topic is deleted and recreated with one record: its end
    // is now before the stored position.
    tool(&["delete-topics", &b.addr, DEATHS]);
    b.create_topics(&[&format!("{DEATHS}:3")]);
    let one = dir.path().join("one-death.jsonl");
    // A death record that decodes (the ledger also holds bad lines).
    let good = deaths
        .lines()
        .find(|l| paywatch::decode::decode_json_str(paywatch::decode::Kind::Death, l, Default::default()).is_ok())
        .unwrap();
    std::fs::write(&one, format!("{good}\n")).unwrap();
    tool(&["produce-raw", &b.addr, DEATHS, one.to_str().unwrap()]);
    svc.restart();
    let s = svc.wait_until(Duration::from_secs(60), "stopped on the deaths topic", stopped);
    let why = s["stopped_topics"][DEATHS].as_str().unwrap();
    assert!(why.contains("of civil.deaths.v1") && why.contains("recreated"), "{why}");
    assert!(!s["idle"].as_bool().unwrap());
    let (code, body) = svc.get("/readyz").unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains(DEATHS) && body.contains("paywatch offsets reset"), "{body}");
    let gauge = format!("paywatch_input_topic_stopped{{topic=\"{DEATHS}\"}}");
    assert_eq!(metric(&svc, &gauge), Some(1.0));
    assert!(svc.log_text().contains("paywatch offsets reset --config"));

    // The recreated topic grows past the stored position: without the
    // stored stop a restart would resume there and skip its first records.
    tool(&["produce-ledger", &b.addr, &folder, "--topics", "deaths"]);
    assert_eq!(svc.terminate().code(), Some(0));
    svc.restart();
    svc.wait_until(Duration::from_secs(60), "still stopped after a restart", stopped);
    assert_eq!(svc.get("/readyz").unwrap().0, 503);
    assert_eq!(svc.terminate().code(), Some(0));

    // The operator reads it again from its first offset.
    let show = Command::new(bin()).args(["offsets", "show", "--config"]).arg(&cfg).output().unwrap();
    assert!(show.status.success(), "{}", String::from_utf8_lossy(&show.stderr));
    let shown = String::from_utf8_lossy(&show.stdout);
    let lines: Vec<serde_json::Value> = shown.lines().filter(|l| l.contains(DEATHS)).map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(!lines.is_empty(), "{shown}");
    let resumed: u64 = lines.iter().map(|v| v["resume"].as_u64().unwrap()).sum();
    assert_eq!(resumed, n_deaths as u64, "{shown}");
    assert!(lines.iter().all(|v| v["stopped"].as_str().is_some_and(|s| s.contains("recreated"))), "{shown}");
    let reset = Command::new(bin()).args(["offsets", "reset", "--topic", DEATHS, "--config"]).arg(&cfg).output().unwrap();
    assert!(reset.status.success(), "{}", String::from_utf8_lossy(&reset.stderr));
    assert!(String::from_utf8_lossy(&reset.stderr).contains("stop lifted"));
    svc.restart();
    let s = svc.wait_idle();
    assert!(!stopped(&s));
    assert_eq!(svc.get("/readyz").unwrap().0, 200);
    // Everything on the new topic had been applied (or dead-lettered)
    // before: redelivered, nothing applied anew, no alert raised twice.
    assert_eq!(s["alerts"].as_u64(), Some(0), "{s}");
    let count = |outcome: &str| metric(&svc, &format!("paywatch_records_total{{outcome=\"{outcome}\",topic=\"deaths\"}}")).unwrap_or(0.0) as usize;
    assert_eq!(count("ok"), 0);
    assert!(count("redelivered") > 0);
    assert_eq!(count("redelivered") + count("dead_letter"), n_deaths + 1);
    // The one death produced raw (key "bad") is counted as not keyed by
    // its person; the ledger's records, keyed as the contract says, are not.
    let miskeyed = |topic: &str| metric(&svc, &format!("paywatch_records_miskeyed_total{{topic=\"{topic}\"}}")).unwrap_or(0.0);
    assert_eq!(miskeyed(DEATHS), 1.0);
    assert_eq!(miskeyed("dibao.payments.v1"), 0.0);
    assert!(svc.log_text().contains("is not keyed by its person_id"));

    // Keyed by its person but on another partition than Kafka's default
    // partitioner (murmur2) gives that key: counted as such, and only it.
    let mispartitioned = |topic: &str| metric(&svc, &format!("paywatch_records_mispartitioned_total{{topic=\"{topic}\"}}")).unwrap_or(0.0);
    assert_eq!(mispartitioned("dibao.payments.v1"), 0.0);
    assert_eq!(mispartitioned("dibao.roster.v1"), 0.0);
    assert_eq!(mispartitioned(DEATHS), 0.0);
    tool(&["produce-elsewhere", &b.addr, DEATHS, "person_id", "3", one.to_str().unwrap()]);
    svc.wait_until(Duration::from_secs(60), "the misplaced death counted", |_| mispartitioned(DEATHS) == 1.0);
    assert!(svc.log_text().contains("is not on the partition Kafka's default partitioner (murmur2) gives its key"));
    assert_eq!(mispartitioned("dibao.payments.v1"), 0.0);
}

/// #16: the topics keyed by person must have one partition count, or a
/// partitioned engine would find a person's records on different
/// partition numbers. A service started on topics that disagree stops
/// before reading anything, with exit code 2 and every topic's count.
#[test]
fn input_topics_with_different_partition_counts_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::start(dir.path());
    b.create_topics(&[
        "dibao.payments.v1:3",
        "dibao.roster.v1:2",
        "civil.deaths.v1:3",
        "dibao.decisions.v1:1",
        "civil.vulnerable.v1:1",
        "dibao.alerts.v1:1",
        "dibao.deadletter.v1:1",
    ]);
    let g = ledger(&dir.path().join("ledger"), 120, OutFormat::Jsonl, 5);
    tool(&["produce-ledger", &b.addr, &g.payments.parent().unwrap().display().to_string()]);
    let port = free_port();
    let cfg = service_config(dir.path(), &b, port, "");
    let (status, text) = run_refused(&cfg, &dir.path().join("refused.log"), Duration::from_secs(90));
    let status = status.unwrap_or_else(|| panic!("paywatch run was not refused; log {text}"));
    assert_eq!(status.code(), Some(2), "{text}");
    for named in ["dibao.payments.v1 has 3", "dibao.roster.v1 has 2", "civil.deaths.v1 has 3", "civil.vulnerable.v1 has 1"] {
        assert!(text.contains(named), "{named} not in {text}");
    }
    assert!(!text.contains("dibao.decisions.v1 has"), "decisions are routed by case, any count will do: {text}");
    // Nothing read was committed: no stored position.
    let show = Command::new(bin()).args(["offsets", "show", "--config"]).arg(&cfg).output().unwrap();
    let said = String::from_utf8_lossy(&show.stderr);
    assert!(!show.status.success() && said.contains("holds no stream offsets"), "{said}");
    // Topics that agree are read.
    tool(&["delete-topics", &b.addr, "dibao.roster.v1", "civil.vulnerable.v1"]);
    b.create_topics(&["dibao.roster.v1:3", "civil.vulnerable.v1:3"]);
    tool(&["produce-ledger", &b.addr, &g.payments.parent().unwrap().display().to_string(), "--topics", "roster,vulnerable"]);
    let mut svc = Service::start(&cfg, port, dir.path());
    let s = svc.wait_idle();
    assert!(s["counts"]["payments"].as_u64().unwrap() > 0 && s["counts"]["roster"].as_u64().unwrap() > 0, "{s}");
    assert!(s["alerts"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(svc.terminate().code(), Some(0));
}
