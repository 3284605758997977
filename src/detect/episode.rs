//! Account windows and alert episodes for the account-level rules
//! (`SHARED_ACCOUNT`, `FREQUENT_PAYMENTS`, and any rule whose registry
//! entry has a [`Hook::AccountWindow`](super::registry::Hook): a
//! [`WindowRule`] of plain functions, asked here in the registry's order).
//!
//! §6: one alert when the threshold is first crossed for an account, another
//! only after the account has been below it for a whole window. Between two
//! events on an account its window only loses entries, so the moment the
//! condition stopped holding is found exactly by replaying the expiries —
//! no timers, no wall clock.

use super::{Finding, RulesConfig};
use crate::model::time::MS_PER_DAY;
use crate::model::{Money, Rule, Text, Timestamp};
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Change {
    /// A payment arrives.
    Add(WindowEntry),
    /// The payment with this `event_id` was reversed.
    Reverse(String),
}

/// A rule judged on an account's window of payments, as plain functions
/// of the config: its registry entry's hook.
#[derive(Clone, Copy)]
pub struct WindowRule {
    pub rule: Rule,
    /// Its window W, in days.
    pub window_days: fn(&RulesConfig) -> u32,
    /// Whether it holds at an instant over the entries, n being the number
    /// of beneficiaries for whom the account is a registered custodian
    /// account.
    pub holds_at: fn(&RulesConfig, &[WindowEntry], Timestamp, usize) -> bool,
    /// Its finding when it starts an episode (account, township, entries,
    /// now, n).
    pub finding: fn(&RulesConfig, &str, &str, &[WindowEntry], Timestamp, usize) -> Finding,
}

/// The window rules that are on, in the registry's order, and the longest
/// window of all of them (entries are kept that long): worked out once per
/// config, not per payment.
#[derive(Clone)]
pub struct WindowRules {
    pub rules: Vec<WindowRule>,
    pub longest_ms: i64,
}

impl WindowRules {
    pub fn of(cfg: &RulesConfig) -> WindowRules {
        WindowRules {
            rules: super::registry::window_rules().filter(|w| cfg.enabled(w.rule)).collect(),
            longest_ms: super::registry::window_rules().map(|w| days_ms((w.window_days)(cfg))).max().unwrap_or(0),
        }
    }
}

/// Where one window rule's alerting stands for one account.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuleEpisode {
    pub rule: Rule,
    pub episode: Episode,
}

/// An account's recent payments and each window rule's episode.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AccountWindow {
    /// Sorted by `paid_at`; nothing older than the longest window.
    pub entries: Vec<WindowEntry>,
    /// One per window rule that has ever been judged on this account.
    pub episodes: Vec<RuleEpisode>,
    /// Event time of the last change, to replay expiries since then.
    pub last_eval: Option<Timestamp>,
}

impl AccountWindow {
    /// Applies one change at `now` and returns the account-level findings.
    /// `custodian_of` is n in the contract: for how many beneficiaries this
    /// account is a registered custodian account at `now`. (Plain
    /// arguments on the per-payment path rather than a struct built for
    /// each call.)
    #[allow(clippy::too_many_arguments)]
    pub fn step(
        &mut self,
        rules: &RulesConfig,
        on: &WindowRules,
        account_no: &str,
        township: &str,
        now: Timestamp,
        custodian_of: usize,
        change: Change,
    ) -> Vec<Finding> {
        let now = self.last_eval.map_or(now, |l| l.max(now));
        let longest = on.longest_ms;
        if let Some(last) = self.last_eval {
            let entries = &self.entries;
            for w in &on.rules {
                let ms = days_ms((w.window_days)(rules));
                if let Some(e) = self.episodes.iter_mut().find(|e| e.rule == w.rule) {
                    e.episode.settle(last, now, ms, entries, |s| (w.holds_at)(rules, entries, s, custodian_of));
                }
            }
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
        for w in &on.rules {
            let ms = days_ms((w.window_days)(rules));
            let holds = (w.holds_at)(rules, &self.entries, now, custodian_of);
            let i = match self.episodes.iter().position(|e| e.rule == w.rule) {
                Some(i) => i,
                None if holds => {
                    self.episodes.push(RuleEpisode { rule: w.rule, episode: Episode::default() });
                    self.episodes.len() - 1
                }
                // Nothing to remember for a rule that never held here.
                None => continue,
            };
            if self.episodes[i].episode.decide(now, ms, holds) {
                out.push((w.finding)(rules, account_no, township, &self.entries, now, custodian_of));
            }
        }
        let keep_from = now.0 - longest;
        let expired = self.entries.partition_point(|e| e.paid_at.0 <= keep_from);
        self.entries.drain(..expired);
        self.last_eval = Some(now);
        out
    }

    /// The episode of `rule` on this account, if it was ever judged.
    pub fn episode(&self, rule: Rule) -> Option<&Episode> {
        self.episodes.iter().find(|e| e.rule == rule).map(|e| &e.episode)
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
        w.step(rules, &WindowRules::of(rules), "6217000000000001", "水阳镇", Timestamp(day * MS_PER_DAY), 0, Change::Add(entry(id, day, household)))
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
        assert!(w.episode(Rule::FrequentPayments).unwrap().open);
        // E0 expires at day 30: 3 left, below from day 30. Above again at day 61 (>= 30 days below).
        for (i, d) in [61, 62, 63].iter().enumerate() {
            assert!(add(&mut w, &rules, &format!("F{i}"), *d, "H1").is_empty());
        }
        assert_eq!(w.episode(Rule::FrequentPayments).unwrap().below_since, Some(Timestamp(30 * MS_PER_DAY)));
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
        let out = w.step(&rules, &WindowRules::of(&rules), "A", "T", Timestamp(3 * MS_PER_DAY), 0, Change::Reverse("E1".into()));
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
            let out = w.step(&rules, &WindowRules::of(&rules), "A", "T", e.paid_at, 2, Change::Add(e));
            assert!(out.is_empty(), "6 payments, limit 3 x 2");
        }
        let e = entry("E6", 6, "H6");
        assert_eq!(w.step(&rules, &WindowRules::of(&rules), "A", "T", e.paid_at, 2, Change::Add(e)).len(), 1);
    }
}
