//! `paywatch generate`: a synthetic district ledger — roster history, deaths
//! reported late, monthly payments — with planted cases of every rule, the
//! control cases that must not alert, some broken lines, and `truth.json`
//! saying exactly which alerts and dead letters an audit must produce.

mod custodians;
mod vulnerable;
mod district;
mod people;
mod plant;
pub mod truth;
mod write;

pub use truth::{truth_key, Truth};
pub use write::{death_json, decision_json, payment_json, roster_json, vulnerable_json, OutFormat};

use crate::model::{Period, Timestamp};
use district::Builder;
use people::{People, TOWNSHIPS};
use plant::Role;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use write::{write_lines, Line};

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("the ledger needs at least 12 months: --from {from} --to {to}")]
    TooShort { from: String, to: String },
    #[error("--households must be at least 50")]
    TooSmall,
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: std::io::Error },
}

#[derive(Clone, Debug)]
pub struct GenerateOptions {
    pub out: PathBuf,
    pub households: usize,
    pub from: Period,
    pub to: Period,
    pub seed: u64,
    pub format: OutFormat,
}

/// Where a generated ledger was written.
#[derive(Clone, Debug)]
pub struct Generated {
    pub roster: PathBuf,
    pub deaths: PathBuf,
    pub payments: PathBuf,
    /// The rectification ledger: decisions on planted cases (§8).
    pub decisions: PathBuf,
    /// Vulnerable persons of other departments (§10).
    pub vulnerable: PathBuf,
    pub truth_path: PathBuf,
    pub truth: Truth,
}

pub fn generate(o: &GenerateOptions) -> Result<Generated, GenerateError> {
    if o.to.0 - o.from.0 < 11 {
        return Err(GenerateError::TooShort { from: o.from.to_string(), to: o.to.to_string() });
    }
    if o.households < 50 {
        return Err(GenerateError::TooSmall);
    }
    let mut bd = Builder::new(People::new(ChaCha8Rng::seed_from_u64(o.seed)), o.from, o.to);
    let planted = (o.households / 500).max(1);
    let controls = (o.households / 200).max(2);
    let mut roles: Vec<Role> = Vec::new();
    for r in Role::PLANTED {
        roles.extend(std::iter::repeat_n(r, planted));
    }
    for r in Role::CONTROLS {
        roles.extend(std::iter::repeat_n(r, controls));
    }
    roles.shuffle(bd.rng());
    let homes = (o.households / 700).clamp(1, 3);
    for town in TOWNSHIPS.iter().take(homes) {
        plant::nursing_home(&mut bd, town, 5);
    }
    for r in &roles {
        plant::plant(&mut bd, *r);
    }
    let used = roles.len() + planted + homes * 5;
    for _ in used..o.households {
        plant::ordinary(&mut bd);
    }
    write_ledger(&mut bd, o)
}

