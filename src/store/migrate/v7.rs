//! v6 → v7: `account_custodians` held, per account, the persons whose
//! roster ever named it for a custodian, and the person side counted n of
//! `FREQUENT_PAYMENTS` from their rosters. In v7 the account stage counts
//! n itself, from the registrations filed under the account, version by
//! version (`engine::registrations`), so that it never reads a person's
//! state (#16). `custodians` likewise held who names each custodian, and
//! `CUSTODIAN_OVERLOAD` read their rosters; v7 holds their versions.
//! `households` held everyone ever on the roster with the household, and
//! `COVERAGE_GAP` read their rosters; v7 holds, per version, whether it
//! is in the household and covers it.
//! A custodian's death was read at each payment through them; v7 sends it
//! to each beneficiary registering them (`custodian_deaths`).
//! Each entry is rebuilt from every version of its persons: those the
//! beneficiary keeps and those archived. Households, many, go first in
//! resumable chunks; accounts and custodians, few, then go in one write
//! with the schema marker.

use super::{keys, Cf, Store, StoreError, V6, V7};
#[cfg(test)]
use crate::store::SCHEMA;
use crate::detect::coverage_gap;
use crate::engine::registrations::{self, Registrations, Versions};
use crate::engine::state::Beneficiary;
#[cfg(test)]
use crate::engine::state::CustodianState;
use crate::model::{DeathRecord, RosterRecord};
use std::collections::{BTreeMap, BTreeSet};

/// Where an interrupted v6 → v7 upgrade of `households` resumes.
const V7_AFTER: &[u8] = b"upgrade_v7_after/households";

pub(in crate::store) fn v6_to_v7(store: &Store) -> Result<(), StoreError> {
    // Households are many (one per household on the roster): resumable
    // chunks first. The rest is one write with the schema marker, so an
    // interruption never leaves an entry converted that is read as v6.
    let mut households = 0u64;
    super::rewrite_chunks(store, Cf::Households, V7_AFTER, |batch, h, v| {
        let bad = |source| StoreError::Decode { cf: Cf::Households.name(), key: keys::shown(h), source };
        let persons: BTreeSet<String> = postcard::from_bytes(v).map_err(bad)?;
        let household = String::from_utf8_lossy(h);
        let mut covered: Versions<bool> = Versions::default();
        for person in &persons {
            for r in versions(store, person)? {
                covered.record(person, r.updated_at, r.household_id.as_str() == household && coverage_gap::covers(&r));
            }
        }
        households += 1;
        batch.put(Cf::Households, h, &covered)
    })?;
    let mut batch = store.batch();
    batch.delete(Cf::Meta, V7_AFTER);
    let mut rebuilt = 0u64;
    for (account, v) in store.entries_between(Cf::AccountCustodians, &[], &[0xff; 32], usize::MAX)? {
        let bad = |source| StoreError::Decode { cf: Cf::AccountCustodians.name(), key: keys::shown(&account), source };
        let persons: BTreeSet<String> = postcard::from_bytes(&v).map_err(bad)?;
        let account_no = String::from_utf8_lossy(&account);
        let mut regs = Registrations::default();
        for person in &persons {
            for r in versions(store, person)? {
                regs.record(person, r.updated_at, registrations::of(&r, &account_no));
            }
        }
        if regs.persons().next().is_some() {
            batch.put(Cf::AccountCustodians, &account, &regs)?;
            rebuilt += 1;
        } else {
            batch.delete(Cf::AccountCustodians, &account);
        }
    }
    let mut custodians = 0u64;
    // beneficiary → the deaths of the custodians it registers (v7 sends
    // them to the beneficiary, which reads them at its payments).
    let mut deaths: BTreeMap<String, BTreeMap<String, DeathRecord>> = BTreeMap::new();
    for (id, v) in store.entries_between(Cf::Custodians, &[], &[0xff; 32], usize::MAX)? {
        let bad = |source| StoreError::Decode { cf: Cf::Custodians.name(), key: keys::shown(&id), source };
        let (persons, over): (BTreeSet<String>, bool) = postcard::from_bytes(&v).map_err(bad)?;
        if let Some(death) = store.get::<Beneficiary>(Cf::Beneficiaries, &id)?.and_then(|b| b.death().cloned()) {
            for person in &persons {
                deaths.entry(person.clone()).or_default().insert(String::from_utf8_lossy(&id).into_owned(), death.clone());
            }
        }
        let mut state = CustodianV7 { of: Versions::default(), over };
        for person in &persons {
            for mut r in versions(store, person)? {
                r.custodians.retain(|c| c.id_no.as_ref().is_some_and(|x| x.as_str().as_bytes() == id.as_slice()));
                state.of.record(person, r.updated_at, r);
            }
        }
        batch.put(Cf::Custodians, &id, &state)?;
        custodians += 1;
    }
    for (person, of) in &deaths {
        batch.put(Cf::CustodianDeaths, person.as_bytes(), of)?;
    }
    batch.put_raw(Cf::Meta, keys::META_SCHEMA, V7.as_bytes());
    store.commit(batch)?;
    tracing::info!(from = V6, to = V7, accounts_named_for_custodians = rebuilt, custodians, households, custodian_deaths = deaths.len(), "state directory upgraded");
    Ok(())
}

