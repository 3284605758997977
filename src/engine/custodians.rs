//! Custodians (contract §9) on the person side: a roster record sends the
//! custodians it concerns its versions and asks them to count
//! (`CUSTODIAN_OVERLOAD`, decided in the key stage, `key_stage.rs`), and a
//! beneficiary checks its payments against the deaths of the custodians
//! it registers (`CUSTODIAN_DECEASED`) — at a payment, or for every
//! earlier payment when the death reaches it late.

use super::state::custodian_in;
use super::facts::KeyFact;
use super::lane::{Ctx, Lane, Out};
use super::{registrations, Engine, EngineError};
use crate::detect::{custodian_deceased, PaymentView, NO_YEARS};
use crate::model::{DeathRecord, Payment, PersonId, RosterRecord};
use crate::store::keys::{self, MonthKey};

impl Lane {
    /// After roster record `r` was applied: `before` is the version it
    /// takes over from and `after` the one that takes over after it (each
    /// when it registers custodians). Each custodian concerned is sent the
    /// versions it needs (`registrations::destinations`), and those named
    /// by `r` or by `before` are then asked to count (§11.8: both are
    /// evaluated).
    pub(super) fn custodians_on_roster(ctx: &Ctx<'_>, r: &RosterRecord, before: Option<&RosterRecord>, after: Option<&RosterRecord>, out: &mut Vec<Out>) {
        let bid = r.beneficiary_id.as_str();
        let names = |x: &RosterRecord| x.custodians.iter().filter_map(|c| c.id_no.clone()).collect::<Vec<PersonId>>();
        for (id, version) in registrations::destinations(before, r, after, names) {
            let mut kept = version.clone();
            kept.custodians.retain(|c| c.id_no.as_ref() == Some(&id));
            out.push(Out::Key(KeyFact::CustodianVersion { custodian: id, person: bid.to_owned(), version: kept }));
        }
        if !ctx.rules.custodian_overload.enabled {
            return;
        }
        let mut ids: Vec<PersonId> = before.into_iter().chain([r]).flat_map(names).collect();
        ids.sort_unstable();
        ids.dedup();
        for id in ids {
            out.push(Out::Key(KeyFact::OverloadCount { custodian: id, record: r.clone() }));
        }
    }

    /// `CUSTODIAN_DECEASED` at payment `p`, which went through a
    /// registration carrying `id`: against the first death of that person
    /// sent here whose date is before the paid day (reading 38). Only such
    /// payments pay for this lookup.
    pub(super) fn custodian_deceased_at(&mut self, ctx: &Ctx<'_>, p: &Payment, id: &PersonId, paid_on: crate::model::time::Date) -> Result<Option<crate::detect::Finding>, EngineError> {
        let bid = p.beneficiary_id.as_str();
        let known = self.custodian_deaths.get(ctx.store, bid.as_bytes())?.and_then(|m| m.get(id.as_str()));
        let Some(death) = known.and_then(|deaths| deaths.iter().find(|d| d.date_of_death < paid_on)).cloned() else { return Ok(None) };
        let roster = self.roster_version(ctx.store, bid, p.paid_at)?;
        let roster = roster.as_ref();
        let v = PaymentView {
            payment: p,
            roster,
            death: None,
            custodian: roster.and_then(|r| custodian_in(r, paid_on, &p.account_no, &p.account_name)),
            custodian_death: Some(&death),
            paid_on,
            tz: ctx.tz,
            month: &[],
            reviewed_years: &NO_YEARS,
        };
        Ok(custodian_deceased::check(&ctx.rules.custodian_deceased, &v))
    }
}

impl Engine {
    /// Beneficiary `bid` learns that a custodian it registers died (`d`,
    /// dated earlier than every death of theirs sent before): kept for its
    /// later payments, and every payment it already made through a
    /// registration carrying that `id_no` (by the roster version of the
    /// payment's instant), on a day after the death, is
    /// `CUSTODIAN_DECEASED` (§9 "whichever arrives first"; readings 32
    /// and 36). That holds whether the death record arrived late or the
    /// registration did: between instances the custodian's answer to a
    /// registration may arrive after the payments. A payment on a day
    /// after the death sent before this one was raised against that one
    /// (reading 38), so only the days between the two dates are checked.
    /// Reads only the beneficiary's own state.
    pub(super) fn custodian_died_for(&mut self, bid: &str, d: &DeathRecord) -> Result<(), EngineError> {
        let l = self.lane(bid);
        let deaths = self.lanes[l].custodian_deaths.get_or_default(&self.store, bid.as_bytes())?;
        let known = deaths.entry(d.person_id.as_str().to_owned()).or_default();
        let before = known.last().map(|k| k.date_of_death);
        if before.is_some_and(|k| k <= d.date_of_death) {
            return Ok(());
        }
        known.push(d.clone());
        if !self.rules.custodian_deceased.enabled {
            return Ok(());
        }
        let mut findings = Vec::new();
        {
            let lane = &mut self.lanes[l];
            let months: Vec<MonthKey> = match lane.bens.get(&self.store, bid.as_bytes())? {
                Some(b) => b.months_any.iter().map(|m| keys::month(bid, m)).collect(),
                None => return Ok(()),
            };
            let lists = lane.months.get_many(&self.store, &months)?;
            for sp in lists.iter().flatten() {
                let p = &sp.payment;
                let paid_on = self.tz.date(p.paid_at);
                if paid_on <= d.date_of_death || before.is_some_and(|k| paid_on > k) {
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
