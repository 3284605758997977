//! Payments and reversals: the payment-level rules, the beneficiary's month,
//! and the receiving account's window.

use super::state::{custodian_in, StoredPayment};
use super::{months, Engine, EngineError, Opened, Outcome};
use crate::decode::{Reason, Rejection};
use crate::detect::duplicate_period::Earlier;
use crate::detect::episode::{Change, WindowEntry};
use crate::detect::{
    disbursement_delay, duplicate_period, filed_relative_review, inactive_beneficiary, large_amount, name_mismatch,
    paid_after_death, PaymentView,
};
use crate::model::time::Date;
use crate::model::{Payment, PaymentType, Period, Timestamp};
use crate::store::keys::{self, MonthKey};

impl Engine {
    pub(super) fn on_payment(&mut self, p: &Payment, opened: Option<Opened>) -> Result<Outcome, EngineError> {
        let bid = p.beneficiary_id.as_str();
        let (month_key, opened) = match opened {
            Some(o) => (o.key, Some(o.bytes)),
            None => (keys::month(bid, p.period), None),
        };
        // The beneficiary is looked up once; everything up to the account
        // step works on this borrow.
        let (store, months, rules, tz) = (&self.store, &mut self.months, &self.rules, self.tz);
        let ben = self.bens.get_or_default(store, bid.as_bytes())?;
        // A redelivery repeats the record, so it lands in a month that
        // already has payments; only then is the month read.
        let known_month = ben.months_any.contains(p.period);
        let mut month = if known_month { months.get(store, &month_key)? } else { Vec::new() };
        if month.iter().any(|sp| sp.payment.event_id == p.event_id) {
            return Ok(Outcome::Redelivered);
        }
        let earlier: Vec<Earlier> = if p.payment_type == PaymentType::Regular {
            month
                .iter()
                .filter(|sp| {
                    sp.reversed_by.is_none()
                        && sp.payment.program == p.program
                        && sp.payment.payment_type == PaymentType::Regular
                })
                .map(|sp| Earlier { event_id: sp.payment.event_id.to_string(), amount: sp.payment.amount })
                .collect()
        } else {
            Vec::new()
        };
        let paid_on = tz.date(p.paid_at);
        let mut findings = Vec::new();
        let review_year;
        let exempt;
        {
            let roster = ben.roster_at(p.paid_at);
            let custodian = roster.and_then(|r| custodian_in(r, paid_on, &p.account_no, &p.account_name));
            exempt = custodian.is_some();
            let v = PaymentView { payment: p, roster, death: ben.death(), custodian, paid_on, tz };
            let r = rules;
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
        if let Some(y) = review_year {
            ben.reviewed_years.insert(y);
        }
        ben.months_any.insert(p.period);
        ben.months_paid.insert(p.period);
        if month.is_empty() {
            let bytes = match opened {
                Some(b) => b,
                None => months::encode_opened(p)?,
            };
            months.open(month_key, bytes);
        } else {
            month.push(StoredPayment { payment: p.clone(), reversed_by: None });
            months.set(month_key, &month)?;
        }
        let entry = WindowEntry {
            event_id: p.event_id.clone(),
            paid_at: p.paid_at,
            household_id: p.household_id.clone(),
            amount: p.amount,
            exempt,
            reversed: false,
        };
        findings.extend(self.account_step(&p.account_no, &p.township, p.paid_at, paid_on, Change::Add(entry))?);
        self.emit(findings)?;
        Ok(Outcome::Applied)
    }

    /// Reverses a payment of the same beneficiary, found in the reversal's
    /// own month first and then in every month with payments.
    pub(super) fn on_reversal(&mut self, p: &Payment) -> Result<Outcome, EngineError> {
        let bid = p.beneficiary_id.as_str();
        let target_id = p.reverses.as_deref().unwrap_or_default();
        let bad = |why: String| Ok(Outcome::Rejected(Rejection::new(Reason::BadReversal, why)));
        let mut months: Vec<Period> = match self.bens.get(&self.store, bid.as_bytes())? {
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
            let lists = self.months.get_many(&self.store, &keys)?;
            found = months.iter().zip(keys).zip(lists).find_map(|((m, key), list)| {
                let i = list.iter().position(|sp| sp.payment.event_id == target_id)?;
                Some((*m, key, list, i))
            });
            if found.is_some() {
                break;
            }
        }
        let Some((period, key, mut list, i)) = found else {
            return bad(format!("reverses {target_id}, which was not paid to this beneficiary before it"));
        };
        match &list[i].reversed_by {
            Some(by) if *by == p.event_id => return Ok(Outcome::Redelivered),
            Some(by) => return bad(format!("reverses {target_id}, which {by} already reversed")),
            None => {}
        }
        list[i].reversed_by = Some(p.event_id.to_string());
        let target = list[i].payment.clone();
        let still_paid = list.iter().any(|sp| sp.reversed_by.is_none());
        self.months.set(key, &list)?;
        if !still_paid {
            if let Some(ben) = self.bens.get_mut(&self.store, bid.as_bytes())? {
                ben.months_paid.remove(period);
            }
        }
        let paid_on = self.tz.date(p.paid_at);
        let change = Change::Reverse(target_id.to_owned());
        let findings = self.account_step(&target.account_no, &target.township, p.paid_at, paid_on, change)?;
        self.emit(findings)?;
        Ok(Outcome::Applied)
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
        // One lookup of the account; n is counted only for an account some
        // roster ever named for a custodian (rare).
        let (store, bens) = (&self.store, &mut self.bens);
        let acct = self.accounts.get_or_default(store, account_no.as_bytes())?;
        let mut n = 0;
        for id in &acct.custodian_of {
            let registered = bens.get(store, id.as_bytes())?.and_then(|b| b.roster_at(t)).is_some_and(|r| {
                r.custodians.iter().any(|c| c.account_no == account_no && c.valid_on(day))
            });
            n += usize::from(registered);
        }
        Ok(acct.window.step(&self.rules, account_no, township, t, n, change))
    }
}
