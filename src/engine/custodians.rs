//! Custodians (contract §9): who names a custodian's `id_no`, the
//! `CUSTODIAN_OVERLOAD` count when a roster record is applied, and the
//! custodian's death for `CUSTODIAN_DECEASED` — at a payment, or for every
//! earlier payment when the death record arrives late.

use super::state::custodian_in;
use super::facts::Fact;
use super::{registrations, Engine, EngineError};
use crate::detect::{custodian_deceased, custodian_overload, PaymentView, NO_YEARS};
use crate::model::{DeathRecord, Payment, PersonId, RosterRecord};
use crate::store::keys::{self, MonthKey};

impl Engine {
    /// After roster record `r` was applied: `before` is the version it
    /// takes over from and `after` the one that takes over after it (each
    /// when it registers custodians). Each custodian concerned is sent the
    /// versions it needs (`registrations::destinations`), and those named
    /// by `r` or by `before` are then asked to count (§11.8: both are
    /// evaluated).
    pub(super) fn custodians_on_roster(&mut self, r: &RosterRecord, before: Option<&RosterRecord>, after: Option<&RosterRecord>) -> Result<(), EngineError> {
        let bid = r.beneficiary_id.as_str();
        let names = |x: &RosterRecord| x.custodians.iter().filter_map(|c| c.id_no.clone()).collect::<Vec<PersonId>>();
        for (id, version) in registrations::destinations(before, r, after, names) {
            let mut kept = version.clone();
            kept.custodians.retain(|c| c.id_no.as_ref() == Some(&id));
            self.send(Fact::CustodianVersion { custodian: id, person: bid.to_owned(), version: kept })?;
        }
        if !self.rules.custodian_overload.enabled {
            return Ok(());
        }
        let mut ids: Vec<PersonId> = before.into_iter().chain([r]).flat_map(names).collect();
        ids.sort_unstable();
        ids.dedup();
        for id in ids {
            self.send(Fact::OverloadCount { custodian: id, record: r.clone() })?;
        }
        Ok(())
    }

    /// The custodian's side: files `person`'s version (cut down to its
    /// registrations of this custodian). A version naming them is answered
    /// with their death, if known: the custodian's entry lives in their own
    /// person partition, where their death records are.
    pub(super) fn custodian_version(&mut self, custodian: &PersonId, person: &str, version: RosterRecord) -> Result<(), EngineError> {
        let names_it = !version.custodians.is_empty();
        let updated_at = version.updated_at;
        let key = custodian.as_str().as_bytes();
        self.custodians.get_or_default(&self.store, key)?.of.record(person, updated_at, version);
        if names_it {
            if let Some(death) = self.bens.get(&self.store, key)?.and_then(|b| b.death().cloned()) {
                self.send(Fact::CustodianDied { beneficiary: person.to_owned(), death })?;
            }
        }
        Ok(())
    }

    /// The custodian's side: `CUSTODIAN_OVERLOAD` after roster record `r`,
    /// from the versions this custodian was sent, once per episode.
    pub(super) fn overload_count(&mut self, id: &PersonId, r: &RosterRecord) -> Result<(), EngineError> {
        let (t, day) = (r.updated_at, self.tz.date(r.updated_at));
        let key = id.as_str().as_bytes();
        let Some(state) = self.custodians.get(&self.store, key)? else { return Ok(()) };
        let counted = custodian_overload::counted(id, day, state.of.at(t));
        let holds = custodian_overload::holds(&self.rules.custodian_overload, &counted);
        let state = self.custodians.get_or_default(&self.store, key)?;
        let mut findings = Vec::new();
        if holds && !state.over {
            findings.push(custodian_overload::finding(&self.rules.custodian_overload, id, r, &counted, t, self.tz));
        }
        state.over = holds;
        self.emit(findings)
    }

