//! `FREQUENT_PAYMENTS`: one account receives more than K × n unreversed
//! payments within W days, n being the number of beneficiaries for whom it is
//! a registered custodian account (1 when none).

use super::episode::{days_ms, in_window, WindowEntry, WindowRule};
use super::{account_tail, Finding};
use crate::model::{Evidence, Money, Rule, Severity, Timestamp};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub enabled: bool,
    /// K: payments allowed per beneficiary the account serves.
    pub max_per_beneficiary: u32,
    /// W: the window, in days.
    pub window_days: u32,
    pub severity: Severity,
}

impl Default for Config {
    fn default() -> Config {
        Config { enabled: true, max_per_beneficiary: 3, window_days: 30, severity: Severity::Medium }
    }
}

impl Config {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_per_beneficiary == 0 {
            return Err("max_per_beneficiary: must be at least 1".into());
        }
        if self.window_days == 0 || self.window_days > 3650 {
            return Err("window_days: must be 1-3650".into());
        }
        Ok(())
    }

    /// K × n, with n at least 1.
    pub fn limit(&self, custodian_of: usize) -> usize {
        self.max_per_beneficiary as usize * custodian_of.max(1)
    }
}

fn counted<'a>(cfg: &Config, entries: &'a [WindowEntry], at: Timestamp) -> impl Iterator<Item = &'a WindowEntry> {
    in_window(entries, at, days_ms(cfg.window_days)).filter(|e| !e.reversed)
}

/// Its registry hook.
pub const WINDOW: WindowRule = WindowRule {
    rule: Rule::FrequentPayments,
    window_days: |r| r.frequent_payments.window_days,
    holds_at: |r, entries, at, n| holds_at(&r.frequent_payments, entries, at, n),
    finding: |r, account, township, entries, now, n| finding(&r.frequent_payments, account, township, entries, now, n),
};

pub fn holds_at(cfg: &Config, entries: &[WindowEntry], at: Timestamp, custodian_of: usize) -> bool {
    counted(cfg, entries, at).count() > cfg.limit(custodian_of)
}

pub fn finding(cfg: &Config, account_no: &str, township: &str, entries: &[WindowEntry], now: Timestamp, custodian_of: usize) -> Finding {
    let used: Vec<&WindowEntry> = counted(cfg, entries, now).collect();
    let total = used.iter().fold(Money::ZERO, |a, e| a.plus(e.amount));
    let limit = cfg.limit(custodian_of);
    let event_ids: Vec<String> = used.iter().map(|e| e.event_id.to_string()).collect();
    let mut evidence = Evidence { event_ids: event_ids.clone(), ..Evidence::default() };
    evidence.figures.insert("payments".into(), used.len().to_string());
    evidence.figures.insert("threshold".into(), limit.to_string());
    evidence.figures.insert("custodian_of".into(), custodian_of.to_string());
    evidence.figures.insert("window_days".into(), cfg.window_days.to_string());
    evidence.figures.insert("total".into(), total.to_string());
    let reason = format!(
        "同一账户({})在{}天内收到{}笔未冲正发放共{}元，超过上限{}笔（每名对象{}笔×{}名）",
        account_tail(account_no),
        cfg.window_days,
        used.len(),
        total,
        limit,
        cfg.max_per_beneficiary,
        custodian_of.max(1)
    );
    let mut identity = vec![account_no.to_owned()];
    identity.extend(event_ids);
    Finding {
        rule: Rule::FrequentPayments,
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

    #[test]
    fn more_than_k_in_the_window() {
        let cfg = Config::default();
        let mut es: Vec<WindowEntry> = (0..3).map(|i| entry(&format!("E{i}"), i, "H1")).collect();
        assert!(!holds_at(&cfg, &es, es[2].paid_at, 0), "3 is not more than 3");
        es.push(entry("E3", 29, "H1"));
        assert!(holds_at(&cfg, &es, es[3].paid_at, 0));
        assert!(!holds_at(&cfg, &es, Timestamp(30 * crate::model::time::MS_PER_DAY), 0), "E0 left at day 30");
        es[1].reversed = true;
        assert!(!holds_at(&cfg, &es, es[3].paid_at, 0));
        let f = finding(&cfg, "6217000000001234", "T", &es, es[3].paid_at, 0);
        assert_eq!(f.evidence.event_ids, ["E0", "E2", "E3"]);
    }
}