fn write_ledger(bd: &mut Builder, o: &GenerateOptions) -> Result<Generated, GenerateError> {
    let tz = bd.tz;
    let err = |p: &Path| {
        let path = p.display().to_string();
        move |source| GenerateError::Write { path, source }
    };
    std::fs::create_dir_all(&o.out).map_err(err(&o.out))?;
    let ext = o.format.ext();
    let (roster_path, deaths_path, payments_path) =
        (o.out.join(format!("roster.{ext}")), o.out.join(format!("deaths.{ext}")), o.out.join(format!("payments.{ext}")));

    // Exports are grouped by township and beneficiary, not sorted by time.
    let town_rank = |t: &str| TOWNSHIPS.iter().position(|x| *x == t).unwrap_or(99);
    bd.payments.sort_by(|a, b| {
        (town_rank(&a.township), a.beneficiary_id.as_str(), a.paid_at).cmp(&(
            town_rank(&b.township),
            b.beneficiary_id.as_str(),
            b.paid_at,
        ))
    });
    let mut pay_lines: Vec<Line> =
        bd.payments.iter().enumerate().map(|(i, p)| Line::Object(payment_json(p, tz, i % 20 == 7))).collect();
    for id in bd.redeliver.clone() {
        if let Some(p) = bd.payments.iter().find(|p| p.event_id == id) {
            pay_lines.push(Line::Object(payment_json(p, tz, false)));
        }
    }
    bd.truth.redelivered = bd.redeliver.len() as u64;
    bd.truth.payment_events = pay_lines.len() as u64;
    bd.roster.sort_by(|a, b| (a.beneficiary_id.as_str(), a.updated_at).cmp(&(b.beneficiary_id.as_str(), b.updated_at)));
    let mut roster_lines: Vec<Line> = bd.roster.iter().map(|r| Line::Object(roster_json(r, tz))).collect();
    bd.truth.roster_records = roster_lines.len() as u64;
    bd.deaths.sort_by_key(|d| d.reported_at);
    let mut death_lines: Vec<Line> = bd.deaths.iter().map(|d| Line::Object(death_json(d, tz))).collect();
    bd.truth.death_records = death_lines.len() as u64;

    let sample_p = payment_json(&bd.payments[bd.payments.len() / 2], tz, false);
    let sample_r = roster_json(&bd.roster[0], tz);
    let sample_d = if bd.deaths.is_empty() { Map::new() } else { death_json(&bd.deaths[0], tz) };
    let csv = o.format == OutFormat::Csv;
    let mut n = 0;
    let mut bad = |base: &Map<String, Value>, set: &[(&str, Value)], id_field: Option<&str>| {
        n += 1;
        let mut m = base.clone();
        if let Some(f) = id_field {
            m.insert(f.into(), json!(format!("BAD{n:04}")));
        }
        for (k, v) in set {
            if v.is_null() {
                m.remove(*k);
            } else {
                m.insert((*k).into(), v.clone());
            }
        }
        Line::Object(m)
    };
    let e = Some("event_id");
    let flipped = {
        let id = sample_p["beneficiary_id"].as_str().unwrap_or("").to_owned();
        let last = if id.ends_with('0') { '1' } else { '0' };
        format!("{}{last}", &id[..17])
    };
    let mut pay_bad: Vec<(&str, Line)> = vec![
        ("missing_field", bad(&sample_p, &[("township", Value::Null)], e)),
        ("bad_id_check_digit", bad(&sample_p, &[("beneficiary_id", json!(flipped))], e)),
        ("bad_amount", bad(&sample_p, &[("amount", json!("585.005"))], e)),
        ("bad_amount", bad(&sample_p, &[("amount", if csv { json!("1e3") } else { json!(585.0) })], e)),
        ("bad_amount", bad(&sample_p, &[("amount", json!("-585.00"))], e)),
        ("bad_period", bad(&sample_p, &[("period", json!("2019-13"))], e)),
        ("bad_date", bad(&sample_p, &[("scheduled_at", json!("2019-02-30"))], e)),
        ("unknown_enum", bad(&sample_p, &[("program", json!("dibao"))], e)),
        ("bad_account_no", bad(&sample_p, &[("account_no", json!("6217-0000-1111"))], e)),
        ("bad_reversal", bad(&sample_p, &[("kind", json!("reversal"))], e)),
        ("bad_date", bad(&sample_p, &[("paid_at", json!("2019-03-12 09:30:00"))], e)),
        ("bad_event_id", bad(&sample_p, &[("event_id", json!("X".repeat(70)))], None)),
    ];
    // Valid on its own, refused by the engine: nothing was paid to reverse.
    let later = sample_p["paid_at"].as_str().and_then(Timestamp::parse_rfc3339).map(|t| t.plus_days(1));
    pay_bad.push((
        "bad_reversal",
        bad(
            &sample_p,
            &[
                ("kind", json!("reversal")),
                ("reverses", json!("PAY-NEVER-SEEN")),
                ("paid_at", json!(later.map(|t| tz.format(t)).unwrap_or_default())),
            ],
            e,
        ),
    ));
    // A mistyped year (contract §7 v1.1): valid in every field, but far
    // ahead of the wall clock. Accepted, it would move the watermark to 2199
    // and raise a MISSED_PAYMENT for every beneficiary and month between.
    let mistyped = |m: &Map<String, Value>, field: &str| {
        let s = m.get(field).and_then(Value::as_str).unwrap_or("2019-01-01T00:00:00+08:00");
        json!(format!("2199{}", s.get(4..).unwrap_or("")))
    };
    pay_bad.push(("future_time", bad(&sample_p, &[("paid_at", mistyped(&sample_p, "paid_at"))], e)));
    pay_bad.push((
        if csv { "bad_csv" } else { "bad_json" },
        Line::Text { jsonl: r#"{"event_id": "BROKEN-1", "amount": "#.into(), csv: "BROKEN-1,payment".into() },
    ));
    let roster_bad = vec![
        ("unknown_enum", bad(&sample_r, &[("status", json!("deleted"))], None)),
        ("bad_date", bad(&sample_r, &[("enrolled_at", json!("2019-02-30"))], None)),
        ("missing_field", bad(&sample_r, &[("updated_at", Value::Null)], None)),
        ("future_time", bad(&sample_r, &[("updated_at", mistyped(&sample_r, "updated_at"))], None)),
    ];
    let death_bad = if sample_d.is_empty() {
        vec![]
    } else {
        vec![
            ("bad_id", bad(&sample_d, &[("person_id", json!("12345"))], Some("record_id"))),
            ("bad_date", bad(&sample_d, &[("reported_at", json!("yesterday"))], Some("record_id"))),
            ("future_time", bad(&sample_d, &[("reported_at", mistyped(&sample_d, "reported_at"))], Some("record_id"))),
        ]
    };
    for (lines, bads) in [(&mut pay_lines, pay_bad), (&mut roster_lines, roster_bad), (&mut death_lines, death_bad)] {
        for (reason, line) in bads {
            let at = bd.people.rng.gen_range(0..=lines.len());
            lines.insert(at, line);
            *bd.truth.dead_letters.entry(reason.to_owned()).or_default() += 1;
        }
    }
    write_lines(&payments_path, o.format, &write::PAYMENT_FIELDS, &pay_lines).map_err(err(&payments_path))?;
    write_lines(&roster_path, o.format, &write::ROSTER_FIELDS, &roster_lines).map_err(err(&roster_path))?;
    write_lines(&deaths_path, o.format, &write::DEATH_FIELDS, &death_lines).map_err(err(&deaths_path))?;
    let decisions_path = o.out.join(format!("decisions.{ext}"));
    let decision_lines = decision_lines(bd);
    write_lines(&decisions_path, o.format, &write::DECISION_FIELDS, &decision_lines).map_err(err(&decisions_path))?;
    let vulnerable_path = o.out.join(format!("vulnerable.{ext}"));
    let vulnerable_lines = vulnerable::lines(bd);
    write_lines(&vulnerable_path, o.format, &write::VULNERABLE_FIELDS, &vulnerable_lines).map_err(err(&vulnerable_path))?;

    let t = &mut bd.truth;
    t.seed = o.seed;
    t.households = o.households;
    t.from = o.from.to_string();
    t.to = o.to.to_string();
    t.expected.sort_by(|a, b| a.key.cmp(&b.key));
    let truth_path = o.out.join("truth.json");
    let text = serde_json::to_string_pretty(&bd.truth).unwrap_or_default();
    std::fs::write(&truth_path, text).map_err(err(&truth_path))?;
    Ok(Generated {
        roster: roster_path,
        deaths: deaths_path,
        payments: payments_path,
        decisions: decisions_path,
        vulnerable: vulnerable_path,
        truth_path,
        truth: bd.truth.clone(),
    })
}

/// The rectification ledger: every planted decision, a copy of one (a
/// redelivery), and decisions that must be dead-lettered: a case with no
/// alert, a `case_id` that is not its rule and subject's, and a reused
/// `decision_id` with other content.
fn decision_lines(bd: &mut Builder) -> Vec<Line> {
    let tz = bd.tz;
    bd.decisions.sort_by(|a, b| (a.decided_at, &a.decision_id).cmp(&(b.decided_at, &b.decision_id)));
    let mut lines: Vec<Line> = bd.decisions.iter().map(|d| Line::Object(decision_json(d, tz))).collect();
    if let Some(first) = bd.decisions.first().cloned() {
        lines.push(Line::Object(decision_json(&first, tz)));
        bd.truth.redelivered += 1;
        let mut conflicting = first.clone();
        conflicting.note = Some("同一编号、不同内容".into());
        lines.push(Line::Object(decision_json(&conflicting, tz)));
        *bd.truth.dead_letters.entry("conflicting_decision".into()).or_default() += 1;
        let mut mismatched = decision_json(&first, tz);
        let other = bd.people.id();
        mismatched.insert("decision_id".into(), json!("DEC-BAD-CASE"));
        mismatched.insert("subject".into(), json!(other));
        lines.push(Line::Object(mismatched));
        *bd.truth.dead_letters.entry("bad_case_id".into()).or_default() += 1;
        let nobody = bd.people.id();
        let mut unknown = first;
        unknown.decision_id = "DEC-NO-CASE".into();
        unknown.subject = nobody.clone();
        unknown.case_id = crate::model::decision::case_id(unknown.rule, &nobody);
        lines.push(Line::Object(decision_json(&unknown, tz)));
        *bd.truth.dead_letters.entry("unknown_case".into()).or_default() += 1;
    }
    bd.truth.decision_records = lines.len() as u64;
    lines
}
