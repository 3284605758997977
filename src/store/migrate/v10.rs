//! v9 → v10 (#16, reading 38): a beneficiary kept one death per custodian
//! it registers, the earliest known (`custodian_deaths`: `id_no` → death).
//! v10 keeps every death sent to it, in the order they came, so that a
//! payment cites the first one reported that precedes it, whenever the
//! others arrive. Each v9 death becomes a list of one: the deaths of that
//! custodian reported before it with a later date were not kept, so a
//! payment made from now on may cite the earliest where a directory built
//! by v10 from the start would cite an earlier report. The custodians'
//! own entries need nothing: their one death (`Option`) encodes as a list
//! of one. One write with the schema marker.

use super::{keys, Cf, Store, StoreError, V9};
use crate::model::DeathRecord;
use std::collections::BTreeMap;

pub(in crate::store) fn v9_to_v10(store: &Store) -> Result<(), StoreError> {
    let mut batch = store.batch();
    let mut rewritten = 0u64;
    let mut it = store.raw_iterator(Cf::CustodianDeaths);
    it.seek_to_first();
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        let bad = |source| StoreError::Decode { cf: Cf::CustodianDeaths.name(), key: keys::shown(k), source };
        let v9: BTreeMap<String, DeathRecord> = postcard::from_bytes(v).map_err(bad)?;
        let v10: BTreeMap<String, Vec<DeathRecord>> = v9.into_iter().map(|(id, d)| (id, vec![d])).collect();
        batch.put(Cf::CustodianDeaths, k, &v10)?;
        rewritten += 1;
        it.next();
    }
    it.status()?;
    batch.put_raw(Cf::Meta, keys::META_SCHEMA, super::SCHEMA.as_bytes());
    store.commit(batch)?;
    tracing::info!(from = V9, to = super::SCHEMA, beneficiaries = rewritten, "state directory upgraded: every custodian death a beneficiary was sent is kept");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::state::CustodianState;
    use crate::model::time::Date;
    use crate::model::{DeathSource, PersonId, Timestamp};
    use crate::store::StoreOptions;

    const BEN: &str = "341802196002020025";
    const CUSTODIAN: &str = "341802195001010015";

    fn died(on: &str) -> DeathRecord {
        DeathRecord {
            record_id: format!("D-{on}"),
            person_id: PersonId::parse(CUSTODIAN).unwrap(),
            name: "王五".into(),
            date_of_death: Date::parse(on).unwrap(),
            reported_at: Timestamp(1_000),
            source: DeathSource::FuneralHome,
        }
    }

    #[test]
    fn a_v9_death_becomes_a_list_of_one_and_a_custodian_entry_reads_as_is() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions { block_cache_mb: 8, write_buffer_mb: 4, sync: false, statistics: false };
        let d = died("2019-05-01");
        {
            let store = Store::open(dir.path(), opts).unwrap();
            let mut b = store.batch();
            let v9: BTreeMap<String, DeathRecord> = [(CUSTODIAN.to_owned(), d.clone())].into();
            b.put(Cf::CustodianDeaths, BEN.as_bytes(), &v9).unwrap();
            // A v9 custodian entry: who names them, the episode, the death
            // as an `Option`.
            let v9_entry = postcard::to_stdvec(&(crate::engine::registrations::Versions::<crate::model::RosterRecord>::default(), true, Some(d.clone()))).unwrap();
            b.put_raw(Cf::Custodians, CUSTODIAN.as_bytes(), &v9_entry);
            b.put_raw(Cf::Meta, keys::META_SCHEMA, V9.as_bytes());
            store.commit(b).unwrap();
        }
        let store = Store::open(dir.path(), opts).unwrap();
        assert_eq!(store.get_raw(Cf::Meta, keys::META_SCHEMA).unwrap().as_deref(), Some(super::super::SCHEMA.as_bytes()));
        let v10: BTreeMap<String, Vec<DeathRecord>> = store.get(Cf::CustodianDeaths, BEN.as_bytes()).unwrap().unwrap();
        assert_eq!(v10, BTreeMap::from([(CUSTODIAN.to_owned(), vec![d.clone()])]));
        let c: CustodianState = store.get(Cf::Custodians, CUSTODIAN.as_bytes()).unwrap().unwrap();
        assert_eq!((c.over, c.died), (true, vec![d]));
    }

    #[test]
    fn a_garbled_v9_entry_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions { block_cache_mb: 8, write_buffer_mb: 4, sync: false, statistics: false };
        {
            let store = Store::open(dir.path(), opts).unwrap();
            let mut b = store.batch();
            b.put_raw(Cf::CustodianDeaths, BEN.as_bytes(), &[0x01, 0xff]);
            b.put_raw(Cf::Meta, keys::META_SCHEMA, V9.as_bytes());
            store.commit(b).unwrap();
        }
        let err = Store::open(dir.path(), opts).err().expect("refused").to_string();
        assert!(err.contains("custodian_deaths"), "{err}");
        let store = Store::open(dir.path(), opts);
        assert!(store.is_err(), "still v9, still refused: nothing was half-written");
    }
}
