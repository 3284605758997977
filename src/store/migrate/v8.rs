//! v7 → v8, two changes of one kind (#16: no check reads another key's
//! state):
//! - the `COVERAGE_GAP` referral read its household's `households` entry,
//!   which belongs to the household, not the person. In v8 a household
//!   sends its entry to every person whose vulnerable-persons records name
//!   it (`household_watchers`), and the person keeps the copy it is sent
//!   (`watched_households`), which the referral reads. Only persons with
//!   vulnerable records get an entry: few.
//! - a custodian's entry read the custodian's death from the person's own
//!   state. In v8 each person's earliest death is sent to their custodian
//!   entry (`custodians`, field `died`): every v7 entry gains it, and every
//!   person who died gets an entry, since they may be registered later.
//!   Deaths are few beside the roster.
//!
//! All of it is one write with the schema marker.

use super::{keys, Cf, Store, StoreError, V7};
use crate::engine::registrations::Versions;
use crate::engine::state::{Beneficiary, CustodianState};
use std::collections::{BTreeMap, BTreeSet};

pub(in crate::store) fn v7_to_v8(store: &Store) -> Result<(), StoreError> {
    let mut batch = store.batch();
    // Custodians' entries (v7: who names them, the overload episode) gain
    // the custodian's earliest death.
    let mut custodians: BTreeSet<Vec<u8>> = BTreeSet::new();
    for (id, mut v) in store.entries_between(Cf::Custodians, &[], &[0xff; 32], usize::MAX)? {
        let died = store.get::<Beneficiary>(Cf::Beneficiaries, &id)?.and_then(|b| b.death().cloned());
        v.extend(postcard::to_stdvec(&died).map_err(StoreError::Encode)?);
        batch.put_raw(Cf::Custodians, &id, &v);
        custodians.insert(id);
    }
    let mut dead = 0u64;
    // household → its watchers; person → household → the copy.
    let mut watchers: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut watched: BTreeMap<String, BTreeMap<String, Versions<bool>>> = BTreeMap::new();
    let mut it = store.raw_iterator(Cf::Beneficiaries);
    it.seek_to_first();
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        let bad = |source| StoreError::Decode { cf: Cf::Beneficiaries.name(), key: keys::shown(k), source };
        let ben: Beneficiary = postcard::from_bytes(v).map_err(bad)?;
        if let Some(died) = ben.death().filter(|_| !custodians.contains(k)) {
            batch.put(Cf::Custodians, k, &CustodianState { died: vec![died.clone()], ..Default::default() })?;
            dead += 1;
        }
        let person = String::from_utf8_lossy(k).into_owned();
        for h in ben.vulnerable.iter().filter_map(|x| x.household_id.as_ref()) {
            watchers.entry(h.to_string()).or_default().insert(person.clone());
            watched.entry(person.clone()).or_default().entry(h.to_string()).or_default();
        }
        it.next();
    }
    it.status()?;
    drop(it);
    for (h, persons) in &watchers {
        let entry: Versions<bool> = store.get(Cf::Households, h.as_bytes())?.unwrap_or_default();
        for p in persons {
            if let Some(copy) = watched.get_mut(p).and_then(|m| m.get_mut(h)) {
                *copy = entry.clone();
            }
        }
        batch.put(Cf::HouseholdWatchers, h.as_bytes(), persons)?;
    }
    for (p, copies) in &watched {
        batch.put(Cf::WatchedHouseholds, p.as_bytes(), copies)?;
    }
    batch.put_raw(Cf::Meta, keys::META_SCHEMA, super::V8.as_bytes());
    store.commit(batch)?;
    tracing::info!(
        from = V7,
        to = super::V8,
        custodians = custodians.len(),
        deaths_sent_to_custodian_entries = dead,
        watched_households = watchers.len(),
        watching_persons = watched.len(),
        "state directory upgraded"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testkit::ts;
    use crate::model::time::Date;
    use crate::model::{PersonId, VulnerableRecord, VulnerableSource};
    use crate::store::StoreOptions;

    const PERSON: &str = "341802196002020025";
    const MEMBER: &str = "341802198004040045";

    fn flagged(record_id: &str, household: &str) -> VulnerableRecord {
        VulnerableRecord {
            record_id: record_id.into(),
            person_id: PersonId::parse(PERSON).unwrap(),
            name: "李梅".into(),
            household_id: Some(household.into()),
            township: "水阳镇".into(),
            source: VulnerableSource::Disability,
            category: "grade_1".into(),
            flagged_at: Date::parse("2019-01-10").unwrap(),
            cleared_at: None,
            updated_at: ts("2019-01-11T09:00:00+08:00"),
        }
    }

    /// A person whose two vulnerable records name H7 (with a covering
    /// member) and H9 (nobody on the roster): both households send their
    /// entry, and a household nobody watches gets no watcher entry.
    /// A v7 custodian entry (who names them, the episode) of a custodian
    /// who died gains the death; a living one's gains none; a person who
    /// died and names nobody gets an entry with the death.
    #[test]
    fn custodian_entries_gain_the_death_of_their_person() {
        use crate::model::{DeathRecord, DeathSource, RosterRecord};
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions { block_cache_mb: 8, write_buffer_mb: 4, sync: false, statistics: false };
        let died = |person: &str, on: &str| DeathRecord {
            record_id: format!("D-{person}"),
            person_id: PersonId::parse(person).unwrap(),
            name: "王五".into(),
            date_of_death: Date::parse(on).unwrap(),
            source: DeathSource::Village,
            reported_at: ts("2019-06-03T09:00:00+08:00"),
        };
        let mut of: Versions<RosterRecord> = Versions::default();
        of.record(MEMBER, ts("2019-01-01T08:00:00+08:00"), crate::detect::testkit::roster(crate::model::Status::Active, "2018-01-01", "2019-01-01T08:00:00+08:00"));
        const LIVING: &str = "11010519491231002X";
        {
            let store = Store::open(dir.path(), opts).unwrap();
            let mut b = store.batch();
            // PERSON is a custodian and died twice (the earlier date counts);
            // LIVING is a custodian alive; MEMBER died and names nobody.
            let deaths = vec![died(PERSON, "2019-06-01"), died(PERSON, "2019-05-01")];
            b.put(Cf::Beneficiaries, PERSON.as_bytes(), &Beneficiary { deaths, ..Default::default() }).unwrap();
            b.put(Cf::Beneficiaries, MEMBER.as_bytes(), &Beneficiary { deaths: vec![died(MEMBER, "2019-02-01")], ..Default::default() }).unwrap();
            b.put(Cf::Beneficiaries, LIVING.as_bytes(), &Beneficiary::default()).unwrap();
            b.put(Cf::Custodians, PERSON.as_bytes(), &(&of, true)).unwrap();
            b.put(Cf::Custodians, LIVING.as_bytes(), &(&of, false)).unwrap();
            b.put_raw(Cf::Meta, keys::META_SCHEMA, V7.as_bytes());
            store.commit(b).unwrap();
        }
        let store = Store::open(dir.path(), opts).unwrap();
        let c: CustodianState = store.get(Cf::Custodians, PERSON.as_bytes()).unwrap().unwrap();
        assert_eq!((c.over, &c.of), (true, &of), "kept");
        assert_eq!(c.died.iter().map(|d| Some(d.date_of_death)).collect::<Vec<_>>(), [Date::parse("2019-05-01")], "the earliest");
        let c: CustodianState = store.get(Cf::Custodians, LIVING.as_bytes()).unwrap().unwrap();
        assert_eq!((c.over, c.died), (false, vec![]));
        let c: CustodianState = store.get(Cf::Custodians, MEMBER.as_bytes()).unwrap().unwrap();
        assert_eq!((c.of.persons().count(), c.died.into_iter().map(|d| d.record_id).collect::<Vec<_>>()), (0, vec![format!("D-{MEMBER}")]));
    }

    #[test]
    fn persons_get_the_entries_of_the_households_their_records_name() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions { block_cache_mb: 8, write_buffer_mb: 4, sync: false, statistics: false };
        let mut h7: Versions<bool> = Versions::default();
        h7.record(MEMBER, ts("2019-02-01T08:00:00+08:00"), true);
        {
            let store = Store::open(dir.path(), opts).unwrap();
            let mut b = store.batch();
            let ben = Beneficiary { vulnerable: vec![flagged("CL-1", "H7"), flagged("CL-2", "H9")], ..Default::default() };
            b.put(Cf::Beneficiaries, PERSON.as_bytes(), &ben).unwrap();
            b.put(Cf::Beneficiaries, MEMBER.as_bytes(), &Beneficiary::default()).unwrap();
            b.put(Cf::Households, b"H7", &h7).unwrap();
            b.put(Cf::Households, b"H8", &h7).unwrap();
            b.put_raw(Cf::Meta, keys::META_SCHEMA, V7.as_bytes());
            store.commit(b).unwrap();
        }
        let store = Store::open(dir.path(), opts).unwrap();
        assert_eq!(store.get_raw(Cf::Meta, keys::META_SCHEMA).unwrap().as_deref(), Some(super::super::SCHEMA.as_bytes()));
        let copies: BTreeMap<String, Versions<bool>> = store.get(Cf::WatchedHouseholds, PERSON.as_bytes()).unwrap().unwrap();
        assert_eq!(copies.keys().collect::<Vec<_>>(), ["H7", "H9"]);
        assert_eq!(copies["H7"], h7, "H7's entry, as it stands");
        assert!(copies["H9"].at(ts("2020-01-01T00:00:00+08:00")).next().is_none(), "H9 has nobody yet");
        for h in [&b"H7"[..], b"H9"] {
            let w: BTreeSet<String> = store.get(Cf::HouseholdWatchers, h).unwrap().unwrap();
            assert_eq!(w.iter().collect::<Vec<_>>(), [PERSON]);
        }
        assert!(store.get_raw(Cf::HouseholdWatchers, b"H8").unwrap().is_none());
        assert!(store.get_raw(Cf::WatchedHouseholds, MEMBER.as_bytes()).unwrap().is_none());
    }
}
