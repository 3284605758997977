//! kill -9 part way, run again with the same --state: the same alert set,
//! no line twice, no payment counted twice.

use crate::common::*;
use paywatch::generate::OutFormat;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `payments N` from the closing summary.
fn payments_applied(stderr: &str) -> u64 {
    let at = stderr.find("· payments ").expect("summary line") + "· payments ".len();
    stderr[at..].split_whitespace().next().unwrap().parse().unwrap()
}

fn wait_for(path: &Path, limit: Duration) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if std::fs::metadata(path).map(|m| m.len() > 0).unwrap_or(false) {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A ledger with small batches (many commits), its clean-run alerts, and
/// the arguments for runs on one state directory.
struct Interrupted {
    dir: tempfile::TempDir,
    g: paywatch::generate::Generated,
    reference: Vec<paywatch::model::Alert>,
    /// `payments N` of the clean run's summary.
    clean_payments: u64,
}

impl Interrupted {
    fn new(seed: u64) -> Interrupted {
        let dir = tempfile::tempdir().unwrap();
        let g = ledger(&dir.path().join("ledger"), 2500, OutFormat::Jsonl, seed);
        config(dir.path(), "[engine]\nbatch_records = 3000\nbatch_records_max = 3000\n");
        let clean_out = dir.path().join("clean.jsonl");
        let cfg = dir.path().join("paywatch.toml");
        let clean = run_ok(audit(&g, &clean_out, &["--config", cfg.to_str().unwrap()]));
        let reference = alerts(&clean_out);
        let clean_payments = payments_applied(&String::from_utf8_lossy(&clean.stderr));
        Interrupted { dir, g, reference, clean_payments }
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("alerts.jsonl")
    }

    fn args(&self) -> Vec<String> {
        let p = |n: &str| self.dir.path().join(n).to_str().unwrap().to_owned();
        vec!["--config".into(), p("paywatch.toml"), "--state".into(), p("state")]
    }

    fn audit(&self) -> std::process::Command {
        let args = self.args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        audit(&self.g, &self.out(), &args)
    }
}

#[test]
fn kill_9_at_three_points_resumes_to_the_clean_alert_set() {
    let t = Interrupted::new(21);
    let (out, reference, clean_payments) = (t.out(), &t.reference, t.clean_payments);
    // Killed while reading, then twice while applying.
    for (i, delay) in [0u64, 40, 160].into_iter().enumerate() {
        let mut child = t.audit().stderr(std::process::Stdio::null()).spawn().unwrap();
        if i == 0 {
            std::thread::sleep(Duration::from_millis(30));
        } else {
            wait_for(&out, Duration::from_secs(30));
            std::thread::sleep(Duration::from_millis(delay));
        }
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success(), "run {i} was killed before it finished");
        let written = std::fs::read_to_string(&out).unwrap_or_default().lines().count();
        assert!(written < reference.len(), "run {i} was killed part way ({written} of {} alerts)", reference.len());
    }
    let last = run_ok(t.audit());
    let stderr = String::from_utf8_lossy(&last.stderr);
    assert!(stderr.contains("resumed"), "the last run resumed: {stderr}");
    let got = alerts(&out);
    assert_eq!(got.len(), ids(&got).len(), "no alert line twice");
    assert_eq!(ids(&got), ids(reference));
    assert_eq!(payments_applied(&stderr), clean_payments, "no payment counted twice");

    // Running a finished state again changes nothing.
    let again = run_ok(t.audit());
    assert_eq!(ids(&alerts(&out)), ids(reference));
    assert_eq!(payments_applied(&String::from_utf8_lossy(&again.stderr)), clean_payments);
}

#[test]
fn a_state_built_from_other_inputs_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = ledger(&dir.path().join("a"), 100, OutFormat::Jsonl, 1);
    let b = ledger(&dir.path().join("b"), 120, OutFormat::Jsonl, 2);
    let state = dir.path().join("state");
    let st = state.to_str().unwrap();
    run_ok(audit(&a, &dir.path().join("a.jsonl"), &["--state", st]));
    let o = audit(&b, &dir.path().join("b.jsonl"), &["--state", st]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("other input files"));
}

#[test]
fn sigint_commits_the_batch_in_hand_and_the_next_run_resumes() {
    let t = Interrupted::new(23);
    let (out, reference) = (t.out(), &t.reference);
    let child = t.audit().stderr(std::process::Stdio::piped()).spawn().unwrap();
    wait_for(&out, Duration::from_secs(30));
    let killed = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let partial = alerts(&out);
    assert!(partial.len() < reference.len(), "stopped part way");
    assert_eq!(partial.len(), ids(&partial).len(), "whole lines, none twice");

    let last = run_ok(t.audit());
    assert!(String::from_utf8_lossy(&last.stderr).contains("resumed"));
    assert_eq!(ids(&alerts(&out)), ids(reference));
}
