//! Writing a generated ledger as the contract's JSON Lines or CSV.

use crate::model::{DeathRecord, Payment, PaymentKind, RosterRecord, Timestamp, Tz};
use serde_json::{json, Map, Value};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

/// Output format of `paywatch generate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutFormat {
    Jsonl,
    Csv,
}

impl OutFormat {
    pub fn ext(self) -> &'static str {
        match self {
            OutFormat::Jsonl => "jsonl",
            OutFormat::Csv => "csv",
        }
    }
}

pub const PAYMENT_FIELDS: [&str; 16] = [
    "event_id", "kind", "reverses", "beneficiary_id", "beneficiary_name", "household_id", "township", "program",
    "period", "amount", "payment_type", "account_no", "account_name", "bank", "scheduled_at", "paid_at",
];
pub const ROSTER_FIELDS: [&str; 12] = [
    "beneficiary_id", "name", "household_id", "township", "program", "status", "enrolled_at", "status_since",
    "monthly_amount", "filed_relative", "custodians", "updated_at",
];
pub const DEATH_FIELDS: [&str; 6] = ["record_id", "person_id", "name", "date_of_death", "source", "reported_at"];
pub const DECISION_FIELDS: [&str; 12] = [
    "decision_id", "case_id", "rule", "subject", "outcome", "action", "amount_recovered", "document_no", "clue_no",
    "note", "decided_by", "decided_at",
];

pub const VULNERABLE_FIELDS: [&str; 10] = [
    "record_id", "person_id", "name", "household_id", "township", "source", "category", "flagged_at", "cleared_at", "updated_at",
];

/// A decision as the rectification ledger holds it (absent fields left out).
/// A vulnerable-persons record as the contract's JSON object.
pub fn vulnerable_json(v: &crate::model::VulnerableRecord, tz: Tz) -> Map<String, Value> {
    let mut m = match serde_json::to_value(v) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    m.insert("updated_at".into(), json!(tz.format(v.updated_at)));
    m.retain(|_, x| !x.is_null());
    m
}

pub fn decision_json(d: &crate::model::decision::Decision, tz: Tz) -> Map<String, Value> {
    match crate::report::decision_json(d, tz) {
        Value::Object(mut m) => {
            m.retain(|_, v| !v.is_null());
            m
        }
        _ => Map::new(),
    }
}

/// Timestamps are written in `+08:00`, and one in twenty in UTC (`Z`), as
/// some bank systems do: the engine must read both the same.
pub fn stamp(tz: Tz, t: Timestamp, utc: bool) -> String {
    if utc {
        Tz::parse("Z").expect("utc").format(t).replace("+00:00", "Z")
    } else {
        tz.format(t)
    }
}

pub fn payment_json(p: &Payment, tz: Tz, utc: bool) -> Map<String, Value> {
    let mut m = match serde_json::to_value(p) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    m.insert("paid_at".into(), json!(stamp(tz, p.paid_at, utc)));
    if p.kind == PaymentKind::Payment {
        m.remove("reverses");
    }
    if p.bank.is_none() {
        m.remove("bank");
    }
    m
}

pub fn roster_json(r: &RosterRecord, tz: Tz) -> Map<String, Value> {
    let mut m = match serde_json::to_value(r) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    m.insert("updated_at".into(), json!(tz.format(r.updated_at)));
    if r.custodians.is_empty() {
        m.remove("custodians");
    } else if let Some(Value::Array(cs)) = m.get_mut("custodians") {
        for c in cs.iter_mut().filter_map(Value::as_object_mut) {
            for k in ["revoked_at", "id_no"] {
                if c.get(k) == Some(&Value::Null) {
                    c.remove(k);
                }
            }
        }
    }
    if !r.filed_relative {
        m.remove("filed_relative");
    }
    m
}

pub fn death_json(d: &DeathRecord, tz: Tz) -> Map<String, Value> {
    let mut m = match serde_json::to_value(d) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    m.insert("reported_at".into(), json!(tz.format(d.reported_at)));
    m
}

/// One output line: a record as a JSON object, or text written as it is
/// (the deliberately broken lines).
pub enum Line {
    Object(Map<String, Value>),
    Text { jsonl: String, csv: String },
}

/// Writes lines as JSON Lines or as CSV with the given header.
pub fn write_lines(path: &Path, format: OutFormat, fields: &[&str], lines: &[Line]) -> io::Result<()> {
    let mut w = BufWriter::with_capacity(1 << 20, File::create(path)?);
    match format {
        OutFormat::Jsonl => {
            for l in lines {
                match l {
                    Line::Object(m) => {
                        serde_json::to_writer(&mut w, m)?;
                        w.write_all(b"\n")?;
                    }
                    Line::Text { jsonl, .. } => writeln!(w, "{jsonl}")?,
                }
            }
        }
        OutFormat::Csv => {
            writeln!(w, "{}", fields.join(","))?;
            for l in lines {
                match l {
                    Line::Object(m) => {
                        let cells: Vec<String> = fields.iter().map(|f| csv_cell(m.get(*f))).collect();
                        writeln!(w, "{}", cells.join(","))?;
                    }
                    Line::Text { csv, .. } => writeln!(w, "{csv}")?,
                }
            }
        }
    }
    w.flush()
}

fn csv_cell(v: Option<&Value>) -> String {
    let s = match v {
        None | Some(Value::Null) => return String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    if s.contains([',', '"', '\n', '\r']) || s.starts_with(' ') || s.ends_with(' ') {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}
