//! Bytes and lines to validated records, with the closed set of dead-letter
//! reasons (feed-v1 §7).
//!
//! Nothing here panics on any input and nothing is dropped: every line either
//! becomes a [`Record`] or a [`Rejection`] that the caller writes to the
//! dead-letter output. This module never touches state.

mod csv;
mod decision;
mod fields;
mod flat;
pub mod fuzz;
mod jsonl;
mod records;
mod vulnerable;

pub use self::csv::{CsvError, CsvItem, CsvReader};
pub use jsonl::{decode_json, decode_json_bytes, decode_json_str, LineReader, RawLine};
pub use decision::{validate_decision, RawDecision};
pub use vulnerable::{validate_vulnerable, RawVulnerable};
pub use records::{validate_death, validate_payment, validate_roster, RawDeath, RawPayment, RawRoster};

use crate::model::{Record, Timestamp};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Which feed a line belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kind {
    Payment,
    Roster,
    Death,
    /// Case decisions (§8 v1.1).
    Decision,
    /// Vulnerable persons of other departments (§10 v1.1).
    Vulnerable,
}

impl Kind {
    pub fn code(self) -> &'static str {
        match self {
            Kind::Payment => "payments",
            Kind::Roster => "roster",
            Kind::Death => "deaths",
            Kind::Decision => "decisions",
            Kind::Vulnerable => "vulnerable",
        }
    }
}

/// The closed set of reasons a record is refused. Metric labels and the
/// dead-letter `reason` prefix use [`Reason::code`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Not a JSON object (syntax error, wrong top-level type, duplicate key).
    BadJson,
    /// A CSV row that cannot be read (unbalanced quotes, wrong cell count).
    BadCsv,
    /// Bytes that are not UTF-8.
    BadEncoding,
    /// Larger than the configured record size limit.
    RecordTooLarge,
    /// A required field is absent, null or empty.
    MissingField,
    /// A field of the wrong JSON type, or longer than the field limit.
    BadField,
    /// `event_id` not 1–64 characters.
    BadEventId,
    /// An identity number that is not 17 digits and a digit or `X`.
    BadId,
    /// An identity number whose GB 11643 check digit is wrong.
    BadIdCheckDigit,
    /// Not a positive decimal string with at most 2 decimals.
    BadAmount,
    /// Not `YYYY-MM`.
    BadPeriod,
    /// Not a real `YYYY-MM-DD` day, or not an RFC 3339 timestamp with an
    /// offset (an impossible date either way, contract §7).
    BadDate,
    /// A value outside an enumerated set.
    UnknownEnum,
    /// `account_no` not 12–19 digits.
    BadAccountNo,
    /// A reversal without a valid target, or a payment that claims one.
    BadReversal,
    /// A `custodians` entry that does not meet the contract.
    BadCustodians,
    /// An event time more than `input.max_future` after the wall clock
    /// when the record was read (contract §7 v1.1): a mistyped year must
    /// not move the watermark years ahead.
    FutureTime,
    /// A decision whose `case_id` is not 32 lowercase hex characters, or
    /// not the case of its `rule` and `subject` (§8).
    BadCaseId,
    /// A decision whose case has no alert at its event time (§8).
    UnknownCase,
    /// A decision whose `decision_id` was seen before with other content
    /// (§11.5).
    ConflictingDecision,
    /// A payment or roster record of a township not in `[district]
    /// townships` (when that list is given).
    UnknownTownship,
}

impl Reason {
    pub const ALL: [Reason; 21] = [
        Reason::BadJson,
        Reason::BadCsv,
        Reason::BadEncoding,
        Reason::RecordTooLarge,
        Reason::MissingField,
        Reason::BadField,
        Reason::BadEventId,
        Reason::BadId,
        Reason::BadIdCheckDigit,
        Reason::BadAmount,
        Reason::BadPeriod,
        Reason::BadDate,
        Reason::UnknownEnum,
        Reason::BadAccountNo,
        Reason::BadReversal,
        Reason::BadCustodians,
        Reason::FutureTime,
        Reason::BadCaseId,
        Reason::UnknownCase,
        Reason::ConflictingDecision,
        Reason::UnknownTownship,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Reason::BadJson => "bad_json",
            Reason::BadCsv => "bad_csv",
            Reason::BadEncoding => "bad_encoding",
            Reason::RecordTooLarge => "record_too_large",
            Reason::MissingField => "missing_field",
            Reason::BadField => "bad_field",
            Reason::BadEventId => "bad_event_id",
            Reason::BadId => "bad_id",
            Reason::BadIdCheckDigit => "bad_id_check_digit",
            Reason::BadAmount => "bad_amount",
            Reason::BadPeriod => "bad_period",
            Reason::BadDate => "bad_date",
            Reason::UnknownEnum => "unknown_enum",
            Reason::BadAccountNo => "bad_account_no",
            Reason::BadReversal => "bad_reversal",
            Reason::BadCustodians => "bad_custodians",
            Reason::FutureTime => "future_time",
            Reason::BadCaseId => "bad_case_id",
            Reason::UnknownCase => "unknown_case",
            Reason::ConflictingDecision => "conflicting_decision",
            Reason::UnknownTownship => "unknown_township",
        }
    }
}

/// A refused record: the reason code and words a person can act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub reason: Reason,
    pub detail: String,
}

impl Rejection {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Rejection {
        Rejection { reason, detail: detail.into() }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.code(), self.detail)
    }
}

/// One line of the dead-letter output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// File name (or `topic/partition` when streaming).
    pub source: String,
    /// 1-based line (or offset when streaming).
    pub line: u64,
    /// `<code>: <words>`.
    pub reason: String,
    /// The original text (lossy UTF-8 when the bytes were not UTF-8).
    pub raw: String,
}

impl DeadLetter {
    pub fn new(source: &str, line: u64, rejection: &Rejection, raw: String) -> DeadLetter {
        DeadLetter { source: source.to_owned(), line, reason: rejection.to_string(), raw }
    }

    /// The reason code, the part before the colon.
    pub fn code(&self) -> &str {
        self.reason.split(':').next().unwrap_or("")
    }
}

/// Limits applied while decoding.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Longest record accepted, in bytes.
    pub max_record_bytes: usize,
    /// Longest string field accepted, in characters.
    pub max_field_chars: usize,
    /// The latest event time accepted: the wall clock when the record is
    /// read plus `input.max_future` (see [`Limits::read_at`]). A later one
    /// is dead-lettered `future_time`, so that it never reaches the
    /// watermark.
    pub latest_event_time: Timestamp,
}

impl Limits {
    /// These limits for a record read at `now`, accepting event times up to
    /// `max_future_ms` after it.
    pub fn read_at(self, now: Timestamp, max_future_ms: i64) -> Limits {
        Limits { latest_event_time: Timestamp(now.0.saturating_add(max_future_ms)), ..self }
    }
}

impl Default for Limits {
    /// The contract's size limits, and no bound on event time: callers that
    /// read records set it with [`Limits::read_at`].
    fn default() -> Limits {
        Limits { max_record_bytes: 64 * 1024, max_field_chars: 256, latest_event_time: Timestamp(i64::MAX) }
    }
}

/// Result of decoding one record.
pub type Decoded = Result<Record, Rejection>;
