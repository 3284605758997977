//! Deadline timers: ids waiting in the bucket of a deadline (`deadline →
//! list of ids`), taken in order when the watermark passes. The
//! `MISSED_PAYMENT` buckets (`timers` column family: beneficiary ids) and
//! the `COVERAGE_GAP` buckets (`referrals`: person and record ids) are one
//! each.

use crate::model::Timestamp;
use crate::store::{keys, Batch, Cf, Store, StoreError};
use std::collections::BTreeMap;

/// Deadline buckets of one column family, and their changes since the
/// last commit.
pub struct Timers {
    /// Where the buckets are stored (the one owner of that layout).
    cf: Cf,
    /// Beneficiaries added to a bucket (merged with the stored bucket at
    /// commit); `None` marks a bucket decided and deleted.
    pending: BTreeMap<Timestamp, Option<Vec<String>>>,
    /// The buckets (whole) of a commit still being written in the
    /// background; `None`: deleted by it. Reads look here before the store.
    in_flight: BTreeMap<Timestamp, Option<Vec<String>>>,
}

impl Timers {
    pub fn new(cf: Cf) -> Timers {
        Timers { cf, pending: BTreeMap::new(), in_flight: BTreeMap::new() }
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
            None => Ok(store.get(self.cf, &keys::timer_bound(deadline))?.unwrap_or_default()),
        }
    }

    /// The committed (or being committed) deadlines before `w`.
    fn stored_before(&self, store: &Store, w: Timestamp) -> Result<Vec<Timestamp>, StoreError> {
        let mut out: Vec<Timestamp> =
            store.keys_between(self.cf, &[], &keys::timer_bound(w))?.iter().filter_map(|k| keys::timer_deadline(k)).collect();
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
            let key = keys::timer_bound(deadline);
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

