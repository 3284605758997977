//! The township work ledger (台账) for a quarter: one row per alert with its
//! review status, Chinese column headers, and per-township totals (found,
//! confirmed, corrected, money involved). As CSV with a UTF-8 BOM (so Excel
//! opens it) or as XLSX. Amounts stay exact decimals, written as text.

use crate::model::decision::Decision;
use crate::model::{Alert, Money, Tz};
use crate::store::cases::Case;
use crate::review::{self, Review};
use crate::store::{Cf, Store, StoreError};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write the spreadsheet: {0}")]
    Xlsx(#[from] rust_xlsxwriter::XlsxError),
    #[error("cannot write the CSV: {0}")]
    Csv(#[from] csv::Error),
}

/// A calendar quarter, e.g. `2021Q3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quarter {
    pub year: i32,
    pub q: u32,
}

impl Quarter {
    pub fn parse(s: &str) -> Option<Quarter> {
        let (y, q) = s.split_once(['Q', 'q'])?;
        let (year, q) = (y.parse().ok()?, q.parse().ok()?);
        ((1990..=2100).contains(&year) && (1..=4).contains(&q)).then_some(Quarter { year, q })
    }

    /// Whether an RFC 3339 local time (`YYYY-MM-…`) falls in it.
    pub fn contains(&self, time: &str) -> bool {
        let (Some(y), Some(m)) = (time.get(..4).and_then(|y| y.parse::<i32>().ok()), time.get(5..7).and_then(|m| m.parse::<u32>().ok()))
        else {
            return false;
        };
        y == self.year && (m + 2) / 3 == self.q
    }
}

/// One alert with its reviews.
pub struct Row {
    pub alert: Alert,
    pub reviews: Vec<Review>,
}

/// Per-township totals.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Totals {
    pub found: u64,
    /// Confirmed, including those since corrected.
    pub confirmed: u64,
    pub corrected: u64,
    pub amount: Decimal,
}

/// A decision as the API and the `--cases` output show it (times in the
/// district's offset): exactly the contract's decision record.
pub fn decision_json(d: &Decision, tz: Tz) -> serde_json::Value {
    serde_json::json!({
        "decision_id": d.decision_id,
        "case_id": d.case_id,
        "rule": d.rule,
        "subject": d.subject,
        "outcome": d.outcome,
        "action": d.action,
        "amount_recovered": d.amount_recovered,
        "document_no": d.document_no,
        "clue_no": d.clue_no,
        "note": d.note,
        "decided_by": d.decided_by,
        "decided_at": tz.format(d.decided_at),
    })
}

/// A case as the API and `paywatch audit --cases` show it: status, counts,
/// amounts, its alerts' ids and its decisions.
pub fn case_json(c: &Case, tz: Tz) -> serde_json::Value {
    serde_json::json!({
        "case_id": c.case_id,
        "rule": c.rule,
        "rule_chinese": c.rule.chinese(),
        "subject": c.subject,
        "township": c.township,
        "beneficiary_id": c.beneficiary_id,
        "household_id": c.household_id,
        "account_no": c.account_no,
        "status": c.status.code(),
        "relapsed": c.relapsed,
        "alert_count": c.alerts.len(),
        "alert_ids": c.alerts,
        "amount_involved": c.amount,
        "amount_recovered": c.amount_recovered(),
        "first_event_time": tz.format(c.first_event),
        "newest_event_time": tz.format(c.newest_event),
        "opened_at": tz.format(c.opened_at),
        "decisions": c.decisions.iter().map(|d| decision_json(d, tz)).collect::<Vec<_>>(),
    })
}

pub struct Ledger {
    pub quarter: Quarter,
    pub rows: Vec<Row>,
    pub totals: BTreeMap<String, Totals>,
}

/// Collects a quarter's alerts (of one township, or all), oldest first.
pub fn ledger(store: &Store, quarter: Quarter, township: Option<&str>) -> Result<Ledger, StoreError> {
    let mut rows = Vec::new();
    for id in store.values(Cf::AlertLog) {
        let id = id?;
        let Some(json) = store.get_raw(Cf::Alerts, &id)? else { continue };
        let Ok(alert) = serde_json::from_slice::<Alert>(&json) else { continue };
        if !quarter.contains(&alert.event_time) || township.is_some_and(|t| t != alert.township) {
            continue;
        }
        let reviews = review::history(store, &alert.alert_id)?;
        rows.push(Row { alert, reviews });
    }
    rows.sort_by(|a, b| (&a.alert.township, &a.alert.event_time, &a.alert.alert_id).cmp(&(&b.alert.township, &b.alert.event_time, &b.alert.alert_id)));
    let mut totals: BTreeMap<String, Totals> = BTreeMap::new();
    for r in &rows {
        let t = totals.entry(r.alert.township.clone()).or_default();
        let status = review::status(&r.reviews);
        t.found += 1;
        t.confirmed += u64::from(status == "confirmed" || status == "corrected");
        t.corrected += u64::from(status == "corrected");
        t.amount += r.alert.amount.map_or(Decimal::ZERO, |m: Money| m.decimal());
    }
    Ok(Ledger { quarter, rows, totals })
}

