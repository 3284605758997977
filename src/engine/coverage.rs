//! `COVERAGE_GAP` (contract §10, §11.10): vulnerable-persons records, the
//! household index, and the referrals decided when the watermark passes
//! their deadline. Referrals wait in deadline buckets (`referrals` column
//! family, [`super::timers::Timers`]) as `person_id 0x1f record_id`.
//!
//! The referral is decided on the person's side, where its case lives
//! (subject: the person), from the person's own state only (#16). A
//! household's entry belongs to the household: it is sent each member's
//! versions ([`super::registrations`]) and sends what it is sent on to
//! the persons whose vulnerable records name it; a person naming it for
//! the first time is sent the entry as it stands. Each such person keeps
//! its copy (`watched_households`), which equals the household's entry,
//! and the referral reads the copy. Between instances these facts travel
//! `by-household` and back `by-person`, like a custodian's death.

use super::facts::KeyFact;
use super::{Engine, EngineError, Outcome};
use crate::detect::coverage_gap;
use crate::model::{Timestamp, VulnerableRecord};

impl Engine {
    pub(super) fn on_vulnerable(&mut self, v: &VulnerableRecord) -> Result<Outcome, EngineError> {
        let pid = v.person_id.as_str();
        let l = self.lane(pid);
        let ben = self.lanes[l].bens.get_or_default(&self.store, pid.as_bytes())?;
        if ben.vulnerable.contains(v) {
            return Ok(Outcome::Redelivered);
        }
        let at = ben.vulnerable.partition_point(|x| x.updated_at <= v.updated_at);
        ben.vulnerable.insert(at, v.clone());
        let newest = ben.vulnerable.iter().rev().find(|x| x.record_id == v.record_id).is_some_and(|x| x == v);
        // Every version may be the one a referral reads (at its deadline,
        // or the newest when late): the household it names sends its entry.
        if let Some(h) = &v.household_id {
            self.send(KeyFact::Watch { household: h.clone(), person: pid.to_owned() })?;
        }
        let cfg = &self.rules.coverage_gap;
        if !cfg.enabled || !newest {
            return Ok(Outcome::Applied);
        }
        let d = cfg.deadline(self.tz, v.flagged_at);
        match self.progress.watermark {
            // §11.10: a version that first qualifies after its deadline is
            // decided when it is applied.
            Some(w) if d <= w => {
                self.apply_held_facts()?;
                self.decide_referral(pid, &v.record_id, d, true)?
            }
            _ => self.lanes[l].referrals.add(d, format!("{pid}\u{1f}{}", v.record_id)),
        }
        Ok(Outcome::Applied)
    }

    /// Decides every referral whose deadline is at or before `w`.
    pub(super) fn sweep_coverage(&mut self, w: Timestamp) -> Result<(), EngineError> {
        if !self.rules.coverage_gap.enabled {
            return Ok(());
        }
        self.apply_held_facts()?;
        for l in 0..self.lanes.len() {
            for (d, ids) in self.lanes[l].referrals.take_due(&self.store, w)? {
                for id in ids {
                    if let Some((pid, record_id)) = id.split_once('\u{1f}') {
                        self.decide_referral(pid, record_id, d, false)?;
                    }
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
        let l = self.lane(pid);
        let Some(ben) = self.lanes[l].bens.get(&self.store, pid.as_bytes())? else { return Ok(()) };
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
        // it: the household's entry, as sent to this person, holds per
        // member what each version sent to it says (`registrations`), so
        // neither a member's roster nor the household is read.
        if let Some(h) = &v.household_id {
            let copy = self.lanes[l].watched_households.get(&self.store, pid.as_bytes())?.and_then(|m| m.get(h.as_str()));
            if copy.is_some_and(|hh| hh.at(d).any(|covered| *covered)) {
                return Ok(());
            }
        }
        let f = coverage_gap::finding(&self.rules.coverage_gap, &v, d, tz);
        self.emit(vec![f])
    }
}
