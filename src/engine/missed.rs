//! `MISSED_PAYMENT` timers. Beneficiaries wait in the bucket of the
//! deadline of the next month to decide (`timers` column family: deadline →
//! list of beneficiary ids). When the watermark passes deadlines, each
//! bucket is taken in order, its beneficiaries decided month by month and
//! moved to the bucket of their next open month, and the bucket deleted.
//! One write per bucket per month instead of one per beneficiary. The
//! buckets are a [`super::timers::Timers`] on the `timers` column family.

use super::{Engine, EngineError};
use crate::detect::missed_payment;
use crate::model::{Period, Timestamp};

impl Engine {
    /// Decides every month whose deadline is at or before `w`.
    pub(super) fn sweep_missed(&mut self, w: Timestamp) -> Result<(), EngineError> {
        if !self.rules.missed_payment.enabled {
            return Ok(());
        }
        let mut memo = Deadlines::new(self.rules.missed_payment.clone(), self.tz);
        // A beneficiary moves on to the bucket of its next open month, whose
        // deadline is after `w`.
        for l in 0..self.lanes.len() {
            for (d, bids) in self.lanes[l].timers.take_due(&self.store, w)? {
                for bid in bids {
                    self.decide_months(l, bid, d, w, &mut memo)?;
                }
            }
        }
        Ok(())
    }

    /// Decides the months of one beneficiary waiting on `deadline`.
    /// Takes the id from the bucket it leaves to the bucket it joins.
    fn decide_months(&mut self, l: usize, bid: String, deadline: Timestamp, w: Timestamp, memo: &mut Deadlines) -> Result<(), EngineError> {
        let cfg = &self.rules.missed_payment;
        let tz = self.tz;
        let lane = &mut self.lanes[l];
        let Some(ben) = lane.bens.get_mut(&self.store, bid.as_bytes())? else { return Ok(()) };
        // A stale entry: the beneficiary has moved on (or stopped) since.
        if ben.missed_next.map(|p| memo.of(p)) != Some(deadline) {
            return Ok(());
        }
        let mut findings = Vec::new();
        while let Some(p) = ben.missed_next {
            let d = memo.of(p);
            if d > w {
                break;
            }
            if let Some(r) = missed_payment::due(cfg, p, &ben.roster, &ben.deaths, d) {
                if !ben.months_paid.contains(p) {
                    findings.push(missed_payment::finding(cfg, p, r, tz));
                }
            }
            let died = ben.deaths.iter().filter(|x| x.reported_at <= d).map(|x| Period::of(x.date_of_death)).min();
            ben.missed_next = if died.is_some_and(|m| p >= m) { None } else { Some(p.next()) };
        }
        if let Some(p) = ben.missed_next {
            lane.timers.add(memo.of(p), bid);
        }
        self.emit(findings)
    }
}

/// The deadlines of the few months one sweep asks about (each beneficiary
/// of a bucket asks for the same one or two), each computed once.
struct Deadlines {
    cfg: missed_payment::Config,
    tz: crate::model::Tz,
    /// Months asked so far, with their deadlines; a handful at most.
    known: Vec<(Period, Timestamp)>,
}

impl Deadlines {
    fn new(cfg: missed_payment::Config, tz: crate::model::Tz) -> Deadlines {
        Deadlines { cfg, tz, known: Vec::new() }
    }

    fn of(&mut self, p: Period) -> Timestamp {
        if let Some((_, d)) = self.known.iter().find(|(q, _)| *q == p) {
            return *d;
        }
        if self.known.len() >= 16 {
            self.known.clear();
        }
        let d = self.cfg.deadline(self.tz, p);
        self.known.push((p, d));
        d
    }
}
