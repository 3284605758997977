//! The payments of each beneficiary and month (the `months` column family),
//! with the changes of the current batch held as encoded bytes.
//!
//! Almost every payment opens a new month and is never read again, so a new
//! month is encoded straight from the payment (no copy kept decoded), and
//! only the rare reads (a second payment in a month, a late death record, a
//! reversal) decode.
//!
//! In the store, a commit writes one *segment* per beneficiary: every month
//! of that beneficiary the commit changed, whole, under
//! `beneficiary_id | segment number`. A beneficiary paid monthly thus costs
//! one entry per commit rather than one per payment, which is most of what
//! RocksDB spends on this ledger. A month changed again later (a second
//! payment, a reversal) is written whole into the later segment, so a read
//! takes the month from the newest segment that holds it. The copies left in
//! older segments are never read again; they are rare (most months are
//! written once).

use super::state::StoredPayment;
use crate::model::Payment;
use crate::store::keys::{self, MonthKey, MONTH_SUFFIX};
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
    /// [`keys::month`] → encoded `Vec<StoredPayment>`, not yet committed.
    pending: FxHashMap<MonthKey, Vec<u8>>,
    /// The months of a commit still being written in the background: the
    /// store does not have them yet, so reads must find them here. Shared
    /// with the thread that puts them into that commit.
    in_flight: Arc<FxHashMap<MonthKey, Vec<u8>>>,
    /// Bytes of keys and values pending, to size the next batch.
    pending_bytes: usize,
}

impl Months {
    /// The month's payments (empty when there are none); `key` is a
    /// [`keys::month`].
    pub fn get(&self, store: &Store, key: &[u8]) -> Result<Vec<StoredPayment>, StoreError> {
        Ok(self.get_many(store, &[MonthKey::from_slice(key)])?.pop().unwrap_or_default())
    }

    /// Several months of one beneficiary, in the order of `keys`, with one
    /// pass over the beneficiary's segments in the store.
    pub fn get_many(&self, store: &Store, keys: &[MonthKey]) -> Result<Vec<Vec<StoredPayment>>, StoreError> {
        let mut found: Vec<Option<Vec<u8>>> =
            keys.iter().map(|k| self.pending.get(k).or_else(|| self.in_flight.get(k)).cloned()).collect();
        let missing: Vec<usize> = (0..keys.len()).filter(|i| found[*i].is_none()).collect();
        if let Some(first) = missing.first() {
            let bid = beneficiary(&keys[*first]);
            // Segments come oldest first: a later one replaces the month.
            store.scan_prefix(Cf::Months, bid, |_, segment| {
                crate::store::keys::for_each_segment_month(segment, |month, bytes| {
                    for i in &missing {
                        if keys[*i][bid.len()..] == *month && beneficiary(&keys[*i]) == bid {
                            found[*i] = Some(bytes.to_vec());
                        }
                    }
                })
            })?;
        }
        found
            .into_iter()
            .zip(keys)
            .map(|(b, key)| match b {
                Some(b) => postcard::from_bytes(&b)
                    .map_err(|source| StoreError::Decode { cf: Cf::Months.name(), key: crate::store::keys::shown(key), source }),
                None => Ok(Vec::new()),
            })
            .collect()
    }

    /// Replaces the month's payments.
    pub fn set(&mut self, key: MonthKey, list: &[StoredPayment]) -> Result<(), StoreError> {
        let bytes = postcard::to_stdvec(list).map_err(StoreError::Encode)?;
        self.pending_bytes += key.len() + bytes.len() + FRAME_OVERHEAD;
        self.pending.insert(key, bytes);
        Ok(())
    }

    /// Starts a month with its first payment, encoded by [`encode_opened`].
    pub fn open(&mut self, key: MonthKey, bytes: Vec<u8>) {
        self.pending_bytes += key.len() + bytes.len() + FRAME_OVERHEAD;
        self.pending.insert(key, bytes);
    }

    /// Puts the changed months into the batch as segment `segment`.
    pub fn flush(&mut self, batch: &mut Batch<'_>, segment: u64) {
        put_all(batch, &self.pending, segment);
        self.pending.clear();
        self.pending_bytes = 0;
    }

    /// Hands the changed months to a commit written in the background (see
    /// [`put_all`]); they stay readable here until [`Months::landed`].
    pub fn hand_off(&mut self) -> Arc<FxHashMap<MonthKey, Vec<u8>>> {
        // The next batch opens about as many months: room for them now,
        // not by doubling while it runs.
        let room = FxHashMap::with_capacity_and_hasher(self.pending.len(), Default::default());
        self.in_flight = Arc::new(std::mem::replace(&mut self.pending, room));
        self.pending_bytes = 0;
        Arc::clone(&self.in_flight)
    }

    /// Roughly what the pending months add to a batch.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// The batch written in the background is in the store now. Its
    /// months (a few hundred thousand buffers) are freed on a thread of
    /// their own, not on the engine's.
    pub fn landed(&mut self) {
        let landed = std::mem::take(&mut self.in_flight);
        if landed.len() > 1024 {
            let _ = std::thread::Builder::new().name("paywatch-free".into()).spawn(move || drop(landed));
        }
    }
}

