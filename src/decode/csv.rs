//! CSV input: the same field names as a header row, `custodians` as a JSON
//! string column. Empty cells mean "not given".

use super::fields::Scalar;
use super::records::{validate_death, validate_payment, validate_roster, RawDeath, RawPayment, RawRoster};
use super::{Decoded, Kind, Limits, Reason, Rejection};
use crate::model::Record;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("{path}: the header row cannot be read: {source}")]
    Header { path: String, source: csv::Error },
}

/// One CSV row, decoded.
#[derive(Debug)]
pub struct CsvItem {
    /// 1-based line of the row's start.
    pub line: u64,
    /// Byte range of the row in the file.
    pub offset: u64,
    pub len: u64,
    pub decoded: Decoded,
    /// The row's original text, filled only for rejected rows.
    pub raw: String,
}

/// The CSV parser's read buffer.
const PARSER_BUFFER: usize = 64 * 1024;

/// What [`Bounded`] answers once a record has used up its allowance.
const OVER_ALLOWANCE: &str = "paywatch: CSV record over its allowance";

/// The file under the CSV parser. It stops handing bytes over once one
/// record has taken more than its allowance, so a quote that is never
/// closed cannot make the parser buffer the rest of the file.
struct Bounded {
    inner: BufReader<File>,
    /// Bytes handed to the parser since the current record started.
    since_record: u64,
    /// The record limit plus what the parser may read ahead: a record
    /// within the limit never reaches it.
    allowance: u64,
}

impl Read for Bounded {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.since_record >= self.allowance {
            return Err(io::Error::other(OVER_ALLOWANCE));
        }
        let room = usize::try_from(self.allowance - self.since_record).unwrap_or(usize::MAX);
        let take = buf.len().min(room);
        let n = self.inner.read(&mut buf[..take])?;
        self.since_record += n as u64;
        Ok(n)
    }
}

impl Seek for Bounded {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.since_record = 0;
        self.inner.seek(pos)
    }
}

/// Reads one CSV file of one record kind.
pub struct CsvReader {
    rdr: csv::Reader<Bounded>,
    /// A second handle, to copy a rejected row's original bytes.
    raw: File,
    kind: Kind,
    index: HashMap<String, usize>,
    width: usize,
    limits: Limits,
    row: csv::StringRecord,
}

impl CsvReader {
    pub fn open(path: &Path, kind: Kind, limits: Limits) -> Result<CsvReader, CsvError> {
        let p = path.display().to_string();
        let io_err = |source| CsvError::Io { path: p.clone(), source };
        let file = File::open(path).map_err(io_err)?;
        let raw = File::open(path).map_err(io_err)?;
        let bounded = Bounded {
            inner: BufReader::new(file),
            since_record: 0,
            allowance: (limits.max_record_bytes + 2 * PARSER_BUFFER) as u64,
        };
        let mut rdr = csv::ReaderBuilder::new().flexible(true).buffer_capacity(PARSER_BUFFER).from_reader(bounded);
        let headers = rdr.headers().map_err(|source| CsvError::Header { path: p.clone(), source })?.clone();
        let index = headers
            .iter()
            .enumerate()
            .map(|(i, h)| (h.trim_start_matches('\u{feff}').trim().to_owned(), i))
            .collect();
        Ok(CsvReader { rdr, raw, kind, index, width: headers.len(), limits, row: csv::StringRecord::new() })
    }

    pub fn next_item(&mut self) -> io::Result<Option<CsvItem>> {
        let start = self.rdr.position().clone();
        self.rdr.get_mut().since_record = 0;
        let read = self.rdr.read_record(&mut self.row);
        if let Err(e) = &read {
            if matches!(e.kind(), csv::ErrorKind::Io(io) if io.to_string() == OVER_ALLOWANCE) {
                return self.skip_oversized(&start).map(Some);
            }
        }
        let end = self.rdr.position().byte();
        let line = start.line();
        let decoded = match read {
            Ok(false) => return Ok(None),
            Ok(true) if end - start.byte() > self.limits.max_record_bytes as u64 => {
                return self.skip_oversized(&start).map(Some);
            }
            Ok(true) if self.row.len() != self.width => Err(Rejection::new(
                Reason::BadCsv,
                format!("row has {} cells, the header has {}", self.row.len(), self.width),
            )),
            Ok(true) => self.decode_row(),
            Err(e) => match e.kind() {
                csv::ErrorKind::Io(_) => return Err(io::Error::other(e.to_string())),
                csv::ErrorKind::Utf8 { .. } => Err(Rejection::new(Reason::BadEncoding, "not UTF-8")),
                _ => Err(Rejection::new(Reason::BadCsv, e.to_string())),
            },
        };
        let raw = if decoded.is_err() { self.raw_text(start.byte(), end)? } else { String::new() };
        Ok(Some(CsvItem { line, offset: start.byte(), len: end - start.byte(), decoded, raw }))
    }

