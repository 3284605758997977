//! The rules of feed-v1 §5, one file each, and their [`registry`].
//!
//! A detector is pure: it looks at a payment (or an account window, or a
//! beneficiary's month) together with the state the engine hands it, and
//! returns findings. It never reads or writes the store; the engine owns
//! state and turns findings into alerts. Adding a payment-level rule means
//! one file here (config, logic, tests), one variant in
//! [`crate::model::Rule`], one line in [`registry::RULES`] and one section in
//! [`RulesConfig`]; the engine, summaries, metrics, API and page read the
//! registry.

pub mod coverage_gap;
pub mod custodian_deceased;
pub mod custodian_overload;
pub mod disbursement_delay;
pub mod duplicate_period;
pub mod episode;
pub mod filed_relative_review;
pub mod frequent_payments;
pub mod inactive_beneficiary;
pub mod large_amount;
pub mod missed_payment;
pub mod name_mismatch;
pub mod paid_after_death;
pub mod program_overlap;
pub mod rectification_relapse;
pub mod registry;
pub mod shared_account;

use crate::engine::state::StoredPayment;
use crate::model::time::{Date, Tz};
use std::collections::BTreeSet;
use crate::model::{Custodian, DeathRecord, Evidence, Money, Payment, Period, RosterRecord, Rule, Severity, Timestamp};
use serde::{Deserialize, Serialize};

/// Every rule's settings: one section each under `[rules]` in the config.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    pub name_mismatch: name_mismatch::Config,
    pub shared_account: shared_account::Config,
    pub frequent_payments: frequent_payments::Config,
    pub large_amount: large_amount::Config,
    pub duplicate_period: duplicate_period::Config,
    pub disbursement_delay: disbursement_delay::Config,
    pub missed_payment: missed_payment::Config,
    pub paid_after_death: paid_after_death::Config,
    pub inactive_beneficiary: inactive_beneficiary::Config,
    pub filed_relative_review: filed_relative_review::Config,
    pub program_overlap: program_overlap::Config,
    pub rectification_relapse: rectification_relapse::Config,
    pub custodian_overload: custodian_overload::Config,
    pub custodian_deceased: custodian_deceased::Config,
    pub coverage_gap: coverage_gap::Config,
}

impl RulesConfig {
    /// Checks every section; the error names the section and key.
    pub fn validate(&self) -> Result<(), String> {
        for r in &registry::RULES {
            (r.validate)(self).map_err(|e| format!("rules.{}.{e}", r.section))?;
        }
        Ok(())
    }

    pub fn enabled(&self, rule: Rule) -> bool {
        (rule.info().enabled)(self)
    }

    /// The payment-level checks that are on, in the registry's order: what
    /// the engine asks of every payment.
    pub fn payment_checks(&self) -> Vec<fn(&RulesConfig, &PaymentView<'_>, &mut Vec<Finding>)> {
        registry::RULES
            .iter()
            .filter(|r| (r.enabled)(self))
            .filter_map(|r| match r.hook {
                registry::Hook::Payment(check) => Some(check),
                _ => None,
            })
            .collect()
    }
}

/// What a detector found; the engine adds the id and detection time.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub rule: Rule,
    pub severity: Severity,
    pub township: String,
    pub beneficiary_id: Option<String>,
    pub household_id: Option<String>,
    pub account_no: Option<String>,
    pub period: Option<Period>,
    pub amount: Option<Money>,
    pub evidence: Evidence,
    /// One Chinese sentence with the figures.
    pub reason: String,
    /// Event time of the newest evidence.
    pub event_time: Timestamp,
    /// What `alert_id` hashes after the rule code: the subject and evidence
    /// that make this alert one alert (see `model::alert::alert_id`).
    pub identity: Vec<String>,
}

