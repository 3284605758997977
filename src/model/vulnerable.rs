//! Vulnerable persons shared by other departments (contract §10, v1.1):
//! the disability federation (残联), rural revitalisation's monitoring
//! (防返贫监测) and medical insurance (医保). Civil affairs looks back
//! (回头看) for the people among them who qualify and are not covered (漏保).

use super::time::Date;
use super::{PersonId, Timestamp};
use serde::{Deserialize, Serialize};

/// Which department flagged the person.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VulnerableSource {
    /// 残联: a disability certificate (`grade_1` … `grade_4`).
    Disability,
    /// 防返贫监测: `unstable`, `marginal`, `sudden_hardship`.
    PovertyMonitoring,
    /// 医保: `major_illness`, `chronic`.
    MedicalAid,
}

impl VulnerableSource {
    pub const CODES: &'static str = "disability, poverty_monitoring, medical_aid";

    pub fn from_code(s: &str) -> Option<VulnerableSource> {
        match s {
            "disability" => Some(VulnerableSource::Disability),
            "poverty_monitoring" => Some(VulnerableSource::PovertyMonitoring),
            "medical_aid" => Some(VulnerableSource::MedicalAid),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            VulnerableSource::Disability => "disability",
            VulnerableSource::PovertyMonitoring => "poverty_monitoring",
            VulnerableSource::MedicalAid => "medical_aid",
        }
    }

    /// The categories the contract lists for this source (§10); any other
    /// is dead-lettered `unknown_enum` (§11.11).
    pub fn categories(self) -> &'static [&'static str] {
        match self {
            VulnerableSource::Disability => &["grade_1", "grade_2", "grade_3", "grade_4"],
            VulnerableSource::PovertyMonitoring => &["unstable", "marginal", "sudden_hardship"],
            VulnerableSource::MedicalAid => &["major_illness", "chronic"],
        }
    }

    pub fn chinese(self) -> &'static str {
        match self {
            VulnerableSource::Disability => "残联",
            VulnerableSource::PovertyMonitoring => "防返贫监测",
            VulnerableSource::MedicalAid => "医保",
        }
    }
}

/// The Chinese name of a category, for reasons and the 摸排名单.
pub fn category_chinese(category: &str) -> &'static str {
    match category {
        "grade_1" => "一级残疾",
        "grade_2" => "二级残疾",
        "grade_3" => "三级残疾",
        "grade_4" => "四级残疾",
        "unstable" => "脱贫不稳定户",
        "marginal" => "边缘易致贫户",
        "sudden_hardship" => "突发严重困难户",
        "major_illness" => "重特大疾病",
        "chronic" => "慢性病",
        _ => "其他",
    }
}

/// One version of a vulnerable-persons record (§10); the newest for a
/// `record_id` (by `updated_at`) wins.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VulnerableRecord {
    pub record_id: String,
    /// Checked like `beneficiary_id`: the person looked for on the roster.
    pub person_id: PersonId,
    pub name: String,
    /// The civil-affairs household, when the department knows it: a
    /// covered member of it covers the person.
    pub household_id: Option<String>,
    /// Normalised (§1): routes the referral.
    pub township: String,
    pub source: VulnerableSource,
    /// One of `source.categories()`.
    pub category: String,
    /// When the condition was recorded: the deadline counts from here.
    pub flagged_at: Date,
    /// When it ended, if it did.
    pub cleared_at: Option<Date>,
    /// The event time.
    pub updated_at: Timestamp,
}
