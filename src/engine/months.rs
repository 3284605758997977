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

/// Encoded months, all in one buffer. A batch opens a month for nearly
/// every payment, hundreds of thousands of them: a buffer each cost an
/// allocation, a free on another thread, and fresh pages from the kernel
/// every batch (measured at 90,000 households: more than encoding them).
/// One buffer is cleared and filled again, batch after batch.
#[derive(Default)]
pub struct MonthBuf {
    /// [`keys::month`] → where its encoded `Vec<StoredPayment>` is in `bytes`.
    index: FxHashMap<MonthKey, (usize, usize)>,
    /// The months' bytes, one after another. A month set again is appended
    /// again; its earlier bytes are dead until the buffer is cleared.
    bytes: Vec<u8>,
}

impl MonthBuf {
    /// The month's encoded payments, when this buffer has it.
    fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.index.get(key).map(|&(from, to)| &self.bytes[from..to])
    }

    /// Appends what `write` encodes as the month's bytes. A failed encoding
    /// leaves the buffer as it was.
    fn put_with<E>(&mut self, key: MonthKey, write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>) -> Result<usize, E> {
        let from = self.bytes.len();
        if let Err(e) = write(&mut self.bytes) {
            self.bytes.truncate(from);
            return Err(e);
        }
        let to = self.bytes.len();
        self.index.insert(key, (from, to));
        Ok(to - from)
    }

    fn clear(&mut self) {
        self.index.clear();
        self.bytes.clear();
    }
}

/// Lets postcard append to a buffer it does not own.
struct Append<'a>(&'a mut Vec<u8>);

impl Extend<u8> for Append<'_> {
    fn extend<I: IntoIterator<Item = u8>>(&mut self, iter: I) {
        self.0.extend(iter)
    }
}

/// Appends `value`, postcard-encoded, to `out`.
fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), StoreError> {
    postcard::to_extend(value, Append(out)).map(drop).map_err(StoreError::Encode)
}

#[derive(Default)]
pub struct Months {
    /// The months changed since the last commit, encoded.
    pending: MonthBuf,
    /// The months of a commit still being written in the background: the
    /// store does not have them yet, so reads must find them here. Shared
    /// with the thread that puts them into that commit.
    in_flight: Arc<MonthBuf>,
    /// The buffer of the last commit that landed, emptied, with its room
    /// kept: the next [`Months::hand_off`] fills it.
    spare: MonthBuf,
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
            keys.iter().map(|k| self.pending.get(k).or_else(|| self.in_flight.get(k)).map(<[u8]>::to_vec)).collect();
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
        let len = key.len();
        let n = self.pending.put_with(key, |out| encode_into(list, out))?;
        self.pending_bytes += len + n + FRAME_OVERHEAD;
        Ok(())
    }

    /// Starts a month with its first payment, already encoded by
    /// [`encode_opened`].
    pub fn open(&mut self, key: MonthKey, bytes: &[u8]) {
        let len = key.len();
        let n = self.pending.put_with(key, |out| {
            out.extend_from_slice(bytes);
            Ok::<(), StoreError>(())
        });
        self.pending_bytes += len + n.unwrap_or(0) + FRAME_OVERHEAD;
    }

    /// Starts a month with its first payment, encoding it here.
    pub fn open_with(&mut self, key: MonthKey, p: &Payment) -> Result<(), StoreError> {
        let len = key.len();
        let n = self.pending.put_with(key, |out| encode_into(&[StoredRef { payment: p, reversed_by: None }][..], out))?;
        self.pending_bytes += len + n + FRAME_OVERHEAD;
        Ok(())
    }

    /// Puts the changed months into the batch as segment `segment`.
    pub fn flush(&mut self, batch: &mut Batch<'_>, segment: u64) {
        put_all(batch, &self.pending, segment);
        self.pending.clear();
        self.pending_bytes = 0;
    }

    /// Hands the changed months to a commit written in the background (see
    /// [`put_all`]); they stay readable here until [`Months::landed`].
    pub fn hand_off(&mut self) -> Arc<MonthBuf> {
        let next = std::mem::take(&mut self.spare);
        self.in_flight = Arc::new(std::mem::replace(&mut self.pending, next));
        self.pending_bytes = 0;
        Arc::clone(&self.in_flight)
    }

    /// Roughly what the pending months add to a batch.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// The batch written in the background is in the store now: its buffer,
    /// emptied, is the next batch's (the writing thread has let go of it).
    pub fn landed(&mut self) {
        if let Ok(mut buf) = Arc::try_unwrap(std::mem::take(&mut self.in_flight)) {
            buf.clear();
            self.spare = buf;
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
pub fn put_all(batch: &mut Batch<'_>, months: &MonthBuf, segment: u64) {
    let mut sorted: Vec<(&MonthKey, &[u8])> = months.index.iter().map(|(k, &(from, to))| (k, &months.bytes[from..to])).collect();
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
        m.open(key.clone(), &encode_opened(&p).unwrap());
        assert_eq!(m.get(&store, &key).unwrap(), vec![stored(&p)]);
        let mut b = store.batch();
        m.flush(&mut b, 1);
        store.commit(b).unwrap();
        assert_eq!(m.get(&store, &key).unwrap(), vec![stored(&p)], "read back from the store");
        let other = keys::month(p.beneficiary_id.as_str(), p.period.next());
        assert!(m.get(&store, &other).unwrap().is_empty());
    }

    /// The buffer of a landed commit is emptied and filled by the next
    /// batch: what it held is read from the store, never as stale bytes.
    #[test]
    fn a_landed_buffer_is_reused_empty() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let mut m = Months::default();
        let march = payment("E1", "2020-03", "585.00", "2020-03-10T10:00:00+08:00");
        let april = payment("E2", "2020-04", "585.00", "2020-04-10T10:00:00+08:00");
        let k3 = keys::month(march.beneficiary_id.as_str(), march.period);
        let k4 = keys::month(april.beneficiary_id.as_str(), april.period);
        for (segment, (key, p)) in [(k3.clone(), &march), (k4.clone(), &april)].into_iter().enumerate() {
            m.open_with(key.clone(), p).unwrap();
            let months = m.hand_off();
            assert_eq!(m.get(&store, &key).unwrap(), vec![stored(p)], "read from the commit in flight");
            let mut b = store.batch();
            put_all(&mut b, &months, segment as u64 + 1);
            drop(months);
            store.commit(b).unwrap();
            m.landed();
            assert!(m.in_flight.index.is_empty() && m.pending.index.is_empty());
        }
        assert!(m.spare.bytes.capacity() > 0, "the landed buffer is kept for the next batch");
        assert!(m.spare.index.is_empty() && m.spare.bytes.is_empty());
        // March was written from the buffer April's batch then reused.
        assert_eq!(m.get(&store, &k3).unwrap(), vec![stored(&march)]);
        assert_eq!(m.get(&store, &k4).unwrap(), vec![stored(&april)]);
        // A month set twice in one batch reads as the second.
        let second = payment("E3", "2020-03", "100.00", "2020-03-20T10:00:00+08:00");
        m.set(k3.clone(), &[stored(&march), stored(&second)]).unwrap();
        m.set(k3.clone(), &[stored(&second)]).unwrap();
        assert_eq!(m.get(&store, &k3).unwrap(), vec![stored(&second)]);
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
        m.open(k3.clone(), &encode_opened(&march).unwrap());
        m.open_with(k4.clone(), &april).unwrap();
        m.open(k_neighbour.clone(), &encode_opened(&neighbour).unwrap());
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
