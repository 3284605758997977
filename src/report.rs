//! The township work ledger (台账) for a quarter: one row per case active in
//! the quarter (township, problem, subject, alerts, amounts, status, what
//! was done, relapsed, overdue), per-township totals, and a sheet of
//! charts. As CSV with a UTF-8 BOM (so Excel opens it; every cell safe
//! against formula injection) or as XLSX. Amounts stay exact decimals,
//! written as text. Also the JSON shapes of a case and a decision.

use crate::model::decision::{Decision, Outcome as DecisionOutcome};
use crate::model::{Alert, Money, Timestamp, Tz};
use crate::store::cases::{self, Case, Status};
use crate::store::{Cf, Store, StoreError};
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

    /// Its first instant and the first instant after it, in `tz`.
    pub fn bounds(&self, tz: Tz) -> (Timestamp, Timestamp) {
        let first = crate::model::Period::new(self.year, (self.q - 1) * 3 + 1);
        let after = crate::model::Period(first.0 + 3);
        (tz.day_start(first.first_day()), tz.day_start(after.first_day()))
    }

    /// Whether an RFC 3339 local time (`YYYY-MM-…`) falls in it.
    pub fn contains(&self, time: &str) -> bool {
        let (Some(y), Some(m)) = (time.get(..4).and_then(|y| y.parse::<i32>().ok()), time.get(5..7).and_then(|m| m.parse::<u32>().ok()))
        else {
            return false;
        };
        y == self.year && m.div_ceil(3) == self.q
    }
}

/// Per-township totals of a quarter's ledger.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Totals {
    /// Cases whose first alert fell in the quarter.
    pub found: u64,
    /// Cases rectified (已整改) now.
    pub rectified: u64,
    /// Cases not closed (neither rectified nor false positive).
    pub open: u64,
    /// Open cases past `[cases] deadline_days`.
    pub overdue: u64,
    /// Cases reopened by a relapse.
    pub relapsed: u64,
    pub amount: Money,
    pub recovered: Money,
}

/// One case of the ledger, with the name of its subject.
pub struct Row {
    pub case: Case,
    /// The beneficiary's (or account holder's, or flagged person's) name,
    /// from the first alert.
    pub name: String,
    /// The first alert's figures (a referral's source, category, dates).
    pub figures: BTreeMap<String, String>,
    pub overdue: bool,
}

pub struct Ledger {
    pub quarter: Quarter,
    pub tz: Tz,
    pub rows: Vec<Row>,
    pub totals: BTreeMap<String, Totals>,
    /// Alerts per month (`YYYY-MM`) over the twelve months up to the
    /// quarter's end, for the chart.
    pub alerts_per_month: BTreeMap<String, u64>,
}

