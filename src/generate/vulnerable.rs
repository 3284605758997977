//! The vulnerable-persons input (contract §10) of a generated district:
//! people other departments flagged, planted `COVERAGE_GAP` referrals and
//! the controls that must stay silent (enrolled in time, covered through
//! the household, cleared, not qualifying, flagged too recently), plus the
//! lines that must be dead-lettered.

use super::district::{Bene, Builder};
use super::plant::Role;
use super::write::{vulnerable_json, Line};
use crate::model::time::Date;
use crate::model::{PersonId, Period, Rule, VulnerableRecord, VulnerableSource};
use serde_json::{json, Value};

fn record(bd: &mut Builder, id: &str, name: &str, household: Option<&str>, township: &str, category: &str, flagged_at: Date) -> VulnerableRecord {
    let n = bd.vulnerable.len() + 1;
    let source = match category {
        "unstable" | "marginal" | "sudden_hardship" => VulnerableSource::PovertyMonitoring,
        "major_illness" | "chronic" => VulnerableSource::MedicalAid,
        _ => VulnerableSource::Disability,
    };
    VulnerableRecord {
        record_id: format!("VUL{n:06}"),
        person_id: PersonId::parse(id).expect("generated ids are valid"),
        name: name.to_owned(),
        household_id: household.map(str::to_owned),
        township: township.to_owned(),
        source,
        category: category.to_owned(),
        flagged_at,
        cleared_at: None,
        updated_at: bd.at(flagged_at.plus_days(1), 9, 30),
    }
}

/// Builds one vulnerable-persons role; `b` and `m` are the planting's
/// beneficiary and month.
pub(super) fn plant(bd: &mut Builder, role: Role, b: Bene, m: Period) {
    let (id, name) = (bd.people.id(), bd.people.name());
    let flagged = Builder::day(m, 5);
    match role {
        Role::CoverageGap => {
            let v = record(bd, &id, &name, None, b.township, "grade_1", flagged);
            let key = format!("COVERAGE_GAP:{id}:{}", v.record_id);
            bd.vulnerable.push(v);
            bd.expect(Rule::CoverageGap, key, "a person with a grade 1 disability never covered");
        }
        Role::VulnerableEnrolled => {
            // Flagged, then enrolled on the roster the month after.
            let mut e = bd.bene(b.township, crate::model::Program::RuralDibao, Some(m.next()));
            e.id = id.clone();
            e.name = name.clone();
            e.account_name = name.clone();
            bd.roster_history(&e, &[]);
            bd.pay_months(&e, bd.to, &[]);
            let v = record(bd, &id, &name, Some(&e.household), b.township, "marginal", flagged);
            bd.vulnerable.push(v);
            bd.control("flagged by poverty monitoring, enrolled within the grace period", &id);
        }
        Role::VulnerableHousehold => {
            // The household already has an active beneficiary.
            bd.roster_history(&b, &[]);
            bd.pay_months(&b, bd.to, &[]);
            let v = record(bd, &id, &name, Some(&b.household), b.township, "major_illness", flagged);
            bd.vulnerable.push(v);
            bd.control("flagged by medical insurance, household already covered", &id);
        }
        Role::VulnerableCleared => {
            let mut v = record(bd, &id, &name, None, b.township, "grade_2", flagged);
            v.cleared_at = Some(flagged.plus_days(30));
            bd.vulnerable.push(v);
            bd.control("disability certificate cancelled within the grace period", &id);
        }
        _ => {
            // Not qualifying by default (a grade 4 disability, a chronic
            // illness), and a qualifying one flagged too late to be due.
            let v = record(bd, &id, &name, None, b.township, "grade_4", flagged);
            bd.vulnerable.push(v);
            let other = bd.people.id();
            let v = record(bd, &other, &name, None, b.township, "chronic", flagged);
            bd.vulnerable.push(v);
            let late = bd.people.id();
            let v = record(bd, &late, &name, None, b.township, "unstable", Builder::day(bd.to, 1));
            bd.vulnerable.push(v);
            bd.control("not qualifying, or flagged too recently to be due", &id);
        }
    }
}

/// The vulnerable-persons lines: every record, one redelivered, and two
/// that must be dead-lettered (a category of another source, a bad id).
pub(super) fn lines(bd: &mut Builder) -> Vec<Line> {
    let tz = bd.tz;
    bd.vulnerable.sort_by(|a, b| (a.updated_at, &a.record_id).cmp(&(b.updated_at, &b.record_id)));
    let mut lines: Vec<Line> = bd.vulnerable.iter().map(|v| Line::Object(vulnerable_json(v, tz))).collect();
    if let Some(first) = bd.vulnerable.first() {
        let sample = vulnerable_json(first, tz);
        lines.push(Line::Object(sample.clone()));
        bd.truth.redelivered += 1;
        let mut wrong = sample.clone();
        wrong.insert("record_id".into(), json!("VUL-BAD-1"));
        wrong.insert("source".into(), json!("disability"));
        wrong.insert("category".into(), json!("sudden_hardship"));
        lines.push(Line::Object(wrong));
        *bd.truth.dead_letters.entry("unknown_enum".into()).or_default() += 1;
        let mut bad_id = sample;
        bad_id.insert("record_id".into(), json!("VUL-BAD-2"));
        bad_id.insert("person_id".into(), Value::from("12345"));
        lines.push(Line::Object(bad_id));
        *bd.truth.dead_letters.entry("bad_id".into()).or_default() += 1;
    }
    bd.truth.vulnerable_records = lines.len() as u64;
    lines
}
