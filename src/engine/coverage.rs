//! `COVERAGE_GAP` (contract §10, §11.10): vulnerable-persons records, the
//! household index, and the referrals decided when the watermark passes
//! their deadline. Referrals wait in deadline buckets (`referrals` column
//! family, [`super::timers::Timers`]) as `person_id 0x1f record_id`.

use super::{Engine, EngineError, Outcome};
use crate::detect::coverage_gap;
use crate::model::{Timestamp, VulnerableRecord};

impl Engine {
    pub(super) fn on_vulnerable(&mut self, v: &VulnerableRecord) -> Result<Outcome, EngineError> {
        let pid = v.person_id.as_str();
        let ben = self.bens.get_or_default(&self.store, pid.as_bytes())?;
        if ben.vulnerable.contains(v) {
            return Ok(Outcome::Redelivered);
        }
        let at = ben.vulnerable.partition_point(|x| x.updated_at <= v.updated_at);
        ben.vulnerable.insert(at, v.clone());
        let newest = ben.vulnerable.iter().rev().find(|x| x.record_id == v.record_id).is_some_and(|x| x == v);
        let cfg = &self.rules.coverage_gap;
        if !cfg.enabled || !newest {
            return Ok(Outcome::Applied);
        }
        let d = cfg.deadline(self.tz, v.flagged_at);
        match self.progress.watermark {
            // §11.10: a version that first qualifies after its deadline is
            // decided when it is applied.
            Some(w) if d <= w => self.decide_referral(pid, &v.record_id, d, true)?,
            _ => self.referrals.add(d, format!("{pid}\u{1f}{}", v.record_id)),
        }
        Ok(Outcome::Applied)
    }

    /// Decides every referral whose deadline is at or before `w`.
    pub(super) fn sweep_coverage(&mut self, w: Timestamp) -> Result<(), EngineError> {
        if !self.rules.coverage_gap.enabled {
            return Ok(());
        }
        for (d, ids) in self.referrals.take_due(&self.store, w)? {
            for id in ids {
                if let Some((pid, record_id)) = id.split_once('\u{1f}') {
                    self.decide_referral(pid, record_id, d, false)?;
                }
            }
        }
        Ok(())
    }

    /// §10 at deadline `d`: the record's version applying at d (or, for a
    /// late version, the newest) still qualifies and is not cleared; the
    /// person has no death before d; and neither the person nor a member
    /// of the record's household is covered at d.
    fn decide_referral(&mut self, pid: &str, record_id: &str, d: Timestamp, late: bool) -> Result<(), EngineError> {
        let (cfg, tz) = (&self.rules.coverage_gap, self.tz);
        let Some(ben) = self.bens.get(&self.store, pid.as_bytes())? else { return Ok(()) };
        let version = if late { ben.vulnerable.iter().rev().find(|x| x.record_id == record_id) } else { ben.vulnerable_at(record_id, d) };
        let Some(v) = version.cloned() else { return Ok(()) };
        // A stale bucket entry: a newer version moved the deadline.
        if cfg.deadline(tz, v.flagged_at) != d || !cfg.qualifies(&v) || !coverage_gap::open_at(&v, d, tz) {
            return Ok(());
        }
        let day = tz.date(d);
        if ben.deaths.iter().any(|x| x.reported_at <= d && x.date_of_death < day) {
            return Ok(());
        }
        // A late version asks about a past deadline: the roster then may
        // be archived by now.
        if self.roster_version(pid, d)?.is_some_and(|r| coverage_gap::covers(&r)) {
            return Ok(());
        }
        // A beneficiary whose version at d is in the household and covers
        // it: the household's entry holds, per person, what each version
        // sent to it says (`registrations`), so no member's roster is read.
        if let Some(h) = &v.household_id {
            if self.households.get(&self.store, h.as_bytes())?.is_some_and(|hh| hh.at(d).any(|covered| *covered)) {
                return Ok(());
            }
        }
        let f = coverage_gap::finding(&self.rules.coverage_gap, &v, d, tz);
        self.emit(vec![f])
    }
}