/// The cases active in a quarter (of one township, or all): every case found
/// by the quarter's end and not closed before it began — an alert or a
/// decision in the quarter, or still open — ordered by township and first
/// alert. `now` and `deadline_days` decide which are overdue.
pub fn ledger(store: &Store, quarter: Quarter, township: Option<&str>, now: Timestamp, deadline_days: u32, tz: Tz) -> Result<Ledger, StoreError> {
    let (start, end) = quarter.bounds(tz);
    let mut rows = Vec::new();
    // The case index rules out, without reading them, cases found after the
    // quarter and cases closed before it for certain (a closing decision
    // that is their newest, before the quarter, on nothing newer).
    let pending = cases::with_pending_ids(store)?;
    let mut wanted = Vec::new();
    cases::walk_index::<StoreError>(store, township, |id, s| {
        let closed_before = s.newest_event < start
            && matches!(s.status, Status::Rectified | Status::FalsePositive)
            && s.last_decided_at.is_some_and(|t| t < start);
        if s.first_event < end && (pending.contains(id) || !closed_before) {
            wanted.push(id.to_owned());
        }
        Ok(())
    })?;
    for id in wanted {
        let Some(c) = cases::get(store, &id)? else { continue };
        let c = cases::with_pending(store, c)?;
        if township.is_some_and(|t| t != c.township) || c.first_event >= end {
            continue;
        }
        let before: Vec<&Decision> = c.decisions.iter().filter(|d| d.decided_at < start).collect();
        let closed_before = c.newest_event < start
            && before.last().is_some_and(|d| matches!(d.outcome, DecisionOutcome::Rectified | DecisionOutcome::FalsePositive));
        if closed_before {
            continue;
        }
        let figures = match c.alerts.first() {
            Some(id) => store.get_json::<Alert>(Cf::Alerts, id.as_bytes())?.map(|a| a.evidence.figures).unwrap_or_default(),
            None => BTreeMap::new(),
        };
        let name = ["beneficiary_name", "account_name", "person_name", "custodian_name"]
            .iter()
            .find_map(|k| figures.get(*k))
            .cloned()
            .unwrap_or_default();
        let overdue = !c.closed() && now.0 - c.opened_at.0 >= i64::from(deadline_days) * crate::model::time::MS_PER_DAY;
        rows.push(Row { case: c, name, figures, overdue });
    }
    rows.sort_by(|a, b| (&a.case.township, a.case.first_event, &a.case.case_id).cmp(&(&b.case.township, b.case.first_event, &b.case.case_id)));
    let mut totals: BTreeMap<String, Totals> = BTreeMap::new();
    for r in &rows {
        let c = &r.case;
        let t = totals.entry(c.township.clone()).or_default();
        t.found += u64::from(c.first_event >= start);
        t.rectified += u64::from(c.status == Status::Rectified);
        t.open += u64::from(!matches!(c.status, Status::Rectified | Status::FalsePositive));
        t.overdue += u64::from(r.overdue);
        t.relapsed += u64::from(c.relapsed);
        t.amount = t.amount.plus(c.amount);
        t.recovered = t.recovered.plus(c.amount_recovered());
    }
    let first_month = crate::model::Period(crate::model::Period::of(tz.date(Timestamp(end.0 - 1))).0 - 11);
    let mut months = Vec::with_capacity(12);
    let mut p = first_month;
    for _ in 0..12 {
        months.push(p.to_string());
        p = p.next();
    }
    // Counted on the alert index: a range per month, not the whole log.
    let counts = crate::store::alert_index::count_by_month(store, township, &months)?;
    let alerts_per_month: BTreeMap<String, u64> = months.into_iter().zip(counts).collect();
    Ok(Ledger { quarter, tz, rows, totals, alerts_per_month })
}

const HEADERS: [&str; 20] = [
    "序号", "问题编号", "乡镇", "问题类型", "规则代码", "对象姓名", "身份证号/账号", "户号", "发现时间", "预警数",
    "涉及金额(元)", "状态", "整改措施", "整改日期", "追回金额(元)", "整改文号", "问题线索编号", "是否反弹", "是否超期",
    "最新说明",
];
/// 摸排名单: the referrals for home visits; the last two columns are the
/// township's to fill in.
const REFERRAL_HEADERS: [&str; 11] =
    ["序号", "乡镇", "姓名", "身份证号", "户编号", "推送部门", "类别", "登记日期", "核查期限", "核查结果", "是否纳入"];
const TOTAL_HEADERS: [&str; 8] = ["乡镇", "本季度发现", "已整改", "未结案", "超期", "反弹", "涉及金额(元)", "追回金额(元)"];

fn yes(b: bool) -> String {
    if b { "是" } else { "否" }.to_owned()
}

impl Ledger {
    pub fn file_name(&self, ext: &str) -> String {
        format!("paywatch-ledger-{}Q{}.{ext}", self.quarter.year, self.quarter.q)
    }

    fn cells(&self, i: usize, r: &Row) -> [String; 20] {
        let c = &r.case;
        let last = c.last_decision();
        let rectified = c.decisions.iter().rev().find(|d| d.outcome == DecisionOutcome::Rectified);
        [
            (i + 1).to_string(),
            c.case_id.clone(),
            c.township.clone(),
            c.rule.chinese().into(),
            c.rule.code().into(),
            r.name.clone(),
            c.subject.clone(),
            c.household_id.clone().unwrap_or_default(),
            self.tz.date(c.first_event).to_string(),
            c.alerts.len().to_string(),
            c.amount.to_string(),
            c.status.chinese().into(),
            rectified.and_then(|d| d.action).map_or("", |a| a.chinese()).into(),
            rectified.map(|d| self.tz.date(d.decided_at).to_string()).unwrap_or_default(),
            c.amount_recovered().to_string(),
            rectified.and_then(|d| d.document_no.clone()).unwrap_or_default(),
            c.decisions.iter().rev().find_map(|d| d.clue_no.clone()).unwrap_or_default(),
            yes(c.relapsed),
            yes(r.overdue),
            last.and_then(|d| d.note.clone()).unwrap_or_default(),
        ]
    }

    fn total_cells(township: &str, t: &Totals) -> [String; 8] {
        [
            township.into(),
            t.found.to_string(),
            t.rectified.to_string(),
            t.open.to_string(),
            t.overdue.to_string(),
            t.relapsed.to_string(),
            t.amount.to_string(),
            t.recovered.to_string(),
        ]
    }

