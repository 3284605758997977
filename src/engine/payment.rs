//! Payments and reversals: the payment-level rules, the beneficiary's month,
//! and the receiving account's window.

use super::state::{custodian_in, EventRef, StoredPayment};
use super::{Engine, EngineError, Outcome};
use crate::decode::{Reason, Rejection};
use crate::detect::duplicate_period::Earlier;
use crate::detect::episode::{Change, WindowEntry};
use crate::detect::{
    disbursement_delay, duplicate_period, filed_relative_review, inactive_beneficiary, large_amount, name_mismatch,
    paid_after_death, PaymentView,
};
use crate::model::time::Date;
use crate::model::{Payment, PaymentKind, PaymentType, Timestamp};
use crate::store::keys;

impl Engine {
    /// `Some` when this `event_id` was seen before.
    fn redelivery(&mut self, p: &Payment) -> Result<Option<Outcome>, EngineError> {
        let Some(prev) = self.events.get(&self.store, p.event_id.as_bytes())? else {
            return Ok(None);
        };
        if prev.beneficiary_id == p.beneficiary_id.as_str() && prev.kind == p.kind {
            return Ok(Some(Outcome::Redelivered));
        }
        Ok(Some(Outcome::Rejected(Rejection::new(
            Reason::ConflictingEventId,
            format!("event_id {} was already used by a different {}", p.event_id, match prev.kind {
                PaymentKind::Payment => "payment",
                PaymentKind::Reversal => "reversal",
            }),
        ))))
    }

    pub(super) fn on_payment(&mut self, p: &Payment) -> Result<Outcome, EngineError> {
        if let Some(o) = self.redelivery(p)? {
            return Ok(o);
        }
        let bid = p.beneficiary_id.as_str();
        let paid_on = self.tz.date(p.paid_at);
        let earlier = self.earlier_regulars(p)?;
        let mut findings = Vec::new();
        let review_year;
        let exempt;
        {
            let ben = self.bens.get_or_default(&self.store, bid.as_bytes())?;
            let roster = ben.roster_at(p.paid_at);
            let custodian = roster.and_then(|r| custodian_in(r, paid_on, &p.account_no, &p.account_name));
            exempt = custodian.is_some();
            let v = PaymentView { payment: p, roster, death: ben.death(), custodian, paid_on, tz: self.tz };
            let r = &self.rules;
            if r.name_mismatch.enabled {
                findings.extend(name_mismatch::check(&r.name_mismatch, &v));
            }
            if r.large_amount.enabled {
                findings.extend(large_amount::check(&r.large_amount, &v));
            }
            if r.duplicate_period.enabled {
                findings.extend(duplicate_period::check(&r.duplicate_period, &v, &earlier));
            }
            if r.disbursement_delay.enabled {
                findings.extend(disbursement_delay::check(&r.disbursement_delay, &v));
            }
            if r.paid_after_death.enabled {
                findings.extend(paid_after_death::check(&r.paid_after_death, &v));
            }
            if r.inactive_beneficiary.enabled {
                findings.extend(inactive_beneficiary::check(&r.inactive_beneficiary, &v));
            }
            review_year = if r.filed_relative_review.enabled {
                let f = filed_relative_review::check(&r.filed_relative_review, &v, |y| ben.reviewed_years.contains(&y));
                let year = f.as_ref().map(|_| paid_on.year());
                findings.extend(f);
                year
            } else {
                None
            };
        }
        let ben = self.bens.get_or_default(&self.store, bid.as_bytes())?;
        if let Some(y) = review_year {
            ben.reviewed_years.insert(y);
        }
        ben.months_any.insert(p.period);
        ben.months_paid.insert(p.period);
        if p.payment_type == PaymentType::Regular {
            ben.months_regular.insert(p.period);
        }
        self.months
            .get_or_default(&self.store, &keys::month(bid, p.period))?
            .push(StoredPayment { payment: p.clone(), reversed_by: None });
        self.events.put(
            p.event_id.as_bytes().to_vec(),
            EventRef {
                beneficiary_id: bid.to_owned(),
                kind: PaymentKind::Payment,
                period: p.period,
                account_no: p.account_no.clone(),
                reversed_by: None,
            },
        );
        let entry = WindowEntry {
            event_id: p.event_id.clone(),
            paid_at: p.paid_at,
            household_id: p.household_id.clone(),
            beneficiary_id: bid.to_owned(),
            amount: p.amount,
            exempt,
            reversed: false,
        };
        findings.extend(self.account_step(&p.account_no, &p.township, p.paid_at, paid_on, Change::Add(entry))?);
        self.emit(findings)?;
        Ok(Outcome::Applied)
    }

