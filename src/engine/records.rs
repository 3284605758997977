//! Roster versions and death records, applied in the lane of their person.

use super::facts::KeyFact;
use super::lane::{Ctx, Lane, Out};
use super::{registrations, Engine, EngineError, Outcome};
use crate::detect::{coverage_gap, paid_after_death, PaymentView, NO_YEARS};
use crate::model::{DeathRecord, Period, RosterRecord, Timestamp};
use crate::store::keys::{self, MonthKey};

impl Engine {
    pub(super) fn on_roster(&mut self, r: &RosterRecord) -> Result<Outcome, EngineError> {
        self.in_lane(r.beneficiary_id.as_str(), |lane, ctx, out| lane.on_roster(ctx, r, out))
    }

    pub(super) fn on_death(&mut self, d: &DeathRecord) -> Result<Outcome, EngineError> {
        self.in_lane(d.person_id.as_str(), |lane, ctx, out| lane.on_death(ctx, d, out))
    }

    /// The roster version applying to `bid` at `t`, from its lane.
    pub(super) fn roster_version(&mut self, bid: &str, t: Timestamp) -> Result<Option<RosterRecord>, EngineError> {
        let l = self.lane(bid);
        self.lanes[l].roster_version(&self.store, bid, t)
    }
}

impl Lane {
    pub(super) fn on_roster(&mut self, ctx: &Ctx<'_>, r: &RosterRecord, out: &mut Vec<Out>) -> Result<Outcome, EngineError> {
        let bid = r.beneficiary_id.as_str();
        let ben = self.bens.get_or_default(ctx.store, bid.as_bytes())?;
        // Older than every version kept: a redelivery of it is archived.
        let older = ben.roster.first().is_some_and(|f| r.updated_at < f.updated_at);
        if ben.roster.contains(r) || (older && self.roster_archive.contains(ctx.store, r)?) {
            return Ok(Outcome::Redelivered);
        }
        // The version this one takes over from at its instant.
        let before = match ben.roster_at(r.updated_at) {
            Some(x) => Some(x.clone()),
            None if ben.roster.is_empty() => None,
            None => self.roster_version(ctx.store, bid, r.updated_at)?,
        };
        let ben = self.bens.get_or_default(ctx.store, bid.as_bytes())?;
        ben.insert_roster(r.clone());
        // The version that takes over after this one (one updated later
        // arrived first), before any is archived.
        let after = ben.roster.iter().find(|x| x.updated_at > r.updated_at).and_then(|x| ben.roster_at(x.updated_at)).cloned();
        let (before, after) = (before.as_ref(), after.as_ref());
        // What the keys it concerns need (`registrations`): the accounts it
        // registers (n of FREQUENT_PAYMENTS, in order with the payments'
        // steps), its households (COVERAGE_GAP) and, below, its custodians.
        for fact in registrations::facts(before, r, after) {
            out.push(Out::Registered(fact));
        }
        for (household, x) in registrations::destinations(before, r, after, |x| vec![x.household_id.as_str()]) {
            let covered = x.household_id.as_str() == household && coverage_gap::covers(x);
            out.push(Out::Key(KeyFact::MemberVersion { household: household.to_owned(), person: bid.to_owned(), updated_at: x.updated_at, covered }));
        }
        let ben = self.bens.get_or_default(ctx.store, bid.as_bytes())?;
        let missed = &ctx.rules.missed_payment;
        if missed.enabled && ben.missed_next.is_none() && ben.death().is_none() {
            let first = missed.first_open_month(ctx.tz, Period::of(r.enrolled_at), ctx.watermark);
            ben.missed_next = Some(first);
            self.timers.add(missed.deadline(ctx.tz, first), bid.to_owned());
        }
        if let Some(w) = ctx.watermark {
            let gone = ben.prune_roster(w);
            self.roster_archive.add(bid, gone);
        }
        let names_custodians = |x: Option<&RosterRecord>| x.is_some_and(|x| !x.custodians.is_empty());
        if names_custodians(Some(r)) || names_custodians(before) {
            Lane::custodians_on_roster(ctx, r, before, after, out);
        }
        Ok(Outcome::Applied)
    }

    pub(super) fn on_death(&mut self, ctx: &Ctx<'_>, d: &DeathRecord, out: &mut Vec<Out>) -> Result<Outcome, EngineError> {
        let bid = d.person_id.as_str();
        let ben = self.bens.get_or_default(ctx.store, bid.as_bytes())?;
        if ben.deaths.iter().any(|x| x.record_id == d.record_id) {
            return Ok(Outcome::Redelivered);
        }
        let known = ben.death().cloned();
        ben.deaths.push(d.clone());
        // The person may be, or become, a registered custodian (§9): their
        // entry is sent their earliest death, and sends it on to the
        // beneficiaries registering them.
        if ben.death() != known.as_ref() {
            out.push(Out::Key(KeyFact::PersonDied { person: d.person_id.clone(), death: d.clone() }));
        }
        if known.is_some_and(|k| k.date_of_death <= d.date_of_death) {
            return Ok(Outcome::Applied);
        }
        if !ctx.rules.paid_after_death.enabled {
            return Ok(Outcome::Applied);
        }
        // A late record: every payment already made for a later month is
        // now known to be improper.
        let Some(ben) = self.bens.get(ctx.store, bid.as_bytes())? else { return Ok(Outcome::Applied) };
        let after: Vec<Period> = ben.months_any.after(Period::of(d.date_of_death)).collect();
        let keys: Vec<MonthKey> = after.iter().map(|m| keys::month(bid, *m)).collect();
        let months = self.months.get_many(ctx.store, &keys)?;
        let ben = self.bens.get(ctx.store, bid.as_bytes())?.expect("created above");
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
                    paid_on: ctx.tz.date(p.paid_at),
                    tz: ctx.tz,
                    month: &[],
                    reviewed_years: &NO_YEARS,
                };
                findings.extend(paid_after_death::check(&ctx.rules.paid_after_death, &v));
            }
        }
        if !findings.is_empty() {
            out.push(Out::Findings(findings));
        }
        Ok(Outcome::Applied)
    }
}