    /// CSV, UTF-8 with a BOM: the rows, a blank line, then the totals. Every
    /// cell is safe to open in a spreadsheet ([`csv_safe`]).
    pub fn to_csv(&self) -> Result<Vec<u8>, ReportError> {
        let mut out = "\u{feff}".as_bytes().to_vec();
        {
            let mut w = csv::WriterBuilder::new().flexible(true).from_writer(&mut out);
            w.write_record(HEADERS)?;
            for (i, r) in self.rows.iter().enumerate() {
                w.write_record(self.cells(i, r).map(csv_safe))?;
            }
            w.write_record([""])?;
            w.write_record(TOTAL_HEADERS)?;
            for (township, t) in &self.totals {
                w.write_record(Ledger::total_cells(township, t).map(csv_safe))?;
            }
            w.flush().map_err(csv::Error::from)?;
        }
        Ok(out)
    }

    /// The `COVERAGE_GAP` cases (referrals, 疑似漏保) of the ledger.
    pub fn referrals(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| r.case.rule == crate::model::Rule::CoverageGap)
    }

    /// One row of 摸排名单: the person, where the referral came from, and
    /// empty 核查结果 / 是否纳入 for the township to fill in.
    fn referral_cells(i: usize, r: &Row) -> [String; 11] {
        let f = |k: &str| r.figures.get(k).cloned().unwrap_or_default();
        let source = crate::model::VulnerableSource::from_code(&f("source")).map_or_else(|| f("source"), |s| s.chinese().to_owned());
        [
            (i + 1).to_string(),
            r.case.township.clone(),
            r.name.clone(),
            r.case.subject.clone(),
            r.case.household_id.clone().unwrap_or_default(),
            source,
            crate::model::vulnerable::category_chinese(&f("category")).to_owned(),
            f("flagged_at"),
            f("deadline").chars().take(10).collect(),
            String::new(),
            String::new(),
        ]
    }

    /// XLSX: sheets 台账 (the cases), 汇总 (the totals), 摸排名单 (the
    /// referrals of `COVERAGE_GAP`) and 图表 (cases by township and status;
    /// alerts per month). Cells are written as strings, never as formulas.
    pub fn to_xlsx(&self) -> Result<Vec<u8>, ReportError> {
        use rust_xlsxwriter::{Chart, ChartType};
        let mut book = rust_xlsxwriter::Workbook::new();
        let bold = rust_xlsxwriter::Format::new().set_bold();
        let sheet = book.add_worksheet();
        sheet.set_name("台账")?;
        for (c, h) in HEADERS.iter().enumerate() {
            sheet.write_string_with_format(0, c as u16, *h, &bold)?;
        }
        for (i, r) in self.rows.iter().enumerate() {
            for (c, v) in self.cells(i, r).iter().enumerate() {
                sheet.write_string((i + 1) as u32, c as u16, v)?;
            }
        }
        let sheet = book.add_worksheet();
        sheet.set_name("汇总")?;
        for (c, h) in TOTAL_HEADERS.iter().enumerate() {
            sheet.write_string_with_format(0, c as u16, *h, &bold)?;
        }
        for (i, (township, t)) in self.totals.iter().enumerate() {
            for (c, v) in Ledger::total_cells(township, t).iter().enumerate() {
                sheet.write_string((i + 1) as u32, c as u16, v)?;
            }
        }
        // 摸排名单: the COVERAGE_GAP referrals, for the townships' home
        // visits, with the columns they fill in.
        let sheet = book.add_worksheet();
        sheet.set_name("摸排名单")?;
        for (c, h) in REFERRAL_HEADERS.iter().enumerate() {
            sheet.write_string_with_format(0, c as u16, *h, &bold)?;
        }
        for (i, r) in self.referrals().enumerate() {
            for (c, v) in Ledger::referral_cells(i, r).iter().enumerate() {
                sheet.write_string((i + 1) as u32, c as u16, v)?;
            }
        }
        // The charts and the numbers they are drawn from.
        let sheet = book.add_worksheet();
        sheet.set_name("图表")?;
        for (c, h) in ["乡镇", "未结案", "已整改", "误报"].iter().enumerate() {
            sheet.write_string_with_format(0, c as u16, *h, &bold)?;
        }
        let mut by_town: BTreeMap<&str, [u32; 3]> = BTreeMap::new();
        for r in &self.rows {
            let n = by_town.entry(&r.case.township).or_default();
            match r.case.status {
                Status::Rectified => n[1] += 1,
                Status::FalsePositive => n[2] += 1,
                _ => n[0] += 1,
            }
        }
        for (i, (town, n)) in by_town.iter().enumerate() {
            let row = (i + 1) as u32;
            sheet.write_string(row, 0, *town)?;
            for (c, v) in n.iter().enumerate() {
                sheet.write_number(row, (c + 1) as u16, f64::from(*v))?;
            }
        }
        let towns = by_town.len().max(1) as u32;
        let mut chart = Chart::new(ChartType::ColumnStacked);
        chart.title().set_name("各乡镇问题整改情况");
        for c in 1..=3u16 {
            chart
                .add_series()
                .set_name(("图表", 0, c))
                .set_categories(("图表", 1, 0, towns, 0))
                .set_values(("图表", 1, c, towns, c));
        }
        sheet.insert_chart(0, 6, &chart)?;
        let top = towns + 3;
        sheet.write_string_with_format(top, 0, "月份", &bold)?;
        sheet.write_string_with_format(top, 1, "预警数", &bold)?;
        for (i, (month, n)) in self.alerts_per_month.iter().enumerate() {
            let row = top + 1 + i as u32;
            sheet.write_string(row, 0, month)?;
            sheet.write_number(row, 1, *n as f64)?;
        }
        let months = self.alerts_per_month.len() as u32;
        if months > 0 {
            let mut chart = Chart::new(ChartType::Line);
            chart.title().set_name("每月预警数");
            chart.add_series().set_name("预警数").set_categories(("图表", top + 1, 0, top + months, 0)).set_values(("图表", top + 1, 1, top + months, 1));
            sheet.insert_chart(top, 6, &chart)?;
        }
        Ok(book.save_to_buffer()?)
    }
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

