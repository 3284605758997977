//! `MISSED_PAYMENT` timers: each beneficiary waits under the deadline of the
//! next month to decide; when the watermark passes deadlines, the waiting
//! beneficiaries are decided month by month.

use super::{Engine, EngineError};
use crate::detect::missed_payment;
use crate::model::{Period, Timestamp};
use crate::store::{keys, Cf};
use std::collections::BTreeSet;

impl Engine {
    /// Decides every month whose deadline is before `w`.
    pub(super) fn sweep_missed(&mut self, w: Timestamp) -> Result<(), EngineError> {
        if !self.rules.missed_payment.enabled {
            return Ok(());
        }
        let bound = keys::timer_bound(w);
        let mut due: BTreeSet<Vec<u8>> = self.store.keys_before(Cf::Timers, &bound)?.into_iter().collect();
        for (k, put) in self.timers.range(..bound) {
            if *put {
                due.insert(k.clone());
            } else {
                due.remove(k);
            }
        }
        let ids: BTreeSet<String> = due.iter().filter_map(|k| keys::timer_beneficiary(k)).map(str::to_owned).collect();
        for bid in ids {
            self.decide_months(&bid, w)?;
        }
        Ok(())
    }

    fn decide_months(&mut self, bid: &str, w: Timestamp) -> Result<(), EngineError> {
        let cfg = &self.rules.missed_payment;
        let tz = self.tz;
        let Some(ben) = self.bens.get_mut(&self.store, bid.as_bytes())? else { return Ok(()) };
        let before = ben.missed_next;
        let mut findings = Vec::new();
        while let Some(p) = ben.missed_next {
            let deadline = cfg.deadline(tz, p);
            if deadline >= w {
                break;
            }
            if let Some(r) = missed_payment::due(cfg, p, &ben.roster, &ben.deaths, deadline) {
                if !ben.months_paid.contains(&p) {
                    findings.push(missed_payment::finding(cfg, p, r, tz));
                }
            }
            let died = ben.deaths.iter().filter(|d| d.reported_at <= deadline).map(|d| Period::of(d.date_of_death)).min();
            ben.missed_next = if died.is_some_and(|m| p >= m) { None } else { Some(p.next()) };
        }
        let after = ben.missed_next;
        if before != after {
            if let Some(p) = before {
                self.timers.insert(keys::timer(cfg.deadline(tz, p), bid), false);
            }
            if let Some(p) = after {
                self.timers.insert(keys::timer(cfg.deadline(tz, p), bid), true);
            }
        }
        self.emit(findings)
    }
}
