//! `SHARED_ACCOUNT`: one account receives payments for N or more distinct
//! households within W days. Payments it receives as a custodian registered
//! for the beneficiary (valid on the paid day, number and name matching) do
//! not count, so a nursing home holding its residents' cards is not flagged.

use super::episode::{days_ms, in_window, WindowEntry, WindowRule};
use super::{account_tail, Finding};
use crate::model::{Evidence, Money, Rule, Severity, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub enabled: bool,
    /// N: distinct households that make an account shared.
    pub min_households: usize,
    /// W: the window, in days.
    pub window_days: u32,
    pub severity: Severity,
}

impl Default for Config {
    fn default() -> Config {
        Config { enabled: true, min_households: 2, window_days: 365, severity: Severity::High }
    }
}

impl Config {
    pub fn validate(&self) -> Result<(), String> {
        if self.min_households < 2 {
            return Err("min_households: must be at least 2".into());
        }
        if self.window_days == 0 || self.window_days > 3650 {
            return Err("window_days: must be 1-3650".into());
        }
        Ok(())
    }
}

fn counted<'a>(cfg: &Config, entries: &'a [WindowEntry], at: Timestamp) -> impl Iterator<Item = &'a WindowEntry> {
    in_window(entries, at, days_ms(cfg.window_days)).filter(|e| !e.exempt)
}

/// Its registry hook.
pub const WINDOW: WindowRule = WindowRule {
    rule: Rule::SharedAccount,
    window_days: |r| r.shared_account.window_days,
    holds_at: |r, entries, at, _| holds_at(&r.shared_account, entries, at),
    finding: |r, account, township, entries, now, _| finding(&r.shared_account, account, township, entries, now),
};

pub fn holds_at(cfg: &Config, entries: &[WindowEntry], at: Timestamp) -> bool {
    let mut first: Option<&str> = None;
    let mut households: Vec<&str> = Vec::new();
    for e in counted(cfg, entries, at) {
        match first {
            None => first = Some(&e.household_id),
            Some(f) if f == e.household_id => {}
            Some(_) => households.push(&e.household_id),
        }
    }
    if households.is_empty() {
        return cfg.min_households <= usize::from(first.is_some());
    }
    households.extend(first);
    households.sort_unstable();
    households.dedup();
    households.len() >= cfg.min_households
}

pub fn finding(cfg: &Config, account_no: &str, township: &str, entries: &[WindowEntry], now: Timestamp) -> Finding {
    let used: Vec<&WindowEntry> = counted(cfg, entries, now).collect();
    let households: BTreeSet<&str> = used.iter().map(|e| e.household_id.as_str()).collect();
    let total = used.iter().fold(Money::ZERO, |a, e| a.plus(e.amount));
    let event_ids: Vec<String> = used.iter().map(|e| e.event_id.to_string()).collect();
    let mut evidence = Evidence { event_ids: event_ids.clone(), ..Evidence::default() };
    evidence.figures.insert("households".into(), households.len().to_string());
    evidence.figures.insert("threshold".into(), cfg.min_households.to_string());
    evidence.figures.insert("window_days".into(), cfg.window_days.to_string());
    evidence.figures.insert("household_ids".into(), households.iter().copied().collect::<Vec<_>>().join(","));
    evidence.figures.insert("total".into(), total.to_string());
    let reason = format!(
        "同一账户({})在{}天内收到{}户的救助金{}笔共{}元（户号{}），且并非各户登记的代管账户",
        account_tail(account_no),
        cfg.window_days,
        households.len(),
        used.len(),
        total,
        households.iter().copied().collect::<Vec<_>>().join("、")
    );
    let mut identity = vec![account_no.to_owned()];
    identity.extend(event_ids);
    Finding {
        rule: Rule::SharedAccount,
        severity: cfg.severity,
        township: township.to_owned(),
        beneficiary_id: None,
        household_id: None,
        account_no: Some(account_no.to_owned()),
        period: None,
        amount: Some(total),
        evidence,
        reason,
        event_time: now,
        identity,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::episode::tests::entry;
    use crate::detect::episode::{AccountWindow, Change};
    use crate::detect::RulesConfig;
    use crate::model::time::MS_PER_DAY;

    fn only_shared() -> RulesConfig {
        let mut r = RulesConfig::default();
        r.frequent_payments.enabled = false;
        r
    }

    fn step(w: &mut AccountWindow, e: WindowEntry) -> usize {
        let at = e.paid_at;
        w.step(&only_shared(), &crate::detect::episode::WindowRules::of(&only_shared()), "6217000000001234", "水阳镇", at, 0, Change::Add(e)).len()
    }

    #[test]
    fn two_households_within_a_year_fire_once() {
        let mut w = AccountWindow::default();
        assert_eq!(step(&mut w, entry("E1", 0, "H1")), 0);
        assert_eq!(step(&mut w, entry("E2", 30, "H1")), 0, "one household");
        assert_eq!(step(&mut w, entry("E3", 200, "H2")), 1);
        assert_eq!(step(&mut w, entry("E4", 230, "H2")), 0, "same episode");
        assert_eq!(step(&mut w, entry("E5", 260, "H3")), 0, "same episode");
    }

    #[test]
    fn a_year_apart_is_not_shared() {
        let mut w = AccountWindow::default();
        step(&mut w, entry("E1", 0, "H1"));
        assert_eq!(step(&mut w, entry("E2", 365, "H2")), 0, "E1 left the window at day 365");
    }

    #[test]
    fn registered_custodian_payments_do_not_count() {
        let mut w = AccountWindow::default();
        for i in 0..5 {
            let mut e = entry(&format!("E{i}"), i, &format!("H{i}"));
            e.exempt = true;
            assert_eq!(step(&mut w, e), 0, "nursing home for H{i}");
        }
        assert_eq!(step(&mut w, entry("X1", 10, "H9")), 0, "one unregistered household alone");
        let f = w.step(&only_shared(), &crate::detect::episode::WindowRules::of(&only_shared()), "6217000000001234", "水阳镇", Timestamp(11 * MS_PER_DAY), 0, Change::Add(entry("X2", 11, "H8")));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].evidence.event_ids, ["X1", "X2"]);
        assert!(f[0].reason.contains("尾号1234"));
    }
}
