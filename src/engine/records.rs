//! Roster versions and death records.

use super::facts::KeyFact;
use super::{registrations, Engine, EngineError, Outcome};
use crate::detect::{coverage_gap, paid_after_death, PaymentView, NO_YEARS};
use crate::model::{DeathRecord, Period, RosterRecord, Timestamp};
use crate::store::keys::{self, MonthKey};

impl Engine {
    pub(super) fn on_roster(&mut self, r: &RosterRecord) -> Result<Outcome, EngineError> {
        let bid = r.beneficiary_id.as_str();
        let l = self.lane(bid);
        let lane = &mut self.lanes[l];
        let ben = lane.bens.get_or_default(&self.store, bid.as_bytes())?;
        // Older than every version kept: a redelivery of it is archived.
        let older = ben.roster.first().is_some_and(|f| r.updated_at < f.updated_at);
        if ben.roster.contains(r) || (older && lane.roster_archive.contains(&self.store, r)?) {
            return Ok(Outcome::Redelivered);
        }
        // The version this one takes over from at its instant.
        let before = match ben.roster_at(r.updated_at) {
            Some(x) => Some(x.clone()),
            None if ben.roster.is_empty() => None,
            None => self.roster_version(bid, r.updated_at)?,
        };
        let ben = self.lanes[l].bens.get_or_default(&self.store, bid.as_bytes())?;
        ben.insert_roster(r.clone());
        // The version that takes over after this one (one updated later
        // arrived first), before any is archived.
        let after = ben.roster.iter().find(|x| x.updated_at > r.updated_at).and_then(|x| ben.roster_at(x.updated_at)).cloned();
        let (before, after) = (before.as_ref(), after.as_ref());
        // What the keys it concerns need (`registrations`): the accounts it
        // registers (n of FREQUENT_PAYMENTS, in order with the payments'
        // steps), its households (COVERAGE_GAP) and, below, its custodians.
        for fact in registrations::facts(before, r, after) {
            self.accounts.register(fact)?;
        }
        for (household, x) in registrations::destinations(before, r, after, |x| vec![x.household_id.as_str()]) {
            let covered = x.household_id.as_str() == household && coverage_gap::covers(x);
            self.send(KeyFact::MemberVersion { household: household.to_owned(), person: bid.to_owned(), updated_at: x.updated_at, covered })?;
        }
        let lane = &mut self.lanes[l];
        let ben = lane.bens.get_or_default(&self.store, bid.as_bytes())?;
        let missed = &self.rules.missed_payment;
        if missed.enabled && ben.missed_next.is_none() && ben.death().is_none() {
            let first = missed.first_open_month(self.tz, Period::of(r.enrolled_at), self.progress.watermark);
            ben.missed_next = Some(first);
            lane.timers.add(missed.deadline(self.tz, first), bid.to_owned());
        }
        if let Some(w) = self.progress.watermark {
            let gone = ben.prune_roster(w);
            lane.roster_archive.add(bid, gone);
        }
        let names_custodians = |x: Option<&RosterRecord>| x.is_some_and(|x| !x.custodians.is_empty());
        if names_custodians(Some(r)) || names_custodians(before) {
            self.custodians_on_roster(r, before, after)?;
        }
        Ok(Outcome::Applied)
    }

    /// The roster version applying to `bid` at `t` (the newest whose
    /// `updated_at` is not after `t`), from the archive when `t` is before
    /// every version the beneficiary keeps.
    pub(super) fn roster_version(&mut self, bid: &str, t: Timestamp) -> Result<Option<RosterRecord>, EngineError> {
        let l = self.lane(bid);
        let lane = &mut self.lanes[l];
        let Some(ben) = lane.bens.get(&self.store, bid.as_bytes())? else { return Ok(None) };
        if let Some(r) = ben.roster_at(t) {
            return Ok(Some(r.clone()));
        }
        if ben.roster.is_empty() {
            return Ok(None);
        }
        lane.roster_archive.at(&self.store, bid, t)
    }

    pub(super) fn on_death(&mut self, d: &DeathRecord) -> Result<Outcome, EngineError> {
        let bid = d.person_id.as_str();
        let l = self.lane(bid);
        let ben = self.lanes[l].bens.get_or_default(&self.store, bid.as_bytes())?;
        if ben.deaths.iter().any(|x| x.record_id == d.record_id) {
            return Ok(Outcome::Redelivered);
        }
        let known = ben.death().cloned();
        ben.deaths.push(d.clone());
        // The person may be, or become, a registered custodian (§9): their
        // entry is sent their earliest death, and sends it on to the
        // beneficiaries registering them.
        if ben.death() != known.as_ref() {
            self.send(KeyFact::PersonDied { person: d.person_id.clone(), death: d.clone() })?;
        }
        if known.is_some_and(|k| k.date_of_death <= d.date_of_death) {
            return Ok(Outcome::Applied);
        }
        if !self.rules.paid_after_death.enabled {
            return Ok(Outcome::Applied);
        }
        // A late record: every payment already made for a later month is
        // now known to be improper.
        let lane = &mut self.lanes[l];
        let Some(ben) = lane.bens.get(&self.store, bid.as_bytes())? else { return Ok(Outcome::Applied) };
        let after: Vec<Period> = ben.months_any.after(Period::of(d.date_of_death)).collect();
        let keys: Vec<MonthKey> = after.iter().map(|m| keys::month(bid, *m)).collect();
        let months = lane.months.get_many(&self.store, &keys)?;
        let ben = lane.bens.get(&self.store, bid.as_bytes())?.expect("created above");
        let mut findings = Vec::new();
        for month in months {
            for sp in &month {
                let p = &sp.payment;
                let v = PaymentView {
                    payment: p,
                    roster: ben.roster_at(p.paid_at),
                    death: Some(d),
                    custodian: None,
                    custodian_death: None,
                    paid_on: self.tz.date(p.paid_at),
                    tz: self.tz,
                    month: &[],
                    reviewed_years: &NO_YEARS,
                };
                findings.extend(paid_after_death::check(&self.rules.paid_after_death, &v));
            }
        }
        self.emit(findings)?;
        Ok(Outcome::Applied)
    }
}
