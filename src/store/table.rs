//! A column family seen through a bounded write-back cache of decoded values.
//!
//! Reads come from the cache or RocksDB; changes stay in the cache (marked
//! dirty) until [`Table::flush`] puts them into the batch being committed.
//! When the cache outgrows its capacity, the least recently used entries
//! leave it: clean ones are dropped, changed ones are kept encoded (a few
//! hundred bytes instead of the decoded structure) until the commit writes
//! them. Memory is bounded by the capacity and the batch, not the ledger.

use super::{Batch, Cf, Store, StoreError};
use rustc_hash::FxHashMap;
use std::collections::hash_map::Entry;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A key kept inline when it is short (every key paywatch caches is).
type Key = smallvec::SmallVec<[u8; 24]>;

/// What a lookup does to an entry's changed mark.
#[derive(Clone, Copy, PartialEq)]
enum Mark {
    /// A read: the entry stays as it is.
    Read,
    /// A change to the value, if there is one.
    IfPresent,
    /// A change, a value being made when absent.
    Always,
}

struct Slot<V> {
    /// `None`: known to be absent from the store.
    value: Option<V>,
    /// Changed since the last commit: must be written.
    dirty: bool,
    /// Last use, for eviction.
    used: u64,
}

pub struct Table<V> {
    /// The column family behind it.
    cf: Cf,
    /// Decoded entries. Keys (identity and account numbers, at most 19
    /// bytes) are stored inline, so a lookup does not chase a pointer.
    slots: FxHashMap<Key, Slot<V>>,
    /// Changed entries evicted before the commit, encoded.
    evicted: FxHashMap<Vec<u8>, Vec<u8>>,
    /// Evicted entries written by a commit still in the background: the
    /// store does not have them yet.
    in_flight: FxHashMap<Vec<u8>, Vec<u8>>,
    /// Decoded entries kept at most (plus a quarter before eviction runs).
    capacity: usize,
    /// A use counter, for least-recently-used eviction.
    tick: u64,
    /// Entries in `slots` marked dirty: with `evicted`, what the next
    /// commit will rewrite, counted as they change so the engine can size
    /// its batches without a scan ([`Table::changed`]).
    dirty_slots: usize,
    /// A commit is being written in the background: clean entries may be
    /// newer than the store, so none is dropped until it lands. The cache
    /// then grows by at most the entries one batch touches.
    hold_clean: bool,
}

impl<V: Serialize + DeserializeOwned> Table<V> {
    pub fn new(cf: Cf, capacity: usize) -> Table<V> {
        Table {
            cf,
            slots: FxHashMap::default(),
            evicted: FxHashMap::default(),
            in_flight: FxHashMap::default(),
            capacity,
            tick: 0,
            dirty_slots: 0,
            hold_clean: false,
        }
    }

