//! The closing summary of an audit: alerts by rule and severity, the top
//! townships, dead letters by reason, and throughput.

use crate::decode::DeadLetter;
use crate::engine::Counts;
use crate::model::{Alert, Rule, Severity};
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Summary {
    /// All committed alerts (this run and earlier runs on the same state).
    pub alerts: BTreeMap<(Rule, Severity), u64>,
    pub by_township: BTreeMap<String, u64>,
    pub dead_by_reason: BTreeMap<String, u64>,
    pub counts: Counts,
    pub records_this_run: u64,
    pub payments_this_run: u64,
    pub elapsed: Duration,
    pub resumed: bool,
    pub alerts_path: String,
    pub deadletter_path: String,
    pub state_dir: Option<String>,
    /// Cases by status, when `--cases` was asked for.
    pub cases: BTreeMap<&'static str, u64>,
    /// Cases reopened by a relapse.
    pub relapsed_cases: u64,
    pub cases_path: Option<String>,
}

impl Summary {
    pub fn count_alert(&mut self, a: &Alert) {
        *self.alerts.entry((a.rule, a.severity)).or_default() += 1;
        *self.by_township.entry(a.township.clone()).or_default() += 1;
    }

    pub fn count_case(&mut self, c: &crate::store::cases::Case) {
        *self.cases.entry(c.status.code()).or_default() += 1;
        self.relapsed_cases += u64::from(c.relapsed);
    }

    pub fn count_dead(&mut self, d: &DeadLetter) {
        *self.dead_by_reason.entry(d.code().to_owned()).or_default() += 1;
    }

    pub fn total_alerts(&self) -> u64 {
        self.alerts.values().sum()
    }

    pub fn total_dead(&self) -> u64 {
        self.dead_by_reason.values().sum()
    }

    pub fn payments_per_second(&self) -> f64 {
        self.payments_this_run as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Writes the summary table (Chinese labels with the rule codes).
pub fn print_summary(s: &Summary, w: &mut dyn Write) -> io::Result<()> {
    writeln!(w)?;
    writeln!(w, "paywatch 审计结果 / audit summary{}", if s.resumed { "（续跑 resumed）" } else { "" })?;
    writeln!(w, "{}", "─".repeat(64))?;
    writeln!(w, "{:<22} {:<18} {:>6} {:>6} {:>6} {:>7}", "rule", "规则", "high", "medium", "low", "total")?;
    for rule in Rule::ALL {
        let n = |sev| s.alerts.get(&(rule, sev)).copied().unwrap_or(0);
        let (h, m, l) = (n(Severity::High), n(Severity::Medium), n(Severity::Low));
        writeln!(w, "{:<22} {:<18} {:>6} {:>6} {:>6} {:>7}", rule.code(), pad_cjk(rule.chinese(), 18), h, m, l, h + m + l)?;
    }
    writeln!(w, "{:<41} {:>28}", "alerts 预警合计", s.total_alerts())?;
    writeln!(w, "{}", "─".repeat(64))?;
    let mut towns: Vec<(&String, &u64)> = s.by_township.iter().collect();
    towns.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    writeln!(w, "top townships 预警最多的乡镇")?;
    for (t, n) in towns.iter().take(5) {
        writeln!(w, "  {} {:>8}", pad_cjk(t, 20), n)?;
    }
    writeln!(w, "{}", "─".repeat(64))?;
    writeln!(w, "dead letters 退回记录 by reason: {}", s.total_dead())?;
    for (r, n) in &s.dead_by_reason {
        writeln!(w, "  {r:<24} {n:>8}")?;
    }
    writeln!(w, "{}", "─".repeat(64))?;
    let c = &s.counts;
    writeln!(
        w,
        "records applied: roster {} · deaths {} · payments {} · reversals {} · decisions {} · redelivered (ignored) {} · rejected by state {}",
        c.roster, c.deaths, c.payments, c.reversals, c.decisions, c.redelivered, c.rejected
    )?;
    writeln!(
        w,
        "this run: {} records ({} payment events) in {:.2}s = {:.0} payment events/s",
        s.records_this_run,
        s.payments_this_run,
        s.elapsed.as_secs_f64(),
        s.payments_per_second()
    )?;
    if let Some(path) = &s.cases_path {
        let by: Vec<String> = s.cases.iter().map(|(k, n)| format!("{k} {n}")).collect();
        writeln!(w, "cases 问题: {} · relapsed 反弹 {} → {path}", by.join(" · "), s.relapsed_cases)?;
    }
    writeln!(w, "alerts → {}", s.alerts_path)?;
    writeln!(w, "dead letters → {}", s.deadletter_path)?;
    if let Some(d) = &s.state_dir {
        writeln!(w, "state → {d}")?;
    }
    Ok(())
}

/// Pads a string with CJK characters counted as two columns.
fn pad_cjk(s: &str, width: usize) -> String {
    let cols: usize = s.chars().map(|c| if (c as u32) >= 0x1100 { 2 } else { 1 }).sum();
    format!("{s}{}", " ".repeat(width.saturating_sub(cols)))
}
