//! The fault matrix (`cargo test --test faults`, part of `make test`): one
//! generated ledger on a real Kafka-protocol broker (tansu) behind a TCP
//! proxy on 127.0.0.1, and `paywatch run` as a child process, put through
//! the faults below. Every outcome is checked against a clean
//! `paywatch audit` of the same ledger; a table of what was tried and what
//! happened is printed at the end, and any failure fails the run.
//!
//! Set `FAULTS_SEED` to replay a run's random kill points, and
//! `FAULTS_ONLY` to a part of a fault's name to run only those.

#[allow(dead_code)]
#[path = "../it/common/mod.rs"]
mod common;

mod damaged;
mod disk;
mod kills;
mod outages;
mod proxy;

use common::kafka::{free_port, service_config, tool, Broker, Service};
use common::webhook::Receiver;
use paywatch::model::Alert;
use paywatch::store::{Cf, Store, StoreOptions};
use proxy::Proxy;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What every fault shares: the ledger on the broker, and what a clean
/// audit of its files finds.
pub struct Fixture {
    pub dir: PathBuf,
    pub broker: Broker,
    pub proxy: Proxy,
    pub want: BTreeSet<String>,
    /// The alerts supervisors' webhooks are sent: all but those of cases
    /// closed as false_positive when they were raised (§11.4).
    pub to_deliver: BTreeSet<String>,
    /// Input records on the broker (all four topics, bad ones included).
    pub records: u64,
    pub seed: u64,
}

impl Fixture {
    fn new(dir: &Path, households: usize, seed: u64) -> Fixture {
        let ledger = common::ledger(&dir.join("ledger"), households, paywatch::generate::OutFormat::Jsonl, seed);
        let out = dir.join("audit.jsonl");
        let cases = dir.join("audit-cases.jsonl");
        common::run_ok(common::audit(&ledger, &out, &["--cases", cases.to_str().unwrap()]));
        let want: Vec<Alert> = common::alerts(&out);
        let quiet = common::quiet_alerts(&want, &common::read_jsonl(&cases));
        let to_deliver = want.iter().map(|a| a.alert_id.clone()).filter(|id| !quiet.contains(id)).collect();
        let (port, public) = (free_port(), free_port());
        let broker = Broker::start_advertising(dir, port, public);
        let proxy = Proxy::start(public, port);
        broker.create_contract_topics();
        tool(&["produce-ledger", &broker.addr, ledger.payments.parent().unwrap().to_str().unwrap()]);
        let records = [&ledger.roster, &ledger.deaths, &ledger.payments, &ledger.decisions, &ledger.vulnerable]
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap().lines().count() as u64)
            .sum();
        Fixture { dir: dir.to_owned(), broker, proxy, want: common::ids(&want), to_deliver, records, seed }
    }

    /// A `paywatch run` config of its own for one fault: its own consumer
    /// group, state directory and output topics.
    pub fn config(&self, name: &str, state: &Path, http: u16, extra: &str) -> PathBuf {
        let dir = self.dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let alerts = format!("faults.{name}.alerts");
        let dead = format!("faults.{name}.deadletter");
        self.broker.create_topics(&[&format!("{alerts}:1"), &format!("{dead}:1")]);
        let cfg = service_config(
            &dir,
            &self.broker,
            http,
            &format!("group_id = \"faults-{name}\"\n[kafka.topics]\nalerts = \"{alerts}\"\ndeadletter = \"{dead}\"\n{extra}"),
        );
        let text = std::fs::read_to_string(&cfg).unwrap();
        let text = text.replace(&format!("dir = \"{}\"", dir.join("state").display()), &format!("dir = \"{}\"", state.display()));
        std::fs::write(&cfg, text).unwrap();
        cfg
    }

    /// The distinct alert ids on a fault's alerts topic.
    pub fn published(&self, name: &str) -> BTreeSet<String> {
        let out = self.dir.join(name).join("alerts-topic.jsonl");
        let _ = std::fs::remove_file(&out);
        let msgs = common::kafka::consume(&self.broker, &format!("faults.{name}.alerts"), &out, Some(self.want.len()));
        msgs.into_iter().map(|m| m.key).collect()
    }
}

/// The secret the webhook routes sign with.
pub const SECRET: &str = "faults-secret-0123456789";

