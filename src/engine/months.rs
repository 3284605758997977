//! The payments of each beneficiary and month (the `months` column family),
//! with the changes of the current batch held as encoded bytes.
//!
//! Almost every payment opens a new month and is never read again, so a new
//! month is encoded straight from the payment (no copy kept decoded), and
//! only the rare reads (a second payment in a month, a late death record, a
//! reversal) decode.

use super::state::StoredPayment;
use crate::model::Payment;
use crate::store::{Batch, Cf, Store, StoreError};
use rustc_hash::FxHashMap;
use serde::Serialize;
use std::sync::Arc;

/// Same encoding as `StoredPayment`, borrowing the payment.
#[derive(Serialize)]
struct StoredRef<'a> {
    payment: &'a Payment,
    reversed_by: Option<&'a str>,
}

#[derive(Default)]
pub struct Months {
    /// key → encoded `Vec<StoredPayment>`, not yet committed.
    pending: FxHashMap<Vec<u8>, Vec<u8>>,
    /// The months of a commit still being written in the background: the
    /// store does not have them yet, so reads must find them here. Shared
    /// with the thread that puts them into that commit.
    in_flight: Arc<FxHashMap<Vec<u8>, Vec<u8>>>,
    /// Bytes of keys and values pending, to size the next batch.
    pending_bytes: usize,
}

impl Months {
    /// The month's payments (empty when there are none).
    pub fn get(&self, store: &Store, key: &[u8]) -> Result<Vec<StoredPayment>, StoreError> {
        let decode = |b: &[u8]| postcard::from_bytes(b).map_err(|source| StoreError::Decode { cf: Cf::Months.name(), source });
        match self.pending.get(key).or_else(|| self.in_flight.get(key)) {
            Some(b) => decode(b),
            None => Ok(store.get(Cf::Months, key)?.unwrap_or_default()),
        }
    }

    /// Replaces the month's payments.
    pub fn set(&mut self, key: Vec<u8>, list: &[StoredPayment]) -> Result<(), StoreError> {
        let bytes = postcard::to_stdvec(list).map_err(StoreError::Encode)?;
        self.pending_bytes += key.len() + bytes.len() + ENTRY_OVERHEAD;
        self.pending.insert(key, bytes);
        Ok(())
    }

    /// Starts a month with its first payment, encoded by [`encode_opened`].
    pub fn open(&mut self, key: Vec<u8>, bytes: Vec<u8>) {
        self.pending_bytes += key.len() + bytes.len() + ENTRY_OVERHEAD;
        self.pending.insert(key, bytes);
    }

    /// Puts the changed months into the batch.
    pub fn flush(&mut self, batch: &mut Batch<'_>) {
        put_all(batch, &self.pending);
        self.pending.clear();
        self.pending_bytes = 0;
    }

    /// Hands the changed months to a commit written in the background (see
    /// [`put_all`]); they stay readable here until [`Months::landed`].
    pub fn hand_off(&mut self) -> Arc<FxHashMap<Vec<u8>, Vec<u8>>> {
        self.in_flight = Arc::new(std::mem::take(&mut self.pending));
        self.pending_bytes = 0;
        Arc::clone(&self.in_flight)
    }

    /// Roughly what the pending months add to a batch.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// The batch written in the background is in the store now.
    pub fn landed(&mut self) {
        self.in_flight = Arc::default();
    }
}

/// A month holding only `p`, encoded as `Vec<StoredPayment>`.
pub fn encode_opened(p: &Payment) -> Result<Vec<u8>, StoreError> {
    let one = [StoredRef { payment: p, reversed_by: None }];
    // Room for a typical payment, so encoding does not grow the buffer
    // field by field.
    postcard::to_extend(&one[..], Vec::with_capacity(256)).map_err(StoreError::Encode)
}

/// What a write batch spends on an entry besides key and value.
const ENTRY_OVERHEAD: usize = 8;

/// Puts months handed off by [`Months::hand_off`] into a batch.
pub fn put_all(batch: &mut Batch<'_>, months: &FxHashMap<Vec<u8>, Vec<u8>>) {
    for (k, v) in months {
        batch.put_raw(Cf::Months, k, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testkit::payment;
    use crate::store::StoreOptions;

    #[test]
    fn opened_months_decode_as_stored_payments() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions { block_cache_mb: 8, write_buffer_mb: 4, sync: false, statistics: false }).unwrap();
        let mut m = Months::default();
        let p = payment("E1", "2020-03", "585.00", "2020-03-10T10:00:00+08:00");
        let key = crate::store::keys::month(p.beneficiary_id.as_str(), p.period);
        m.open(key.clone(), encode_opened(&p).unwrap());
        let got = m.get(&store, &key).unwrap();
        assert_eq!(got, vec![StoredPayment { payment: p.clone(), reversed_by: None }]);
        let mut b = store.batch();
        m.flush(&mut b);
        store.commit(b).unwrap();
        assert_eq!(m.get(&store, &key).unwrap().len(), 1, "read back from the store");
        let other = crate::store::keys::month(p.beneficiary_id.as_str(), p.period.next());
        assert!(m.get(&store, &other).unwrap().is_empty());
    }
}
