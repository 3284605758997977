//! v8 → v9 (#16, lanes): the deadline buckets (`timers` for
//! `MISSED_PAYMENT`, `referrals` for `COVERAGE_GAP`) were keyed by the
//! deadline alone, one bucket for every person. In v9 each lane of the
//! person side has its own buckets, keyed by the lane and then the
//! deadline (`engine::timers`), so lanes never write one bucket at once.
//! A v8 directory had one lane: every bucket moves under lane 0 of 1, and
//! the lane count is recorded; opening the engine with more lanes moves
//! them again. One write with the schema marker.

use super::{keys, Cf, Store, StoreError, V8, V9};
use crate::engine::timers::repartition;

pub(in crate::store) fn v8_to_v9(store: &Store) -> Result<(), StoreError> {
    let mut batch = store.batch();
    let timers = repartition(store, Cf::Timers, 1, &mut batch)?;
    let referrals = repartition(store, Cf::Referrals, 1, &mut batch)?;
    batch.put(Cf::Meta, keys::META_LANES, &1u32)?;
    batch.put_raw(Cf::Meta, keys::META_SCHEMA, V9.as_bytes());
    store.commit(batch)?;
    tracing::info!(from = V8, to = V9, timers, referrals, "state directory upgraded: deadline buckets keyed by lane");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Timestamp;
    use crate::store::StoreOptions;

    /// A v8 bucket key: the deadline alone.
    fn v8_key(t: i64) -> Vec<u8> {
        keys::timer_bound(0, Timestamp(t))[4..].to_vec()
    }

    #[test]
    fn v8_buckets_move_under_lane_zero_and_then_to_the_lanes_of_their_persons() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions { block_cache_mb: 8, write_buffer_mb: 4, sync: false, statistics: false };
        let persons: Vec<String> = (0..40).map(|i| format!("11010119900101{i:04}")).collect();
        {
            let store = Store::open(dir.path(), opts).unwrap();
            let mut b = store.batch();
            b.put(Cf::Timers, &v8_key(-5), &persons[..20].to_vec()).unwrap();
            b.put(Cf::Timers, &v8_key(7), &persons[20..].to_vec()).unwrap();
            let referral = vec![format!("{}\u{1f}CL-1", persons[3])];
            b.put(Cf::Referrals, &v8_key(9), &referral).unwrap();
            b.put_raw(Cf::Meta, keys::META_SCHEMA, V8.as_bytes());
            store.commit(b).unwrap();
        }
        let store = Store::open(dir.path(), opts).unwrap();
        assert_eq!(store.get_raw(Cf::Meta, keys::META_SCHEMA).unwrap().as_deref(), Some(super::super::SCHEMA.as_bytes()));
        assert_eq!(store.get::<u32>(Cf::Meta, keys::META_LANES).unwrap(), Some(1));
        let first: Vec<String> = store.get(Cf::Timers, &keys::timer_bound(0, Timestamp(-5))).unwrap().unwrap();
        assert_eq!(first, persons[..20]);
        assert!(store.get_raw(Cf::Timers, &v8_key(-5)).unwrap().is_none(), "the v8 key is gone");
        let referral: Vec<String> = store.get(Cf::Referrals, &keys::timer_bound(0, Timestamp(9))).unwrap().unwrap();
        assert_eq!(referral.len(), 1);

        // Four lanes: every id lands in its person's lane, none is lost.
        let mut b = store.batch();
        assert_eq!(repartition(&store, Cf::Timers, 4, &mut b).unwrap(), 40);
        store.commit(b).unwrap();
        let mut seen = Vec::new();
        for (k, v) in store.entries_between(Cf::Timers, &[], &[0xff; 13], usize::MAX).unwrap() {
            let lane = u32::from_be_bytes(k[..4].try_into().unwrap());
            let ids: Vec<String> = postcard::from_bytes(&v).unwrap();
            for id in ids {
                assert_eq!(crate::partition::of(id.as_bytes(), 4), lane, "{id}");
                seen.push((keys::timer_deadline(&k).unwrap(), id));
            }
        }
        seen.sort();
        let mut want: Vec<(Timestamp, String)> =
            persons.iter().enumerate().map(|(i, p)| (Timestamp(if i < 20 { -5 } else { 7 }), p.clone())).collect();
        want.sort();
        assert_eq!(seen, want);
        let lanes: std::collections::BTreeSet<u32> =
            store.entries_between(Cf::Timers, &[], &[0xff; 13], usize::MAX).unwrap().iter().map(|(k, _)| u32::from_be_bytes(k[..4].try_into().unwrap())).collect();
        assert!(lanes.len() > 1, "forty persons fall in more than one of four lanes");
    }
}
