//! The keys that are neither persons nor accounts: custodians (§9) and
//! households (§10), as one stage of their own (#16).
//!
//! It owns `Cf::Custodians`, `Cf::Households` and `Cf::HouseholdWatchers`
//! and is reached only by [`KeyFact`]s: roster versions sent to the
//! custodians and households they concern, the counts a roster record asks
//! for, a person's death, a vulnerable record naming a household. What it
//! sends back to persons (a custodian's death, a household's entry) it
//! hands to the caller as facts, and `CUSTODIAN_OVERLOAD`'s findings as
//! findings. It reads no person's state, so between instances it is a task
//! of its own (`by-custodian`, `by-household`) behind the ordered merge
//! (`merge.rs`): its facts are applied in the order one process would.

use super::facts::{KeyFact, PersonFact};
use super::registrations::Versions;
use super::state::CustodianState;
use crate::detect::{custodian_overload, Finding, RulesConfig};
use crate::model::{DeathRecord, PersonId, RosterRecord, Timestamp, Tz};
use crate::store::{Batch, Cf, Store, StoreError, Table};
use std::collections::BTreeSet;

pub(super) struct KeyStage {
    /// custodian id_no → who names them, their overload episode, their
    /// death; cached.
    custodians: Table<CustodianState>,
    /// household_id → per member and version, in it and covering it
    /// (`COVERAGE_GAP`), as versions were sent to it; cached.
    households: Table<Versions<bool>>,
    /// household_id → the persons whose vulnerable records name it: it
    /// sends them what it is sent; cached.
    watchers: Table<BTreeSet<String>>,
}

/// What applying a fact here produced.
#[derive(Default)]
pub(super) struct Sent {
    /// Facts for persons, in the order sent.
    pub(super) facts: Vec<PersonFact>,
    /// `CUSTODIAN_OVERLOAD` findings.
    pub(super) findings: Vec<Finding>,
}

impl KeyStage {
    pub(super) fn new(cache_entries: usize) -> KeyStage {
        KeyStage {
            custodians: Table::new(Cf::Custodians, cache_entries),
            households: Table::new(Cf::Households, cache_entries),
            watchers: Table::new(Cf::HouseholdWatchers, cache_entries),
        }
    }

    /// Applies a fact addressed to a custodian or a household.
    pub(super) fn apply(&mut self, store: &Store, rules: &RulesConfig, tz: Tz, f: KeyFact) -> Result<Sent, StoreError> {
        let mut sent = Sent::default();
        match f {
            KeyFact::CustodianVersion { custodian, person, version } => self.custodian_version(store, &custodian, &person, version, &mut sent)?,
            KeyFact::OverloadCount { custodian, record } => self.overload_count(store, rules, tz, &custodian, &record, &mut sent)?,
            KeyFact::PersonDied { person, death } => self.person_died(store, &person, death, &mut sent)?,
            KeyFact::MemberVersion { household, person, updated_at, covered } => self.member_version(store, &household, &person, updated_at, covered, &mut sent)?,
            KeyFact::Watch { household, person } => self.watch(store, &household, &person, &mut sent)?,
        }
        Ok(sent)
    }

    /// A custodian is sent `person`'s version (cut down to its
    /// registrations of them). A version naming them is answered with
    /// their deaths, if known, in the order they came.
    fn custodian_version(&mut self, store: &Store, custodian: &PersonId, person: &str, version: RosterRecord, sent: &mut Sent) -> Result<(), StoreError> {
        let names_it = !version.custodians.is_empty();
        let entry = self.custodians.get_or_default(store, custodian.as_str().as_bytes())?;
        entry.of.record(person, version.updated_at, version);
        if names_it {
            for death in &entry.died {
                sent.facts.push(PersonFact::CustodianDied { beneficiary: person.to_owned(), death: death.clone() });
            }
        }
        Ok(())
    }

    /// `CUSTODIAN_OVERLOAD` after roster record `r`, from the versions the
    /// custodian was sent, once per episode.
    fn overload_count(&mut self, store: &Store, rules: &RulesConfig, tz: Tz, id: &PersonId, r: &RosterRecord, sent: &mut Sent) -> Result<(), StoreError> {
        let (t, day) = (r.updated_at, tz.date(r.updated_at));
        let Some(entry) = self.custodians.get(store, id.as_str().as_bytes())? else { return Ok(()) };
        let cfg = &rules.custodian_overload;
        let counted = custodian_overload::counted(id, day, entry.of.at(t));
        let holds = custodian_overload::holds(cfg, &counted);
        let entry = self.custodians.get_or_default(store, id.as_str().as_bytes())?;
        if holds && !entry.over {
            sent.findings.push(custodian_overload::finding(cfg, id, r, &counted, t, tz));
        }
        entry.over = holds;
        Ok(())
    }

    /// A person's death record (any person may be, or become, a
    /// custodian). Kept, and sent to each beneficiary registering them,
    /// when its date is earlier than every one known: a later report of
    /// a later (or the same) date changes no payment's answer.
    fn person_died(&mut self, store: &Store, person: &PersonId, death: DeathRecord, sent: &mut Sent) -> Result<(), StoreError> {
        let entry = self.custodians.get_or_default(store, person.as_str().as_bytes())?;
        if entry.died.last().is_some_and(|k| k.date_of_death <= death.date_of_death) {
            return Ok(());
        }
        for beneficiary in entry.of.persons() {
            sent.facts.push(PersonFact::CustodianDied { beneficiary: beneficiary.clone(), death: death.clone() });
        }
        entry.died.push(death);
        Ok(())
    }

    /// A household is sent what `person`'s version updated at `updated_at`
    /// says of it, and sends it on to every person watching it.
    fn member_version(&mut self, store: &Store, household: &str, person: &str, updated_at: Timestamp, covered: bool, sent: &mut Sent) -> Result<(), StoreError> {
        self.households.get_or_default(store, household.as_bytes())?.record(person, updated_at, covered);
        if let Some(w) = self.watchers.get(store, household.as_bytes())? {
            for watcher in w {
                let (household, member) = (household.to_owned(), person.to_owned());
                sent.facts.push(PersonFact::HouseholdVersion { person: watcher.clone(), household, member, updated_at, covered });
            }
        }
        Ok(())
    }

    /// A vulnerable record of `person` names `household`. The first time,
    /// the person starts watching it and is sent its entry as it stands.
    fn watch(&mut self, store: &Store, household: &str, person: &str, sent: &mut Sent) -> Result<(), StoreError> {
        let key = household.as_bytes();
        if self.watchers.get(store, key)?.is_some_and(|w| w.contains(person)) {
            return Ok(());
        }
        self.watchers.get_or_default(store, key)?.insert(person.to_owned());
        let entry = self.households.get(store, key)?.cloned().unwrap_or_default();
        sent.facts.push(PersonFact::HouseholdEntry { person: person.to_owned(), household: household.to_owned(), entry });
        Ok(())
    }

    /// Entries the next commit rewrites.
    pub(super) fn changed(&self) -> usize {
        self.custodians.changed() + self.households.changed() + self.watchers.changed()
    }

    pub(super) fn flush(&mut self, batch: &mut Batch<'_>, in_flight: bool) -> Result<(), StoreError> {
        self.custodians.flush(batch, in_flight)?;
        self.households.flush(batch, in_flight)?;
        self.watchers.flush(batch, in_flight)
    }

    pub(super) fn landed(&mut self) {
        self.custodians.landed();
        self.households.landed();
        self.watchers.landed();
    }

    pub(super) fn trim(&mut self) {
        self.custodians.trim();
        self.households.trim();
        self.watchers.trim();
    }
}
