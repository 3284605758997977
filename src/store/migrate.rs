//! Upgrades a state directory written by an earlier paywatch in place, so
//! an upgrade keeps everything it holds (alerts, supervisors' reviews, the
//! outbox, Kafka offsets) instead of asking for a replay.
//!
//! v1 → v2: `months` held one entry per beneficiary and month
//! (`beneficiary_id | month` → that month's payments); v2 holds one segment
//! per beneficiary and commit (see `engine::months`). Every v1 month of a
//! beneficiary goes into its segment 0, older than any segment a v2 commit
//! writes (those are numbered from 1). The engine's progress gained
//! `commits` as its last field.

use super::{keys, Cf, Store, StoreError, SCHEMA};

/// The layout this module upgrades from.
pub(super) const V1: &str = "paywatch-state-v1";

/// Beneficiaries converted per write. Each beneficiary's months move in
/// one atomic write, so an upgrade interrupted and run again finds every
/// beneficiary either converted or untouched, never half.
const PER_WRITE: usize = 10_000;

/// Converts a v1 directory to the current layout; the schema marker moves
/// last, with the progress, so until then the directory still reads as v1.
pub(super) fn v1_to_v2(store: &Store) -> Result<(), StoreError> {
    let v1_key = keys::MONTH_PREFIX + keys::MONTH_SUFFIX;
    let mut batch = store.batch();
    let mut in_batch = 0;
    let mut segment: Option<(Vec<u8>, Vec<u8>)> = None;
    let mut it = store.db.raw_iterator_cf(store.cf(Cf::Months));
    it.seek_to_first();
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        if k.len() == v1_key {
            let (bid, month) = k.split_at(keys::MONTH_PREFIX);
            if segment.as_ref().is_none_or(|(b, _)| b != bid) {
                if let Some((b, value)) = segment.take() {
                    batch.put_raw(Cf::Months, &keys::month_segment(&b, 0), &value);
                    in_batch += 1;
                    if in_batch >= PER_WRITE {
                        store.commit(std::mem::replace(&mut batch, store.batch()))?;
                        in_batch = 0;
                    }
                }
                segment = Some((bid.to_vec(), Vec::new()));
            }
            if let Some((_, value)) = segment.as_mut() {
                keys::push_segment_month(value, month, v);
            }
            batch.delete(Cf::Months, k);
        }
        it.next();
    }
    it.status()?;
    if let Some((b, value)) = segment {
        batch.put_raw(Cf::Months, &keys::month_segment(&b, 0), &value);
    }
    // Postcard writes a struct's fields in order, so the v1 progress
    // followed by a zero varint is the v2 progress with `commits` = 0.
    if let Some(mut progress) = store.get_raw(Cf::Meta, keys::META_PROGRESS)? {
        progress.push(0);
        batch.put_raw(Cf::Meta, keys::META_PROGRESS, &progress);
    }
    batch.put_raw(Cf::Meta, keys::META_SCHEMA, SCHEMA.as_bytes());
    store.commit(batch)?;
    tracing::info!(from = V1, to = SCHEMA, "state directory upgraded");
    Ok(())
}
