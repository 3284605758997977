//! Account windows and alert episodes for the account-level rules
//! (`SHARED_ACCOUNT`, `FREQUENT_PAYMENTS`).
//!
//! §6: one alert when the threshold is first crossed for an account, another
//! only after the account has been below it for a whole window. Between two
//! events on an account its window only loses entries, so the moment the
//! condition stopped holding is found exactly by replaying the expiries —
//! no timers, no wall clock.

use super::{frequent_payments, shared_account, Finding, RulesConfig};
use crate::model::time::MS_PER_DAY;
use crate::model::{Money, Text, Timestamp};
use serde::{Deserialize, Serialize};

/// One payment received by an account, kept while any window may need it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowEntry {
    pub event_id: Text,
    pub paid_at: Timestamp,
    pub household_id: Text,
    pub amount: Money,
    /// Paid to this account as a custodian registered for the beneficiary
    /// and valid on the paid day: does not count for `SHARED_ACCOUNT`.
    pub exempt: bool,
    /// Reversed by a later reversal: does not count for `FREQUENT_PAYMENTS`.
    pub reversed: bool,
}

/// Where one rule's alerting stands for one account.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Episode {
    /// An alert has fired and the episode has not yet ended.
    pub open: bool,
    /// When the condition last stopped holding during the open episode.
    pub below_since: Option<Timestamp>,
}

impl Episode {
    /// Finds when the condition stopped holding between two events, from the
    /// expiry times of the entries (each entry leaves its window `W` after
    /// it was paid).
    fn settle(&mut self, last: Timestamp, now: Timestamp, window_ms: i64, entries: &[WindowEntry], holds_at: impl Fn(Timestamp) -> bool) {
        if !self.open || self.below_since.is_some() {
            return;
        }
        let mut expiries: Vec<Timestamp> = entries
            .iter()
            .map(|e| Timestamp(e.paid_at.0 + window_ms))
            .filter(|e| *e > last && *e <= now)
            .collect();
        expiries.sort();
        expiries.dedup();
        self.below_since = expiries.into_iter().find(|e| !holds_at(*e));
    }

    /// Decides at `now`, given whether the condition holds: true = alert.
    fn decide(&mut self, now: Timestamp, window_ms: i64, holds: bool) -> bool {
        match (holds, self.open, self.below_since) {
            (true, false, _) => {
                self.open = true;
                self.below_since = None;
                true
            }
            (true, true, Some(b)) => {
                self.below_since = None;
                now.0 - b.0 >= window_ms
            }
            (true, true, None) => false,
            (false, true, None) => {
                self.below_since = Some(now);
                false
            }
            (false, _, _) => false,
        }
    }
}

/// What happens to an account at an event.
#[derive(Clone, Debug)]
pub enum Change {
    /// A payment arrives.
    Add(WindowEntry),
    /// The payment with this `event_id` was reversed.
    Reverse(String),
}

/// An account's recent payments and both rules' episodes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AccountWindow {
    /// Sorted by `paid_at`; nothing older than the longest window.
    pub entries: Vec<WindowEntry>,
    pub shared: Episode,
    pub frequent: Episode,
    /// Event time of the last change, to replay expiries since then.
    pub last_eval: Option<Timestamp>,
}

impl AccountWindow {
    /// Applies one change at `now` and returns the account-level findings.
    /// `custodian_of` is n in the contract: for how many beneficiaries this
    /// account is a registered custodian account at `now`.
    pub fn step(
        &mut self,
        rules: &RulesConfig,
        account_no: &str,
        township: &str,
        now: Timestamp,
        custodian_of: usize,
        change: Change,
    ) -> Vec<Finding> {
        let now = self.last_eval.map_or(now, |l| l.max(now));
        let sw = days_ms(rules.shared_account.window_days);
        let fw = days_ms(rules.frequent_payments.window_days);
        let sa = &rules.shared_account;
        let fp = &rules.frequent_payments;
        if let Some(last) = self.last_eval {
            let entries = &self.entries;
            self.shared.settle(last, now, sw, entries, |s| shared_account::holds_at(sa, entries, s));
            self.frequent.settle(last, now, fw, entries, |s| frequent_payments::holds_at(fp, entries, s, custodian_of));
        }
        match change {
            Change::Add(e) => {
                // Payments mostly arrive in time order: then it goes last.
                if self.entries.last().is_none_or(|x| x.paid_at <= e.paid_at) {
                    self.entries.push(e);
                } else {
                    let at = self.entries.partition_point(|x| x.paid_at <= e.paid_at);
                    self.entries.insert(at, e);
                }
            }
            Change::Reverse(id) => {
                if let Some(e) = self.entries.iter_mut().find(|e| e.event_id == id) {
                    e.reversed = true;
                }
            }
        }
        let mut out = Vec::new();
        if sa.enabled {
            let holds = shared_account::holds_at(sa, &self.entries, now);
            if self.shared.decide(now, sw, holds) {
                out.push(shared_account::finding(sa, account_no, township, &self.entries, now));
            }
        }
        if fp.enabled {
            let holds = frequent_payments::holds_at(fp, &self.entries, now, custodian_of);
            if self.frequent.decide(now, fw, holds) {
                out.push(frequent_payments::finding(fp, account_no, township, &self.entries, now, custodian_of));
            }
        }
        let keep_from = now.0 - sw.max(fw);
        let expired = self.entries.partition_point(|e| e.paid_at.0 <= keep_from);
        self.entries.drain(..expired);
        self.last_eval = Some(now);
        out
    }
}

