//! Reviews (复核纠正): what a supervisor concluded about an alert. Append-only:
//! each review is kept with its reviewer and time; an alert's status is its
//! newest review's outcome, `open` before any.

use crate::store::{Cf, Store, StoreError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// 核实属实: the finding is right.
    Confirmed,
    /// 误报: the finding is wrong.
    FalsePositive,
    /// 已纠正: confirmed and put right (money recovered, account changed…).
    Corrected,
    /// 核查中: being looked into.
    InProgress,
}

impl Outcome {
    pub fn code(self) -> &'static str {
        match self {
            Outcome::Confirmed => "confirmed",
            Outcome::FalsePositive => "false_positive",
            Outcome::Corrected => "corrected",
            Outcome::InProgress => "in_progress",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        [Outcome::Confirmed, Outcome::FalsePositive, Outcome::Corrected, Outcome::InProgress].into_iter().find(|o| o.code() == s)
    }
}

/// One review.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Review {
    pub outcome: Outcome,
    pub note: String,
    /// The name of the token that posted it.
    pub reviewer: String,
    /// RFC 3339, wall clock.
    pub at: String,
}

fn key(alert_id: &str, seq: u64) -> Vec<u8> {
    let mut k = alert_id.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// An alert's reviews, oldest first.
pub fn history(store: &Store, alert_id: &str) -> Result<Vec<Review>, StoreError> {
    let (from, to) = (key(alert_id, 0), key(alert_id, u64::MAX));
    store
        .entries_between(Cf::Reviews, &from, &to, usize::MAX)?
        .into_iter()
        .map(|(_, v)| serde_json::from_slice(&v).map_err(|e| StoreError::Refused { path: "reviews".into(), reason: e.to_string() }))
        .collect()
}

/// The status shown for an alert: its newest review's outcome, or `open`.
pub fn status(history: &[Review]) -> &'static str {
    history.last().map_or("open", |r| r.outcome.code())
}

/// Appends a review.
pub fn append(store: &Store, alert_id: &str, review: &Review) -> Result<(), StoreError> {
    let seq = history(store, alert_id)?.len() as u64;
    let mut b = store.batch();
    b.put_raw(Cf::Reviews, &key(alert_id, seq), &serde_json::to_vec(review).unwrap_or_default());
    store.commit(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    #[test]
    fn reviews_append_and_the_newest_is_the_status() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions { block_cache_mb: 8, write_buffer_mb: 4, sync: false, statistics: false }).unwrap();
        assert_eq!(status(&history(&store, "a1").unwrap()), "open");
        let r = |o, who: &str| Review { outcome: o, note: "核查".into(), reviewer: who.into(), at: "2026-01-01T00:00:00+08:00".into() };
        append(&store, "a1", &r(Outcome::InProgress, "x")).unwrap();
        append(&store, "a1", &r(Outcome::Corrected, "y")).unwrap();
        append(&store, "a10", &r(Outcome::FalsePositive, "z")).unwrap();
        let h = history(&store, "a1").unwrap();
        assert_eq!(h.len(), 2, "another alert's reviews are not mixed in");
        assert_eq!(status(&h), "corrected");
        assert_eq!(h[0].reviewer, "x");
        assert_eq!(Outcome::parse("false_positive"), Some(Outcome::FalsePositive));
        assert_eq!(Outcome::parse("maybe"), None);
    }
}
