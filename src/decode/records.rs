//! The three record kinds as they arrive (every field optional and untyped)
//! and their validation into model records.

use super::fields::{check_account_no, parse_date, Check, Scalar};
use super::{Limits, Reason, Rejection};
use crate::model::time::Date;
use crate::model::{
    Custodian, DeathRecord, DeathSource, Payment, PaymentKind, PaymentType, Program, RosterRecord,
    Status, Text,
};
use serde::Deserialize;

const PROGRAMS: &str = "rural_dibao, urban_dibao, tekun, temporary_relief";

/// A payment event before validation. Unknown fields are ignored.
#[derive(Debug, Default, Deserialize)]
pub struct RawPayment<'a> {
    #[serde(borrow)]
    pub event_id: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub kind: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub reverses: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub beneficiary_id: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub beneficiary_name: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub household_id: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub township: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub program: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub period: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub amount: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub payment_type: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub account_no: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub account_name: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub bank: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub scheduled_at: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub paid_at: Option<Scalar<'a>>,
}

impl<'a> RawPayment<'a> {
    /// The payment serde would read from a flat line of plain strings
    /// (see `flat`; unknown keys ignored); `None` for any other line, and
    /// for a key given twice, which serde refuses.
    pub fn from_flat(text: &'a str) -> Option<RawPayment<'a>> {
        let mut r = RawPayment::default();
        super::flat::plain_object(text, |k, v| {
            let field = match k {
                "event_id" => &mut r.event_id,
                "kind" => &mut r.kind,
                "reverses" => &mut r.reverses,
                "beneficiary_id" => &mut r.beneficiary_id,
                "beneficiary_name" => &mut r.beneficiary_name,
                "household_id" => &mut r.household_id,
                "township" => &mut r.township,
                "program" => &mut r.program,
                "period" => &mut r.period,
                "amount" => &mut r.amount,
                "payment_type" => &mut r.payment_type,
                "account_no" => &mut r.account_no,
                "account_name" => &mut r.account_name,
                "bank" => &mut r.bank,
                "scheduled_at" => &mut r.scheduled_at,
                "paid_at" => &mut r.paid_at,
                _ => return Some(()),
            };
            match field.replace(Scalar::Str(std::borrow::Cow::Borrowed(v))) {
                Some(_) => None,
                None => Some(()),
            }
        })?;
        Some(r)
    }
}

pub fn validate_payment(r: &RawPayment<'_>, limits: Limits) -> Result<Payment, Rejection> {
    let c = Check { limits };
    let event_id = match &r.event_id {
        Some(Scalar::Str(s)) if s.len() > 64 && s.chars().count() > 64 => {
            return Err(Rejection::new(Reason::BadEventId, "event_id must be 1-64 characters"))
        }
        v => Text::from(c.req("event_id", v)?),
    };
    let kind = c
        .enumerated("kind", &r.kind, "payment, reversal", |s| match s {
            "payment" => Some(PaymentKind::Payment),
            "reversal" => Some(PaymentKind::Reversal),
            _ => None,
        })?
        .unwrap_or(PaymentKind::Payment);
    let reverses = c.opt("reverses", &r.reverses)?.map(Text::from);
    match (kind, &reverses) {
        (PaymentKind::Reversal, None) => {
            return Err(Rejection::new(Reason::BadReversal, "a reversal must name the event_id it reverses"))
        }
        (PaymentKind::Reversal, Some(t)) if *t == event_id => {
            return Err(Rejection::new(Reason::BadReversal, "a reversal cannot reverse itself"))
        }
        (PaymentKind::Payment, Some(_)) => {
            return Err(Rejection::new(Reason::BadReversal, "reverses is only allowed when kind is reversal"))
        }
        _ => {}
    }
    let beneficiary_id = c.person_id("beneficiary_id", &r.beneficiary_id)?;
    let beneficiary_name = Text::from(c.req("beneficiary_name", &r.beneficiary_name)?);
    let household_id = Text::from(c.req("household_id", &r.household_id)?);
    let township = crate::model::name::township(c.req("township", &r.township)?);
    let program = c
        .enumerated("program", &r.program, PROGRAMS, Program::from_code)?
        .ok_or_else(|| Rejection::new(Reason::MissingField, "program is required"))?;
    let period = c.period("period", &r.period)?;
    let amount = c.money("amount", &r.amount, true)?;
    let payment_type = c
        .enumerated("payment_type", &r.payment_type, "regular, back_pay, one_off", PaymentType::from_code)?
        .unwrap_or(PaymentType::Regular);
    let account_no = Text::from(c.account_no("account_no", &r.account_no)?);
    let account_name = Text::from(c.req("account_name", &r.account_name)?);
    let bank = c.opt("bank", &r.bank)?.map(Text::from);
    let scheduled_at = c.date("scheduled_at", &r.scheduled_at)?;
    let paid_at = c.event_time("paid_at", &r.paid_at)?;
    Ok(Payment {
        event_id,
        kind,
        reverses,
        beneficiary_id,
        beneficiary_name,
        household_id,
        township,
        program,
        period,
        amount,
        payment_type,
        account_no,
        account_name,
        bank,
        scheduled_at,
        paid_at,
    })
}

/// A roster record before validation.
#[derive(Debug, Default, Deserialize)]
pub struct RawRoster<'a> {
    #[serde(borrow)]
    pub beneficiary_id: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub name: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub household_id: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub township: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub program: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub status: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub enrolled_at: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub status_since: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub monthly_amount: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub filed_relative: Option<Scalar<'a>>,
    /// Kept as JSON: a list of objects (in CSV, a JSON string column).
    pub custodians: Option<serde_json::Value>,
    #[serde(borrow)]
    pub updated_at: Option<Scalar<'a>>,
}

