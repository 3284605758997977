//! generate → audit: every planted case found, nothing else raised, dead
//! letters exact, ids stable.

use crate::common::*;
use paywatch::generate::OutFormat;
use std::collections::BTreeSet;

fn check(format: OutFormat, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let g = ledger(&dir.path().join("ledger"), 800, format, seed);
    let out = dir.path().join("alerts.jsonl");
    let dead = dir.path().join("dead.jsonl");
    let o = run_ok(audit(&g, &out, &["--deadletter", dead.to_str().unwrap()]));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("NAME_MISMATCH") && stderr.contains("payment events/s"), "summary:\n{stderr}");

    let got = alerts(&out);
    let expected: BTreeSet<String> = g.truth.expected.iter().map(|e| e.key.clone()).collect();
    let keys = truth_keys(&got);
    assert_eq!(keys.len(), got.len(), "one alert per truth key");
    let missed: Vec<_> = expected.difference(&keys).collect();
    let extra: Vec<_> = keys.difference(&expected).collect();
    assert!(missed.is_empty() && extra.is_empty(), "recall misses {missed:?}\nprecision extras {extra:?}");
    for rule in paywatch::model::Rule::ALL {
        assert!(got.iter().any(|a| a.rule == rule), "no planted {rule:?} found");
    }
    assert_eq!(dead_by_reason(&dead), g.truth.dead_letters);
    assert!(stderr.contains(&format!("redelivered (ignored) {}", g.truth.redelivered)), "{stderr}");

    // Every alert is actionable: a reason in Chinese and evidence.
    for a in &got {
        assert!(a.reason.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)), "{}", a.reason);
        assert!(!a.township.is_empty());
        // A missed month has no payment; an overloaded custodian is a
        // matter of roster records, a referral of another department's.
        use paywatch::model::Rule;
        assert!(
            !a.evidence.event_ids.is_empty()
                || a.rule == Rule::MissedPayment
                || (matches!(a.rule, Rule::CustodianOverload | Rule::CoverageGap) && !a.evidence.record_ids.is_empty())
        );
    }

    // The same input gives the same ids on a fresh run.
    let again = dir.path().join("again.jsonl");
    run_ok(audit(&g, &again, &[]));
    assert_eq!(ids(&alerts(&again)), ids(&got));
}

#[test]
fn jsonl_ledger_matches_its_truth() {
    check(OutFormat::Jsonl, 11);
}

#[test]
fn csv_ledger_matches_its_truth() {
    check(OutFormat::Csv, 12);
}

#[test]
fn generate_is_deterministic() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let ga = ledger(a.path(), 200, OutFormat::Jsonl, 5);
    let gb = ledger(b.path(), 200, OutFormat::Jsonl, 5);
    for (x, y) in [(&ga.payments, &gb.payments), (&ga.roster, &gb.roster), (&ga.deaths, &gb.deaths), (&ga.truth_path, &gb.truth_path)] {
        assert_eq!(std::fs::read(x).unwrap(), std::fs::read(y).unwrap(), "{}", x.display());
    }
}

#[test]
fn demo_runs_and_finds_every_planted_case() {
    let o = run_ok(std::process::Command::new(bin()).args(["demo", "--households", "300"]).env("PAYWATCH_LOG", "warn"));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let line = stdout.lines().find(|l| l.starts_with("planted cases found")).expect("a result line");
    let nums: Vec<u64> = line.split(|c: char| !c.is_ascii_digit()).filter_map(|s| s.parse().ok()).collect();
    assert_eq!(nums[0], nums[1], "{line}");
    assert_eq!(nums[2], 0, "{line}");
    assert!(stdout.contains("example alerts") && stdout.contains("PAID_AFTER_DEATH"), "{stdout}");
    let dir = stdout.lines().find_map(|l| l.trim().strip_prefix("state")).map(|s| s.trim().to_owned()).unwrap();
    let _ = std::fs::remove_dir_all(std::path::Path::new(&dir).parent().unwrap());
}

