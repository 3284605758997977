//! RocksDB: the only code that touches the database.
//!
//! Column families are named by what they hold (see [`Cf`]). Every change
//! the engine makes reaches the disk through one [`Batch`], committed
//! atomically together with the input position it corresponds to; nothing
//! else writes.

pub mod alert_index;
pub mod cases;
mod cf;
pub mod keys;
mod memory;
mod migrate;
#[cfg(test)]
pub(crate) use migrate::accounts_as_v3;
mod table;
pub mod wal;
mod write;

pub use cf::Cf;
pub use memory::StoreMemory;
pub use table::Table;
pub use write::{Batch, Finish, PendingWrite, WriteFailed};


use rocksdb::{BlockBasedOptions, Cache, ColumnFamilyDescriptor, IteratorMode, Options, DB};
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The layout version written into every state directory.
const SCHEMA: &str = "paywatch-state-v10";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state directory {path}: {reason}")]
    Refused { path: String, reason: String },
    #[error("RocksDB: {0}")]
    Db(#[from] rocksdb::Error),
    #[error("stored value in {cf} at key {key} cannot be decoded: {source}")]
    Decode { cf: &'static str, key: String, source: postcard::Error },
    #[error("stored value in {cf} at key {key} is not the JSON expected: {reason}")]
    Json { cf: &'static str, key: String, reason: String },
    #[error("stored value in {cf} is malformed: {why}")]
    Malformed { cf: &'static str, why: &'static str },
    #[error("stored value cannot be encoded: {0}")]
    Encode(postcard::Error),
    #[error("cannot write in the background: {0}")]
    Thread(String),
    /// The engine's account stage (a thread of its own) cannot be started
    /// or has stopped after an error it returned first.
    #[error("the account stage {0}")]
    Stage(&'static str),
}

/// Written into a new state directory before RocksDB creates anything.
const MARKER: &str = "PAYWATCH";

/// A key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// Tuning knobs the config exposes.
#[derive(Clone, Copy, Debug)]
pub struct StoreOptions {
    /// Block cache shared by all column families.
    pub block_cache_mb: usize,
    /// Memtable size per column family.
    pub write_buffer_mb: usize,
    /// fsync every commit.
    pub sync: bool,
    /// Collect RocksDB statistics (block-cache hits) for the metrics; costs
    /// a few per cent, so the file audit leaves it off.
    pub statistics: bool,
}

/// What the metrics report of RocksDB.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StoreStats {
    /// Estimated live data, all column families.
    pub live_data_bytes: u64,
    /// Bytes compaction still has to rewrite.
    pub pending_compaction_bytes: u64,
    pub block_cache_hits: u64,
    pub block_cache_misses: u64,
    /// What RocksDB holds in memory, so that an operator (and the audit's
    /// last log line) can tell its share of the process's RSS from the
    /// engine's caches.
    pub memory: StoreMemory,
}

/// The open state directory. Clones share the one database, so the sinks
/// can read and acknowledge the outbox while the engine writes.
#[derive(Clone)]
pub struct Store {
    /// The database, every column family open.
    db: Arc<DB>,
    /// Where it lives, for messages.
    path: PathBuf,
    /// fsync every commit.
    sync: bool,
    /// The options it was opened with, for statistics.
    opts: Arc<Options>,
    /// Tests: see [`Store::defer_background_writes`].
    #[cfg(test)]
    defer_background_writes: bool,
}

impl Store {
    /// Opens (or creates) a state directory. Refuses a directory that holds
    /// something other than paywatch state rather than writing into it.
    pub fn open(path: &Path, o: StoreOptions) -> Result<Store, StoreError> {
        Store::open_keeping_wal(path, o, 0)
    }

    /// [`Store::open`], keeping up to `wal_keep_mb` of RocksDB's write-ahead
    /// log after it is no longer needed for recovery, so that the changelog
    /// publisher (`changelog::publish`) can read every commit it has not
    /// published yet, after a restart or a broker outage (0: none kept).
    pub fn open_keeping_wal(path: &Path, o: StoreOptions, wal_keep_mb: u64) -> Result<Store, StoreError> {
        let refuse = |reason: String| StoreError::Refused { path: path.display().to_string(), reason };
        let exists_nonempty = path.is_dir() && std::fs::read_dir(path).map(|mut d| d.next().is_some()).unwrap_or(false);
        if path.exists() && !path.is_dir() {
            return Err(refuse("is not a directory".into()));
        }
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_max_background_jobs(2);
        db_opts.set_keep_log_file_num(3);
        db_opts.set_max_total_wal_size(256 << 20);
        db_opts.set_db_write_buffer_size((o.write_buffer_mb * 4) << 20);
        // Required by the hash memtable of `months`; writers (the engine and
        // the outbox acknowledgements) are serialised by RocksDB.
        db_opts.set_allow_concurrent_memtable_write(false);
        if wal_keep_mb > 0 {
            db_opts.set_wal_size_limit_mb(wal_keep_mb);
        }
        if o.statistics {
            db_opts.enable_statistics();
        }
        // A kill between creating the database and writing the schema marker
        // leaves some of paywatch's own column families and no schema: that
        // is an interrupted creation, finished below, not a foreign
        // database. The `PAYWATCH` file, written before RocksDB creates
        // anything, tells the two apart.
        let marker = path.join(MARKER);
        if !exists_nonempty {
            std::fs::create_dir_all(path).map_err(|e| refuse(format!("cannot be created: {e}")))?;
            std::fs::write(&marker, "paywatch state directory\n")
                .and_then(|_| std::fs::File::open(&marker)?.sync_all())
                .map_err(|e| refuse(format!("cannot be written: {e}")))?;
        }
        let mut ours = false;
        let bootstrap_only = exists_nonempty && !path.join("CURRENT").exists() && only_rocksdb_files(path);
        let exists_nonempty = exists_nonempty && !bootstrap_only;
        if exists_nonempty {
            if !path.join("CURRENT").exists() {
                if marker.exists() {
                    return Err(refuse(
                        "is paywatch state that lost its RocksDB CURRENT file (damaged); refusing to open it: \
                         restore it from a backup, or start again with a new state directory"
                            .into(),
                    ));
                }
                return Err(refuse("holds files but is not a RocksDB database; refusing to write into it".into()));
            }
            let cfs = DB::list_cf(&db_opts, path).map_err(|e| {
                refuse(format!("cannot be read as RocksDB ({e}); refusing to touch it (damaged? restore it from a backup)"))
            })?;
            let interrupted =
                marker.exists() && cfs.iter().all(|c| c == "default" || Cf::ALL.iter().any(|cf| cf.name() == c));
            if !interrupted && !cfs.iter().any(|c| c == Cf::Meta.name()) {
                return Err(refuse("is a RocksDB database that paywatch did not create; refusing to touch it".into()));
            }
            ours = interrupted || Cf::ALL.iter().all(|cf| cfs.iter().any(|c| c == cf.name()));
        }
        let cache = Cache::new_lru_cache(o.block_cache_mb << 20);
        let descriptors = Cf::ALL.iter().map(|cf| {
            let mut t = BlockBasedOptions::default();
            t.set_block_cache(&cache);
            t.set_bloom_filter(10.0, false);
            t.set_cache_index_and_filter_blocks(true);
            t.set_pin_l0_filter_and_index_blocks_in_cache(true);
            // Partitioned index and filters: a table file's index is cached
            // as small partitions under one pinned top level. A whole index
            // block of a large file (hundreds of KiB for `alerts`) would not
            // stay in a 1 MiB cache shard, and every read of a cold key
            // would read and decompress it again (measured: half the time of
            // an API page on a million alerts).
            t.set_index_type(rocksdb::BlockBasedIndexType::TwoLevelIndexSearch);
            t.set_partition_filters(true);
            t.set_pin_top_level_index_and_filter(true);
            let mut c = Options::default();
            c.set_block_based_table_factory(&t);
            c.set_write_buffer_size(o.write_buffer_mb << 20);
            // Most point reads ask for keys that do not exist yet (a new
            // beneficiary, a new account): a memtable bloom filter answers
            // them without walking the skip list. `months` is read only for
            // months known to exist, so its filter would only cost inserts.
            if *cf != Cf::Months {
                c.set_memtable_prefix_bloom_ratio(0.1);
                c.set_memtable_whole_key_filtering(true);
            }
            if *cf == Cf::Months {
                // Read by beneficiary (all its segments), and written one
                // segment per beneficiary and commit: a memtable hashed on
                // the beneficiary keeps inserts short, and the filters are
                // on the beneficiary part of the key.
                c.set_prefix_extractor(rocksdb::SliceTransform::create_fixed_prefix(keys::MONTH_PREFIX));
                c.set_memtable_factory(rocksdb::MemtableFactory::HashSkipList {
                    bucket_count: 200_000,
                    height: 4,
                    branching_factor: 4,
                });
            }
            c.set_compression_type(rocksdb::DBCompressionType::Lz4);
            ColumnFamilyDescriptor::new(cf.name(), c)
        });
        let db = DB::open_cf_descriptors(&db_opts, path, descriptors)
            .map_err(|e| refuse(format!("cannot be opened ({e}); refusing to touch it (damaged? restore it from a backup)")))?;
        let store = Store {
            db: Arc::new(db),
            path: path.to_owned(),
            sync: o.sync,
            opts: Arc::new(db_opts),
            #[cfg(test)]
            defer_background_writes: false,
        };
        match store.get_raw(Cf::Meta, keys::META_SCHEMA)? {
            Some(v) if v == SCHEMA.as_bytes() => {}
            // An earlier layout: every step from it on, in order.
            Some(v) => match migrate::STEPS.iter().position(|(from, _)| v == from.as_bytes()) {
                Some(first) => {
                    for (_, step) in &migrate::STEPS[first..] {
                        step(&store)?;
                    }
                }
                None => {
                    return Err(refuse(format!(
                        "holds state version {:?}, this paywatch reads {SCHEMA:?}",
                        String::from_utf8_lossy(&v)
                    )))
                }
            },
            None if exists_nonempty && !ours => {
                return Err(refuse("has no paywatch schema marker; refusing to touch it".into()))
            }
            None => {
                let mut b = store.batch();
                b.put_raw(Cf::Meta, keys::META_SCHEMA, SCHEMA.as_bytes());
                store.commit(b)?;
            }
        }
        Ok(store)
    }

    /// A stored JSON value (alerts, dead letters), decoded; the error names
    /// the column family and the key.
    pub fn get_json<T: DeserializeOwned>(&self, cf: Cf, key: &[u8]) -> Result<Option<T>, StoreError> {
        match self.get_raw(cf, key)? {
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| StoreError::Json { cf: cf.name(), key: keys::shown(key), reason: e.to_string() }),
            None => Ok(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn cf(&self, cf: Cf) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(cf.name()).expect("every column family is opened")
    }

    pub fn get_raw(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_pinned_cf(self.cf(cf), key)?.map(|v| v.to_vec()))
    }

    /// Reads and decodes one value.
    pub fn get<T: DeserializeOwned>(&self, cf: Cf, key: &[u8]) -> Result<Option<T>, StoreError> {
        match self.db.get_pinned_cf(self.cf(cf), key)? {
            None => Ok(None),
            Some(v) => postcard::from_bytes(&v).map(Some).map_err(|source| StoreError::Decode { cf: cf.name(), key: keys::shown(key), source }),
        }
    }

    /// Keys of a column family from `start` up to (not including) `end`.
    pub fn keys_between(&self, cf: Cf, start: &[u8], end: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut out = Vec::new();
        let mode = IteratorMode::From(start, rocksdb::Direction::Forward);
        for item in self.db.iterator_cf(self.cf(cf), mode) {
            let (k, _) = item?;
            if k.as_ref() >= end {
                break;
            }
            out.push(k.to_vec());
        }
        Ok(out)
    }

    /// Sizes and cache figures for the metrics.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            live_data_bytes: self.property_sum("rocksdb.estimate-live-data-size"),
            pending_compaction_bytes: self.property_sum("rocksdb.estimate-pending-compaction-bytes"),
            block_cache_hits: self.opts.get_ticker_count(rocksdb::statistics::Ticker::BlockCacheHit),
            block_cache_misses: self.opts.get_ticker_count(rocksdb::statistics::Ticker::BlockCacheMiss),
            memory: self.memory(),
        }
    }

    /// An integer property of RocksDB summed over every column family (a
    /// family that does not answer counts 0).
    fn property_sum(&self, prop: &str) -> u64 {
        Cf::ALL.iter().filter_map(|cf| self.db.property_int_value_cf(self.cf(*cf), prop).ok().flatten()).sum()
    }

    /// Up to `limit` entries of a column family from `start` up to (not
    /// including) `end`, in key order.
    pub fn entries_between(&self, cf: Cf, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<Entry>, StoreError> {
        let mut out = Vec::new();
        let mode = IteratorMode::From(start, rocksdb::Direction::Forward);
        for item in self.db.iterator_cf(self.cf(cf), mode) {
            let (k, v) = item?;
            if k.as_ref() >= end || out.len() >= limit {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// Up to `limit` entries from `start` (inclusive) downwards, newest key
    /// first.
    pub fn entries_before(&self, cf: Cf, start: &[u8], limit: usize) -> Result<Vec<Entry>, StoreError> {
        let mut out = Vec::new();
        let mode = IteratorMode::From(start, rocksdb::Direction::Reverse);
        for item in self.db.iterator_cf(self.cf(cf), mode) {
            let (k, v) = item?;
            if out.len() >= limit {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// Calls `f` with every entry whose key starts with `prefix`, in key
    /// order, stopping at its first error.
    pub fn scan_prefix(
        &self,
        cf: Cf,
        prefix: &[u8],
        mut f: impl FnMut(&[u8], &[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut ro = rocksdb::ReadOptions::default();
        // Lets a column family with a prefix extractor (`months`) use its
        // prefix bloom filters; the `starts_with` check below decides.
        ro.set_prefix_same_as_start(true);
        let mut it = self.db.raw_iterator_cf_opt(self.cf(cf), ro);
        it.seek(prefix);
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if !k.starts_with(prefix) {
                break;
            }
            f(k, v)?;
            it.next();
        }
        Ok(it.status()?)
    }

    /// A raw iterator over a column family (for walks in either direction
    /// that stop on their own bounds).
    pub fn raw_iterator(&self, cf: Cf) -> rocksdb::DBRawIteratorWithThreadMode<'_, DB> {
        self.db.raw_iterator_cf(self.cf(cf))
    }

    /// How many keys lie in `[start, end)`.
    pub fn count_between(&self, cf: Cf, start: &[u8], end: &[u8]) -> Result<u64, StoreError> {
        let mut it = self.db.raw_iterator_cf(self.cf(cf));
        it.seek(start);
        let mut n = 0;
        while let Some(k) = it.key() {
            if k >= end {
                break;
            }
            n += 1;
            it.next();
        }
        it.status()?;
        Ok(n)
    }

    /// Every value of a column family in key order. In total order even
    /// where a prefix extractor is set (`months`: without it such a scan
    /// may skip what the memtable holds).
    pub fn values(&self, cf: Cf) -> impl Iterator<Item = Result<Vec<u8>, StoreError>> + '_ {
        let mut ro = rocksdb::ReadOptions::default();
        ro.set_total_order_seek(true);
        self.db.iterator_cf_opt(self.cf(cf), ro, IteratorMode::Start).map(|r| r.map(|(_, v)| v.to_vec()).map_err(StoreError::from))
    }
}

/// True when a folder holds nothing but the files RocksDB writes while it
/// creates a database (a creation interrupted before `CURRENT`).
fn only_rocksdb_files(path: &Path) -> bool {
    // What RocksDB writes while creating a database, before `CURRENT`:
    // the lock, its info log, the identity, the first manifest and temp
    // files. Anything more (table files, a later manifest, options, a
    // non-empty write-ahead log) is a database that lost its `CURRENT`:
    // opening it as new would throw its data away.
    let Ok(entries) = std::fs::read_dir(path) else { return false };
    entries.filter_map(Result::ok).all(|e| {
        let n = e.file_name().to_string_lossy().into_owned();
        let empty = e.metadata().map(|m| m.len() == 0).unwrap_or(false);
        n == "LOCK"
            || n == MARKER
            || n == "IDENTITY"
            || n.starts_with("LOG")
            || n == "MANIFEST-000001"
            || n.ends_with(".dbtmp")
            || (n.ends_with(".log") && empty)
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Small options for tests of the store.
    pub(crate) fn opts() -> StoreOptions {
        StoreOptions { block_cache_mb: 8, write_buffer_mb: 4, sync: false, statistics: false }
    }

    #[test]
    fn commits_are_visible_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path(), opts()).unwrap();
            let mut b = s.batch();
            b.put(Cf::Accounts, b"E1", &42u32).unwrap();
            b.put(Cf::Timers, &keys::timer_bound(0, crate::model::Timestamp(5)), &()).unwrap();
            b.put(Cf::Timers, &keys::timer_bound(0, crate::model::Timestamp(-5)), &()).unwrap();
            s.commit(b).unwrap();
        }
        let s = Store::open(dir.path(), opts()).unwrap();
        assert_eq!(s.get::<u32>(Cf::Accounts, b"E1").unwrap(), Some(42));
        let before = s.keys_between(Cf::Timers, &[], &keys::timer_bound(0, crate::model::Timestamp(5))).unwrap();
        assert_eq!(before.len(), 1, "only the negative deadline is before 5");
    }

    #[test]
    fn an_interrupted_creation_is_finished_not_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path(), opts()).unwrap();
            let mut b = s.batch();
            b.delete(Cf::Meta, keys::META_SCHEMA);
            s.commit(b).unwrap();
        }
        assert!(Store::open(dir.path(), opts()).is_ok());
        assert!(Store::open(dir.path(), opts()).is_ok(), "and the marker is there now");
    }

    #[test]
    fn rocksdb_bootstrap_files_alone_are_an_interrupted_creation() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("LOCK"), "").unwrap();
        std::fs::write(dir.path().join("LOG"), "starting").unwrap();
        assert!(Store::open(dir.path(), opts()).is_ok());
    }

    #[test]
    fn refuses_foreign_directories() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
        let e = Store::open(dir.path(), opts()).err().unwrap().to_string();
        assert!(e.contains("not a RocksDB"), "{e}");

        let other = tempfile::tempdir().unwrap();
        {
            let mut o = Options::default();
            o.create_if_missing(true);
            DB::open(&o, other.path()).unwrap();
        }
        let e = Store::open(other.path(), opts()).err().unwrap().to_string();
        assert!(e.contains("did not create"), "{e}");
    }

    #[test]
    fn a_creation_killed_after_the_first_column_families_is_finished() {
        // paywatch's marker, then RocksDB killed with only `default` made.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(MARKER), "paywatch state directory\n").unwrap();
        {
            let mut o = Options::default();
            o.create_if_missing(true);
            DB::open(&o, dir.path()).unwrap();
        }
        let s = Store::open(dir.path(), opts()).unwrap();
        assert_eq!(s.get_raw(Cf::Meta, keys::META_SCHEMA).unwrap().as_deref(), Some(SCHEMA.as_bytes()));
    }

    #[test]
    fn state_that_lost_current_is_refused_not_recreated() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path(), opts()).unwrap();
            let mut b = s.batch();
            b.put(Cf::Accounts, b"E1", &42u32).unwrap();
            s.commit(b).unwrap();
        }
        std::fs::remove_file(dir.path().join("CURRENT")).unwrap();
        let before: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        let e = Store::open(dir.path(), opts()).err().unwrap().to_string();
        assert!(e.contains("lost its RocksDB CURRENT"), "{e}");
        assert!(!dir.path().join("CURRENT").exists(), "nothing was created");
        let after: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(before, after);
    }

    #[test]
    fn a_garbled_manifest_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path(), opts()).unwrap());
        let current = std::fs::read_to_string(dir.path().join("CURRENT")).unwrap();
        std::fs::write(dir.path().join(current.trim()), vec![0x5a; 300]).unwrap();
        let e = Store::open(dir.path(), opts()).err().unwrap().to_string();
        assert!(e.contains("refusing to touch it"), "{e}");
    }
}
