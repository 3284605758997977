//! The outbox: messages for Kafka topics that were committed with the state
//! that produced them and are deleted only once the broker acknowledged
//! them. A crash between the two sends a message again (at least once);
//! consumers of the alerts topic de-duplicate by its key, the `alert_id`.
//!
//! This module encodes entries and reads them back; the publisher
//! (`kafka.rs`) sends and acknowledges them.

use crate::model::Alert;
use crate::store::{keys, Batch, Cf, Store, StoreError};
use serde::{Deserialize, Serialize};

/// Which topic an entry goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    Alerts,
    DeadLetters,
}

impl Target {
    fn byte(self) -> u8 {
        match self {
            Target::Alerts => b'a',
            Target::DeadLetters => b'd',
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Target::Alerts => "alerts",
            Target::DeadLetters => "deadletter",
        }
    }
}

/// One message waiting for its acknowledgement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutMessage {
    pub target: Target,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    /// Kafka headers (name, value).
    pub headers: Vec<(String, Vec<u8>)>,
    /// When it was committed (ms since the epoch, wall clock): the age of
    /// the oldest entry is what operators watch.
    pub queued_ms: i64,
}

impl OutMessage {
    /// An alert, keyed by its id, the contract's JSON as value.
    pub fn alert(a: &Alert, queued_ms: i64) -> Result<OutMessage, serde_json::Error> {
        Ok(OutMessage {
            target: Target::Alerts,
            key: Some(a.alert_id.as_bytes().to_vec()),
            value: serde_json::to_vec(a)?,
            headers: Vec::new(),
            queued_ms,
        })
    }

    /// A record refused at `topic`/`partition`/`offset`: the original bytes
    /// and key, the position and the reason in headers. A copy that would
    /// not fit in `max_bytes` (what the producer may send) is cut to fit,
    /// and says so in the header `truncated` (`<kept> of <original>
    /// bytes`); topic, partition and offset still find the original.
    pub fn dead_letter(src: &Source<'_>, reason: &str, queued_ms: i64, max_bytes: usize) -> OutMessage {
        let mut headers: Vec<(String, Vec<u8>)> = vec![
            ("source_topic".into(), src.topic.as_bytes().to_vec()),
            ("source_partition".into(), src.partition.to_string().into_bytes()),
            ("source_offset".into(), src.offset.to_string().into_bytes()),
            ("reason".into(), reason.chars().take(1000).collect::<String>().into_bytes()),
        ];
        let mut key = src.key.map(<[u8]>::to_vec);
        // Room for the record's framing and a `truncated` header.
        let overhead = DEAD_LETTER_OVERHEAD + headers.iter().map(|(k, v)| k.len() + v.len() + 16).sum::<usize>();
        let room = max_bytes.saturating_sub(overhead);
        let original = src.value.len() + key.as_ref().map_or(0, Vec::len);
        let mut value = src.value.to_vec();
        if original > room {
            if let Some(k) = key.as_mut() {
                k.truncate(room.min(1024));
            }
            let keep = room.saturating_sub(key.as_ref().map_or(0, Vec::len));
            value.truncate(keep);
            headers.push(("truncated".into(), format!("{} of {} bytes", value.len(), src.value.len()).into_bytes()));
        }
        OutMessage { target: Target::DeadLetters, key, value, headers, queued_ms }
    }
}

/// Bytes kept free in a dead letter for the record's framing and headers.
const DEAD_LETTER_OVERHEAD: usize = 1024;

/// Where a refused message came from.
pub struct Source<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub value: &'a [u8],
}

/// Adds an entry to the batch under the next sequence number.
pub fn stage(batch: &mut Batch<'_>, seq: &mut u64, m: &OutMessage) -> Result<(), StoreError> {
    *seq += 1;
    batch.put(Cf::Outbox, &keys::outbox(m.target.byte(), *seq), m)
}

/// Up to `limit` entries, oldest first within each target.
pub fn pending(store: &Store, limit: usize) -> Result<Vec<(Vec<u8>, OutMessage)>, StoreError> {
    // Kafka targets only ('a', 'd'); webhook deliveries ('r') are the
    // dispatcher's.
    let raw = store.entries_between(Cf::Outbox, b"a", b"e", limit)?;
    raw.into_iter()
        .map(|(k, v)| {
            postcard::from_bytes(&v).map_err(|source| StoreError::Decode { cf: Cf::Outbox.name(), key: keys::shown(&k), source }).map(|m| (k, m))
        })
        .collect()
}

