//! Vulnerable-persons records (contract §10 v1.1) as they arrive, and their
//! validation.

use super::fields::{Check, Scalar};
use super::{Limits, Reason, Rejection};
use crate::model::{VulnerableRecord, VulnerableSource};
use serde::Deserialize;

/// A vulnerable-persons record before validation. Unknown fields are
/// ignored.
#[derive(Debug, Default, Deserialize)]
pub struct RawVulnerable<'a> {
    #[serde(borrow)]
    pub record_id: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub person_id: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub name: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub household_id: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub township: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub source: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub category: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub flagged_at: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub cleared_at: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub updated_at: Option<Scalar<'a>>,
}

pub fn validate_vulnerable(r: &RawVulnerable<'_>, limits: Limits) -> Result<VulnerableRecord, Rejection> {
    let c = Check { limits };
    let record_id = c.req("record_id", &r.record_id)?;
    if record_id.chars().count() > 64 {
        return Err(Rejection::new(Reason::BadField, "record_id is longer than 64 characters"));
    }
    let person_id = c.person_id("person_id", &r.person_id)?;
    let name = c.req("name", &r.name)?.to_owned();
    let household_id = c.opt("household_id", &r.household_id)?.map(str::to_owned);
    let township = crate::model::name::township(c.req("township", &r.township)?);
    let source = c
        .enumerated("source", &r.source, VulnerableSource::CODES, VulnerableSource::from_code)?
        .ok_or_else(|| Rejection::new(Reason::MissingField, "source is required"))?;
    let category = c.req("category", &r.category)?;
    if !source.categories().contains(&category) {
        let shown: String = category.chars().take(40).collect();
        return Err(Rejection::new(
            Reason::UnknownEnum,
            format!("category {shown:?} is not one of {} for source {}", source.categories().join(", "), source.code()),
        ));
    }
    let flagged_at = c.date("flagged_at", &r.flagged_at)?;
    let cleared_at = match &r.cleared_at {
        None | Some(Scalar::Null) => None,
        Some(Scalar::Str(s)) if s.trim().is_empty() => None,
        v => Some(c.date("cleared_at", v)?),
    };
    let updated_at = c.event_time("updated_at", &r.updated_at)?;
    Ok(VulnerableRecord {
        record_id: record_id.to_owned(),
        person_id,
        name,
        household_id,
        township: township.to_string(),
        source,
        category: category.to_owned(),
        flagged_at,
        cleared_at,
        updated_at,
    })
}

#[cfg(test)]
mod tests {
    use crate::decode::{decode_json_str, Kind, Limits, Reason};
    use crate::model::Record;

    fn line(set: &[(&str, serde_json::Value)]) -> String {
        let mut v = serde_json::json!({
            "record_id": "CL-1", "person_id": "11010519491231002X", "name": "张三", "household_id": "H9",
            "township": "水阳镇 ", "source": "disability", "category": "grade_1", "flagged_at": "2020-03-01",
            "updated_at": "2020-03-02T10:00:00+08:00", "extra": true
        });
        for (k, x) in set {
            v[*k] = x.clone();
        }
        v.to_string()
    }

    fn reason(set: &[(&str, serde_json::Value)]) -> Reason {
        decode_json_str(Kind::Vulnerable, &line(set), Limits::default()).unwrap_err().reason
    }

    #[test]
    fn a_good_record_is_read_with_its_township_normalised() {
        let Record::Vulnerable(v) = decode_json_str(Kind::Vulnerable, &line(&[]), Limits::default()).unwrap() else { panic!() };
        assert_eq!((v.township.as_str(), v.category.as_str(), v.cleared_at), ("水阳镇", "grade_1", None));
        assert_eq!(v.household_id.as_deref(), Some("H9"));
        let no_household = line(&[("household_id", serde_json::Value::Null), ("cleared_at", "2021-01-01".into())]);
        let Record::Vulnerable(v) = decode_json_str(Kind::Vulnerable, &no_household, Limits::default()).unwrap() else { panic!() };
        assert_eq!(v.household_id, None);
        assert_eq!(v.cleared_at.map(|d| d.to_string()).as_deref(), Some("2021-01-01"));
    }

    #[test]
    fn bad_records_are_refused_with_their_reason() {
        use serde_json::json;
        assert_eq!(reason(&[("category", json!("grade_5"))]), Reason::UnknownEnum);
        assert_eq!(reason(&[("category", json!("unstable"))]), Reason::UnknownEnum, "a category of another source (§11.11)");
        assert_eq!(reason(&[("source", json!("police"))]), Reason::UnknownEnum);
        assert_eq!(reason(&[("person_id", json!("110105194912310021"))]), Reason::BadIdCheckDigit);
        assert_eq!(reason(&[("flagged_at", json!("2020-02-30"))]), Reason::BadDate);
        assert_eq!(reason(&[("record_id", json!("x".repeat(65)))]), Reason::BadField);
        assert_eq!(reason(&[("name", serde_json::Value::Null)]), Reason::MissingField);
        assert_eq!(reason(&[("updated_at", json!("2020-03-02"))]), Reason::BadDate);
    }
}