    pub(super) fn on_reversal(&mut self, p: &Payment) -> Result<Outcome, EngineError> {
        if let Some(o) = self.redelivery(p)? {
            return Ok(o);
        }
        let bid = p.beneficiary_id.as_str();
        let target_id = p.reverses.as_deref().unwrap_or_default();
        let bad = |why: String| Ok(Outcome::Rejected(Rejection::new(Reason::BadReversal, why)));
        let Some(target) = self.events.get(&self.store, target_id.as_bytes())?.cloned() else {
            return bad(format!("reverses {target_id}, which was not seen before it"));
        };
        if target.kind == PaymentKind::Reversal {
            return bad(format!("reverses {target_id}, which is itself a reversal"));
        }
        if let Some(by) = &target.reversed_by {
            return bad(format!("reverses {target_id}, which {by} already reversed"));
        }
        if target.beneficiary_id != bid {
            return bad(format!("reverses {target_id}, a payment to another beneficiary"));
        }
        if let Some(t) = self.events.get_mut(&self.store, target_id.as_bytes())? {
            t.reversed_by = Some(p.event_id.clone());
        }
        let month = self.months.get_or_default(&self.store, &keys::month(bid, target.period))?;
        let mut township = p.township.clone();
        for sp in month.iter_mut().filter(|sp| sp.payment.event_id == target_id) {
            sp.reversed_by = Some(p.event_id.clone());
            township = sp.payment.township.clone();
        }
        let still_paid = month.iter().any(|sp| sp.reversed_by.is_none());
        if !still_paid {
            if let Some(ben) = self.bens.get_mut(&self.store, bid.as_bytes())? {
                ben.months_paid.remove(&target.period);
            }
        }
        self.events.put(
            p.event_id.as_bytes().to_vec(),
            EventRef {
                beneficiary_id: bid.to_owned(),
                kind: PaymentKind::Reversal,
                period: p.period,
                account_no: target.account_no.clone(),
                reversed_by: None,
            },
        );
        let paid_on = self.tz.date(p.paid_at);
        let findings =
            self.account_step(&target.account_no, &township, p.paid_at, paid_on, Change::Reverse(target_id.to_owned()))?;
        self.emit(findings)?;
        Ok(Outcome::Applied)
    }

    /// Unreversed regular payments already made for the payment's
    /// beneficiary, month and programme, oldest first.
    fn earlier_regulars(&mut self, p: &Payment) -> Result<Vec<Earlier>, EngineError> {
        if p.payment_type != PaymentType::Regular || !self.rules.duplicate_period.enabled {
            return Ok(Vec::new());
        }
        let bid = p.beneficiary_id.as_str();
        let hinted = self.bens.get(&self.store, bid.as_bytes())?.is_some_and(|b| b.months_regular.contains(&p.period));
        if !hinted {
            return Ok(Vec::new());
        }
        let Some(month) = self.months.get(&self.store, &keys::month(bid, p.period))? else {
            return Ok(Vec::new());
        };
        Ok(month
            .iter()
            .filter(|sp| {
                sp.reversed_by.is_none()
                    && sp.payment.program == p.program
                    && sp.payment.payment_type == PaymentType::Regular
            })
            .map(|sp| Earlier { event_id: sp.payment.event_id.clone(), amount: sp.payment.amount })
            .collect())
    }

    /// One change to an account's window at `t`, with n (custodian
    /// registrations of the account valid on `day`) counted first.
    fn account_step(
        &mut self,
        account_no: &str,
        township: &str,
        t: Timestamp,
        day: Date,
        change: Change,
    ) -> Result<Vec<crate::detect::Finding>, EngineError> {
        if !self.rules.shared_account.enabled && !self.rules.frequent_payments.enabled {
            return Ok(Vec::new());
        }
        let holders: Vec<String> = match self.accounts.get(&self.store, account_no.as_bytes())? {
            Some(a) => a.custodian_of.iter().cloned().collect(),
            None => Vec::new(),
        };
        let mut n = 0;
        for id in holders {
            let registered = self.bens.get(&self.store, id.as_bytes())?.and_then(|b| b.roster_at(t)).is_some_and(|r| {
                r.custodians.iter().any(|c| c.account_no == account_no && c.valid_on(day))
            });
            n += usize::from(registered);
        }
        let acct = self.accounts.get_or_default(&self.store, account_no.as_bytes())?;
        Ok(acct.window.step(&self.rules, account_no, township, t, n, change))
    }
}
