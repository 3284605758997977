//! What the fuzz targets (`fuzz/`) run, and the regression test replays on
//! their corpus: the decoders on any bytes must answer — a record or a
//! rejection with its reason — never panic, never hold more than the
//! record limit, and give the same answer twice. An accepted record must
//! also survive a round trip: written back as contract JSON and decoded
//! again, it is the same record.

use super::{decode_json, CsvReader, Kind, Limits, LineReader, Reason};
use crate::model::Record;
use std::io::Write;

/// Small limits, so that the fuzzer reaches them.
const LIMITS: Limits = Limits { max_record_bytes: 4096, max_field_chars: 64, latest_event_time: crate::model::Timestamp(i64::MAX) };

/// One record of `kind` from `data`, as one line and as a file of lines.
pub fn one_record(kind: Kind, data: &[u8]) {
    let mut lines = LineReader::new(data, LIMITS.max_record_bytes);
    let mut n = 0;
    while let Ok(Some(line)) = lines.next_line() {
        assert!(line.bytes.len() <= LIMITS.max_record_bytes + 1, "a line reader held more than the limit");
        let first = decode_json(kind, &line, LIMITS);
        assert_eq!(first, decode_json(kind, &line, LIMITS), "decoding is not deterministic");
        match first {
            Ok(record) => round_trip(kind, &record),
            Err(r) => {
                assert!(Reason::ALL.contains(&r.reason));
                assert!(!r.detail.is_empty(), "a rejection without words");
                assert!(r.detail.len() < 2 * LIMITS.max_record_bytes, "a rejection that quotes without bound");
            }
        }
        n += 1;
        assert!(n <= data.len() + 1);
    }
}

/// A CSV file: the first byte picks the kind, the rest is the file.
pub fn csv_file(data: &[u8]) {
    let Some((&pick, body)) = data.split_first() else { return };
    let kind = [Kind::Payment, Kind::Roster, Kind::Death][usize::from(pick % 3)];
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(body).expect("write temp file");
    let Ok(mut rdr) = CsvReader::open(f.path(), kind, LIMITS) else { return };
    let mut rows = 0;
    while let Ok(Some(item)) = rdr.next_item() {
        assert!(item.raw.len() <= LIMITS.max_record_bytes, "a rejected row quoted beyond the limit");
        match &item.decoded {
            Ok(record) => {
                assert!(item.len <= LIMITS.max_record_bytes as u64, "a row over the limit was accepted");
                round_trip(kind, record);
            }
            Err(r) => assert!(!r.detail.is_empty(), "a rejection without words"),
        }
        rows += 1;
        assert!(rows <= body.len() + 1, "more rows than bytes");
    }
}

/// An accepted record, written as contract JSON, decodes to itself.
fn round_trip(kind: Kind, record: &Record) {
    let json = crate::produce::contract_json(record, crate::model::Tz::default());
    let json = String::from_utf8(json).expect("JSON is UTF-8");
    let again = super::decode_json_str(kind, &json, Limits { max_record_bytes: usize::MAX, ..LIMITS });
    assert_eq!(again.as_ref(), Ok(record), "round trip through {json}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contract_payment_round_trips() {
        let line = r#"{"event_id":"E1","beneficiary_id":"11010519491231002X","beneficiary_name":"张三","household_id":"H1","township":"水阳镇","program":"rural_dibao","period":"2019-03","amount":"585.00","account_no":"6217001234567890","account_name":"张三","scheduled_at":"2019-03-05","paid_at":"2019-03-12T09:30:00+08:00"}"#.as_bytes();
        let mut r = LineReader::new(line, 4096);
        assert!(decode_json(Kind::Payment, &r.next_line().unwrap().unwrap(), LIMITS).is_ok());
        one_record(Kind::Payment, line);
    }
}