pub fn days_ms(days: u32) -> i64 {
    i64::from(days) * MS_PER_DAY
}

/// The entries inside the window `(at - W, at]`. A plain scan: the
/// entries are a few cache lines read in order, where a bisection would
/// wait on one scattered read after another.
pub fn in_window(entries: &[WindowEntry], at: Timestamp, window_ms: i64) -> impl Iterator<Item = &WindowEntry> {
    entries.iter().filter(move |e| e.paid_at.0 > at.0 - window_ms && e.paid_at <= at)
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::model::Rule;

    pub fn entry(id: &str, day: i64, household: &str) -> WindowEntry {
        WindowEntry {
            event_id: id.into(),
            paid_at: Timestamp(day * MS_PER_DAY),
            household_id: household.into(),
            amount: Money::parse("100.00").unwrap(),
            exempt: false,
            reversed: false,
        }
    }

    fn add(w: &mut AccountWindow, rules: &RulesConfig, id: &str, day: i64, household: &str) -> Vec<Rule> {
        w.step(rules, "6217000000000001", "水阳镇", Timestamp(day * MS_PER_DAY), 0, Change::Add(entry(id, day, household)))
            .into_iter()
            .map(|f| f.rule)
            .collect()
    }

    fn only_frequent() -> RulesConfig {
        let mut r = RulesConfig::default();
        r.shared_account.enabled = false;
        r
    }

    #[test]
    fn frequent_fires_once_per_episode() {
        let rules = only_frequent();
        let mut w = AccountWindow::default();
        for (i, d) in [0, 5, 10].iter().enumerate() {
            assert!(add(&mut w, &rules, &format!("E{i}"), *d, "H1").is_empty());
        }
        assert_eq!(add(&mut w, &rules, "E3", 12, "H1"), [Rule::FrequentPayments], "4 > 3 in 30 days");
        assert!(add(&mut w, &rules, "E4", 14, "H1").is_empty(), "same episode");
        // E1 leaves at day 35, leaving 3: below from day 35. Back above at
        // day 56, 21 days later: still the same episode.
        for (i, d) in [50, 52, 54, 56].iter().enumerate() {
            let fired = add(&mut w, &rules, &format!("F{i}"), *d, "H1");
            assert!(fired.is_empty(), "day {d}: below for less than 30 days");
        }
    }

    #[test]
    fn frequent_fires_again_after_a_whole_window_below() {
        let rules = only_frequent();
        let mut w = AccountWindow::default();
        for (i, d) in [0, 1, 2, 3].iter().enumerate() {
            add(&mut w, &rules, &format!("E{i}"), *d, "H1");
        }
        assert!(w.frequent.open);
        // E0 expires at day 30: 3 left, below from day 30. Above again at day 61 (>= 30 days below).
        for (i, d) in [61, 62, 63].iter().enumerate() {
            assert!(add(&mut w, &rules, &format!("F{i}"), *d, "H1").is_empty());
        }
        assert_eq!(w.frequent.below_since, Some(Timestamp(30 * MS_PER_DAY)));
        assert_eq!(add(&mut w, &rules, "F3", 64, "H1"), [Rule::FrequentPayments]);
    }

    #[test]
    fn below_for_just_under_a_window_is_the_same_episode() {
        let rules = only_frequent();
        let mut w = AccountWindow::default();
        for (i, d) in [0, 1, 2, 3].iter().enumerate() {
            add(&mut w, &rules, &format!("E{i}"), *d, "H1");
        }
        // below from day 30; back above at day 59 (29 days below): no alert.
        for (i, d) in [56, 57, 58].iter().enumerate() {
            add(&mut w, &rules, &format!("F{i}"), *d, "H1");
        }
        assert!(add(&mut w, &rules, "F3", 59, "H1").is_empty());
    }

    #[test]
    fn reversed_payments_do_not_count() {
        let rules = only_frequent();
        let mut w = AccountWindow::default();
        for (i, d) in [0, 1, 2].iter().enumerate() {
            add(&mut w, &rules, &format!("E{i}"), *d, "H1");
        }
        let out = w.step(&rules, "A", "T", Timestamp(3 * MS_PER_DAY), 0, Change::Reverse("E1".into()));
        assert!(out.is_empty());
        assert!(add(&mut w, &rules, "E3", 4, "H1").is_empty(), "reversal then re-payment: 3 unreversed");
        assert_eq!(add(&mut w, &rules, "E4", 5, "H1"), [Rule::FrequentPayments]);
    }

    #[test]
    fn custodian_accounts_get_k_times_n() {
        let rules = only_frequent();
        let mut w = AccountWindow::default();
        for i in 0..6 {
            let e = entry(&format!("E{i}"), i, &format!("H{i}"));
            let out = w.step(&rules, "A", "T", e.paid_at, 2, Change::Add(e));
            assert!(out.is_empty(), "6 payments, limit 3 x 2");
        }
        let e = entry("E6", 6, "H6");
        assert_eq!(w.step(&rules, "A", "T", e.paid_at, 2, Change::Add(e)).len(), 1);
    }
}
