//! What RocksDB holds in memory, by part: its share of the process's RSS,
//! for the metrics (`paywatch_rocksdb_memory_bytes{part}`) and the audit's
//! last log line, so that an operator can tell it from the engine's caches.

use super::{Cf, Store};

/// RocksDB's memory, by part (bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreMemory {
    /// Memtables, active and immutable, all column families: `write_buffer_mb`
    /// each, and a flush once all of them pass four times that (a soft
    /// limit: memtables waiting for their flush come on top).
    pub memtables: u64,
    /// Table readers outside the block cache (what a table file's reader
    /// keeps besides its cached blocks): grows with the number of files.
    pub table_readers: u64,
    /// The shared block cache's use, pinned index and filter partitions
    /// included: bounded by `block_cache_mb`.
    pub block_cache: u64,
    /// Of which pinned (cannot be evicted).
    pub block_cache_pinned: u64,
}

impl StoreMemory {
    /// The parts, named as the metric's `part` label.
    pub fn parts(&self) -> [(&'static str, u64); 4] {
        [
            ("memtables", self.memtables),
            ("table_readers", self.table_readers),
            ("block_cache", self.block_cache),
            ("block_cache_pinned", self.block_cache_pinned),
        ]
    }
}

impl Store {
    /// RocksDB's memory by part. The block cache is one for all column
    /// families, so it is read once, not summed.
    pub fn memory(&self) -> StoreMemory {
        let once = |prop: &str| self.db.property_int_value_cf(self.cf(Cf::Meta), prop).ok().flatten().unwrap_or(0);
        StoreMemory {
            memtables: self.property_sum("rocksdb.size-all-mem-tables"),
            table_readers: self.property_sum("rocksdb.estimate-table-readers-mem"),
            block_cache: once("rocksdb.block-cache-usage"),
            block_cache_pinned: once("rocksdb.block-cache-pinned-usage"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    #[test]
    fn memtables_hold_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions { block_cache_mb: 8, write_buffer_mb: 4, sync: false, statistics: false }).unwrap();
        let before = store.memory();
        let mut batch = store.batch_with_capacity(0);
        let value = vec![7u8; 1000];
        for i in 0..2000u32 {
            batch.put_raw(Cf::Beneficiaries, &i.to_be_bytes(), &value);
        }
        store.commit(batch).unwrap();
        let after = store.memory();
        assert!(after.memtables >= before.memtables + 2000 * 1000, "{before:?} → {after:?}");
        assert!(after.block_cache <= 8 << 20, "bounded by block_cache_mb: {after:?}");
        let names: Vec<&str> = after.parts().iter().map(|(p, _)| *p).collect();
        assert_eq!(names, ["memtables", "table_readers", "block_cache", "block_cache_pinned"]);
    }
}
