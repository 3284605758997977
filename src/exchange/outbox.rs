//! The repartition outbox (`Cf::ExchangeOut`, this module's alone): the
//! records a task wrote, staged in the batch of the state that wrote them,
//! in the order they were written, until the broker has them.
//!
//! Keys are one counter, big-endian, so the order of the keys is the order
//! of staging, which is each stream's order (a `Writer` numbers a stream's
//! records as it writes them). The sender keeps it: a reader refuses a
//! record that comes before one its stream is missing.

use crate::engine::repartition::Outgoing;
use crate::store::{Batch, Cf, Store, StoreError};

/// Stages records under the next numbers.
pub struct Outbox {
    /// The next entry's number: one past the last staged. Kept in memory
    /// and found again at open from the last key, so staging reads
    /// nothing; numbers of a batch that is never committed are used again,
    /// which is harmless (they were never stored).
    next: u64,
}

impl Outbox {
    /// The outbox of `store`, continuing after its last entry.
    pub fn open(store: &Store) -> Result<Outbox, StoreError> {
        let last = store.entries_before(Cf::ExchangeOut, &u64::MAX.to_be_bytes(), 1)?;
        let next = match last.first() {
            Some((k, _)) => key_number(k)? + 1,
            None => 0,
        };
        Ok(Outbox { next })
    }

    /// Adds `records` to `batch`, in order, after every entry staged
    /// before.
    pub fn stage(&mut self, batch: &mut Batch<'_>, records: &[Outgoing]) -> Result<(), StoreError> {
        for r in records {
            batch.put(Cf::ExchangeOut, &self.next.to_be_bytes(), r)?;
            self.next += 1;
        }
        Ok(())
    }
}

/// One staged record and its key in the outbox.
pub type Pending = (Vec<u8>, Outgoing);

/// Up to `limit` staged records, in the order they were staged.
pub fn pending(store: &Store, limit: usize) -> Result<Vec<Pending>, StoreError> {
    store
        .entries_between(Cf::ExchangeOut, &[], &[0xff; 9], limit)?
        .into_iter()
        .map(|(k, v)| {
            postcard::from_bytes(&v)
                .map_err(|source| StoreError::Decode { cf: Cf::ExchangeOut.name(), key: crate::store::keys::shown(&k), source })
                .map(|o| (k, o))
        })
        .collect()
}

/// How many records are staged.
pub fn depth(store: &Store) -> Result<usize, StoreError> {
    Ok(store.keys_between(Cf::ExchangeOut, &[], &[0xff; 9])?.len())
}

/// Deletes records the broker has, in one write.
pub fn acknowledge(store: &Store, keys: &[Vec<u8>]) -> Result<(), StoreError> {
    if keys.is_empty() {
        return Ok(());
    }
    let mut b = store.batch();
    for k in keys {
        b.delete(Cf::ExchangeOut, k);
    }
    store.commit(b)
}

fn key_number(k: &[u8]) -> Result<u64, StoreError> {
    let bytes: [u8; 8] = k.try_into().map_err(|_| StoreError::Malformed { cf: Cf::ExchangeOut.name(), why: "a key is not 8 bytes" })?;
    Ok(u64::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::repartition::Topic;
    use crate::store::StoreOptions;

    fn opts() -> StoreOptions {
        StoreOptions { block_cache_mb: 8, write_buffer_mb: 4, sync: false, statistics: false }
    }

    fn rec(i: u16) -> Outgoing {
        Outgoing { topic: Topic::ByAccount, partition: u32::from(i % 3), key: Some(i.to_be_bytes().to_vec()), value: vec![2, i as u8] }
    }

    /// Records come back in the order staged, across batches and a reopen,
    /// and numbering continues after the last entry left.
    #[test]
    fn records_come_back_in_the_order_staged_until_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), opts()).unwrap();
        let mut out = Outbox::open(&store).unwrap();
        for chunk in [0u16..3, 3..300] {
            let mut b = store.batch();
            out.stage(&mut b, &chunk.map(rec).collect::<Vec<_>>()).unwrap();
            store.commit(b).unwrap();
        }
        let got = pending(&store, 1000).unwrap();
        assert_eq!(got.iter().map(|(_, o)| o.clone()).collect::<Vec<_>>(), (0u16..300).map(rec).collect::<Vec<_>>());
        acknowledge(&store, &got[..250].iter().map(|(k, _)| k.clone()).collect::<Vec<_>>()).unwrap();
        assert_eq!(depth(&store).unwrap(), 50);
        drop(out);
        let mut out = Outbox::open(&store).unwrap();
        let mut b = store.batch();
        out.stage(&mut b, &[rec(7)]).unwrap();
        store.commit(b).unwrap();
        let got = pending(&store, 1000).unwrap();
        assert_eq!(got.len(), 51);
        assert_eq!(got.last().unwrap().1, rec(7));
        assert_eq!(key_number(&got.last().unwrap().0).unwrap(), 300);
        assert_eq!(pending(&store, 2).unwrap().len(), 2);
    }
}