    fn slot(&mut self, store: &Store, key: &[u8], mark: Mark) -> Result<&mut Slot<V>, StoreError> {
        self.tick += 1;
        if self.slots.len() >= self.capacity + self.capacity / 4 && !self.slots.contains_key(key) {
            self.shrink_to_capacity()?;
        }
        // One probe: the key is inline, so making it costs no allocation.
        let slot = match self.slots.entry(Key::from_slice(key)) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => {
                let cf = self.cf;
                let decode = |bytes: &[u8]| {
                    postcard::from_bytes(bytes).map_err(|source| StoreError::Decode { cf: cf.name(), key: super::keys::shown(key), source })
                };
                let slot = match self.evicted.remove(key) {
                    Some(bytes) => {
                        self.dirty_slots += 1;
                        Slot { value: Some(decode(&bytes)?), dirty: true, used: 0 }
                    }
                    None => match self.in_flight.get(key) {
                        Some(bytes) => Slot { value: Some(decode(bytes)?), dirty: false, used: 0 },
                        None => Slot { value: store.get(cf, key)?, dirty: false, used: 0 },
                    },
                };
                v.insert(slot)
            }
        };
        slot.used = self.tick;
        let changes = match mark {
            Mark::Read => false,
            Mark::IfPresent => slot.value.is_some(),
            Mark::Always => true,
        };
        if changes && !slot.dirty {
            slot.dirty = true;
            self.dirty_slots += 1;
        }
        Ok(slot)
    }

    /// Entries the next commit will rewrite: changed since the last one.
    pub fn changed(&self) -> usize {
        self.dirty_slots + self.evicted.len()
    }

    pub fn get(&mut self, store: &Store, key: &[u8]) -> Result<Option<&V>, StoreError> {
        Ok(self.slot(store, key, Mark::Read)?.value.as_ref())
    }

    /// The value for changing; the entry is written at the next flush.
    pub fn get_mut(&mut self, store: &Store, key: &[u8]) -> Result<Option<&mut V>, StoreError> {
        Ok(self.slot(store, key, Mark::IfPresent)?.value.as_mut())
    }

    /// The value for changing, created with `Default` when absent.
    pub fn get_or_default(&mut self, store: &Store, key: &[u8]) -> Result<&mut V, StoreError>
    where
        V: Default,
    {
        self.get_or_insert_with(store, key, V::default)
    }

    /// The value for changing, made by `make` when absent.
    pub fn get_or_insert_with(&mut self, store: &Store, key: &[u8], make: impl FnOnce() -> V) -> Result<&mut V, StoreError> {
        Ok(self.slot(store, key, Mark::Always)?.value.get_or_insert_with(make))
    }

    /// Evicts the least recently used entries down to the capacity, keeping
    /// changed ones encoded.
    fn shrink_to_capacity(&mut self) -> Result<(), StoreError> {
        let excess = self.slots.len().saturating_sub(self.capacity);
        if excess == 0 {
            return Ok(());
        }
        let hold = self.hold_clean;
        let mut ages: Vec<u64> = self.slots.values().filter(|s| s.dirty || !hold).map(|s| s.used).collect();
        if ages.is_empty() {
            return Ok(());
        }
        let excess = excess.min(ages.len());
        let (_, cut, _) = ages.select_nth_unstable(excess - 1);
        let cut = *cut;
        let old: Vec<Key> =
            self.slots.iter().filter(|(_, s)| s.used <= cut && (s.dirty || !hold)).map(|(k, _)| k.clone()).collect();
        for k in old {
            if let Some(slot) = self.slots.remove(&k) {
                if slot.dirty {
                    self.dirty_slots -= 1;
                    if let Some(v) = &slot.value {
                        self.evicted.insert(k.to_vec(), postcard::to_stdvec(v).map_err(StoreError::Encode)?);
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes every changed entry into the batch; all entries are then
    /// clean. With `in_flight` (the batch is written in the background),
    /// clean entries are kept until [`Table::landed`].
    pub fn flush(&mut self, batch: &mut Batch<'_>, in_flight: bool) -> Result<(), StoreError> {
        let cf = self.cf;
        self.flush_with(in_flight, |k, v| match v {
            Some(v) => batch.put_raw(cf, k, v),
            None => batch.delete(cf, k),
        })
    }

    /// Hands every changed entry, encoded (`None`: deleted), to `put`; all
    /// entries are then clean. [`Table::flush`] puts them into a batch; a
    /// table kept on another thread than the commit hands them over.
    pub fn flush_with(&mut self, in_flight: bool, mut put: impl FnMut(&[u8], Option<&[u8]>)) -> Result<(), StoreError> {
        self.hold_clean = in_flight;
        for (k, v) in &self.evicted {
            put(k, Some(v));
        }
        let evicted = std::mem::take(&mut self.evicted);
        self.in_flight = if in_flight { evicted } else { FxHashMap::default() };
        let mut buf = Vec::new();
        for (k, slot) in self.slots.iter_mut().filter(|(_, s)| s.dirty) {
            match &slot.value {
                Some(v) => {
                    buf.clear();
                    buf = postcard::to_extend(v, buf).map_err(StoreError::Encode)?;
                    put(k, Some(&buf));
                }
                None => put(k, None),
            }
            slot.dirty = false;
        }
        self.dirty_slots = 0;
        Ok(())
    }

    /// The batch written in the background is in the store now: clean
    /// entries may be dropped again.
    pub fn landed(&mut self) {
        self.hold_clean = false;
        self.in_flight = FxHashMap::default();
        self.trim();
    }

    /// Drops the least recently used clean entries beyond the capacity.
    pub fn trim(&mut self) {
        if self.hold_clean || self.slots.len() <= self.capacity {
            return;
        }
        let mut ages: Vec<u64> = self.slots.values().filter(|s| !s.dirty).map(|s| s.used).collect();
        let excess = self.slots.len() - self.capacity;
        if ages.len() <= excess {
            self.slots.retain(|_, s| s.dirty);
            return;
        }
        let (_, cut, _) = ages.select_nth_unstable(excess);
        let cut = *cut;
        self.slots.retain(|_, s| s.dirty || s.used > cut);
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    #[test]
    fn evicted_changes_are_still_read_and_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions { block_cache_mb: 8, write_buffer_mb: 4, sync: false, statistics: false }).unwrap();
        let mut t: Table<u64> = Table::new(Cf::Accounts, 8);
        for round in 1..=3u64 {
            for i in 0..100u64 {
                *t.get_or_default(&store, &i.to_be_bytes()).unwrap() += round;
                assert!(t.len() <= 10, "bounded while changing: {}", t.len());
            }
        }
        for i in 0..100u64 {
            assert_eq!(t.get(&store, &i.to_be_bytes()).unwrap(), Some(&6), "uncommitted change read back");
        }
        let mut b = store.batch();
        t.flush(&mut b, false).unwrap();
        store.commit(b).unwrap();
        let fresh: Table<u64> = Table::new(Cf::Accounts, 8);
        drop(fresh);
        for i in 0..100u64 {
            assert_eq!(store.get::<u64>(Cf::Accounts, &i.to_be_bytes()).unwrap(), Some(6));
        }
    }

    /// What the engine sizes its batches by: changes, whether the entry
    /// is still decoded or was evicted encoded, each counted once.
    #[test]
    fn changed_counts_each_entry_the_next_commit_rewrites_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions { block_cache_mb: 8, write_buffer_mb: 4, sync: false, statistics: false }).unwrap();
        let mut t: Table<u64> = Table::new(Cf::Accounts, 8);
        assert_eq!(t.get(&store, b"a").unwrap(), None);
        assert_eq!(t.get_mut(&store, b"a").unwrap(), None);
        assert_eq!(t.changed(), 0, "reads and absent entries change nothing");
        for round in 0..3u64 {
            for i in 0..40u64 {
                *t.get_or_default(&store, &i.to_be_bytes()).unwrap() += round;
            }
        }
        assert!(t.len() <= 10, "most were evicted: {}", t.len());
        assert_eq!(t.changed(), 40);
        assert_eq!(t.get(&store, &0u64.to_be_bytes()).unwrap(), Some(&3), "read back from the evicted");
        assert_eq!(t.changed(), 40, "an evicted change read back is not a second one");
        let mut b = store.batch();
        t.flush(&mut b, false).unwrap();
        assert_eq!(b.len(), 40);
        store.commit(b).unwrap();
        assert_eq!(t.changed(), 0);
        *t.get_mut(&store, &5u64.to_be_bytes()).unwrap().unwrap() += 1;
        *t.get_mut(&store, &5u64.to_be_bytes()).unwrap().unwrap() += 1;
        assert_eq!(t.changed(), 1);
    }

    #[test]
    fn write_back_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions { block_cache_mb: 8, write_buffer_mb: 4, sync: false, statistics: false }).unwrap();
        let mut t: Table<u64> = Table::new(Cf::Accounts, 10);
        for i in 0..100u64 {
            *t.get_or_default(&store, &i.to_be_bytes()).unwrap() += i;
        }
        assert_eq!(store.get::<u64>(Cf::Accounts, &7u64.to_be_bytes()).unwrap(), None, "not flushed yet");
        let mut b = store.batch();
        t.flush(&mut b, false).unwrap();
        assert_eq!(b.len(), 100);
        store.commit(b).unwrap();
        t.trim();
        assert!(t.len() <= 10);
        assert_eq!(t.get(&store, &7u64.to_be_bytes()).unwrap(), Some(&7));
        assert_eq!(t.get(&store, &99u64.to_be_bytes()).unwrap(), Some(&99));
        assert_eq!(t.get(&store, &1000u64.to_be_bytes()).unwrap(), None);
    }
}
