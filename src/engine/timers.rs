//! Deadline timers: ids waiting in the bucket of a deadline (`deadline →
//! list of ids`), taken in order when the watermark passes. The
//! `MISSED_PAYMENT` buckets (`timers` column family: beneficiary ids) and
//! the `COVERAGE_GAP` buckets (`referrals`: person and record ids) are one
//! each.
//!
//! Each lane of the engine (#16) keeps its own buckets, under keys that
//! start with the lane: an id is in the lane of its person's partition
//! ([`lane_of`]). [`repartition`] moves every bucket entry to the lane of
//! another lane count, when the engine is opened with a count other than
//! the one the buckets were written with.

use crate::model::Timestamp;
use crate::store::{keys, Batch, Cf, Store, StoreError};
use std::collections::BTreeMap;

/// The lane, of `lanes`, of a bucket entry: its person's partition (an
/// entry is a beneficiary id, or a person id and a record id joined by
/// 0x1f).
pub fn lane_of(id: &str, lanes: u32) -> u32 {
    let person = id.split_once('\u{1f}').map_or(id, |(p, _)| p);
    crate::partition::of(person.as_bytes(), lanes)
}

/// Puts into `batch` every bucket of `cf` rewritten under the lanes of
/// `lanes`, whatever lane count (or, in state v8, none) it was written
/// with. Returns how many entries it moved.
pub fn repartition(store: &Store, cf: Cf, lanes: u32, batch: &mut Batch<'_>) -> Result<usize, StoreError> {
    let mut buckets: BTreeMap<Vec<u8>, Vec<String>> = BTreeMap::new();
    let mut moved = 0;
    for (key, value) in store.entries_between(cf, &[], &[0xff; keys::TIMER_KEY + 1], usize::MAX)? {
        let deadline = match key.len() {
            keys::TIMER_KEY => keys::timer_deadline(&key),
            _ => keys::timer_deadline_v8(&key),
        };
        let Some(deadline) = deadline else {
            return Err(StoreError::Malformed { cf: cf.name(), why: "a deadline bucket key is neither 8 nor 12 bytes long" });
        };
        let ids: Vec<String> =
            postcard::from_bytes(&value).map_err(|source| StoreError::Decode { cf: cf.name(), key: keys::shown(&key), source })?;
        batch.delete(cf, &key);
        for id in ids {
            buckets.entry(keys::timer_bound(lane_of(&id, lanes), deadline)).or_default().push(id);
            moved += 1;
        }
    }
    for (key, ids) in &buckets {
        batch.put(cf, key, ids)?;
    }
    Ok(moved)
}

/// Deadline buckets of one column family, and their changes since the
/// last commit.
pub struct Timers {
    /// Where the buckets are stored (the one owner of that layout).
    cf: Cf,
    /// The lane whose buckets these are: the first part of their keys.
    lane: u32,
    /// Beneficiaries added to a bucket (merged with the stored bucket at
    /// commit); `None` marks a bucket decided and deleted.
    pending: BTreeMap<Timestamp, Option<Vec<String>>>,
    /// The buckets (whole) of a commit still being written in the
    /// background; `None`: deleted by it. Reads look here before the store.
    in_flight: BTreeMap<Timestamp, Option<Vec<String>>>,
}

impl Timers {
    pub fn new(cf: Cf, lane: u32) -> Timers {
        Timers { cf, lane, pending: BTreeMap::new(), in_flight: BTreeMap::new() }
    }

    /// Puts a beneficiary in the bucket of `deadline`.
    pub fn add(&mut self, deadline: Timestamp, bid: String) {
        let slot = self.pending.entry(deadline).or_insert_with(|| Some(Vec::new()));
        slot.get_or_insert_with(Vec::new).push(bid);
    }

    /// The bucket of `deadline` as committed (or being committed).
    fn stored(&self, store: &Store, deadline: Timestamp) -> Result<Vec<String>, StoreError> {
        match self.in_flight.get(&deadline) {
            Some(bucket) => Ok(bucket.clone().unwrap_or_default()),
            None => Ok(store.get(self.cf, &keys::timer_bound(self.lane, deadline))?.unwrap_or_default()),
        }
    }

    /// The committed (or being committed) deadlines before `w`.
    fn stored_before(&self, store: &Store, w: Timestamp) -> Result<Vec<Timestamp>, StoreError> {
        let mut out: Vec<Timestamp> =
            store.keys_between(self.cf, &keys::timer_lane(self.lane), &keys::timer_bound(self.lane, w))?.iter().filter_map(|k| keys::timer_deadline(k)).collect();
        out.retain(|d| !matches!(self.in_flight.get(d), Some(None)));
        out.extend(self.in_flight.range(..w).filter(|(_, b)| b.is_some()).map(|(d, _)| *d));
        Ok(out)
    }

    /// Takes every bucket whose deadline is at or before `w`, oldest
    /// first, with its ids (stored and added since); each is deleted with
    /// the next commit. Deciding them must not add to a bucket at or
    /// before `w`.
    pub fn take_due(&mut self, store: &Store, w: Timestamp) -> Result<Vec<(Timestamp, Vec<String>)>, StoreError> {
        let mut deadlines = self.stored_before(store, Timestamp(w.0.saturating_add(1)))?;
        deadlines.extend(self.pending.range(..=w).map(|(d, _)| *d));
        deadlines.sort();
        deadlines.dedup();
        let mut due = Vec::with_capacity(deadlines.len());
        for d in deadlines {
            let mut ids = self.stored(store, d)?;
            match self.pending.insert(d, None) {
                Some(Some(mut added)) => ids.append(&mut added),
                Some(None) => ids.clear(),
                None => {}
            }
            due.push((d, ids));
        }
        Ok(due)
    }

    /// Writes the bucket changes into the commit. With `in_flight`, the
    /// buckets written stay readable here until [`Timers::landed`].
    pub fn flush(&mut self, store: &Store, batch: &mut Batch<'_>, in_flight: bool) -> Result<(), StoreError> {
        let mut written = BTreeMap::new();
        for (deadline, change) in std::mem::take(&mut self.pending) {
            let key = keys::timer_bound(self.lane, deadline);
            match change {
                None => {
                    batch.delete(self.cf, &key);
                    written.insert(deadline, None);
                }
                Some(mut added) => {
                    let mut stored = self.stored(store, deadline)?;
                    stored.append(&mut added);
                    batch.put(self.cf, &key, &stored)?;
                    written.insert(deadline, Some(stored));
                }
            }
        }
        self.in_flight = if in_flight { written } else { BTreeMap::new() };
        Ok(())
    }

    /// The batch written in the background is in the store now.
    pub fn landed(&mut self) {
        self.in_flight = BTreeMap::new();
    }
}

