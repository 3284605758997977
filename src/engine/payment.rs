//! Payments and reversals: the payment-level rules, the beneficiary's month,
//! and the receiving account's window.

use super::state::{custodian_in, StoredPayment};
use super::accounts::Step;
use super::lane::{Ctx, Lane, Out};
use super::{Engine, EngineError, Opened, Outcome};
use crate::decode::{Reason, Rejection};
use crate::detect::episode::{Change, WindowEntry};
use crate::detect::PaymentView;
use crate::model::time::Date;
use crate::model::{Payment, Period, Rule, Text, Timestamp};
use crate::store::keys::{self, MonthKey};

/// The payment a reversal cancels, and the month that holds it.
pub(super) struct Target {
    period: Period,
    key: MonthKey,
    /// The month's payments, as read.
    list: Vec<StoredPayment>,
    /// The cancelled payment's place in `list`.
    index: usize,
}

impl Lane {
    /// A payment of one of this lane's beneficiaries: the payment-level
    /// rules, its month, and the step for its account's window (in `out`).
    pub(super) fn on_payment(&mut self, ctx: &Ctx<'_>, p: &Payment, opened: Option<&Opened>, out: &mut Vec<Out>) -> Result<Outcome, EngineError> {
        let bid = p.beneficiary_id.as_str();
        let (month_key, opened) = match opened {
            Some(o) => (o.key.clone(), Some(&o.bytes[..])),
            None => (keys::month(bid, p.period), None),
        };
        // The beneficiary is looked up once; everything up to the account
        // step works on this borrow.
        let (store, months, rules, tz, checks, archive) = (ctx.store, &mut self.months, ctx.rules, ctx.tz, ctx.payment_checks, &self.roster_archive);
        let ben = self.bens.get_or_default(store, bid.as_bytes())?;
        // A redelivery repeats the record, so it lands in a month that
        // already has payments; only then is the month read.
        let known_month = ben.months_any.contains(p.period);
        let mut month = if known_month { months.get(store, &month_key)? } else { Vec::new() };
        if month.iter().any(|sp| sp.payment.event_id == p.event_id) {
            return Ok(Outcome::Redelivered);
        }
        let paid_on = tz.date(p.paid_at);
        let mut findings = Vec::new();
        let exempt;
        // Through a registration carrying an id_no: the custodian's death is
        // looked up after this borrow (CUSTODIAN_DECEASED).
        let custodian_id;
        {
            // A payment older than every version kept (out of order in a
            // stream) is judged by the archived version of its time.
            let archived;
            let roster = match ben.roster_at(p.paid_at) {
                None if !ben.roster.is_empty() => {
                    archived = archive.at(store, bid, p.paid_at)?;
                    archived.as_ref()
                }
                found => found,
            };
            let custodian = roster.and_then(|r| custodian_in(r, paid_on, &p.account_no, &p.account_name));
            exempt = custodian.is_some();
            custodian_id = custodian.and_then(|c| c.id_no.clone()).filter(|_| rules.custodian_deceased.enabled);
            let v = PaymentView {
                payment: p,
                roster,
                death: ben.death(),
                custodian,
                custodian_death: None,
                paid_on,
                tz,
                month: &month,
                reviewed_years: &ben.reviewed_years,
            };
            // Every payment-level rule that is on (the registry's).
            for check in checks {
                check(rules, &v, &mut findings);
            }
        }
        // The year's review is raised once (contract §6).
        if findings.iter().any(|f| f.rule == Rule::FiledRelativeReview) {
            ben.reviewed_years.insert(paid_on.year());
        }
        ben.months_any.insert(p.period);
        ben.months_paid.insert(p.period);
        if month.is_empty() {
            match opened {
                Some(b) => months.open(month_key, b),
                None => months.open_with(month_key, p)?,
            }
        } else {
            month.push(StoredPayment { payment: p.clone(), reversed_by: None });
            months.set(month_key, &month)?;
        }
        if let Some(id) = custodian_id {
            findings.extend(self.custodian_deceased_at(ctx, p, &id, paid_on)?);
        }
        if !findings.is_empty() {
            out.push(Out::Findings(findings));
        }
        let entry = WindowEntry {
            event_id: p.event_id.clone(),
            paid_at: p.paid_at,
            household_id: p.household_id.clone(),
            amount: p.amount,
            exempt,
            reversed: false,
        };
        if ctx.account_rules {
            let step = Step { account_no: p.account_no.clone(), township: p.township.clone(), at: p.paid_at, day: paid_on, change: Change::Add(entry) };
            out.push(Out::Step(step));
        }
        Ok(Outcome::Applied)
    }
}