    /// `CUSTODIAN_DECEASED` at payment `p`, which went through a
    /// registration carrying `id`: against the earliest death known of
    /// that person. Only such payments pay for this lookup.
    pub(super) fn custodian_deceased_at(&mut self, p: &Payment, id: &PersonId, paid_on: crate::model::time::Date) -> Result<Option<crate::detect::Finding>, EngineError> {
        let bid = p.beneficiary_id.as_str();
        let known = self.custodian_deaths.get(&self.store, bid.as_bytes())?.and_then(|m| m.get(id.as_str()).cloned());
        let Some(death) = known else { return Ok(None) };
        let roster = self.roster_version(p.beneficiary_id.as_str(), p.paid_at)?;
        let roster = roster.as_ref();
        let v = PaymentView {
            payment: p,
            roster,
            death: None,
            custodian: roster.and_then(|r| custodian_in(r, paid_on, &p.account_no, &p.account_name)),
            custodian_death: Some(&death),
            paid_on,
            tz: self.tz,
            month: &[],
            reviewed_years: &NO_YEARS,
        };
        Ok(custodian_deceased::check(&self.rules.custodian_deceased, &v))
    }

    /// A death record, the earliest known for that person, who may be a
    /// custodian: each beneficiary that registers them is sent the death.
    pub(super) fn custodian_died(&mut self, d: &DeathRecord) -> Result<(), EngineError> {
        let of: Vec<String> = match self.custodians.get(&self.store, d.person_id.as_str().as_bytes())? {
            Some(s) => s.of.persons().cloned().collect(),
            None => return Ok(()),
        };
        for beneficiary in of {
            self.send(Fact::CustodianDied { beneficiary, death: d.clone() })?;
        }
        Ok(())
    }

    /// Beneficiary `bid` learns that a custodian it registers died (`d`,
    /// the earliest death known of them): kept for its later payments, and
    /// every payment it already made through a registration carrying that
    /// `id_no` (by the roster version of the payment's instant), on a day
    /// after the death, is `CUSTODIAN_DECEASED` (§9 "whichever arrives
    /// first"; readings 32 and 36). That holds whether the death record
    /// arrived late or the registration did: between instances the
    /// custodian's answer to a registration may arrive after the payments.
    /// Reads only the beneficiary's own state.
    pub(super) fn custodian_died_for(&mut self, bid: &str, d: &DeathRecord) -> Result<(), EngineError> {
        let deaths = self.custodian_deaths.get_or_default(&self.store, bid.as_bytes())?;
        let id = d.person_id.as_str();
        if deaths.get(id).is_some_and(|k| (k.date_of_death, k.reported_at) <= (d.date_of_death, d.reported_at)) {
            return Ok(());
        }
        deaths.insert(id.to_owned(), d.clone());
        if !self.rules.custodian_deceased.enabled {
            return Ok(());
        }
        let mut findings = Vec::new();
        {
            let months: Vec<MonthKey> = match self.bens.get(&self.store, bid.as_bytes())? {
                Some(b) => b.months_any.iter().map(|m| keys::month(bid, m)).collect(),
                None => return Ok(()),
            };
            let lists = self.months.get_many(&self.store, &months)?;
            for sp in lists.iter().flatten() {
                let p = &sp.payment;
                let paid_on = self.tz.date(p.paid_at);
                if paid_on <= d.date_of_death {
                    continue;
                }
                // The version of the payment's day, archived by now when
                // the death is reported long after.
                let roster = self.roster_version(bid, p.paid_at)?;
                let roster = roster.as_ref();
                let custodian = roster.and_then(|r| custodian_in(r, paid_on, &p.account_no, &p.account_name));
                if custodian.and_then(|c| c.id_no.as_ref()).is_none_or(|x| x != &d.person_id) {
                    continue;
                }
                let v = PaymentView {
                    payment: p,
                    roster,
                    death: None,
                    custodian,
                    custodian_death: Some(d),
                    paid_on,
                    tz: self.tz,
                    month: &[],
                    reviewed_years: &NO_YEARS,
                };
                findings.extend(custodian_deceased::check(&self.rules.custodian_deceased, &v));
            }
        }
        self.emit(findings)
    }
}
