//! The store's commits as data, for the changelog (`crate::changelog`):
//! each commit read back from RocksDB's write-ahead log, the whole state
//! listed at one instant, and such changes written into another store.
//! The changelog copies every column family as bytes; it never sees a
//! column-family handle nor decodes a value, so no layout gains a second
//! owner.

use super::{Cf, Store, StoreError};
use rocksdb::{IteratorMode, ReadOptions, WriteBatch, WriteBatchIteratorCf, WriteOptions};

/// One change: a value written, or (`None`) a key deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    /// Where: by name, so a store whose column families were created in
    /// another order (an upgraded one) reads it the same.
    pub cf: Cf,
    pub key: Vec<u8>,
    /// The new value; `None` deletes the key.
    pub value: Option<Vec<u8>>,
}

/// One atomic commit as RocksDB logged it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commit {
    /// The sequence number of its first change; the next commit's is
    /// `seq + ops.len()`. Sequence numbers belong to one database: a
    /// restored copy has its own.
    pub seq: u64,
    pub ops: Vec<Op>,
}

impl Commit {
    /// The sequence number of its last change.
    pub fn last_seq(&self) -> u64 {
        self.seq + (self.ops.len() as u64).saturating_sub(1)
    }
}

impl Store {
    /// The sequence number of the newest change written.
    pub fn latest_seq(&self) -> u64 {
        self.db.latest_sequence_number()
    }

    /// The commits whose changes come after sequence number `seq`, oldest
    /// first, as far as the log reaches now. An error when the log no
    /// longer holds the commit after `seq` (not kept long enough:
    /// `open_keeping_wal`); a commit that starts after `seq + 1` is
    /// returned as it is, and the caller must see the gap.
    pub fn commits_after(&self, seq: u64) -> Result<impl Iterator<Item = Result<Commit, StoreError>> + '_, StoreError> {
        let ids = self.cf_ids();
        let it = self.db.get_updates_since(seq)?;
        Ok(it.map(move |r| {
            let (seq, wb) = r?;
            let mut ops = Ops { ids: &ids, ops: Vec::with_capacity(wb.len()), unknown: None };
            wb.iterate_cf(&mut ops);
            if let Some(why) = ops.unknown {
                return Err(StoreError::Malformed { cf: "write-ahead log", why });
            }
            if ops.ops.len() != wb.len() {
                return Err(StoreError::Malformed { cf: "write-ahead log", why: "a commit holds changes other than puts and deletes" });
            }
            Ok(Commit { seq, ops: ops.ops })
        }))
    }

    /// Calls `each` with every entry of every column family as of one
    /// instant, after calling `start(lo, hi)`: the state seen holds every
    /// commit through sequence number `lo` and none after `hi`. Applying
    /// the commits after `lo` again over it, in order, changes nothing
    /// once those through `hi` are applied (a key's last write wins).
    /// `start` makes the state `each` is handed, returned at the end;
    /// stops early, returning `None`, when `each` returns false.
    pub fn each_entry_at_snapshot<S>(
        &self,
        start: impl FnOnce(u64, u64) -> S,
        mut each: impl FnMut(&mut S, Cf, &[u8], &[u8]) -> bool,
    ) -> Result<Option<S>, StoreError> {
        let lo = self.db.latest_sequence_number();
        let snap = self.db.snapshot();
        let mut state = start(lo, self.db.latest_sequence_number());
        for cf in Cf::ALL {
            let mut ro = ReadOptions::default();
            ro.set_snapshot(&snap);
            ro.set_total_order_seek(true);
            ro.fill_cache(false);
            for r in self.db.iterator_cf_opt(self.cf(cf), ro, IteratorMode::Start) {
                let (k, v) = r?;
                if !each(&mut state, cf, &k, &v) {
                    return Ok(None);
                }
            }
        }
        Ok(Some(state))
    }

    /// Writes changes read from another store's log or snapshot, in one
    /// atomic write.
    pub fn write_ops(&self, ops: &[Op]) -> Result<(), StoreError> {
        let mut wb = WriteBatch::default();
        for op in ops {
            match &op.value {
                Some(v) => wb.put_cf(self.cf(op.cf), &op.key, v),
                None => wb.delete_cf(self.cf(op.cf), &op.key),
            }
        }
        let mut w = WriteOptions::default();
        w.set_sync(self.sync);
        Ok(self.db.write_opt(wb, &w)?)
    }

    /// Whether no column family but `meta` holds anything (a new state
    /// directory).
    pub fn is_blank(&self) -> Result<bool, StoreError> {
        for cf in Cf::ALL {
            if cf == Cf::Meta {
                continue;
            }
            let mut it = self.raw_iterator(cf);
            it.seek_to_first();
            if it.valid() {
                return Ok(false);
            }
            it.status()?;
        }
        Ok(true)
    }

    /// Each column family's id in this database, learnt from a batch that
    /// is never written (the crate does not expose the handles' ids).
    fn cf_ids(&self) -> Vec<(u32, Cf)> {
        struct First(Option<u32>);
        impl WriteBatchIteratorCf for First {
            fn put_cf(&mut self, id: u32, _: &[u8], _: &[u8]) {
                self.0 = Some(id);
            }
            fn delete_cf(&mut self, _: u32, _: &[u8]) {}
            fn merge_cf(&mut self, _: u32, _: &[u8], _: &[u8]) {}
        }
        Cf::ALL
            .iter()
            .filter_map(|&cf| {
                let mut wb = WriteBatch::default();
                wb.put_cf(self.cf(cf), b"", b"");
                let mut first = First(None);
                wb.iterate_cf(&mut first);
                first.0.map(|id| (id, cf))
            })
            .collect()
    }
}