pub fn validate_roster(r: &RawRoster<'_>, limits: Limits) -> Result<RosterRecord, Rejection> {
    let c = Check { limits };
    let beneficiary_id = c.person_id("beneficiary_id", &r.beneficiary_id)?;
    let name = c.req("name", &r.name)?.to_owned();
    let household_id = c.req("household_id", &r.household_id)?.to_owned();
    let township = crate::model::name::township(c.req("township", &r.township)?).to_string();
    let program = c
        .enumerated("program", &r.program, PROGRAMS, Program::from_code)?
        .ok_or_else(|| Rejection::new(Reason::MissingField, "program is required"))?;
    let status = c
        .enumerated("status", &r.status, "active, suspended, cancelled", Status::from_code)?
        .ok_or_else(|| Rejection::new(Reason::MissingField, "status is required"))?;
    let enrolled_at = c.date("enrolled_at", &r.enrolled_at)?;
    let status_since = c.date("status_since", &r.status_since)?;
    let monthly_amount = c.money("monthly_amount", &r.monthly_amount, false)?;
    let filed_relative = c.boolean("filed_relative", &r.filed_relative)?;
    let custodians = custodians(r.custodians.as_ref(), limits)?;
    let updated_at = c.event_time("updated_at", &r.updated_at)?;
    Ok(RosterRecord {
        beneficiary_id,
        name,
        household_id,
        township,
        program,
        status,
        enrolled_at,
        status_since,
        monthly_amount,
        filed_relative,
        custodians,
        updated_at,
    })
}

fn custodians(v: Option<&serde_json::Value>, limits: Limits) -> Result<Vec<Custodian>, Rejection> {
    use serde_json::Value;
    let bad = |d: String| Rejection::new(Reason::BadCustodians, d);
    let list = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(Vec::new()),
        // CSV carries the list as a JSON string; so may a careless producer.
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Array(a)) => a,
            Ok(Value::Null) => return Ok(Vec::new()),
            _ => return Err(bad("custodians must be a JSON list of {name, account_no, registered_at, revoked_at?, id_no?}".into())),
        },
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return Err(bad("custodians must be a list".into())),
    };
    if list.len() > 64 {
        return Err(bad("custodians has more than 64 entries".into()));
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let obj = item.as_object().ok_or_else(|| bad(format!("custodians[{i}] must be an object")))?;
        let text = |k: &str| -> Result<Option<&str>, Rejection> {
            match obj.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
                Some(Value::String(s)) if s.chars().count() > limits.max_field_chars => {
                    Err(bad(format!("custodians[{i}].{k} is too long")))
                }
                Some(Value::String(s)) => Ok(Some(s)),
                Some(_) => Err(bad(format!("custodians[{i}].{k} must be a string"))),
            }
        };
        let name = text("name")?.ok_or_else(|| bad(format!("custodians[{i}].name is required")))?;
        let account_no =
            text("account_no")?.ok_or_else(|| bad(format!("custodians[{i}].account_no is required")))?;
        check_account_no("account_no", account_no)
            .map_err(|_| bad(format!("custodians[{i}].account_no must be 12-19 digits")))?;
        let day = |k: &str| -> Result<Option<Date>, Rejection> {
            match text(k)? {
                None => Ok(None),
                Some(s) => custodian_day(s)
                    .map(Some)
                    .map_err(|_| bad(format!("custodians[{i}].{k} {s:?} is not a date YYYY-MM-DD"))),
            }
        };
        let registered_at =
            day("registered_at")?.ok_or_else(|| bad(format!("custodians[{i}].registered_at is required")))?;
        let revoked_at = day("revoked_at")?;
        if revoked_at.is_some_and(|r| r < registered_at) {
            return Err(bad(format!("custodians[{i}].revoked_at is before registered_at")));
        }
        // §11.9: a bad custodian id_no refuses the whole record, as a bad
        // beneficiary_id does.
        let id_no = match text("id_no")? {
            None => None,
            Some(s) => Some(super::fields::person_id(&format!("custodians[{i}].id_no"), s.trim())?),
        };
        out.push(Custodian { name: name.to_owned(), account_no: account_no.to_owned(), registered_at, revoked_at, id_no });
    }
    Ok(out)
}

/// The contract does not type the custodian dates; a date is expected, and an
/// RFC 3339 timestamp is accepted for its written (local) day.
fn custodian_day(s: &str) -> Result<Date, Rejection> {
    if s.len() > 10 && crate::model::Timestamp::parse_rfc3339(s).is_some() {
        return parse_date("date", &s[..10]);
    }
    parse_date("date", s)
}

/// A death record before validation.
#[derive(Debug, Default, Deserialize)]
pub struct RawDeath<'a> {
    #[serde(borrow)]
    pub record_id: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub person_id: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub name: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub date_of_death: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub source: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub reported_at: Option<Scalar<'a>>,
}

pub fn validate_death(r: &RawDeath<'_>, limits: Limits) -> Result<DeathRecord, Rejection> {
    let c = Check { limits };
    let record_id = c.req("record_id", &r.record_id)?.to_owned();
    let person_id = c.person_id("person_id", &r.person_id)?;
    let name = c.req("name", &r.name)?.to_owned();
    let date_of_death = c.date("date_of_death", &r.date_of_death)?;
    let source = c
        .enumerated("source", &r.source, "funeral_home, hospital, police, village", DeathSource::from_code)?
        .ok_or_else(|| Rejection::new(Reason::MissingField, "source is required"))?;
    let reported_at = c.event_time("reported_at", &r.reported_at)?;
    Ok(DeathRecord { record_id, person_id, name, date_of_death, source, reported_at })
}
