//! `COVERAGE_GAP` (疑似漏保, contract §10, §11.10): a person another
//! department flagged as vulnerable, in a qualifying category, still not
//! covered `grace_days` after being flagged. Decided when the watermark
//! passes the deadline d = `flagged_at` + `grace_days` at 00:00 +08:00,
//! like `MISSED_PAYMENT`, so a replay decides it identically. It is a
//! referral for a home visit (摸排核查), not an accusation.

use super::Finding;
use crate::model::time::{Date, Tz};
use crate::model::vulnerable::category_chinese;
use crate::model::{Evidence, Program, RosterRecord, Rule, Severity, Status, Timestamp, VulnerableRecord, VulnerableSource};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub enabled: bool,
    pub severity: Severity,
    /// Days after `flagged_at` the person has to be covered.
    pub grace_days: u32,
    /// The qualifying categories, as `source:category`.
    pub qualifying: Vec<String>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            enabled: true,
            severity: Severity::Low,
            grace_days: 90,
            qualifying: [
                "disability:grade_1",
                "disability:grade_2",
                "poverty_monitoring:unstable",
                "poverty_monitoring:marginal",
                "poverty_monitoring:sudden_hardship",
                "medical_aid:major_illness",
            ]
            .map(str::to_owned)
            .to_vec(),
        }
    }
}

impl Config {
    pub fn validate(&self) -> Result<(), String> {
        if self.grace_days > 3650 {
            return Err("grace_days: at most 3650".into());
        }
        for q in &self.qualifying {
            let known = q
                .split_once(':')
                .and_then(|(s, c)| VulnerableSource::from_code(s).map(|s| s.categories().contains(&c)))
                .unwrap_or(false);
            if !known {
                return Err(format!("qualifying: {q:?} is not source:category of contract §10 (e.g. \"disability:grade_1\")"));
            }
        }
        Ok(())
    }

    /// Whether the record's category qualifies.
    pub fn qualifies(&self, v: &VulnerableRecord) -> bool {
        self.qualifying.iter().any(|q| q.split_once(':') == Some((v.source.code(), v.category.as_str())))
    }

    /// The deadline of a record flagged on `flagged_at`: 00:00 +08:00 of
    /// `flagged_at` + `grace_days`.
    pub fn deadline(&self, tz: Tz, flagged_at: Date) -> Timestamp {
        tz.day_start(flagged_at.plus_days(i64::from(self.grace_days)))
    }
}

/// Whether a roster record covers its beneficiary: `active` in a monthly
/// programme (`rural_dibao`, `urban_dibao`, `tekun`).
pub fn covers(r: &RosterRecord) -> bool {
    r.status == Status::Active && matches!(r.program, Program::RuralDibao | Program::UrbanDibao | Program::Tekun)
}

/// Whether the record is still open at d: not cleared by then (`cleared_at`
/// absent or after the day of d).
pub fn open_at(v: &VulnerableRecord, d: Timestamp, tz: Tz) -> bool {
    v.cleared_at.is_none_or(|c| c > tz.date(d))
}

/// The referral at deadline `d`.
pub fn finding(cfg: &Config, v: &VulnerableRecord, d: Timestamp, tz: Tz) -> Finding {
    let mut evidence = Evidence { record_ids: vec![v.record_id.clone()], ..Evidence::default() };
    for (k, x) in [
        ("person_name", v.name.clone()),
        ("source", v.source.code().to_owned()),
        ("category", v.category.clone()),
        ("flagged_at", v.flagged_at.to_string()),
        ("deadline", tz.format(d)),
        ("grace_days", cfg.grace_days.to_string()),
    ] {
        evidence.figures.insert(k.into(), x);
    }
    let reason = format!(
        "{}推送的\"{}\"（{}）于{}登记，{}天后仍未纳入低保或特困供养，疑似漏保，请入户摸排核查（转介核查，并非违规认定）",
        v.source.chinese(),
        v.name,
        category_chinese(&v.category),
        v.flagged_at,
        cfg.grace_days
    );
    Finding {
        rule: Rule::CoverageGap,
        severity: cfg.severity,
        township: v.township.clone(),
        beneficiary_id: Some(v.person_id.as_str().to_owned()),
        household_id: v.household_id.clone(),
        account_no: None,
        period: None,
        amount: None,
        evidence,
        reason,
        event_time: d,
        identity: vec![v.person_id.as_str().to_owned(), v.record_id.clone()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testkit::*;
    use crate::model::PersonId;

    fn record(source: VulnerableSource, category: &str) -> VulnerableRecord {
        VulnerableRecord {
            record_id: "CL-1".into(),
            person_id: PersonId::parse(BID).unwrap(),
            name: "张三".into(),
            household_id: Some("H9".into()),
            township: "水阳镇".into(),
            source,
            category: category.into(),
            flagged_at: day("2020-03-01"),
            cleared_at: None,
            updated_at: ts("2020-03-02T10:00:00+08:00"),
        }
    }

    #[test]
    fn qualifying_categories_and_the_deadline() {
        let cfg = Config::default();
        assert!(cfg.qualifies(&record(VulnerableSource::Disability, "grade_2")));
        assert!(!cfg.qualifies(&record(VulnerableSource::Disability, "grade_3")));
        assert!(cfg.qualifies(&record(VulnerableSource::PovertyMonitoring, "marginal")));
        assert!(!cfg.qualifies(&record(VulnerableSource::MedicalAid, "chronic")));
        // 2020-03-01 + 90 days = 2020-05-30, at 00:00 +08:00.
        assert_eq!(cfg.deadline(Tz::default(), day("2020-03-01")), ts("2020-05-30T00:00:00+08:00"));
        assert!(Config { qualifying: vec!["disability:grade_9".into()], ..Config::default() }.validate().is_err());
        assert!(Config { qualifying: vec!["medical_aid".into()], ..Config::default() }.validate().is_err());
    }

    #[test]
    fn cleared_on_the_deadline_day_is_not_open_and_the_referral_says_what_it_is() {
        let tz = Tz::default();
        let d = ts("2020-05-30T00:00:00+08:00");
        let mut v = record(VulnerableSource::Disability, "grade_1");
        assert!(open_at(&v, d, tz));
        v.cleared_at = Some(day("2020-05-31"));
        assert!(open_at(&v, d, tz), "cleared after d");
        v.cleared_at = Some(day("2020-05-30"));
        assert!(!open_at(&v, d, tz), "cleared on the day of d is not after d");
        let f = finding(&Config::default(), &record(VulnerableSource::Disability, "grade_1"), d, tz);
        assert_eq!((f.event_time, f.evidence.record_ids.clone()), (d, vec!["CL-1".to_owned()]));
        assert_eq!(f.beneficiary_id.as_deref(), Some(BID));
        assert!(f.reason.contains("疑似漏保") && f.reason.contains("并非违规认定") && f.reason.contains("一级残疾"), "{}", f.reason);
        let mut roster = roster(Status::Active, "2018-01-01", "2018-01-01T08:00:00+08:00");
        assert!(covers(&roster));
        roster.program = Program::TemporaryRelief;
        assert!(!covers(&roster), "temporary relief does not cover");
    }
}