/// A month holding only `p`, encoded as `Vec<StoredPayment>`.
pub fn encode_opened(p: &Payment) -> Result<Vec<u8>, StoreError> {
    let one = [StoredRef { payment: p, reversed_by: None }];
    // Room for a typical payment, so encoding does not grow the buffer
    // field by field.
    postcard::to_extend(&one[..], Vec::with_capacity(256)).map_err(StoreError::Encode)
}

/// What a segment spends on a month besides its bytes: the length.
const FRAME_OVERHEAD: usize = 4;

/// The beneficiary part of a [`keys::month`].
fn beneficiary(key: &[u8]) -> &[u8] {
    &key[..key.len().saturating_sub(MONTH_SUFFIX)]
}

/// Puts changed months (from [`Months::hand_off`]) into a batch: one
/// segment per beneficiary, numbered `segment` (layout: [`keys::push_segment_month`]).
pub fn put_all(batch: &mut Batch<'_>, months: &FxHashMap<MonthKey, Vec<u8>>, segment: u64) {
    let mut sorted: Vec<(&MonthKey, &Vec<u8>)> = months.iter().collect();
    sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut value = Vec::new();
    for group in sorted.chunk_by(|a, b| beneficiary(a.0) == beneficiary(b.0)) {
        value.clear();
        for (k, v) in group {
            keys::push_segment_month(&mut value, &k[k.len() - MONTH_SUFFIX..], v);
        }
        batch.put_raw(Cf::Months, &keys::month_segment(beneficiary(group[0].0), segment), &value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testkit::payment;
    use crate::model::Period;
    use crate::store::StoreOptions;

    fn store(dir: &std::path::Path) -> Store {
        Store::open(dir, StoreOptions { block_cache_mb: 8, write_buffer_mb: 4, sync: false, statistics: false }).unwrap()
    }

    fn stored(p: &Payment) -> StoredPayment {
        StoredPayment { payment: p.clone(), reversed_by: None }
    }

    #[test]
    fn opened_months_decode_as_stored_payments() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let mut m = Months::default();
        let p = payment("E1", "2020-03", "585.00", "2020-03-10T10:00:00+08:00");
        let key = keys::month(p.beneficiary_id.as_str(), p.period);
        m.open(key.clone(), encode_opened(&p).unwrap());
        assert_eq!(m.get(&store, &key).unwrap(), vec![stored(&p)]);
        let mut b = store.batch();
        m.flush(&mut b, 1);
        store.commit(b).unwrap();
        assert_eq!(m.get(&store, &key).unwrap(), vec![stored(&p)], "read back from the store");
        let other = keys::month(p.beneficiary_id.as_str(), p.period.next());
        assert!(m.get(&store, &other).unwrap().is_empty());
    }

    #[test]
    fn the_newest_segment_holding_a_month_has_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let mut m = Months::default();
        let march = payment("E1", "2020-03", "585.00", "2020-03-10T10:00:00+08:00");
        let april = payment("E2", "2020-04", "585.00", "2020-04-10T10:00:00+08:00");
        let bid = march.beneficiary_id.as_str().to_owned();
        // Another beneficiary whose id sorts right after this one's: its
        // segment must not be read as this one's.
        let mut neighbour = payment("E9", "2020-03", "1.00", "2020-03-10T10:00:00+08:00");
        neighbour.beneficiary_id = "0123456789X"
            .chars()
            .find_map(|c| crate::model::PersonId::parse(&format!("11010519491231003{c}")).ok())
            .unwrap();
        let (k3, k4) = (keys::month(&bid, march.period), keys::month(&bid, april.period));
        let k_neighbour = keys::month(neighbour.beneficiary_id.as_str(), neighbour.period);
        m.open(k3.clone(), encode_opened(&march).unwrap());
        m.open(k4.clone(), encode_opened(&april).unwrap());
        m.open(k_neighbour.clone(), encode_opened(&neighbour).unwrap());
        let mut b = store.batch();
        m.flush(&mut b, 1);
        store.commit(b).unwrap();
        // Segment 2: a second payment for March; April is untouched.
        let second = payment("E3", "2020-03", "100.00", "2020-03-20T10:00:00+08:00");
        m.set(k3.clone(), &[stored(&march), stored(&second)]).unwrap();
        let mut b = store.batch();
        m.flush(&mut b, 2);
        store.commit(b).unwrap();
        let k5 = keys::month(&bid, Period::parse("2020-05").unwrap());
        let got = m.get_many(&store, &[k4.clone(), k5, k3.clone()]).unwrap();
        assert_eq!(got, vec![vec![stored(&april)], vec![], vec![stored(&march), stored(&second)]]);
        // Pending changes come before the store.
        m.set(k4.clone(), &[]).unwrap();
        assert!(m.get(&store, &k4).unwrap().is_empty());
        assert_eq!(m.get(&store, &k_neighbour).unwrap(), vec![stored(&neighbour)]);
        let mut segments = 0;
        store.scan_prefix(Cf::Months, bid.as_bytes(), |_, _| {
            segments += 1;
            Ok(())
        }).unwrap();
        assert_eq!(segments, 2, "one entry per commit, not per month");
    }
}