/// A `[webhooks]` section with one route to a receiver on `port`, retried
/// quickly (the faults are short).
pub fn webhook_route(port: u16) -> String {
    format!(
        "[webhooks]\nfirst_retry = \"200ms\"\nmax_retry = \"1s\"\nmax_attempts = 1000\n\
         [[webhooks.routes]]\nname = \"district\"\nurl = \"http://127.0.0.1:{port}/district\"\nsecrets = [\"{SECRET}\"]\n"
    )
}

/// Waits (up to `within`) until the receiver has answered 200 for every
/// wanted alert, then until paywatch has recorded the answers; returns the
/// distinct `Idempotency-Key`s delivered.
pub fn wait_delivered(fx: &Fixture, svc: &Service, rx: &Receiver, within: Duration) -> BTreeSet<String> {
    let end = Instant::now() + within;
    let delivered = loop {
        let ok: BTreeSet<String> = rx.hits().into_iter().filter(|h| h.status == 200).filter_map(|h| h.key).collect();
        if ok.len() >= fx.to_deliver.len() || Instant::now() > end {
            break ok;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    svc.wait_until(Duration::from_secs(30), "done delivering", |_| {
        svc.get("/metrics").is_some_and(|(_, m)| m.contains("paywatch_webhook_due_deliveries{route=\"district\"} 0"))
    });
    std::thread::sleep(Duration::from_millis(500));
    delivered
}

/// The records applied so far, from `/status` (committed totals).
pub fn applied(s: &serde_json::Value) -> u64 {
    let c = &s["counts"];
    ["roster", "deaths", "payments", "reversals", "redelivered", "rejected"].iter().map(|k| c[k].as_u64().unwrap_or(0)).sum()
}

/// Waits until `/status` says at least `n` records were applied (or the
/// service is idle).
pub fn wait_applied(svc: &Service, n: u64) -> u64 {
    let s = svc.wait_until(Duration::from_secs(120), "applying", |s| applied(s) >= n || s["idle"] == true);
    applied(&s)
}

/// Entries left in a stopped service's outbox (alerts, dead letters,
/// webhook deliveries).
pub fn outbox_left(state: &Path) -> usize {
    let store = Store::open(state, StoreOptions { block_cache_mb: 8, write_buffer_mb: 4, sync: false, statistics: false })
        .expect("open the stopped service's state");
    store.entries_between(Cf::Outbox, &[], &[0xff], usize::MAX).expect("read the outbox").len()
}

/// Compares two id sets in words.
pub fn same_ids(what: &str, got: &BTreeSet<String>, want: &BTreeSet<String>) -> Result<(), String> {
    if got == want {
        return Ok(());
    }
    Err(format!(
        "{what}: {} ids, want {} ({} missing, {} unexpected)",
        got.len(),
        want.len(),
        want.difference(got).count(),
        got.difference(want).count()
    ))
}

/// Every log paywatch wrote above, and the metrics saved beside them:
/// no run of 12 or more digits (account numbers are 12–19 digits,
/// identity numbers 17 digits and a check character) outside a decimal
/// fraction.
/// `text` with the build's commit id (`paywatch_build_info{git_sha=…}`)
/// left out: 12 hex digits, all of them decimal now and then (commit
/// 892423982146 was), and not a number anyone holds.
fn without_commit_id(text: &str) -> String {
    const LABEL: &str = "git_sha=\"";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(LABEL) {
        let value = at + LABEL.len();
        out.push_str(&rest[..value]);
        rest = &rest[value..];
        rest = &rest[rest.find('"').unwrap_or(rest.len())..];
    }
    out.push_str(rest);
    out
}

fn no_numbers_in_logs(root: &Path) -> Result<String, String> {
    assert_eq!(
        without_commit_id("paywatch_build_info{git_sha=\"892423982146\",version=\"0.1.0\"} 1 id=341802193812345678"),
        "paywatch_build_info{git_sha=\"\",version=\"0.1.0\"} 1 id=341802193812345678",
        "only the commit id is left out"
    );
    let mut files = Vec::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().filter_map(Result::ok) {
            let p = e.path();
            let n = e.file_name().to_string_lossy().into_owned();
            if p.is_dir() && n != "state" && n != "ledger" && n != "fs" {
                dirs.push(p);
            } else if (n.starts_with("run.") && n.ends_with(".log")) || n == "metrics.txt" {
                files.push(p);
            }
        }
    }
    let (mut bytes, mut lines) = (0, 0);
    for f in &files {
        let text = without_commit_id(&std::fs::read_to_string(f).unwrap_or_default());
        bytes += text.len();
        lines += text.lines().count();
        // Digits after a decimal point are a fraction (a histogram sum),
        // not a number anyone holds.
        let (mut run, mut fraction, mut prev) = (0, false, b' ');
        for (i, b) in text.bytes().enumerate() {
            if b.is_ascii_digit() {
                fraction |= run == 0 && prev == b'.';
                run += 1;
            } else {
                (run, fraction) = (0, false);
            }
            prev = b;
            if run >= 12 && !fraction {
                let from = text[..i].rfind('\n').map_or(0, |n| n + 1);
                let to = text[i..].find('\n').map_or(text.len(), |n| i + n);
                return Err(format!("{}: {}", f.display(), &text[from..to]));
            }
        }
    }
    if files.len() < 10 {
        return Err(format!("only {} log files found under {}", files.len(), root.display()));
    }
    Ok(format!("{} files, {lines} lines, {bytes} bytes: no run of 12 or more digits", files.len()))
}

/// One row of the table.
struct Row {
    fault: &'static str,
    outcome: Result<String, String>,
    took: Duration,
}

type Fault = fn(&Fixture) -> Result<String, String>;

fn main() {
    let seed = std::env::var("FAULTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs());
    let tmp = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let fx = Fixture::new(tmp.path(), 5000, seed);
    eprintln!(
        "faults: {} records on the broker, {} alerts from the clean audit, seed {seed} (setup {:.0?})",
        fx.records,
        fx.want.len(),
        started.elapsed()
    );
    let faults: [(&'static str, Fault); 9] = [
        ("kill -9 at 10 random points of a replay, restarting each time", kills::kill9_during_replay),
        ("broker stopped 10 s mid-replay, then started again", outages::broker_down),
        ("webhook receiver down for the whole replay, then up", outages::receiver_down),
        ("state directory on a full file system, then space freed", disk::full_disk),
        ("state directory of another RocksDB program", damaged::foreign_rocksdb),
        ("state directory holding other files", damaged::foreign_files),
        ("paywatch state that lost its CURRENT file", damaged::lost_current),
        ("paywatch state with a garbled MANIFEST", damaged::garbled_manifest),
        ("paywatch state with a truncated table file", damaged::truncated_sst),
    ];
    let only = std::env::var("FAULTS_ONLY").unwrap_or_default();
    let mut rows = Vec::new();
    for (fault, run) in faults.into_iter().filter(|(f, _)| f.contains(only.as_str())) {
        eprintln!("faults: {fault} …");
        let t = Instant::now();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&fx))).unwrap_or_else(|p| {
            Err(p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default())
        });
        rows.push(Row { fault, outcome, took: t.elapsed() });
    }
    if only.is_empty() {
        let t = Instant::now();
        let outcome = no_numbers_in_logs(&fx.dir);
        rows.push(Row { fault: "(after all) identity or account numbers in logs and metrics", outcome, took: t.elapsed() });
    }
    let failed = print_table(&rows);
    println!("faults: seed {seed}; all in {:.0?}", started.elapsed());
    if failed > 0 {
        drop(fx);
        let kept = tmp.keep();
        eprintln!("faults: {failed} of {} failed (rerun with FAULTS_SEED={seed}); logs kept in {}", rows.len(), kept.display());
        std::process::exit(1);
    }
}

fn print_table(rows: &[Row]) -> usize {
    let w = rows.iter().map(|r| r.fault.chars().count()).max().unwrap_or(5);
    println!("\n{:<w$}  {:<6}  {:>6}  outcome", "fault", "result", "time");
    println!("{}", "-".repeat(w + 30));
    let mut failed = 0;
    for r in rows {
        let (tag, text) = match &r.outcome {
            Ok(t) => ("ok", t.as_str()),
            Err(e) => {
                failed += 1;
                ("FAILED", e.as_str())
            }
        };
        let mut lines = text.lines();
        println!("{:<w$}  {:<6}  {:>5.0}s  {}", r.fault, tag, r.took.as_secs_f64(), lines.next().unwrap_or(""));
        for l in lines {
            println!("{:<w$}  {:<6}  {:>6}  {}", "", "", "", l);
        }
    }
    println!();
    failed
}
