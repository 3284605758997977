//! `truth.json`: what a generated ledger must and must not raise.

use crate::model::{Alert, Rule};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One alert the ledger was built to raise.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expected {
    pub rule: Rule,
    /// See [`truth_key`].
    pub key: String,
    /// What was planted, in words.
    pub case: String,
}

/// A case built to look suspicious that must raise nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Control {
    pub case: String,
    /// The beneficiary or account concerned.
    pub subject: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Truth {
    pub seed: u64,
    pub households: usize,
    pub from: String,
    pub to: String,
    pub expected: Vec<Expected>,
    pub controls: Vec<Control>,
    /// Dead letters by reason code.
    pub dead_letters: BTreeMap<String, u64>,
    /// Lines that repeat an earlier record (payments by `event_id`,
    /// decisions by `decision_id`).
    pub redelivered: u64,
    /// Decision lines written (the rectification ledger).
    #[serde(default)]
    pub decision_records: u64,
    /// Vulnerable-persons lines written (§10).
    #[serde(default)]
    pub vulnerable_records: u64,
    pub roster_records: u64,
    pub death_records: u64,
    pub payment_events: u64,
}

/// How an alert is matched to the truth, independent of its id:
/// `RULE:event` for payment-level rules (the offending payment, the first of
/// `evidence.event_ids`), `RULE:account:event` for account-level rules (the
/// payment that crossed the threshold, the newest in the evidence),
/// `MISSED_PAYMENT:beneficiary:month`,
/// `FILED_RELATIVE_REVIEW:beneficiary:year`,
/// `RECTIFICATION_RELAPSE:case:decision` and
/// `CUSTODIAN_OVERLOAD:custodian_id_no:beneficiary@updated_at` (the
/// roster record that crossed) and `COVERAGE_GAP:person:record_id`.
pub fn truth_key(a: &Alert) -> String {
    let first = a.evidence.event_ids.first().map(String::as_str).unwrap_or("");
    let last = a.evidence.event_ids.last().map(String::as_str).unwrap_or("");
    let bid = a.beneficiary_id.as_deref().unwrap_or("");
    match a.rule {
        Rule::SharedAccount | Rule::FrequentPayments => {
            format!("{}:{}:{}", a.rule.code(), a.account_no.as_deref().unwrap_or(""), last)
        }
        Rule::MissedPayment => format!("{}:{}:{}", a.rule.code(), bid, a.period.map(|p| p.to_string()).unwrap_or_default()),
        Rule::FiledRelativeReview => {
            format!("{}:{}:{}", a.rule.code(), bid, a.evidence.figures.get("year").map(String::as_str).unwrap_or(""))
        }
        Rule::CoverageGap => {
            format!("{}:{}:{}", a.rule.code(), bid, a.evidence.record_ids.first().map(String::as_str).unwrap_or(""))
        }
        Rule::CustodianOverload => {
            let f = |k: &str| a.evidence.figures.get(k).map(String::as_str).unwrap_or("");
            format!("{}:{}:{}", a.rule.code(), f("custodian_id_no"), f("applied_record"))
        }
        Rule::RectificationRelapse => {
            format!("{}:{}:{}", a.rule.code(), a.case_id, a.evidence.record_ids.first().map(String::as_str).unwrap_or(""))
        }
        _ => format!("{}:{}", a.rule.code(), first),
    }
}
