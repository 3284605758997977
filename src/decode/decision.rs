//! Decision records (contract §8 v1.1) as they arrive, and their validation.

use super::fields::{Check, Scalar};
use super::{Limits, Reason, Rejection};
use crate::model::decision::{case_id, Action, Decision, Outcome, MAX_NOTE_CHARS};
use crate::model::Rule;
use serde::Deserialize;

/// A decision before validation. Unknown fields are ignored.
#[derive(Debug, Default, Deserialize)]
pub struct RawDecision<'a> {
    #[serde(borrow)]
    pub decision_id: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub case_id: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub rule: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub subject: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub outcome: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub action: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub amount_recovered: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub document_no: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub clue_no: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub note: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub decided_by: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub decided_at: Option<Scalar<'a>>,
}

const OUTCOMES: &str = "in_progress, confirmed, false_positive, rectified";
const ACTIONS: &str = "stopped, recovered, corrected, cancelled, custodian_registered, other";

pub fn validate_decision(r: &RawDecision<'_>, limits: Limits) -> Result<Decision, Rejection> {
    let c = Check { limits };
    let decision_id = c.req("decision_id", &r.decision_id)?;
    if decision_id.chars().count() > 64 {
        return Err(Rejection::new(Reason::BadField, "decision_id is longer than 64 characters"));
    }
    let case = c.req("case_id", &r.case_id)?;
    if case.len() != 32 || !case.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        let shown: String = case.chars().take(40).collect();
        return Err(Rejection::new(Reason::BadCaseId, format!("case_id {shown:?} is not 32 lowercase hex characters")));
    }
    let codes = || crate::detect::registry::RULES.iter().map(|r| r.code).collect::<Vec<_>>().join(", ");
    let code = c.req("rule", &r.rule)?;
    let rule = Rule::from_code(code).ok_or_else(|| {
        let shown: String = code.chars().take(40).collect();
        Rejection::new(Reason::UnknownEnum, format!("rule {shown:?} is not one of {}", codes()))
    })?;
    let subject = c.req("subject", &r.subject)?;
    let want = case_id(rule, subject);
    if case != want {
        return Err(Rejection::new(
            Reason::BadCaseId,
            format!("case_id {case} is not the case of rule {} and subject {subject:?} ({want})", rule.code()),
        ));
    }
    let outcome = c
        .enumerated("outcome", &r.outcome, OUTCOMES, Outcome::from_code)?
        .ok_or_else(|| Rejection::new(Reason::MissingField, "outcome is required"))?;
    let action = c.enumerated("action", &r.action, ACTIONS, Action::from_code)?;
    if outcome == Outcome::Rectified && action.is_none() {
        return Err(Rejection::new(Reason::MissingField, "action is required when outcome is rectified"));
    }
    let amount_recovered = match &r.amount_recovered {
        None | Some(Scalar::Null) => None,
        Some(Scalar::Str(s)) if s.trim().is_empty() => None,
        v => {
            let m = c.money("amount_recovered", v, false)?;
            if m.decimal().is_sign_negative() && !m.decimal().is_zero() {
                return Err(Rejection::new(Reason::BadAmount, format!("amount_recovered {m} must not be negative")));
            }
            Some(m)
        }
    };
    let document_no = c.opt("document_no", &r.document_no)?.map(str::to_owned);
    let clue_no = c.opt("clue_no", &r.clue_no)?.map(str::to_owned);
    let long = Check { limits: Limits { max_field_chars: MAX_NOTE_CHARS, ..limits } };
    let note = long.opt("note", &r.note)?.map(str::to_owned);
    let decided_by = c.req("decided_by", &r.decided_by)?.to_owned();
    let decided_at = c.event_time("decided_at", &r.decided_at)?;
    Ok(Decision {
        decision_id: decision_id.to_owned(),
        case_id: want,
        rule,
        subject: subject.to_owned(),
        outcome,
        action,
        amount_recovered,
        document_no,
        clue_no,
        note,
        decided_by,
        decided_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{decode_json_str, Kind};
    use crate::model::Record;

    const SUBJECT: &str = "341802193806232054";

    fn line(set: &[(&str, serde_json::Value)]) -> String {
        let mut v = serde_json::json!({
            "decision_id": "D1", "case_id": case_id(Rule::PaidAfterDeath, SUBJECT), "rule": "PAID_AFTER_DEATH",
            "subject": SUBJECT, "outcome": "rectified", "action": "recovered", "amount_recovered": "1170.00",
            "document_no": "水民〔2021〕12号", "note": "已追回", "decided_by": "水阳镇民政办",
            "decided_at": "2021-06-01T10:00:00+08:00", "extra": 1
        });
        for (k, val) in set {
            if val.is_null() {
                v.as_object_mut().unwrap().remove(*k);
            } else {
                v[*k] = val.clone();
            }
        }
        v.to_string()
    }

    fn reason(set: &[(&str, serde_json::Value)]) -> Reason {
        decode_json_str(Kind::Decision, &line(set), Limits::default()).unwrap_err().reason
    }

    #[test]
    fn a_contract_decision_decodes() {
        let Record::Decision(d) = decode_json_str(Kind::Decision, &line(&[]), Limits::default()).unwrap() else { panic!() };
        assert_eq!(d.rule, Rule::PaidAfterDeath);
        assert_eq!(d.outcome, Outcome::Rectified);
        assert_eq!(d.action, Some(Action::Recovered));
        assert_eq!(d.amount_recovered.unwrap().to_string(), "1170.00");
        assert_eq!(d.case_id, case_id(Rule::PaidAfterDeath, SUBJECT));
    }

    #[test]
    fn every_bad_decision_has_its_reason() {
        use serde_json::json;
        assert_eq!(reason(&[("case_id", json!("ABC"))]), Reason::BadCaseId);
        let upper = case_id(Rule::PaidAfterDeath, SUBJECT).to_uppercase();
        assert_eq!(reason(&[("case_id", json!(upper))]), Reason::BadCaseId, "lowercase only (§11.5)");
        assert_eq!(reason(&[("subject", json!("341802193806232055"))]), Reason::BadCaseId, "not the formula");
        assert_eq!(reason(&[("rule", json!("SOMETHING"))]), Reason::UnknownEnum);
        assert_eq!(reason(&[("outcome", json!("closed"))]), Reason::UnknownEnum);
        assert_eq!(reason(&[("action", serde_json::Value::Null)]), Reason::MissingField);
        assert_eq!(reason(&[("action", json!("burned"))]), Reason::UnknownEnum);
        assert_eq!(reason(&[("amount_recovered", json!("-1.00"))]), Reason::BadAmount);
        assert_eq!(reason(&[("amount_recovered", json!(5))]), Reason::BadAmount);
        assert_eq!(reason(&[("note", json!("字".repeat(2001)))]), Reason::BadField);
        assert_eq!(reason(&[("decided_by", serde_json::Value::Null)]), Reason::MissingField);
        assert_eq!(reason(&[("decided_at", json!("2021-06-01"))]), Reason::BadDate);
        assert_eq!(reason(&[("decision_id", json!("x".repeat(65)))]), Reason::BadField);
        // Not rectified: no action needed; a long note up to 2,000 is fine.
        let ok = line(&[("outcome", json!("in_progress")), ("action", serde_json::Value::Null), ("note", json!("字".repeat(2000)))]);
        assert!(decode_json_str(Kind::Decision, &ok, Limits::default()).is_ok());
        let zero = line(&[("amount_recovered", json!("0.00"))]);
        assert!(decode_json_str(Kind::Decision, &zero, Limits::default()).is_ok());
    }
}