    /// Bytes consumed so far (for progress).
    pub fn offset(&self) -> u64 {
        self.rdr.position().byte()
    }

    /// A record that ran past its allowance (usually a quote never
    /// closed): its first line is dead-lettered and reading starts again
    /// at the next line, with the same header.
    fn skip_oversized(&mut self, start: &csv::Position) -> io::Result<CsvItem> {
        let resume = self.next_line_start(start.byte())?;
        let raw = self.raw_text(start.byte(), resume)?;
        let mut pos = csv::Position::new();
        pos.set_byte(resume).set_line(start.line() + 1).set_record(start.record() + 1);
        self.rdr.seek(pos).map_err(|e| io::Error::other(e.to_string()))?;
        let decoded = Err(Rejection::new(
            Reason::RecordTooLarge,
            format!(
                "record is larger than {} bytes (a quote that is never closed?); reading goes on at the next line",
                self.limits.max_record_bytes
            ),
        ));
        Ok(CsvItem { line: start.line(), offset: start.byte(), len: resume - start.byte(), decoded, raw })
    }

    /// The offset just after the first line end at or after `from` (the
    /// file's length when there is none).
    fn next_line_start(&mut self, from: u64) -> io::Result<u64> {
        self.raw.seek(SeekFrom::Start(from))?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut at = from;
        loop {
            let n = self.raw.read(&mut buf)?;
            if n == 0 {
                return Ok(at);
            }
            if let Some(i) = buf[..n].iter().position(|&b| b == b'\n') {
                return Ok(at + i as u64 + 1);
            }
            at += n as u64;
        }
    }

    fn raw_text(&mut self, start: u64, end: u64) -> io::Result<String> {
        let len = (end.saturating_sub(start)).min(self.limits.max_record_bytes as u64);
        let mut buf = vec![0; len as usize];
        self.raw.seek(SeekFrom::Start(start))?;
        self.raw.read_exact(&mut buf)?;
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    fn cell(&self, name: &str) -> Option<Scalar<'_>> {
        let i = *self.index.get(name)?;
        let v = self.row.get(i)?;
        if v.is_empty() {
            None
        } else {
            Some(Scalar::Str(Cow::Borrowed(v)))
        }
    }

