//! The alert shape (feed-v1 §4) and the rule codes (§5).

use super::{Money, Period};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The ten rule codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Rule {
    NameMismatch,
    SharedAccount,
    FrequentPayments,
    LargeAmount,
    DuplicatePeriod,
    DisbursementDelay,
    MissedPayment,
    PaidAfterDeath,
    InactiveBeneficiary,
    FiledRelativeReview,
}

impl Rule {
    pub const ALL: [Rule; 10] = [
        Rule::NameMismatch,
        Rule::SharedAccount,
        Rule::FrequentPayments,
        Rule::LargeAmount,
        Rule::DuplicatePeriod,
        Rule::DisbursementDelay,
        Rule::MissedPayment,
        Rule::PaidAfterDeath,
        Rule::InactiveBeneficiary,
        Rule::FiledRelativeReview,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Rule::NameMismatch => "NAME_MISMATCH",
            Rule::SharedAccount => "SHARED_ACCOUNT",
            Rule::FrequentPayments => "FREQUENT_PAYMENTS",
            Rule::LargeAmount => "LARGE_AMOUNT",
            Rule::DuplicatePeriod => "DUPLICATE_PERIOD",
            Rule::DisbursementDelay => "DISBURSEMENT_DELAY",
            Rule::MissedPayment => "MISSED_PAYMENT",
            Rule::PaidAfterDeath => "PAID_AFTER_DEATH",
            Rule::InactiveBeneficiary => "INACTIVE_BENEFICIARY",
            Rule::FiledRelativeReview => "FILED_RELATIVE_REVIEW",
        }
    }

    pub fn from_code(s: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.code() == s)
    }

    /// What the rule is called on a supervisor's form.
    pub fn chinese(self) -> &'static str {
        match self {
            Rule::NameMismatch => "户名不符",
            Rule::SharedAccount => "一卡多户",
            Rule::FrequentPayments => "频繁入账",
            Rule::LargeAmount => "大额发放",
            Rule::DuplicatePeriod => "重复发放",
            Rule::DisbursementDelay => "发放滞后",
            Rule::MissedPayment => "应发未发",
            Rule::PaidAfterDeath => "死亡后发放",
            Rule::InactiveBeneficiary => "停保/注销后发放",
            Rule::FiledRelativeReview => "干部亲属备案复核",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
}

impl Severity {
    pub fn code(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }
}

/// Why an alert fired: the payments, the records, and the figures compared.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// The payments that made it fire, so a supervisor can pull them up.
    pub event_ids: Vec<String>,
    /// Death `record_id`s and roster versions involved.
    pub record_ids: Vec<String>,
    /// The values compared, as strings (no floats anywhere).
    pub figures: BTreeMap<String, String>,
}

/// One alert, exactly the contract's shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// Deterministic: the same finding on every replay and instance.
    pub alert_id: String,
    /// Which rule fired.
    pub rule: Rule,
    /// How urgently a supervisor should look.
    pub severity: Severity,
    /// Routes the alert to the township's supervisor.
    pub township: String,
    /// The subject, where it applies (not for account-level rules).
    pub beneficiary_id: Option<String>,
    /// The subject's household, where it applies.
    pub household_id: Option<String>,
    /// The receiving account, where it applies.
    pub account_no: Option<String>,
    /// The benefit month, where one applies.
    pub period: Option<Period>,
    /// The money concerned, where it applies.
    pub amount: Option<Money>,
    /// What it fired on.
    pub evidence: Evidence,
    /// One Chinese sentence with the figures.
    pub reason: String,
    /// RFC 3339: event time of the newest evidence.
    pub event_time: String,
    /// RFC 3339: wall-clock time of detection.
    pub detected_at: String,
}

/// The deterministic alert id: SHA-256 over the rule code and the identity
/// parts (subject and evidence), hex, 32 characters.
///
/// The identity parts are chosen per rule so that the id follows the
/// contract's granularity (§6): one per offending payment, one per account
/// episode, one per beneficiary and month or year.
pub fn alert_id(rule: Rule, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    h.update(rule.code().as_bytes());
    for p in parts {
        h.update([0x1f]);
        h.update(p.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_deterministic_and_distinct() {
        let a = alert_id(Rule::NameMismatch, &["E1"]);
        assert_eq!(a, alert_id(Rule::NameMismatch, &["E1"]));
        assert_ne!(a, alert_id(Rule::LargeAmount, &["E1"]));
        assert_ne!(alert_id(Rule::NameMismatch, &["E1", "2"]), alert_id(Rule::NameMismatch, &["E12"]));
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn rule_codes_round_trip() {
        for r in Rule::ALL {
            assert_eq!(Rule::from_code(r.code()), Some(r));
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{}\"", r.code()));
        }
    }
}
