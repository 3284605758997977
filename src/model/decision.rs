//! Cases (问题) and decisions (复核整改), contract §8: the case id formula
//! and the decision record as a type.

use super::{Money, Rule, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// `case_id`: the first 32 lowercase hex characters of SHA-256 over
/// `rule + "\x1f" + subject` (§8).
pub fn case_id(rule: Rule, subject: &str) -> String {
    let mut h = Sha256::new();
    h.update(rule.code().as_bytes());
    h.update([0x1f]);
    h.update(subject.as_bytes());
    hex::encode(&h.finalize()[..16])
}

/// What a supervisor concluded about a case; a case's status is its newest
/// decision's outcome (or `open`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// 核查中: being looked into.
    InProgress,
    /// 核实属实: the problem is real, not yet put right.
    Confirmed,
    /// 误报: not a problem; later alerts of the case are not sent to
    /// supervisors again.
    FalsePositive,
    /// 已整改: put right; a later alert is a relapse (反弹).
    Rectified,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [Outcome::InProgress, Outcome::Confirmed, Outcome::FalsePositive, Outcome::Rectified];

    pub fn code(self) -> &'static str {
        match self {
            Outcome::InProgress => "in_progress",
            Outcome::Confirmed => "confirmed",
            Outcome::FalsePositive => "false_positive",
            Outcome::Rectified => "rectified",
        }
    }

    pub fn from_code(s: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.code() == s)
    }

    pub fn chinese(self) -> &'static str {
        match self {
            Outcome::InProgress => "核查中",
            Outcome::Confirmed => "核实属实",
            Outcome::FalsePositive => "误报",
            Outcome::Rectified => "已整改",
        }
    }
}

/// What was done to rectify (required with `rectified`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// 停发.
    Stopped,
    /// 追回.
    Recovered,
    /// 更正信息.
    Corrected,
    /// 注销.
    Cancelled,
    /// 补办代管备案.
    CustodianRegistered,
    /// 其他.
    Other,
}

impl Action {
    pub const ALL: [Action; 6] =
        [Action::Stopped, Action::Recovered, Action::Corrected, Action::Cancelled, Action::CustodianRegistered, Action::Other];

    pub fn code(self) -> &'static str {
        match self {
            Action::Stopped => "stopped",
            Action::Recovered => "recovered",
            Action::Corrected => "corrected",
            Action::Cancelled => "cancelled",
            Action::CustodianRegistered => "custodian_registered",
            Action::Other => "other",
        }
    }

    pub fn from_code(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.code() == s)
    }

    pub fn chinese(self) -> &'static str {
        match self {
            Action::Stopped => "停发",
            Action::Recovered => "追回",
            Action::Corrected => "更正信息",
            Action::Cancelled => "注销",
            Action::CustodianRegistered => "补办代管备案",
            Action::Other => "其他",
        }
    }
}

/// One decision on one case (§8), validated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Unique: the same id twice with the same content is one decision.
    pub decision_id: String,
    /// The case; the formula of `rule` and `subject` (checked on decode).
    pub case_id: String,
    /// The case's rule: with `subject`, routes the decision to its case.
    pub rule: Rule,
    /// The case's subject (§8).
    pub subject: String,
    pub outcome: Outcome,
    /// Required with `rectified`.
    pub action: Option<Action>,
    /// 追回金额, CNY, >= 0.
    pub amount_recovered: Option<Money>,
    /// 整改文号.
    pub document_no: Option<String>,
    /// 问题线索 number handed to discipline inspection.
    pub clue_no: Option<String>,
    /// At most 2,000 characters.
    pub note: Option<String>,
    /// Who decided (a token's name when posted through the API).
    pub decided_by: String,
    /// The event time.
    pub decided_at: Timestamp,
}

/// The longest decision note, in characters (§8).
pub const MAX_NOTE_CHARS: usize = 2000;

#[cfg(test)]
mod tests {
    use super::*;

    /// The contract's example subject, and the formula by hand.
    #[test]
    fn case_id_is_the_contract_formula() {
        let id = case_id(Rule::PaidAfterDeath, "341802193806232054");
        let want = hex::encode(&Sha256::digest(b"PAID_AFTER_DEATH\x1f341802193806232054")[..16]);
        assert_eq!(id, want);
        assert_eq!(id.len(), 32);
        assert!(id.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
        assert_ne!(id, case_id(Rule::NameMismatch, "341802193806232054"));
    }

    #[test]
    fn codes_round_trip() {
        for o in Outcome::ALL {
            assert_eq!(Outcome::from_code(o.code()), Some(o));
            assert_eq!(serde_json::to_string(&o).unwrap(), format!("\"{}\"", o.code()));
        }
        for a in Action::ALL {
            assert_eq!(Action::from_code(a.code()), Some(a));
            assert_eq!(serde_json::to_string(&a).unwrap(), format!("\"{}\"", a.code()));
        }
    }
}