/// A custodian's entry as v7 writes it (v8 adds their death).
#[derive(serde::Serialize)]
struct CustodianV7 {
    of: Versions<RosterRecord>,
    over: bool,
}

/// Every roster version of `person`, archived ones first, in the order
/// the engine applies them (by `updated_at`; of two at one instant, the
/// one the beneficiary keeps later wins).
fn versions(store: &Store, person: &str) -> Result<Vec<RosterRecord>, StoreError> {
    let mut out: Vec<RosterRecord> = Vec::new();
    store.scan_prefix(Cf::RosterArchive, &keys::archived_roster_prefix(person), |k, v| {
        out.push(postcard::from_bytes(v).map_err(|source| StoreError::Decode { cf: Cf::RosterArchive.name(), key: keys::shown(k), source })?);
        Ok(())
    })?;
    out.sort_by_key(|r| r.updated_at);
    if let Some(b) = store.get::<Beneficiary>(Cf::Beneficiaries, person.as_bytes())? {
        out.extend(b.roster);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testkit::{roster, ts};
    use crate::model::time::Date;
    use crate::model::{Custodian, PersonId, Status};
    use crate::store::StoreOptions;

    const ACCOUNT: &str = "6217000000000009";
    const PERSON: &str = "11010519491231002X";
    const CUSTODIAN: &str = "341802196002020025";

    /// A version of [`PERSON`] updated at `at`, registering [`ACCOUNT`]
    /// from 2018-06-01 when `registers`.
    fn version(at: &str, registers: bool) -> RosterRecord {
        let mut r = roster(Status::Active, "2018-01-01", at);
        r.beneficiary_id = PersonId::parse(PERSON).unwrap();
        r.household_id = if registers { "H1" } else { "H2" }.into();
        r.custodians = match registers {
            true => vec![
                Custodian {
                    name: "王五".into(),
                    account_no: ACCOUNT.into(),
                    registered_at: Date::parse("2018-06-01").unwrap(),
                    revoked_at: None,
                    id_no: Some(PersonId::parse(CUSTODIAN).unwrap()),
                },
                Custodian {
                    name: "赵六".into(),
                    account_no: "6217000000000077".into(),
                    registered_at: Date::parse("2018-06-01").unwrap(),
                    revoked_at: None,
                    id_no: Some(PersonId::parse(PERSON).unwrap()),
                },
            ],
            false => Vec::new(),
        };
        r
    }

    /// An archived version registering the account, then a kept one that
    /// drops it: the upgraded entry answers as the person's history does.
    /// A person without state leaves nothing; an account with nobody left
    /// is deleted.
    #[test]
    fn registrations_are_rebuilt_from_kept_and_archived_versions() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions { block_cache_mb: 8, write_buffer_mb: 4, sync: false, statistics: false };
        let (old, new) = (version("2018-07-01T08:00:00+08:00", true), version("2019-03-01T08:00:00+08:00", false));
        {
            let store = Store::open(dir.path(), opts).unwrap();
            let mut b = store.batch();
            let bytes = postcard::to_stdvec(&old).unwrap();
            b.put_raw(Cf::RosterArchive, &keys::archived_roster(PERSON, old.updated_at, &bytes), &bytes);
            b.put(Cf::Beneficiaries, PERSON.as_bytes(), &Beneficiary { roster: vec![new.clone()], ..Default::default() }).unwrap();
            let named: BTreeSet<String> = [PERSON.to_owned(), "341802196002020025".to_owned()].into();
            b.put(Cf::AccountCustodians, ACCOUNT.as_bytes(), &named).unwrap();
            let nobody: BTreeSet<String> = ["341802196002020025".to_owned()].into();
            b.put(Cf::AccountCustodians, b"6217000000000001", &nobody).unwrap();
            // The archived version is in H1 (and covers it), the kept one
            // moved to H2.
            let h: BTreeSet<String> = [PERSON.to_owned()].into();
            b.put(Cf::Households, b"H1", &h).unwrap();
            b.put(Cf::Households, b"H2", &h).unwrap();
            // The archived version names custodian C; the kept one does not.
            let c: BTreeSet<String> = [PERSON.to_owned()].into();
            b.put(Cf::Custodians, CUSTODIAN.as_bytes(), &(c, true)).unwrap();
            // C died.
            let died = DeathRecord {
                record_id: "DC".into(),
                person_id: PersonId::parse(CUSTODIAN).unwrap(),
                name: "王五".into(),
                date_of_death: Date::parse("2019-02-01").unwrap(),
                source: crate::model::DeathSource::Village,
                reported_at: ts("2019-02-03T09:00:00+08:00"),
            };
            b.put(Cf::Beneficiaries, CUSTODIAN.as_bytes(), &Beneficiary { deaths: vec![died], ..Default::default() }).unwrap();
            b.put_raw(Cf::Meta, keys::META_SCHEMA, V6.as_bytes());
            store.commit(b).unwrap();
        }
        let store = Store::open(dir.path(), opts).unwrap();
        assert_eq!(store.get_raw(Cf::Meta, keys::META_SCHEMA).unwrap().as_deref(), Some(SCHEMA.as_bytes()));
        let regs: Registrations = store.get(Cf::AccountCustodians, ACCOUNT.as_bytes()).unwrap().unwrap();
        assert_eq!(regs.persons().collect::<Vec<_>>(), [PERSON]);
        let on = Date::parse("2019-01-10").unwrap();
        assert_eq!(regs.count(ts("2019-01-10T10:00:00+08:00"), on), 1, "the archived version");
        assert_eq!(regs.count(ts("2019-03-10T10:00:00+08:00"), on), 0, "the kept version ends it");
        assert_eq!(regs.count(ts("2018-06-10T10:00:00+08:00"), on), 0, "no version yet");
        assert!(store.get_raw(Cf::AccountCustodians, b"6217000000000001").unwrap().is_none());
        let c: CustodianState = store.get(Cf::Custodians, CUSTODIAN.as_bytes()).unwrap().unwrap();
        assert!(c.over, "kept");
        assert_eq!(c.of.persons().collect::<Vec<_>>(), [PERSON]);
        let named = |t: &str| c.of.at(ts(t)).filter(|r| !r.custodians.is_empty()).count();
        assert_eq!((named("2019-01-10T10:00:00+08:00"), named("2019-03-10T10:00:00+08:00")), (1, 0));
        assert!(c.of.at(ts("2019-01-10T10:00:00+08:00")).all(|r| r.custodians.iter().all(|x| x.account_no == ACCOUNT)), "only its own registrations");
        let covers = |h: &[u8], t: &str| store.get::<Versions<bool>>(Cf::Households, h).unwrap().unwrap().at(ts(t)).any(|c| *c);
        assert!(covers(b"H1", "2019-01-10T10:00:00+08:00"));
        assert!(!covers(b"H1", "2019-03-10T10:00:00+08:00"), "moved to H2");
        assert!(covers(b"H2", "2019-03-10T10:00:00+08:00"));
        assert!(store.get_raw(Cf::Meta, V7_AFTER).unwrap().is_none(), "the resume key goes with the upgrade");
        let sent: BTreeMap<String, Vec<DeathRecord>> = store.get(Cf::CustodianDeaths, PERSON.as_bytes()).unwrap().unwrap();
        assert_eq!(sent.keys().collect::<Vec<_>>(), [CUSTODIAN], "the beneficiary registering C knows C died");
    }
}
