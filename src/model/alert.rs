//! The alert shape (feed-v1 §4) and the rule codes (§5).

use super::{Money, Period};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The rule codes (§5); each is described once, in `detect::registry::RULES`,
/// which this enum indexes (`rule as usize`).
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
    ProgramOverlap,
    RectificationRelapse,
    // v1.1 rules added after the first v1.1 release are appended: cases
    // store the rule by its place here.
    CustodianOverload,
    CustodianDeceased,
    CoverageGap,
}

// `Rule::ALL`, `code`, `chinese` and the rest are read off the registry
// (`detect::registry`), the one place that knows the rules.

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
    /// The case this alert belongs to (§8): `model::decision::case_id` of
    /// its rule and subject (a relapse's: the case that relapsed). Alerts
    /// stored before v1.1 have none until the state upgrade gives it.
    #[serde(default)]
    pub case_id: String,
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

}