/// An entry the broker refused for good (too large, invalid): kept aside
/// so it never blocks the entries behind it (`x | original key`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Parked {
    pub message: OutMessage,
    /// The broker's or producer's words.
    pub reason: String,
    pub parked_ms: i64,
}

/// The outbox prefix of parked entries.
const PARKED: u8 = b'x';

/// Moves an entry to the parked list, in one write.
pub fn park(store: &Store, key: &[u8], message: &OutMessage, reason: &str, now_ms: i64) -> Result<(), StoreError> {
    let mut b = store.batch();
    b.delete(Cf::Outbox, key);
    let mut parked_key = vec![PARKED];
    parked_key.extend_from_slice(key);
    b.put(Cf::Outbox, &parked_key, &Parked { message: message.clone(), reason: reason.to_owned(), parked_ms: now_ms })?;
    store.commit(b)
}

/// The parked entries, oldest key first.
pub fn parked(store: &Store) -> Result<Vec<(Vec<u8>, Parked)>, StoreError> {
    store
        .entries_between(Cf::Outbox, &[PARKED], &[PARKED + 1], usize::MAX)?
        .into_iter()
        .map(|(k, v)| {
            postcard::from_bytes(&v).map_err(|source| StoreError::Decode { cf: Cf::Outbox.name(), key: keys::shown(&k), source }).map(|p| (k, p))
        })
        .collect()
}

/// Entries waiting and the age of the oldest (ms since the epoch it was
/// queued), for metrics and `/status`.
pub fn depth(store: &Store) -> Result<(usize, Option<i64>), StoreError> {
    let all = store.entries_between(Cf::Outbox, b"a", b"e", usize::MAX)?;
    let oldest = all
        .iter()
        .filter_map(|(_, v)| postcard::from_bytes::<OutMessage>(v).ok())
        .map(|m| m.queued_ms)
        .min();
    Ok((all.len(), oldest))
}

/// Deletes acknowledged entries.
pub fn acknowledge(store: &Store, keys: &[Vec<u8>]) -> Result<(), StoreError> {
    if keys.is_empty() {
        return Ok(());
    }
    let mut b = store.batch();
    for k in keys {
        b.delete(Cf::Outbox, k);
    }
    store.commit(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    #[test]
    fn entries_survive_until_acknowledged_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions { block_cache_mb: 8, write_buffer_mb: 4, sync: false, statistics: false }).unwrap();
        let src = Source { topic: "t", partition: 3, offset: 41, key: Some(b"k"), value: b"{oops" };
        let mut seq = 0;
        let mut b = store.batch();
        for i in 0..3 {
            stage(&mut b, &mut seq, &OutMessage::dead_letter(&src, &format!("bad_json: {i}"), 1000 + i, 1_000_000)).unwrap();
        }
        store.commit(b).unwrap();
        let got = pending(&store, 10).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].1.headers[1], ("source_partition".to_string(), b"3".to_vec()));
        assert_eq!(got[0].1.value, b"{oops");
        assert_eq!(depth(&store).unwrap(), (3, Some(1000)));
        acknowledge(&store, &[got[0].0.clone()]).unwrap();
        let left = pending(&store, 10).unwrap();
        assert_eq!(left.len(), 2);
        assert_eq!(left[0].1.headers[3].1, b"bad_json: 1");
    }

    /// Hardening item 7: a dead letter of an input message near the
    /// producer's limit is cut to fit and says so; a small one is whole.
    #[test]
    fn a_dead_letter_never_exceeds_what_the_producer_may_send() {
        let big = vec![b'x'; 999_000];
        let src = Source { topic: "dibao.payments.v1", partition: 3, offset: 42, key: Some(b"11010519491231002X"), value: &big };
        let m = OutMessage::dead_letter(&src, "bad_json: expected value", 1, 1_000_000);
        let size = m.value.len() + m.key.as_ref().map_or(0, Vec::len) + m.headers.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        assert!(size < 1_000_000 - 512, "{size}");
        let t = m.headers.iter().find(|(k, _)| k == "truncated").map(|(_, v)| String::from_utf8_lossy(v).into_owned()).unwrap();
        assert_eq!(t, format!("{} of 999000 bytes", m.value.len()));
        assert_eq!(m.key.as_deref(), Some(&b"11010519491231002X"[..]));
        assert!(m.headers.iter().any(|(k, v)| k == "source_offset" && v == b"42"));
        let small = Source { value: b"{bad", ..src };
        let m = OutMessage::dead_letter(&small, "bad_json", 1, 1_000_000);
        assert_eq!(m.value, b"{bad");
        assert!(!m.headers.iter().any(|(k, _)| k == "truncated"));
    }
}