/// Collects a logged batch's changes by column family name.
struct Ops<'a> {
    ids: &'a [(u32, Cf)],
    ops: Vec<Op>,
    /// Why the batch cannot be copied, if it cannot.
    unknown: Option<&'static str>,
}

impl Ops<'_> {
    fn cf(&mut self, id: u32) -> Option<Cf> {
        let cf = self.ids.iter().find(|(i, _)| *i == id).map(|(_, cf)| *cf);
        if cf.is_none() {
            self.unknown = Some("a commit names a column family paywatch does not have");
        }
        cf
    }
}

impl WriteBatchIteratorCf for Ops<'_> {
    fn put_cf(&mut self, id: u32, key: &[u8], value: &[u8]) {
        if let Some(cf) = self.cf(id) {
            self.ops.push(Op { cf, key: key.to_vec(), value: Some(value.to_vec()) });
        }
    }
    fn delete_cf(&mut self, id: u32, key: &[u8]) {
        if let Some(cf) = self.cf(id) {
            self.ops.push(Op { cf, key: key.to_vec(), value: None });
        }
    }
    fn merge_cf(&mut self, _: u32, _: &[u8], _: &[u8]) {
        self.unknown = Some("a commit holds a merge, which paywatch never writes");
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::tests::opts;

    /// Every entry of a store, by column family.
    pub(crate) fn dump(s: &Store) -> Vec<(Cf, Vec<u8>, Vec<u8>)> {
        let mut all = Vec::new();
        s.each_entry_at_snapshot(|_, _| (), |_, cf, k, v| {
            all.push((cf, k.to_vec(), v.to_vec()));
            true
        })
        .unwrap();
        all
    }

    #[test]
    fn commits_read_back_from_the_log_rebuild_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let a = Store::open_keeping_wal(&dir.path().join("a"), opts(), 64).unwrap();
        let start = a.latest_seq();
        let mut b = a.batch();
        b.put_raw(Cf::Beneficiaries, b"B1", b"one");
        b.put_raw(Cf::Months, b"B1....", b"m");
        b.put_raw(Cf::Outbox, b"o1", b"x");
        a.commit(b).unwrap();
        let mut b = a.batch();
        b.delete(Cf::Outbox, b"o1");
        b.put_raw(Cf::Beneficiaries, b"B1", b"two");
        a.commit(b).unwrap();
        let commits: Vec<Commit> = a.commits_after(start).unwrap().map(Result::unwrap).collect();
        assert_eq!(commits.len(), 2);
        assert_eq!(commits[0].seq, start + 1);
        assert_eq!(commits[1].seq, commits[0].last_seq() + 1, "the next commit starts after the last change");
        assert_eq!(commits[1].ops[0], Op { cf: Cf::Outbox, key: b"o1".to_vec(), value: None });
        // Only what came after a commit's first change.
        let after: Vec<Commit> = a.commits_after(commits[0].seq).unwrap().map(Result::unwrap).collect();
        assert_eq!(after, commits[1..]);

        let c = Store::open(&dir.path().join("c"), opts()).unwrap();
        assert!(c.is_blank().unwrap());
        for commit in &commits {
            c.write_ops(&commit.ops).unwrap();
        }
        assert!(!c.is_blank().unwrap());
        assert_eq!(dump(&c), dump(&a));
    }
}