/// #16, "the file audit on all cores gives the same alerts as before": the
/// person side in 2 and 4 lanes (each with its own caches, deadline
/// buckets and cases; small batches, so lanes commit often) raises the
/// same alerts as one lane, field by field (`detected_at` aside), files the
/// same cases and dead-letters the same records; also with the district
/// restricted to some townships (records of the others are refused before
/// they reach a lane); and with the facts between keys travelling as
/// repartition records (`[engine] repartition_records`).
#[test]
fn lanes_give_the_same_alerts_and_cases_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let g = ledger(&dir.path().join("ledger"), 800, OutFormat::Jsonl, 21);
    let run = |lanes: u32, district: &str| {
        let name = format!("{lanes}-{}", district.len());
        let out = dir.path().join(format!("alerts-{name}.jsonl"));
        let cases = dir.path().join(format!("cases-{name}.jsonl"));
        let dead = dir.path().join(format!("dead-{name}.jsonl"));
        let cfg_dir = dir.path().join(format!("cfg-{name}"));
        std::fs::create_dir_all(&cfg_dir).unwrap();
        let cfg = config(&cfg_dir, &format!("[engine]\nlanes = {lanes}\nbatch_records = 2000\ncache_entries = 64\n{district}"));
        let args = ["--config", cfg.to_str().unwrap(), "--cases", cases.to_str().unwrap(), "--deadletter", dead.to_str().unwrap()];
        let mut cmd = audit(&g, &out, &args);
        let wired = district.contains("repartition_records");
        if wired {
            cmd.env("PAYWATCH_LOG", "warn,paywatch=info");
        }
        let o = run_ok(cmd);
        if wired {
            // What each topic would carry, for sizing them.
            let stderr = String::from_utf8_lossy(&o.stderr);
            for topic in ["by-account", "by-custodian", "by-household", "by-person"] {
                assert!(stderr.lines().any(|l| l.contains("repartition records") && l.contains(topic) && l.contains("bytes_per_payment")), "{topic}:\n{stderr}");
            }
        }
        let mut got: Vec<serde_json::Value> = read_jsonl(&out);
        for a in &mut got {
            a.as_object_mut().unwrap().remove("detected_at");
        }
        got.sort_by_key(|a| a["alert_id"].as_str().unwrap().to_owned());
        let mut cases: Vec<serde_json::Value> = read_jsonl(&cases);
        for c in &mut cases {
            // Wall time (when the case opened), not the ledger's.
            for k in ["opened_at", "updated_at"] {
                c.as_object_mut().unwrap().remove(k);
            }
        }
        cases.sort_by_key(|c| c["case_id"].as_str().unwrap().to_owned());
        (got, cases, dead_by_reason(&dead))
    };
    let (one, one_cases, one_dead) = run(1, "");
    let rules: BTreeSet<&str> = one.iter().filter_map(|a| a["rule"].as_str()).collect();
    assert_eq!(rules.len(), paywatch::model::Rule::ALL.len(), "every rule is raised: {rules:?}");
    for lanes in [2, 4] {
        let (got, cases, dead) = run(lanes, "");
        assert_eq!(got.len(), one.len(), "{lanes} lanes");
        assert!(got == one, "{lanes} lanes: the alerts differ");
        assert!(cases == one_cases, "{lanes} lanes: the cases differ");
        assert_eq!(dead, one_dead, "{lanes} lanes");
    }
    // #16 step 2: the facts between keys travel as repartition records,
    // one partition per lane, read back and merged in order.
    for lanes in [1, 3] {
        let (got, cases, dead) = run(lanes, "repartition_records = true\n");
        assert!(got == one, "{lanes} lanes through repartition records: the alerts differ");
        assert!(cases == one_cases, "{lanes} lanes through repartition records: the cases differ");
        assert_eq!(dead, one_dead, "{lanes} lanes through repartition records");
    }
    let district = "[district]\ntownships = [\"水阳镇\", \"狸桥镇\", \"金坝街道\"]\n";
    let (part, part_cases, part_dead) = run(1, district);
    assert!(part_dead.get("unknown_township").copied().unwrap_or(0) > 100, "{part_dead:?}");
    assert!(!part.is_empty() && part.len() < one.len());
    let (got, cases, dead) = run(4, district);
    assert!(got == part, "4 lanes, three townships: the alerts differ");
    assert!(cases == part_cases, "4 lanes, three townships: the cases differ");
    assert_eq!(dead, part_dead);
}
