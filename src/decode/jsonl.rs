//! JSON Lines: a bounded line reader and the JSON decoder for one record.

use super::records::{validate_death, validate_payment, validate_roster, RawDeath, RawPayment, RawRoster};
use super::{Decoded, Kind, Limits, Reason, Rejection};
use crate::model::Record;
use std::io::{self, BufRead};

/// One physical line, or what could be kept of it.
#[derive(Debug)]
pub struct RawLine {
    /// 1-based line number.
    pub line: u64,
    /// Byte offset of the line's start in the input.
    pub offset: u64,
    /// The bytes without the line ending (truncated when too large).
    pub bytes: Vec<u8>,
    /// True when the line exceeded the limit; `bytes` then holds its start.
    pub too_large: bool,
}

/// Reads lines without ever holding more than the record limit of one line.
pub struct LineReader<R> {
    inner: R,
    line: u64,
    /// Bytes consumed so far.
    offset: u64,
    limit: usize,
}

impl<R: BufRead> LineReader<R> {
    /// Bytes consumed so far (for progress).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn new(inner: R, limit: usize) -> LineReader<R> {
        LineReader { inner, line: 0, offset: 0, limit }
    }

    /// The next line that is not blank, or `None` at the end.
    pub fn next_line(&mut self) -> io::Result<Option<RawLine>> {
        loop {
            let start = self.offset;
            let mut bytes = Vec::new();
            let mut too_large = false;
            let mut any = false;
            loop {
                let buf = self.inner.fill_buf()?;
                if buf.is_empty() {
                    break;
                }
                any = true;
                let (chunk, done) = match memchr::memchr(b'\n', buf) {
                    Some(i) => (&buf[..i], Some(i + 1)),
                    None => (buf, None),
                };
                if !too_large {
                    let room = self.limit + 1 - bytes.len().min(self.limit + 1);
                    if chunk.len() > room {
                        bytes.extend_from_slice(&chunk[..room]);
                        too_large = true;
                    } else {
                        bytes.extend_from_slice(chunk);
                    }
                }
                let used = done.unwrap_or(buf.len());
                self.inner.consume(used);
                self.offset += used as u64;
                if done.is_some() {
                    break;
                }
            }
            if !any {
                return Ok(None);
            }
            self.line += 1;
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
            if self.line == 1 && bytes.starts_with(b"\xEF\xBB\xBF") {
                bytes.drain(..3);
            }
            too_large |= bytes.len() > self.limit;
            if !too_large && bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Ok(Some(RawLine { line: self.line, offset: start, bytes, too_large }));
        }
    }
}

/// Decodes one JSON Lines record of the given kind.
pub fn decode_json(kind: Kind, line: &RawLine, limits: Limits) -> Decoded {
    if line.too_large {
        return Err(too_large(limits));
    }
    decode_json_bytes(kind, &line.bytes, limits)
}

/// Decodes one record of the given kind from raw bytes (a line, a Kafka
/// message): the size limit, UTF-8, then the JSON.
pub fn decode_json_bytes(kind: Kind, bytes: &[u8], limits: Limits) -> Decoded {
    if bytes.len() > limits.max_record_bytes {
        return Err(too_large(limits));
    }
    // The vectorised check first; the standard one says where it fails.
    let text = match simdutf8::basic::from_utf8(bytes) {
        Ok(text) => text,
        Err(_) => std::str::from_utf8(bytes)
            .map_err(|e| Rejection::new(Reason::BadEncoding, format!("not UTF-8 at byte {}", e.valid_up_to())))?,
    };
    decode_json_str(kind, text, limits)
}

fn too_large(limits: Limits) -> Rejection {
    Rejection::new(Reason::RecordTooLarge, format!("record is larger than {} bytes", limits.max_record_bytes))
}

/// Why serde_json refused a line, in words for the dead letter.
fn bad(e: serde_json::Error) -> Rejection {
    let msg = e.to_string();
    let msg = if msg.starts_with("invalid type") { "expected a JSON object".to_owned() } else { msg };
    Rejection::new(Reason::BadJson, msg)
}

