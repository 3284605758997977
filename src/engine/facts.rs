//! The facts one key's owner sends another's (#16, docs/partitioning.md).
//!
//! Every check reads only the state of its own key: a beneficiary's, an
//! account's, a custodian's or a household's. What one key needs of
//! another arrives as a fact, plain data addressed to the key that applies
//! it: a [`KeyFact`] to a custodian or a household (the key stage,
//! `key_stage.rs`), a [`PersonFact`] back to a person. Facts for accounts travel
//! separately, in order with the payments' steps (`accounts/`).
//!
//! In one process a fact is applied the moment it is sent, depth first,
//! which is exactly the order the engine applied these changes in before
//! they were facts: alerts and their order are unchanged.
//!
//! Facts *returning* to a person may arrive late between instances, and
//! nothing waits for them (docs/partitioning.md, "The one cycle"): what
//! they change does not depend on their order, and the checks reading them
//! look back. An engine can hold them back to show this
//! ([`Engine::hold_returning_facts`]): held facts are applied before the
//! next referral is decided and at every commit or decision, and the
//! alerts are the same (`engine::tests::arrival`). Between instances the
//! same values travel on the repartition topics (`by-custodian`,
//! `by-household`, `by-person`), which is why they are owned values rather
//! than calls into another key's state.

use super::registrations::Versions;
use super::{Engine, EngineError};
use crate::model::{DeathRecord, PersonId, RosterRecord, Timestamp};
use serde::{Deserialize, Serialize};

/// A fact for a custodian's or a household's entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum KeyFact {
    /// To a custodian: one roster version of `person`, cut down to its
    /// registrations of that custodian (none: it no longer names them).
    /// Sent by the rule of `registrations::destinations`.
    CustodianVersion { custodian: PersonId, person: String, version: RosterRecord },
    /// To a custodian named by roster record `record` or by the version it
    /// took over from: count the persons registering them now
    /// (`CUSTODIAN_OVERLOAD`, §11.8), after the record's versions arrived.
    OverloadCount { custodian: PersonId, record: RosterRecord },
    /// To the custodian entry of a person who died: a death record of
    /// theirs (any person may be, or become, a custodian).
    PersonDied { person: PersonId, death: DeathRecord },
    /// To a household: what `person`'s version updated at `updated_at`
    /// says of it: in it and covering it (`COVERAGE_GAP`).
    MemberVersion { household: String, person: String, updated_at: Timestamp, covered: bool },
    /// To a household: a vulnerable record of `person` names it.
    Watch { household: String, person: String },
}

/// A fact returning to a person from a key its records fed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PersonFact {
    /// To a beneficiary: a custodian it registers died, on a date earlier
    /// than any death of theirs sent before. Its payments already made
    /// through that custodian are checked again, so the fact may arrive
    /// late.
    CustodianDied { beneficiary: String, death: DeathRecord },
    /// To a person watching `household`: its entry as it stands, sent
    /// when the person first names it.
    HouseholdEntry { person: String, household: String, entry: Versions<bool> },
    /// To a person watching `household`: a member's version it was sent.
    HouseholdVersion { person: String, household: String, member: String, updated_at: Timestamp, covered: bool },
}

impl Engine {
    /// Applies a fact returning to a person: now, or, while they are held,
    /// when [`Engine::apply_held_facts`] runs.
    pub(super) fn return_to_person(&mut self, f: PersonFact) -> Result<(), EngineError> {
        match &mut self.held_facts {
            Some(held) => {
                held.push_back(f);
                Ok(())
            }
            None => self.apply_person_fact(f),
        }
    }

    /// Holds returning facts back from now on, as if they came from other
    /// instances (see the module's doc).
    #[cfg(test)]
    pub(super) fn hold_returning_facts(&mut self) {
        self.held_facts.get_or_insert_with(Default::default);
    }

    /// Applies every returning fact held back, oldest first: before a
    /// referral is decided (it reads a household's copy) and before a
    /// commit or a decision. Facts still travelling as repartition records
    /// are read first.
    pub(super) fn apply_held_facts(&mut self) -> Result<(), EngineError> {
        self.sync_wire()?;
        while let Some(f) = self.held_facts.as_mut().and_then(|h| h.pop_front()) {
            self.apply_person_fact(f)?;
        }
        Ok(())
    }

    /// Applies a returning fact to its person's state.
    fn apply_person_fact(&mut self, f: PersonFact) -> Result<(), EngineError> {
        match f {
            PersonFact::CustodianDied { beneficiary, death } => self.custodian_died_for(&beneficiary, &death),
            PersonFact::HouseholdEntry { person, household, entry } => {
                let l = self.lane(&person);
                self.lanes[l].watched_households.get_or_default(&self.store, person.as_bytes())?.insert(household, entry);
                Ok(())
            }
            PersonFact::HouseholdVersion { person, household, member, updated_at, covered } => {
                let l = self.lane(&person);
                let copies = self.lanes[l].watched_households.get_or_default(&self.store, person.as_bytes())?;
                copies.entry(household).or_default().record(&member, updated_at, covered);
                Ok(())
            }
        }
    }
}