/// A cell a spreadsheet will not run: one that begins with `=`, `+`, `-`,
/// `@`, a tab or a carriage return gets a leading `'` (OWASP, CSV
/// injection). Township names, notes and ids come from outside.
pub fn csv_safe(cell: String) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}")
    } else {
        cell
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
        let (start, end) = q.bounds(Tz::default());
        assert_eq!(Tz::default().format(start), "2021-07-01T00:00:00+08:00");
        assert_eq!(Tz::default().format(end), "2021-10-01T00:00:00+08:00");
    }

    /// Hardening item 2: a cell Excel would run as a formula is neutralised.
    #[test]
    fn csv_cells_never_start_a_formula() {
        for bad in ["=HYPERLINK(\"http://x\")", "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"] {
            let safe = csv_safe(bad.to_owned());
            assert_eq!(safe, format!("'{bad}"));
        }
        for fine in ["水阳镇", "585.00", "H0001", ""] {
            assert_eq!(csv_safe(fine.to_owned()), fine);
        }
    }

    /// 摸排名单: a COVERAGE_GAP case becomes a row with the person, the
    /// department and category in Chinese, the dates, and two empty
    /// columns; the workbook has four sheets.
    #[test]
    fn referrals_get_their_own_sheet() {
        use crate::model::{Rule, Timestamp, Tz};
        let mut case = Case::new("a".repeat(32), Rule::CoverageGap, "341802196002020025".into(), Timestamp(0), Timestamp(0));
        case.township = "水阳镇".into();
        case.household_id = Some("H7".into());
        let figures: BTreeMap<String, String> = [
            ("person_name", "李梅"),
            ("source", "disability"),
            ("category", "grade_1"),
            ("flagged_at", "2020-03-01"),
            ("deadline", "2020-05-30T00:00:00+08:00"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let l = Ledger {
            quarter: Quarter::parse("2020Q2").unwrap(),
            tz: Tz::default(),
            rows: vec![Row { case, name: "李梅".into(), figures, overdue: false }],
            totals: BTreeMap::new(),
            alerts_per_month: BTreeMap::new(),
        };
        let rows: Vec<&Row> = l.referrals().collect();
        assert_eq!(rows.len(), 1);
        let cells = Ledger::referral_cells(0, rows[0]);
        assert_eq!(
            cells,
            ["1", "水阳镇", "李梅", "341802196002020025", "H7", "残联", "一级残疾", "2020-03-01", "2020-05-30", "", ""].map(String::from)
        );
        let xlsx = l.to_xlsx().unwrap();
        let names = String::from_utf8_lossy(&xlsx);
        assert!(names.contains("xl/worksheets/sheet4.xml") && !names.contains("xl/worksheets/sheet5.xml"));
    }
}