/// A payment together with the state that applies to it at its event time.
#[derive(Clone, Copy, Debug)]
pub struct PaymentView<'a> {
    pub payment: &'a Payment,
    /// The newest roster record whose `updated_at` is not after `paid_at`.
    pub roster: Option<&'a RosterRecord>,
    /// The known death with the earliest `date_of_death`, if any.
    pub death: Option<&'a DeathRecord>,
    /// A custodian registration for this beneficiary that matches the
    /// receiving account (number and normalised name) on the paid day.
    pub custodian: Option<&'a Custodian>,
    /// The earliest death known of that custodian (by the registration's
    /// `id_no`), if any: `CUSTODIAN_DECEASED`.
    pub custodian_death: Option<&'a DeathRecord>,
    /// The local day of `paid_at`.
    pub paid_on: Date,
    pub tz: Tz,
    /// This beneficiary's earlier payments for the same `period`, any
    /// programme, reversed or not, in arrival order (empty when the engine
    /// re-checks an old payment against a late record).
    pub month: &'a [StoredPayment],
    /// Years whose `FILED_RELATIVE_REVIEW` this beneficiary already has.
    pub reviewed_years: &'a BTreeSet<i32>,
}

/// No years: for views of payments the engine re-checks.
pub static NO_YEARS: BTreeSet<i32> = BTreeSet::new();

impl PaymentView<'_> {
    /// A payment-level finding: one per offending payment (§6).
    pub fn finding(&self, rule: Rule, severity: Severity, reason: String) -> Finding {
        let p = self.payment;
        let mut evidence = Evidence { event_ids: vec![p.event_id.to_string()], ..Evidence::default() };
        evidence.figures.insert("amount".into(), p.amount.to_string());
        evidence.figures.insert("beneficiary_name".into(), p.beneficiary_name.to_string());
        Finding {
            rule,
            severity,
            township: p.township.to_string(),
            beneficiary_id: Some(p.beneficiary_id.as_str().to_owned()),
            household_id: Some(p.household_id.to_string()),
            account_no: Some(p.account_no.to_string()),
            period: Some(p.period),
            amount: Some(p.amount),
            evidence,
            reason,
            event_time: p.paid_at,
            identity: vec![p.event_id.to_string()],
        }
    }
}

/// Reference to a roster version in `evidence.record_ids` (roster records
/// carry no id of their own): `roster:<beneficiary_id>@<updated_at>`.
pub fn roster_ref(r: &RosterRecord, tz: Tz) -> String {
    format!("roster:{}@{}", r.beneficiary_id.as_str(), tz.format(r.updated_at))
}

/// `尾号1234`: how an account is named in a sentence.
pub fn account_tail(account_no: &str) -> String {
    let tail = &account_no[account_no.len().saturating_sub(4)..];
    format!("尾号{tail}")
}

#[cfg(test)]
pub mod testkit {
    //! Builders for detector unit tests.
    use super::*;
    use crate::model::{PaymentKind, PaymentType, PersonId, Program, Status};

    pub const BID: &str = "11010519491231002X";

    pub fn ts(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    pub fn day(s: &str) -> Date {
        Date::parse(s).unwrap()
    }

    pub fn payment(event_id: &str, period: &str, amount: &str, paid_at: &str) -> Payment {
        Payment {
            event_id: event_id.into(),
            kind: PaymentKind::Payment,
            reverses: None,
            beneficiary_id: PersonId::parse(BID).unwrap(),
            beneficiary_name: "张三".into(),
            household_id: "H1".into(),
            township: "水阳镇".into(),
            program: Program::RuralDibao,
            period: Period::parse(period).unwrap(),
            amount: Money::parse(amount).unwrap(),
            payment_type: PaymentType::Regular,
            account_no: "6217001234567890".into(),
            account_name: "张三".into(),
            bank: None,
            scheduled_at: day(&paid_at[..10]),
            paid_at: ts(paid_at),
        }
    }

    pub fn roster(status: Status, since: &str, updated_at: &str) -> RosterRecord {
        RosterRecord {
            beneficiary_id: PersonId::parse(BID).unwrap(),
            name: "张三".into(),
            household_id: "H1".into(),
            township: "水阳镇".into(),
            program: Program::RuralDibao,
            status,
            enrolled_at: day("2018-01-01"),
            status_since: day(since),
            monthly_amount: Money::parse("585.00").unwrap(),
            filed_relative: false,
            custodians: vec![],
            updated_at: ts(updated_at),
        }
    }

    pub fn view<'a>(p: &'a Payment, roster: Option<&'a RosterRecord>) -> PaymentView<'a> {
        let tz = Tz::default();
        PaymentView {
            payment: p,
            roster,
            death: None,
            custodian: None,
            custodian_death: None,
            paid_on: tz.date(p.paid_at),
            tz,
            month: &[],
            reviewed_years: &NO_YEARS,
        }
    }
}
