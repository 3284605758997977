//! `paywatch demo`: a newcomer's first run, no Kafka, no setup.

use anyhow::Context;
use paywatch::audit::{self, AuditOptions};
use paywatch::clock::SystemClock;
use paywatch::config::Config;
use paywatch::generate::{self, truth_key, GenerateOptions, OutFormat};
use paywatch::model::{Alert, Period, Rule};
use paywatch::source::Inputs;
use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, IsTerminal};
use std::sync::Arc;

pub fn run(households: usize) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new().prefix("paywatch-demo-").tempdir().context("temporary folder")?.keep();
    let ledger = dir.join("ledger");
    eprintln!("generating a district of {households} households (2018-01 … 2021-12) in {}", ledger.display());
    let g = generate::generate(&GenerateOptions {
        out: ledger.clone(),
        households,
        from: Period::new(2018, 1),
        to: Period::new(2021, 12),
        seed: 2018,
        format: OutFormat::Jsonl,
    })?;
    let out = dir.join("alerts.jsonl");
    let opts = AuditOptions {
        inputs: Inputs { decisions: Some(g.decisions.clone()), ..Inputs::new(g.roster.clone(), g.deaths.clone(), g.payments.clone()) },
        out: Some(out.clone()),
        deadletter: dir.join("deadletter.jsonl"),
        cases: Some(dir.join("cases.jsonl")),
        state: Some(dir.join("state")),
        progress: std::io::stderr().is_terminal(),
        stop: Default::default(),
    };
    let summary = audit::run(&opts, &Config::default(), Arc::new(SystemClock)).context("audit")?;
    audit::print_summary(&summary, &mut std::io::stdout())?;

    let alerts: Vec<Alert> = std::io::BufReader::new(std::fs::File::open(&out)?)
        .lines()
        .map(|l| Ok(serde_json::from_str(&l?)?))
        .collect::<anyhow::Result<_>>()?;
    let mut by_rule: BTreeMap<Rule, Vec<&Alert>> = BTreeMap::new();
    for a in &alerts {
        by_rule.entry(a.rule).or_default().push(a);
    }
    println!("\n示例预警 / example alerts (three per rule)");
    for (rule, list) in &by_rule {
        println!("\n■ {} {}", rule.code(), rule.chinese());
        for a in list.iter().take(3) {
            println!("  [{}] {} · {}", a.severity.code(), a.township, a.reason);
            println!("        alert_id {} · evidence {:?}", a.alert_id, a.evidence.event_ids);
        }
    }
    let expected: HashSet<&str> = g.truth.expected.iter().map(|e| e.key.as_str()).collect();
    let found: HashSet<String> = alerts.iter().map(truth_key).collect();
    let hit = expected.iter().filter(|k| found.contains(**k)).count();
    let extra = found.iter().filter(|k| !expected.contains(k.as_str())).count();
    println!(
        "\nplanted cases found: {hit} of {} · alerts on anything not planted (controls included): {extra}",
        expected.len()
    );
    println!("\nfiles:");
    println!("  ledger       {}  (roster.jsonl, deaths.jsonl, payments.jsonl, decisions.jsonl, truth.json)", ledger.display());
    println!("  alerts       {}", out.display());
    println!("  cases        {}  (status, relapses, decisions of every problem)", dir.join("cases.jsonl").display());
    println!("  dead letters {}", dir.join("deadletter.jsonl").display());
    println!("  state        {}", dir.join("state").display());
    println!(
        "\nnext: paywatch audit --roster {} --deaths {} --payments {} --decisions {} --out alerts.jsonl --cases cases.jsonl",
        g.roster.display(),
        g.deaths.display(),
        g.payments.display(),
        g.decisions.display()
    );
    Ok(())
}