const HEADERS: [&str; 17] = [
    "序号", "预警编号", "乡镇", "规则代码", "问题类型", "严重程度", "对象身份证号", "户号", "收款账号", "所属期", "金额(元)",
    "问题描述", "发生时间", "发现时间", "复核状态", "复核人", "复核说明",
];
const TOTAL_HEADERS: [&str; 5] = ["乡镇", "发现问题数", "核实属实数(含已纠正)", "已纠正数", "涉及金额(元)"];

fn status_chinese(s: &str) -> &'static str {
    match s {
        "confirmed" => "核实属实",
        "false_positive" => "误报",
        "corrected" => "已纠正",
        "in_progress" => "核查中",
        _ => "待复核",
    }
}

fn severity_chinese(s: crate::model::Severity) -> &'static str {
    match s {
        crate::model::Severity::High => "高",
        crate::model::Severity::Medium => "中",
        crate::model::Severity::Low => "低",
    }
}

fn cells(i: usize, r: &Row) -> [String; 17] {
    let a = &r.alert;
    let last = r.reviews.last();
    [
        (i + 1).to_string(),
        a.alert_id.clone(),
        a.township.clone(),
        a.rule.code().into(),
        a.rule.chinese().into(),
        severity_chinese(a.severity).into(),
        a.beneficiary_id.clone().unwrap_or_default(),
        a.household_id.clone().unwrap_or_default(),
        a.account_no.clone().unwrap_or_default(),
        a.period.map(|p| p.to_string()).unwrap_or_default(),
        a.amount.map(|m| m.to_string()).unwrap_or_default(),
        a.reason.clone(),
        a.event_time.clone(),
        a.detected_at.clone(),
        status_chinese(review::status(&r.reviews)).into(),
        last.map(|r| r.reviewer.clone()).unwrap_or_default(),
        last.map(|r| r.note.clone()).unwrap_or_default(),
    ]
}

fn total_cells(township: &str, t: &Totals) -> [String; 5] {
    [township.into(), t.found.to_string(), t.confirmed.to_string(), t.corrected.to_string(), format!("{:.2}", t.amount)]
}

impl Ledger {
    pub fn file_name(&self, ext: &str) -> String {
        format!("paywatch-ledger-{}Q{}.{ext}", self.quarter.year, self.quarter.q)
    }

    /// CSV, UTF-8 with a BOM: the rows, a blank line, then the totals.
    pub fn to_csv(&self) -> Result<Vec<u8>, ReportError> {
        let mut out = "\u{feff}".as_bytes().to_vec();
        {
            let mut w = csv::WriterBuilder::new().flexible(true).from_writer(&mut out);
            w.write_record(HEADERS)?;
            for (i, r) in self.rows.iter().enumerate() {
                w.write_record(cells(i, r))?;
            }
            w.write_record([""])?;
            w.write_record(TOTAL_HEADERS)?;
            for (township, t) in &self.totals {
                w.write_record(total_cells(township, t))?;
            }
            w.flush().map_err(csv::Error::from)?;
        }
        Ok(out)
    }

    /// XLSX: sheet 台账 (the rows) and sheet 汇总 (the totals).
    pub fn to_xlsx(&self) -> Result<Vec<u8>, ReportError> {
        let mut book = rust_xlsxwriter::Workbook::new();
        let bold = rust_xlsxwriter::Format::new().set_bold();
        let sheet = book.add_worksheet();
        sheet.set_name("台账")?;
        for (c, h) in HEADERS.iter().enumerate() {
            sheet.write_string_with_format(0, c as u16, *h, &bold)?;
        }
        for (i, r) in self.rows.iter().enumerate() {
            for (c, v) in cells(i, r).iter().enumerate() {
                sheet.write_string((i + 1) as u32, c as u16, v)?;
            }
        }
        let sheet = book.add_worksheet();
        sheet.set_name("汇总")?;
        for (c, h) in TOTAL_HEADERS.iter().enumerate() {
            sheet.write_string_with_format(0, c as u16, *h, &bold)?;
        }
        for (i, (township, t)) in self.totals.iter().enumerate() {
            for (c, v) in total_cells(township, t).iter().enumerate() {
                sheet.write_string((i + 1) as u32, c as u16, v)?;
            }
        }
        Ok(book.save_to_buffer()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarters_parse_and_contain_their_months() {
        let q = Quarter::parse("2021Q3").unwrap();
        assert!(q.contains("2021-07-01T00:00:00+08:00") && q.contains("2021-09-30T23:59:59+08:00"));
        assert!(!q.contains("2021-10-01T00:00:00+08:00") && !q.contains("2020-08-01T00:00:00+08:00"));
        assert_eq!(Quarter::parse("2021Q5"), None);
        assert_eq!(Quarter::parse("2021-3"), None);
    }
}