    fn decode_row(&self) -> Decoded {
        let c = |n| self.cell(n);
        match self.kind {
            Kind::Payment => {
                let raw = RawPayment {
                    event_id: c("event_id"),
                    kind: c("kind"),
                    reverses: c("reverses"),
                    beneficiary_id: c("beneficiary_id"),
                    beneficiary_name: c("beneficiary_name"),
                    household_id: c("household_id"),
                    township: c("township"),
                    program: c("program"),
                    period: c("period"),
                    amount: c("amount"),
                    payment_type: c("payment_type"),
                    account_no: c("account_no"),
                    account_name: c("account_name"),
                    bank: c("bank"),
                    scheduled_at: c("scheduled_at"),
                    paid_at: c("paid_at"),
                };
                validate_payment(&raw, self.limits).map(Record::Payment)
            }
            Kind::Roster => {
                let custodians = match c("custodians") {
                    Some(Scalar::Str(s)) => Some(serde_json::Value::String(s.into_owned())),
                    _ => None,
                };
                let raw = RawRoster {
                    beneficiary_id: c("beneficiary_id"),
                    name: c("name"),
                    household_id: c("household_id"),
                    township: c("township"),
                    program: c("program"),
                    status: c("status"),
                    enrolled_at: c("enrolled_at"),
                    status_since: c("status_since"),
                    monthly_amount: c("monthly_amount"),
                    filed_relative: c("filed_relative"),
                    custodians,
                    updated_at: c("updated_at"),
                };
                validate_roster(&raw, self.limits).map(Record::Roster)
            }
            Kind::Death => {
                let raw = RawDeath {
                    record_id: c("record_id"),
                    person_id: c("person_id"),
                    name: c("name"),
                    date_of_death: c("date_of_death"),
                    source: c("source"),
                    reported_at: c("reported_at"),
                };
                validate_death(&raw, self.limits).map(Record::Death)
            }
            Kind::Decision => {
                let raw = super::RawDecision {
                    decision_id: c("decision_id"),
                    case_id: c("case_id"),
                    rule: c("rule"),
                    subject: c("subject"),
                    outcome: c("outcome"),
                    action: c("action"),
                    amount_recovered: c("amount_recovered"),
                    document_no: c("document_no"),
                    clue_no: c("clue_no"),
                    note: c("note"),
                    decided_by: c("decided_by"),
                    decided_at: c("decided_at"),
                };
                super::validate_decision(&raw, self.limits).map(Record::Decision)
            }
            Kind::Vulnerable => {
                let raw = super::RawVulnerable {
                    record_id: c("record_id"),
                    person_id: c("person_id"),
                    name: c("name"),
                    household_id: c("household_id"),
                    township: c("township"),
                    source: c("source"),
                    category: c("category"),
                    flagged_at: c("flagged_at"),
                    cleared_at: c("cleared_at"),
                    updated_at: c("updated_at"),
                };
                super::validate_vulnerable(&raw, self.limits).map(Record::Vulnerable)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn read_all(kind: Kind, text: &str) -> Vec<CsvItem> {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        let mut r = CsvReader::open(f.path(), kind, Limits::default()).unwrap();
        let mut out = Vec::new();
        while let Some(item) = r.next_item().unwrap() {
            out.push(item);
        }
        out
    }

    #[test]
    fn roster_with_custodians_column() {
        let text = "\u{feff}beneficiary_id,name,household_id,township,program,status,enrolled_at,status_since,monthly_amount,filed_relative,custodians,updated_at\n\
            11010519491231002X,张三,H1,水阳镇,tekun,active,2018-01-01,2018-01-01,900.00,true,\"[{\"\"name\"\":\"\"水阳镇敬老院\"\",\"\"account_no\"\":\"\"621700000000000001\"\",\"\"registered_at\"\":\"\"2018-01-01\"\"}]\",2018-01-01T08:00:00+08:00\n\
            11010519491231002X,张三,H1,水阳镇,tekun,gone,2018-01-01,2018-01-01,900.00,,,2018-01-01T08:00:00+08:00\n\
            11010519491231002X,张三\n";
        let items = read_all(Kind::Roster, text);
        assert_eq!(items.len(), 3);
        let Ok(Record::Roster(r)) = &items[0].decoded else { panic!("{:?}", items[0].decoded) };
        assert!(r.filed_relative);
        assert_eq!(r.custodians.len(), 1);
        assert_eq!(r.custodians[0].name, "水阳镇敬老院");
        assert_eq!(items[1].decoded.as_ref().unwrap_err().reason, Reason::UnknownEnum);
        assert_eq!(items[1].line, 3);
        assert!(items[1].raw.contains(",gone,"));
        assert_eq!(items[2].decoded.as_ref().unwrap_err().reason, Reason::BadCsv);
        assert_eq!(items[2].raw, "11010519491231002X,张三");
    }

    #[test]
    fn payments_empty_cells_are_missing() {
        let text = "event_id,beneficiary_id,beneficiary_name,household_id,township,program,period,amount,account_no,account_name,scheduled_at,paid_at\n\
            E1,11010519491231002X,张三,H1,水阳镇,rural_dibao,2019-03,585.00,6217001234567890,张三,2019-03-05,2019-03-12T09:30:00+08:00\n\
            E2,11010519491231002X,张三,H1,,rural_dibao,2019-03,585.00,6217001234567890,张三,2019-03-05,2019-03-12T09:30:00+08:00\n";
        let items = read_all(Kind::Payment, text);
        assert!(items[0].decoded.is_ok());
        let e = items[1].decoded.as_ref().unwrap_err();
        assert_eq!(e.reason, Reason::MissingField);
        assert!(e.detail.contains("township"));
    }

    #[test]
    fn an_unclosed_quote_costs_one_line_and_bounded_memory() {
        let header = "event_id,beneficiary_id,beneficiary_name,household_id,township,program,period,amount,account_no,account_name,scheduled_at,paid_at\n";
        let row = |i: usize| {
            format!("E{i},11010519491231002X,张三,H1,水阳镇,rural_dibao,2019-03,585.00,6217001234567890,张三,2019-03-05,2019-03-12T09:30:00+08:00\n")
        };
        let mut text = header.to_owned() + &row(0) + "E-bad,\"never closed,x\n";
        for i in 1..=3000 {
            text += &row(i);
        }
        let items = read_all(Kind::Payment, &text);
        assert!(items[0].decoded.is_ok());
        let bad = &items[1];
        assert_eq!((bad.line, bad.decoded.as_ref().unwrap_err().reason), (3, Reason::RecordTooLarge));
        assert_eq!(bad.raw, "E-bad,\"never closed,x");
        assert_eq!(items.len(), 3002, "every row after the bad line is read");
        assert!(items[2..].iter().all(|i| i.decoded.is_ok()));
        assert_eq!(items.last().unwrap().line, 3003);
    }
}