/// Decodes one JSON object of the given kind.
pub fn decode_json_str(kind: Kind, text: &str, limits: Limits) -> Decoded {
    match kind {
        Kind::Payment => {
            // The usual flat line is split directly; serde_json reads the
            // rest, and would read these the same (see `flat`).
            if let Some(raw) = RawPayment::from_flat(text) {
                return validate_payment(&raw, limits).map(Record::Payment);
            }
            payment_by_serde(text, limits)
        }
        Kind::Roster => {
            let raw: RawRoster = serde_json::from_str(text).map_err(bad)?;
            validate_roster(&raw, limits).map(Record::Roster)
        }
        Kind::Death => {
            let raw: RawDeath = serde_json::from_str(text).map_err(bad)?;
            validate_death(&raw, limits).map(Record::Death)
        }
        Kind::Decision => {
            let raw: super::RawDecision = serde_json::from_str(text).map_err(bad)?;
            super::validate_decision(&raw, limits).map(Record::Decision)
        }
        Kind::Vulnerable => {
            let raw: super::RawVulnerable = serde_json::from_str(text).map_err(bad)?;
            super::validate_vulnerable(&raw, limits).map(Record::Vulnerable)
        }
    }
}

/// A payment line read by serde_json.
fn payment_by_serde(text: &str, limits: Limits) -> Decoded {
    let raw: RawPayment = serde_json::from_str(text).map_err(bad)?;
    validate_payment(&raw, limits).map(Record::Payment)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;

    const GOOD: &str = r#"{"event_id":"E1","beneficiary_id":"11010519491231002X","beneficiary_name":"张三","household_id":"H1","township":"水阳镇","program":"rural_dibao","period":"2019-03","amount":"585.00","account_no":"6217001234567890","account_name":"张三","scheduled_at":"2019-03-05","paid_at":"2019-03-12T09:30:00+08:00","extra":{"ignored":[1,2]}}"#;

    fn payment(text: &str) -> Decoded {
        decode_json_str(Kind::Payment, text, Limits::default())
    }

    fn reason(text: &str) -> Reason {
        payment(text).unwrap_err().reason
    }

    fn with(field: &str, value: &str) -> String {
        let mut v: serde_json::Value = serde_json::from_str(GOOD).unwrap();
        if value == "<absent>" {
            v.as_object_mut().unwrap().remove(field);
        } else {
            v[field] = serde_json::from_str(value).unwrap();
        }
        v.to_string()
    }

    #[test]
    fn accepts_a_contract_payment_and_ignores_unknown_fields() {
        let Record::Payment(p) = payment(GOOD).unwrap() else { panic!() };
        assert_eq!(p.amount.to_string(), "585.00");
        assert_eq!(p.payment_type, crate::model::PaymentType::Regular);
        assert_eq!(p.kind, crate::model::PaymentKind::Payment);
    }

    #[test]
    fn every_bad_input_kind_has_its_reason() {
        assert_eq!(reason("{not json"), Reason::BadJson);
        assert_eq!(reason("[1,2]"), Reason::BadJson);
        assert_eq!(reason(&with("event_id", "<absent>")), Reason::MissingField);
        assert_eq!(reason(&with("event_id", "null")), Reason::MissingField);
        assert_eq!(reason(&with("event_id", &format!("\"{}\"", "x".repeat(65)))), Reason::BadEventId);
        assert_eq!(reason(&with("township", "\"\"")), Reason::MissingField);
        assert_eq!(reason(&with("township", "12")), Reason::BadField);
        assert_eq!(reason(&with("beneficiary_id", "\"110105194912310021\"")), Reason::BadIdCheckDigit);
        assert_eq!(reason(&with("beneficiary_id", "\"11010519491231\"")), Reason::BadId);
        assert_eq!(reason(&with("amount", "\"-5.00\"")), Reason::BadAmount);
        assert_eq!(reason(&with("amount", "\"0.00\"")), Reason::BadAmount);
        assert_eq!(reason(&with("amount", "\"5.001\"")), Reason::BadAmount);
        assert_eq!(reason(&with("amount", "585.0")), Reason::BadAmount);
        assert_eq!(reason(&with("period", "\"2019-13\"")), Reason::BadPeriod);
        assert_eq!(reason(&with("scheduled_at", "\"2019-02-30\"")), Reason::BadDate);
        assert_eq!(reason(&with("paid_at", "\"2019-03-12 09:30\"")), Reason::BadDate);
        assert_eq!(reason(&with("program", "\"dibao\"")), Reason::UnknownEnum);
        assert_eq!(reason(&with("payment_type", "\"bonus\"")), Reason::UnknownEnum);
        assert_eq!(reason(&with("kind", "\"refund\"")), Reason::UnknownEnum);
        assert_eq!(reason(&with("account_no", "\"6217-0012\"")), Reason::BadAccountNo);
        assert_eq!(reason(&with("kind", "\"reversal\"")), Reason::BadReversal);
        assert_eq!(reason(&with("reverses", "\"E0\"")), Reason::BadReversal);
    }

    /// Contract §7 v1.1: townships are compared after the name
    /// normalisation of §1, so every record carries the normalised name.
    #[test]
    fn townships_are_normalised() {
        for raw in ["\"水阳镇 \"", "\" 水阳镇\"", "\"水阳\u{3000}镇\""] {
            let Record::Payment(p) = payment(&with("township", raw)).unwrap() else { panic!() };
            assert_eq!(p.township, "水阳镇", "{raw}");
        }
    }

    /// Contract §7 v1.1: an event time more than `max_future` after the
    /// wall clock is `future_time`, for each kind's event-time field; one
    /// exactly at the bound is accepted.
    #[test]
    fn an_event_time_past_the_bound_is_future_time() {
        use crate::model::Timestamp;
        let now = Timestamp::parse_rfc3339("2026-11-30T12:00:00+08:00").unwrap();
        let limits = Limits::default().read_at(now, 24 * 3600 * 1000);
        let at_bound = "\"2026-12-01T12:00:00+08:00\"";
        let past = "\"2026-12-01T12:00:00.001+08:00\"";
        let decode = |t: &str| decode_json_str(Kind::Payment, &with("paid_at", t), limits);
        assert!(decode(at_bound).is_ok());
        let r = decode(past).unwrap_err();
        assert_eq!(r.reason, Reason::FutureTime);
        assert!(r.detail.contains("2026-12-01T12:00:00+08:00") && r.detail.contains("input.max_future"), "{r}");
        assert_eq!(decode("\"2199-01-05T00:00:00+08:00\"").unwrap_err().reason, Reason::FutureTime);
        // Without a bound (the default limits), the same line is accepted.
        assert!(decode_json_str(Kind::Payment, &with("paid_at", past), Limits::default()).is_ok());

        let roster = r#"{"beneficiary_id":"11010519491231002X","name":"张三","household_id":"H1","township":"水阳镇","program":"rural_dibao","status":"active","enrolled_at":"2019-01-01","status_since":"2019-01-01","monthly_amount":"585.00","updated_at":"UPDATED"}"#;
        let death = r#"{"record_id":"D1","person_id":"11010519491231002X","name":"张三","date_of_death":"2019-01-01","source":"village","reported_at":"UPDATED"}"#;
        for (kind, text) in [(Kind::Roster, roster), (Kind::Death, death)] {
            assert!(decode_json_str(kind, &text.replace("UPDATED", "2026-12-01T12:00:00+08:00"), limits).is_ok());
            let late = decode_json_str(kind, &text.replace("UPDATED", "2199-01-05T00:00:00+08:00"), limits);
            assert_eq!(late.unwrap_err().reason, Reason::FutureTime, "{kind:?}");
        }
    }

    /// v1.1 §2, §11.9: a custodian's optional `id_no` is checked like a
    /// `beneficiary_id`; a bad one refuses the whole roster record.
    #[test]
    fn a_custodian_id_no_is_checked_and_a_bad_one_refuses_the_record() {
        let roster = |custodian: &str| {
            format!(
                r#"{{"beneficiary_id":"11010519491231002X","name":"张三","household_id":"H1","township":"水阳镇","program":"rural_dibao","status":"active","enrolled_at":"2019-01-01","status_since":"2019-01-01","monthly_amount":"585.00","custodians":[{custodian}],"updated_at":"2019-01-01T10:00:00+08:00"}}"#
            )
        };
        let base = r#""name":"王五","account_no":"6217009999999999","registered_at":"2019-01-01""#;
        let Ok(Record::Roster(r)) = decode_json_str(Kind::Roster, &roster(&format!("{{{base}}}")), Limits::default()) else { panic!() };
        assert_eq!(r.custodians[0].id_no, None, "optional");
        let Ok(Record::Roster(r)) =
            decode_json_str(Kind::Roster, &roster(&format!(r#"{{{base},"id_no":"341802195001010015"}}"#)), Limits::default())
        else {
            panic!()
        };
        assert_eq!(r.custodians[0].id_no.as_ref().map(|i| i.as_str()), Some("341802195001010015"));
        let bad = decode_json_str(Kind::Roster, &roster(&format!(r#"{{{base},"id_no":"341802195001010014"}}"#)), Limits::default());
        let e = bad.unwrap_err();
        assert_eq!(e.reason, Reason::BadIdCheckDigit);
        assert!(e.detail.contains("custodians[0].id_no"), "{e}");
        let short = decode_json_str(Kind::Roster, &roster(&format!(r#"{{{base},"id_no":"3418"}}"#)), Limits::default());
        assert_eq!(short.unwrap_err().reason, Reason::BadId);
    }

    /// Every case above, as the flat line an exporter writes (no nested
    /// field): the fast path takes it and answers as serde_json does.
    #[test]
    fn the_flat_fast_path_answers_as_serde_json() {
        let flat = |text: String| {
            let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
            v.as_object_mut().unwrap().remove("extra");
            v.to_string()
        };
        let mut cases = vec![flat(GOOD.to_owned())];
        for (field, value) in [
            ("event_id", "<absent>"),
            ("event_id", &format!("\"{}\"", "x".repeat(65))),
            ("township", "\"\""),
            ("beneficiary_id", "\"110105194912310021\""),
            ("beneficiary_id", "\"11010519491231\""),
            ("amount", "\"-5.00\""),
            ("amount", "\"5.001\""),
            ("amount", "\" 585.00 \""),
            ("period", "\"2019-13\""),
            ("scheduled_at", "\"2019-02-30\""),
            ("paid_at", "\"2019-03-12 09:30\""),
            ("program", "\"dibao\""),
            ("payment_type", "\"back_pay\""),
            ("kind", "\"reversal\""),
            ("reverses", "\"E0\""),
            ("account_no", "\"6217-0012\""),
            ("account_name", "\"张 三\""),
            ("bank", "\"宣城农商银行\""),
        ] {
            cases.push(flat(with(field, value)));
        }
        let good = flat(GOOD.to_owned());
        cases.push(good.replacen("{", "{\"event_id\":\"E2\",", 1));
        cases.push(good.replacen("{", "{\"unknown\":\"x\",", 1));
        for text in cases {
            assert!(super::super::flat::plain_object(&text, |_, _| Some(())).is_some(), "not flat: {text}");
            assert_eq!(payment(&text), payment_by_serde(&text, Limits::default()), "{text}");
        }
    }

    proptest::proptest! {
        /// Any object made of the payment's fields (some left out, some
        /// given twice, some unknown), with odd values among good ones.
        #[test]
        fn any_flat_payment_line_answers_as_serde_json(
            fields in proptest::collection::vec((0usize..18, 0usize..6), 0..24),
        ) {
            const KEYS: [&str; 18] = [
                "event_id", "kind", "reverses", "beneficiary_id", "beneficiary_name", "household_id", "township",
                "program", "period", "amount", "payment_type", "account_no", "account_name", "bank",
                "scheduled_at", "paid_at", "note", "event_ID",
            ];
            let good: serde_json::Value = serde_json::from_str(GOOD).unwrap();
            let odd = ["", " ", "E1", "2019-03", "12.5", "张\u{3000}三"];
            let body: Vec<String> = fields
                .iter()
                .map(|(k, v)| {
                    let key = KEYS[*k];
                    let value = match (good.get(key).and_then(|x| x.as_str()), *v) {
                        (Some(g), 0..=2) => g.to_owned(),
                        (_, v) => odd[v].to_owned(),
                    };
                    format!("{}:{}", serde_json::Value::from(key), serde_json::Value::from(value))
                })
                .collect();
            let text = format!("{{{}}}", body.join(","));
            proptest::prop_assert_eq!(payment(&text), payment_by_serde(&text, Limits::default()));
        }
    }

    #[test]
    fn line_reader_bounds_memory_and_numbers_lines() {
        let data = format!("{GOOD}\r\n\n   \n{}\n{GOOD}", "y".repeat(100));
        let mut r = LineReader::new(data.as_bytes(), 80);
        let first = r.next_line().unwrap().unwrap();
        assert_eq!(first.line, 1);
        assert_eq!(first.offset, 0);
        assert!(first.too_large, "the payment line is longer than 80 bytes");
        let big = r.next_line().unwrap().unwrap();
        assert_eq!(big.line, 4);
        assert_eq!(big.offset as usize, GOOD.len() + 2 + 1 + 4);
        assert!(big.too_large);
        assert!(big.bytes.len() <= 81);
        assert_eq!(r.next_line().unwrap().unwrap().line, 5);
        assert!(r.next_line().unwrap().is_none());
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_any_text(s in "\\PC{0,200}") {
            for kind in [Kind::Payment, Kind::Roster, Kind::Death] {
                let _ = decode_json_str(kind, &s, Limits::default());
            }
        }

        #[test]
        fn never_panics_on_any_field_values(
            field in proptest::sample::select(vec!["event_id", "kind", "reverses", "beneficiary_id", "amount", "period",
                "paid_at", "scheduled_at", "program", "payment_type", "account_no", "custodians", "status", "updated_at",
                "enrolled_at", "monthly_amount", "filed_relative", "date_of_death", "reported_at", "source", "person_id"]),
            value in proptest::prop_oneof![
                proptest::prelude::any::<i64>().prop_map(|n| n.to_string()),
                proptest::prelude::any::<f64>().prop_map(|n| n.to_string()),
                "\"\\PC{0,40}\"",
                proptest::strategy::Just("null".to_string()),
                proptest::strategy::Just("[{}]".to_string()),
                proptest::strategy::Just("{\"a\":[1,{\"b\":null}]}".to_string()),
                proptest::strategy::Just("true".to_string()),
            ],
        ) {
            let mut v: serde_json::Value = serde_json::from_str(GOOD).unwrap();
            v[field] = serde_json::from_str(&value).unwrap_or(serde_json::Value::Null);
            for kind in [Kind::Payment, Kind::Roster, Kind::Death] {
                let _ = decode_json_str(kind, &v.to_string(), Limits::default());
            }
        }

        #[test]
        fn line_reader_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2000), limit in 1usize..300) {
            let mut r = LineReader::new(&data[..], limit);
            let mut last = 0;
            while let Some(l) = r.next_line().unwrap() {
                proptest::prop_assert!(l.line > last);
                proptest::prop_assert!(l.bytes.len() <= limit + 1);
                last = l.line;
                let _ = decode_json(Kind::Payment, &l, Limits { max_record_bytes: limit, ..Limits::default() });
            }
        }
    }

    #[test]
    fn bom_and_bad_utf8() {
        let data = b"\xEF\xBB\xBF{}\n\xff\xfe\n".to_vec();
        let mut r = LineReader::new(&data[..], 1000);
        let l1 = r.next_line().unwrap().unwrap();
        assert_eq!(l1.bytes, b"{}");
        let l2 = r.next_line().unwrap().unwrap();
        assert_eq!(decode_json(Kind::Payment, &l2, Limits::default()).unwrap_err().reason, Reason::BadEncoding);
    }
}