impl Engine {
    pub(super) fn on_payment(&mut self, p: &Payment, opened: Option<&Opened>) -> Result<Outcome, EngineError> {
        self.in_lane(p.beneficiary_id.as_str(), |lane, ctx, out| lane.on_payment(ctx, p, opened, out))
    }

    /// Finds the payment a reversal cancels, of the same beneficiary: in
    /// the reversal's own month first, then in every month with payments.
    /// Done before the watermark moves, so a refused or repeated reversal
    /// (`Err` with its outcome) never moves it.
    pub(super) fn reversal_target(&mut self, p: &Payment) -> Result<Result<Target, Outcome>, EngineError> {
        let bid = p.beneficiary_id.as_str();
        let target_id = p.reverses.as_deref().unwrap_or_default();
        let bad = |why: String| Ok(Err(Outcome::Rejected(Rejection::new(Reason::BadReversal, why))));
        let l = self.lane(bid);
        let lane = &mut self.lanes[l];
        let mut months: Vec<Period> = match lane.bens.get(&self.store, bid.as_bytes())? {
            Some(b) => b.months_any.iter().collect(),
            None => Vec::new(),
        };
        months.sort_by_key(|m| *m != p.period);
        // The reversal's own month first (one read), then all the others
        // in one pass.
        let (own, others) = months.split_at(months.len().min(1));
        let mut found = None;
        for months in [own, others] {
            let keys: Vec<MonthKey> = months.iter().map(|m| keys::month(bid, *m)).collect();
            let lists = lane.months.get_many(&self.store, &keys)?;
            found = months.iter().zip(keys).zip(lists).find_map(|((m, key), list)| {
                let i = list.iter().position(|sp| sp.payment.event_id == target_id)?;
                Some((*m, key, list, i))
            });
            if found.is_some() {
                break;
            }
        }
        let Some((period, key, list, i)) = found else {
            return bad(format!("reverses {target_id}, which was not paid to this beneficiary before it"));
        };
        match &list[i].reversed_by {
            Some(by) if *by == p.event_id => Ok(Err(Outcome::Redelivered)),
            Some(by) => bad(format!("reverses {target_id}, which {by} already reversed")),
            None => Ok(Ok(Target { period, key, list, index: i })),
        }
    }

    /// Reverses the payment [`Engine::reversal_target`] found.
    pub(super) fn on_reversal(&mut self, p: &Payment, target: Target) -> Result<Outcome, EngineError> {
        let bid = p.beneficiary_id.as_str();
        let target_id = p.reverses.as_deref().unwrap_or_default();
        let Target { period, key, mut list, index: i } = target;
        list[i].reversed_by = Some(p.event_id.to_string());
        let target = list[i].payment.clone();
        let still_paid = list.iter().any(|sp| sp.reversed_by.is_none());
        let l = self.lane(bid);
        let lane = &mut self.lanes[l];
        lane.months.set(key, &list)?;
        if !still_paid {
            if let Some(ben) = lane.bens.get_mut(&self.store, bid.as_bytes())? {
                ben.months_paid.remove(period);
            }
        }
        let paid_on = self.tz.date(p.paid_at);
        let change = Change::Reverse(target_id.to_owned());
        self.account_step(&target.account_no, &target.township, p.paid_at, paid_on, change)?;
        Ok(Outcome::Applied)
    }
    /// One change to an account's window at `t` (`day` its date), handed
    /// to the account stage, which counts n from the registrations it was
    /// sent; its findings follow every finding raised before it
    /// ([`Engine::pump`]).
    fn account_step(&mut self, account_no: &Text, township: &Text, t: Timestamp, day: Date, change: Change) -> Result<(), EngineError> {
        if self.window_rules.rules.is_empty() {
            return Ok(());
        }
        let step = Step { account_no: account_no.clone(), township: township.clone(), at: t, day, change };
        self.take_out(vec![Out::Step(step)])
    }
}
