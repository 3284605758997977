//! Helpers shared by the integration tests.

use paywatch::generate::{self, truth_key, GenerateOptions, Generated, OutFormat};
use paywatch::model::{Alert, Period};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output};
use std::time::{Duration, Instant};

pub mod kafka;
pub mod webhook;

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_paywatch"))
}

/// Waits up to `within` for a child to exit; kills it (and returns `None`)
/// when it does not.
pub fn exit_within(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let end = Instant::now() + within;
    loop {
        if let Some(st) = child.try_wait().expect("wait") {
            return Some(st);
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `paywatch run --config cfg`, its log (info) in `log`, expected to stop
/// by itself within `within`: how it exited (`None`: it had to be killed)
/// and what it logged.
pub fn run_refused(cfg: &Path, log: &Path, within: Duration) -> (Option<ExitStatus>, String) {
    let mut child = Command::new(bin())
        .args(["run", "--config"])
        .arg(cfg)
        .env("PAYWATCH_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(std::fs::File::create(log).expect("log file")))
        .spawn()
        .expect("paywatch run");
    let status = exit_within(&mut child, within);
    (status, std::fs::read_to_string(log).unwrap_or_default())
}

pub fn ledger(dir: &Path, households: usize, format: OutFormat, seed: u64) -> Generated {
    generate::generate(&GenerateOptions {
        out: dir.to_owned(),
        households,
        from: Period::new(2018, 1),
        to: Period::new(2021, 12),
        seed,
        format,
    })
    .expect("generate")
}

/// `paywatch audit` on a generated ledger.
pub fn audit(g: &Generated, out: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.arg("audit")
        .arg("--roster")
        .arg(&g.roster)
        .arg("--deaths")
        .arg(&g.deaths)
        .arg("--payments")
        .arg(&g.payments)
        .arg("--decisions")
        .arg(&g.decisions)
        .arg("--vulnerable")
        .arg(&g.vulnerable)
        .arg("--out")
        .arg(out)
        .args(extra)
        .env("PAYWATCH_LOG", "warn");
    c
}

pub fn run_ok<C: std::borrow::BorrowMut<Command>>(mut c: C) -> Output {
    let o = c.borrow_mut().output().expect("run paywatch");
    assert!(o.status.success(), "exit {:?}\n{}", o.status, String::from_utf8_lossy(&o.stderr));
    o
}

pub fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Vec<T> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}: {l}", path.display())))
        .collect()
}

pub fn alerts(path: &Path) -> Vec<Alert> {
    read_jsonl(path)
}

pub fn ids(alerts: &[Alert]) -> BTreeSet<String> {
    alerts.iter().map(|a| a.alert_id.clone()).collect()
}

pub fn truth_keys(alerts: &[Alert]) -> BTreeSet<String> {
    alerts.iter().map(truth_key).collect()
}

/// The alerts raised while their case's newest decision applied before
/// them was `false_positive` (decisions sort before payments at equal
/// times): what the service records but does not send to supervisors.
pub fn quiet_alerts(alerts: &[Alert], cases: &[serde_json::Value]) -> BTreeSet<String> {
    let mut quiet = BTreeSet::new();
    for a in alerts {
        let Some(c) = cases.iter().find(|c| c["case_id"] == a.case_id.as_str()) else { continue };
        let newest = c["decisions"]
            .as_array()
            .unwrap()
            .iter().rfind(|d| d["decided_at"].as_str().unwrap() <= a.event_time.as_str());
        if newest.is_some_and(|d| d["outcome"] == "false_positive") {
            quiet.insert(a.alert_id.clone());
        }
    }
    quiet
}

/// Dead letters by reason code.
pub fn dead_by_reason(path: &Path) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for d in read_jsonl::<paywatch::decode::DeadLetter>(path) {
        *m.entry(d.code().to_owned()).or_default() += 1;
    }
    m
}

/// A config file with a few engine settings changed.
pub fn config(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("paywatch.toml");
    std::fs::write(&p, text).expect("write config");
    p
}

/// Every entry of a closed state directory, in key order.
pub fn dump_state(state: &Path) -> Vec<(paywatch::store::Cf, Vec<u8>, Vec<u8>)> {
    let opts = paywatch::store::StoreOptions { block_cache_mb: 8, write_buffer_mb: 4, sync: false, statistics: false };
    let store = paywatch::store::Store::open(state, opts).unwrap();
    let mut all = Vec::new();
    store
        .each_entry_at_snapshot(|_, _| (), |_, cf, k, v| {
            all.push((cf, k.to_vec(), v.to_vec()));
            true
        })
        .unwrap();
    all
}
