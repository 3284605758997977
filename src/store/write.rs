//! Writing: the batch a commit collects, and the ways it reaches RocksDB
//! (at once, retried after a failure, or on a thread of its own while the
//! engine goes on).

use super::{Cf, Store, StoreError};
use rocksdb::{WriteBatch, WriteOptions};
use serde::Serialize;

impl Store {
    /// A new, empty batch for this store.
    pub fn batch(&self) -> Batch<'_> {
        Batch { store: self, wb: WriteBatch::default(), scratch: Vec::new() }
    }

    /// A new, empty batch with room for `bytes` reserved, so a large batch
    /// is not copied again each time it outgrows its buffer.
    pub fn batch_with_capacity(&self, bytes: usize) -> Batch<'_> {
        Batch { store: self, wb: WriteBatch::with_capacity_bytes(bytes), scratch: Vec::new() }
    }

    /// Commits one batch atomically (fsynced when configured).
    pub fn commit(&self, batch: Batch<'_>) -> Result<(), StoreError> {
        self.write(batch.wb)
    }

    /// Starts writing one batch on its own thread, so the caller can go on
    /// applying records while RocksDB copies it into its log and memtables.
    /// The write is atomic like [`Store::commit`]; it is durable once
    /// [`PendingWrite::wait`] returns `Ok`.
    ///
    /// `finish` runs on that thread first, to add what the caller can hand
    /// over whole (the bulk of a batch) without building it itself.
    pub fn commit_in_background(&self, batch: Batch<'_>, finish: Finish) -> PendingWrite {
        let store = self.clone();
        let wb = batch.wb;
        #[cfg(test)]
        if self.defer_background_writes {
            return PendingWrite::Deferred(store, wb, finish);
        }
        let thread = std::thread::Builder::new().name("paywatch-commit".into()).spawn(move || {
            let mut b = Batch { store: &store, wb, scratch: Vec::new() };
            finish(&mut b);
            store.write(b.wb)
        });
        PendingWrite::Thread(thread)
    }

    fn write(&self, wb: WriteBatch) -> Result<(), StoreError> {
        let mut w = WriteOptions::default();
        w.set_sync(self.sync);
        Ok(self.db.write_opt(wb, &w)?)
    }

    /// Commits one batch, and when it cannot be written (a full disk, an
    /// I/O error) asks `failed` what to do, with the error and how many
    /// attempts failed so far: try the same batch again after a pause, or
    /// give up and return the error. Nothing of a failed write is applied,
    /// so retrying the same bytes never commits anything twice; RocksDB
    /// recovers from a full disk by itself once space returns. Returns the
    /// number of failed attempts.
    pub fn commit_retrying(
        &self,
        batch: Batch<'_>,
        failed: &mut dyn FnMut(&StoreError, u32) -> WriteFailed,
    ) -> Result<u32, StoreError> {
        let mut w = WriteOptions::default();
        w.set_sync(self.sync);
        let data = batch.wb.data().to_vec();
        let mut wb = batch.wb;
        let mut attempts = 0u32;
        loop {
            match self.db.write_opt(wb, &w) {
                Ok(()) => return Ok(attempts),
                Err(e) => {
                    attempts += 1;
                    let e = StoreError::Db(e);
                    match failed(&e, attempts) {
                        WriteFailed::Retry(pause) => std::thread::sleep(pause),
                        WriteFailed::GiveUp => return Err(e),
                    }
                    wb = WriteBatch::from_data(&data);
                }
            }
        }
    }

    /// Tests: background writes are made only when waited for, so reads in
    /// between meet a batch that is certainly not in the store yet.
    #[cfg(test)]
    pub fn defer_background_writes(&mut self) {
        self.defer_background_writes = true;
    }
}

/// Adds the last entries to a batch on the thread that writes it.
pub type Finish = Box<dyn FnOnce(&mut Batch<'_>) + Send>;

/// A batch being written by [`Store::commit_in_background`].
pub enum PendingWrite {
    /// The writing thread (an error when it could not be started).
    Thread(std::io::Result<std::thread::JoinHandle<Result<(), StoreError>>>),
    /// Tests: written only when waited for.
    #[cfg(test)]
    Deferred(Store, WriteBatch, Finish),
}

impl PendingWrite {
    /// True once [`PendingWrite::wait`] would not block.
    pub fn is_finished(&self) -> bool {
        match self {
            PendingWrite::Thread(Ok(thread)) => thread.is_finished(),
            PendingWrite::Thread(Err(_)) => true,
            #[cfg(test)]
            PendingWrite::Deferred(..) => false,
        }
    }

    /// Waits until the batch is written (or has failed).
    pub fn wait(self) -> Result<(), StoreError> {
        match self {
            PendingWrite::Thread(thread) => {
                let thread = thread.map_err(|e| StoreError::Thread(e.to_string()))?;
                thread.join().map_err(|_| StoreError::Thread("the commit thread panicked".into()))?
            }
            #[cfg(test)]
            PendingWrite::Deferred(store, wb, finish) => {
                let mut b = Batch { store: &store, wb, scratch: Vec::new() };
                finish(&mut b);
                store.write(b.wb)
            }
        }
    }
}

/// The answer to a failed write, for [`Store::commit_retrying`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteFailed {
    /// Write the same batch again after this pause.
    Retry(std::time::Duration),
    /// Return the error.
    GiveUp,
}

/// Changes collected for one atomic commit.
pub struct Batch<'s> {
    /// Resolves column-family handles.
    store: &'s Store,
    /// The changes, written in one atomic write.
    wb: WriteBatch,
    /// Reused encoding buffer.
    scratch: Vec<u8>,
}

impl Batch<'_> {
    pub fn put<T: Serialize>(&mut self, cf: Cf, key: &[u8], value: &T) -> Result<(), StoreError> {
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        let buf = postcard::to_extend(value, buf).map_err(StoreError::Encode)?;
        self.wb.put_cf(self.store.cf(cf), key, &buf);
        self.scratch = buf;
        Ok(())
    }

    pub fn put_raw(&mut self, cf: Cf, key: &[u8], value: &[u8]) {
        self.wb.put_cf(self.store.cf(cf), key, value);
    }

    pub fn delete(&mut self, cf: Cf, key: &[u8]) {
        self.wb.delete_cf(self.store.cf(cf), key);
    }

    /// Bytes of the encoded batch.
    pub fn size(&self) -> usize {
        self.wb.size_in_bytes()
    }

    pub fn len(&self) -> usize {
        self.wb.len()
    }

    pub fn is_empty(&self) -> bool {
        self.wb.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::opts;

    #[test]
    fn commit_retrying_asks_and_gives_up_or_writes_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), opts()).unwrap();
        let mut b = s.batch();
        b.put(Cf::Accounts, b"E1", &7u32).unwrap();
        let mut asked = 0;
        let n = s.commit_retrying(b, &mut |_, _| {
            asked += 1;
            WriteFailed::GiveUp
        });
        assert_eq!(n.unwrap(), 0, "a write that works is not retried");
        assert_eq!(asked, 0);
        assert_eq!(s.get::<u32>(Cf::Accounts, b"E1").unwrap(), Some(7));
    }
}
