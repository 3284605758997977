//! The contract's records as types (feed-v1 §1–4).
//!
//! Everything here is plain data plus validation helpers: no I/O, no state.
//! A value of these types has passed validation, so later stages never
//! re-check formats.

pub mod alert;
pub mod decision;
pub mod id;
pub mod money;
pub mod name;
pub mod position;
pub mod records;
pub mod time;
pub mod vulnerable;

pub use alert::{Alert, Evidence, Rule, Severity};
pub use id::PersonId;
pub use money::Money;
pub use position::PositionError;
pub use records::{
    Custodian, DeathRecord, DeathSource, Payment, PaymentKind, PaymentType, Program, Record,
    RosterRecord, SortKey, Status,
};
pub use time::{Period, Timestamp, Tz};
pub use vulnerable::{VulnerableRecord, VulnerableSource};

/// A short string kept inline (up to 24 bytes) instead of on the heap. The
/// fields of a payment (ids, names, township, bank) all fit, so a payment
/// is decoded, copied and dropped without an allocation per field, and it
/// encodes exactly like a `String`.
pub type Text = compact_str::CompactString;
