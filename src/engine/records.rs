//! Roster versions and death records.

use super::{Engine, EngineError, Outcome};
use crate::detect::{paid_after_death, PaymentView, NO_YEARS};
use crate::model::{DeathRecord, Period, RosterRecord};
use crate::store::keys::{self, MonthKey};

impl Engine {
    pub(super) fn on_roster(&mut self, r: &RosterRecord) -> Result<Outcome, EngineError> {
        let bid = r.beneficiary_id.as_str();
        let ben = self.bens.get_or_default(&self.store, bid.as_bytes())?;
        // The version this one replaces, for CUSTODIAN_OVERLOAD (§11.8).
        let replaced: Vec<crate::model::PersonId> =
            ben.roster_at(r.updated_at).map(|x| x.custodians.iter().filter_map(|c| c.id_no.clone()).collect()).unwrap_or_default();
        if !ben.insert_roster(r.clone()) {
            return Ok(Outcome::Redelivered);
        }
        let missed = &self.rules.missed_payment;
        if missed.enabled && ben.missed_next.is_none() && ben.death().is_none() {
            let first = missed.first_open_month(self.tz, Period::of(r.enrolled_at), self.progress.watermark);
            ben.missed_next = Some(first);
            self.timers.add(missed.deadline(self.tz, first), bid.to_owned());
        }
        if let Some(w) = self.progress.watermark {
            ben.prune_roster(w);
        }
        for c in &r.custodians {
            self.accounts.get_or_default(&self.store, c.account_no.as_bytes())?.custodian_of.insert(bid.to_owned());
        }
        self.households.get_or_default(&self.store, r.household_id.as_bytes())?.insert(bid.to_owned());
        if !r.custodians.is_empty() || !replaced.is_empty() {
            self.custodians_on_roster(r, replaced)?;
        }
        Ok(Outcome::Applied)
    }

    pub(super) fn on_death(&mut self, d: &DeathRecord) -> Result<Outcome, EngineError> {
        let bid = d.person_id.as_str();
        let ben = self.bens.get_or_default(&self.store, bid.as_bytes())?;
        if ben.deaths.iter().any(|x| x.record_id == d.record_id) {
            return Ok(Outcome::Redelivered);
        }
        let known = ben.death().map(|x| x.date_of_death);
        ben.deaths.push(d.clone());
        if known.is_some_and(|k| k <= d.date_of_death) {
            return Ok(Outcome::Applied);
        }
        // The person may be a registered custodian (§9).
        if self.rules.custodian_deceased.enabled {
            self.custodian_death_late(d)?;
        }
        if !self.rules.paid_after_death.enabled {
            return Ok(Outcome::Applied);
        }
        // A late record: every payment already made for a later month is
        // now known to be improper.
        let Some(ben) = self.bens.get(&self.store, bid.as_bytes())? else { return Ok(Outcome::Applied) };
        let after: Vec<Period> = ben.months_any.after(Period::of(d.date_of_death)).collect();
        let keys: Vec<MonthKey> = after.iter().map(|m| keys::month(bid, *m)).collect();
        let months = self.months.get_many(&self.store, &keys)?;
        let ben = self.bens.get(&self.store, bid.as_bytes())?.expect("created above");
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
