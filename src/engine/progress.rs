//! Where the engine stands (the input position, the watermark, the
//! sequences and the running totals), committed with every batch as
//! `meta/progress`. Its stored layout changed in v3 (`counts.decisions`)
//! and v4 (`counts.vulnerable`); `store::migrate` upgrades older ones.

use crate::model::{SortKey, Timestamp};
use serde::{Deserialize, Serialize};

/// Running totals, committed with the state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// Roster versions applied.
    pub roster: u64,
    /// Death records applied.
    pub deaths: u64,
    /// Payments applied (each counted once, whatever the redeliveries).
    pub payments: u64,
    /// Reversals applied.
    pub reversals: u64,
    /// Case decisions applied (§8).
    #[serde(default)]
    pub decisions: u64,
    /// Vulnerable-persons records applied (§10).
    #[serde(default)]
    pub vulnerable: u64,
    /// Records seen before and ignored.
    pub redelivered: u64,
    /// Records refused against state (dead-lettered).
    pub rejected: u64,
}

/// Where the engine stands: committed atomically with every batch.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// The last record applied, in merged input order.
    pub position: Option<SortKey>,
    /// The event-time watermark: the newest event time applied.
    pub watermark: Option<Timestamp>,
    /// Alerts raised so far (the `alert_log` sequence).
    pub alert_seq: u64,
    /// Dead letters raised while applying (the `dead_letters` sequence).
    pub dead_seq: u64,
    pub counts: Counts,
    /// The inputs this state was built from (name, size): a resumed audit
    /// must read the same files.
    pub inputs: Vec<(String, u64)>,
    /// Commits so far: each numbers the `months` segments it writes, so a
    /// later segment sorts after (and overrides) an earlier one.
    pub commits: u64,
}
