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
        inputs: Inputs {
            decisions: Some(g.decisions.clone()),
            vulnerable: Some(g.vulnerable.clone()),
            ..Inputs::new(g.roster.clone(), g.deaths.clone(), g.payments.clone())
        },
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
    cases_and_ledger(&dir, &alerts)?;
    println!("\nfiles:");
    println!("  ledger       {}  (roster.jsonl, deaths.jsonl, payments.jsonl, decisions.jsonl, vulnerable.jsonl, truth.json)", ledger.display());
    println!("  alerts       {}", out.display());
    println!("  cases        {}  (status, relapses, decisions of every problem)", dir.join("cases.jsonl").display());
    println!("  dead letters {}", dir.join("deadletter.jsonl").display());
    println!("  work ledger  {}  (and .xlsx: 台账, 汇总, 图表)", dir.join("paywatch-ledger-2021Q4.csv").display());
    println!("  state        {}", dir.join("state").display());
    println!(
        "\nnext: paywatch audit --roster {} --deaths {} --payments {} --decisions {} --vulnerable {} --out alerts.jsonl --cases cases.jsonl",
        g.roster.display(),
        g.deaths.display(),
        g.payments.display(),
        g.decisions.display(),
        g.vulnerable.display()
    );
    Ok(())
}

/// The cases the audit ends with: how many stand where, one relapse as a
/// supervisor reads it, and the last quarter's work ledger (CSV and XLSX)
/// with its per-township totals.
fn cases_and_ledger(dir: &std::path::Path, alerts: &[Alert]) -> anyhow::Result<()> {
    use paywatch::report::{self, Quarter};
    use paywatch::store::{cases, Store};
    let cfg = Config::default();
    let store = Store::open(&dir.join("state"), cfg.store_options(false)).context("the audit's state")?;
    let mut by_status: BTreeMap<&str, u64> = BTreeMap::new();
    let (mut total, mut relapsed) = (0, 0);
    for c in cases::all(&store) {
        let c = c?;
        total += 1;
        relapsed += u64::from(c.relapsed);
        *by_status.entry(c.status.chinese()).or_default() += 1;
    }
    let shown: Vec<String> = by_status.iter().map(|(s, n)| format!("{s} {n}")).collect();
    println!("\n问题 / cases: {total} ({}), of which relapsed (反弹) {relapsed}", shown.join(" · "));
    if let Some(r) = alerts.iter().find(|a| a.rule == Rule::RectificationRelapse) {
        if let Some(c) = cases::get(&store, &r.case_id)? {
            println!("\n■ 反弹示例 / a relapse: case {} ({} · {})", c.case_id, c.township, c.rule.chinese());
            for d in &c.decisions {
                let action = d.action.map(|a| format!(" ({})", a.chinese())).unwrap_or_default();
                println!("  {} {}: {}{}{}", cfg.tz().format(d.decided_at), d.decided_by, cases::Status::from(d.outcome).chinese(), action, d.note.as_deref().map(|n| format!(" — {n}")).unwrap_or_default());
            }
            println!("  then: {}", r.reason);
        }
    }
    let quarter = Quarter { year: 2021, q: 4 };
    let l = report::ledger(&store, quarter, None, paywatch::clock::Clock::now(&SystemClock), cfg.cases.deadline_days, cfg.tz())?;
    std::fs::write(dir.join(l.file_name("csv")), l.to_csv()?)?;
    std::fs::write(dir.join(l.file_name("xlsx")), l.to_xlsx()?)?;
    println!("\n台账 2021Q4 / work ledger: {} cases; per township (found · rectified · open · relapsed · involved · recovered):", l.rows.len());
    for (t, x) in &l.totals {
        println!("  {t}: {} · {} · {} · {} · {} · {}", x.found, x.rectified, x.open, x.relapsed, x.amount, x.recovered);
    }
    Ok(())
}
