//! The facts one key's owner sends another's (#16, docs/partitioning.md).
//!
//! Every check reads only the state of its own key: a beneficiary's, an
//! account's, a custodian's (kept in the custodian's own person partition)
//! or a household's. What one key needs of another arrives as a [`Fact`],
//! plain data addressed to the key that applies it (the field it names
//! first: a custodian, a beneficiary or person, or a household). Facts
//! for accounts travel separately, in order with the payments' steps
//! (`accounts.rs`); these are the rest.
//!
//! In one process a fact is applied the moment it is sent
//! ([`Engine::send`]), depth first, which is exactly the order the engine
//! applied these changes in before they were facts: alerts and their order
//! are unchanged.
//!
//! Facts *returning* to a person (a custodian's death, a household's
//! entry) may arrive late between instances, and nothing waits for them
//! (docs/partitioning.md, "The one cycle"): what they change does not
//! depend on their order, and the checks reading them look back. An engine
//! can hold them back to show this ([`Engine::hold_returning_facts`]):
//! held facts are applied before the next referral is decided and at every
//! commit or decision, and the alerts are the same set
//! (`engine::tests::arrival`). Between instances the same values travel on the
//! repartition topics (`by-person`, `by-household`), which is why they are
//! owned values rather than calls into another key's state.

use super::registrations::Versions;
use super::{Engine, EngineError};
use crate::model::{DeathRecord, PersonId, RosterRecord, Timestamp};

/// One fact, addressed to the key that applies it.
#[derive(Clone, Debug, PartialEq)]
pub enum Fact {
    /// To a custodian: one roster version of `person`, cut down to its
    /// registrations of that custodian (none: it no longer names them).
    /// Sent by the rule of `registrations::destinations`.
    CustodianVersion { custodian: PersonId, person: String, version: RosterRecord },
    /// To a custodian named by roster record `record` or by the version it
    /// took over from: count the persons registering them now
    /// (`CUSTODIAN_OVERLOAD`, §11.8), after the record's versions arrived.
    OverloadCount { custodian: PersonId, record: RosterRecord },
    /// To a beneficiary: a custodian it registers died (the earliest death
    /// known of them). Its payments already made through that custodian
    /// are checked again, so the fact may arrive late.
    CustodianDied { beneficiary: String, death: DeathRecord },
    /// To a household: what `person`'s version updated at `updated_at`
    /// says of it: in it and covering it (`COVERAGE_GAP`).
    MemberVersion { household: String, person: String, updated_at: Timestamp, covered: bool },
    /// To a household: a vulnerable record of `person` names it.
    Watch { household: String, person: String },
    /// To a person watching `household`: its entry as it stands, sent
    /// when the person first names it.
    HouseholdEntry { person: String, household: String, entry: Versions<bool> },
    /// To a person watching `household`: a member's version it was sent.
    HouseholdVersion { person: String, household: String, member: String, updated_at: Timestamp, covered: bool },
}

impl Fact {
    /// Sent back to a person by a key that person's own records fed.
    fn returns(&self) -> bool {
        matches!(self, Fact::CustodianDied { .. } | Fact::HouseholdEntry { .. } | Fact::HouseholdVersion { .. })
    }
}

impl Engine {
    /// Applies a fact at its key's owner: now, or, for a returning fact
    /// while they are held, when [`Engine::apply_held_facts`] runs.
    pub(super) fn send(&mut self, f: Fact) -> Result<(), EngineError> {
        match &mut self.held_facts {
            Some(held) if f.returns() => {
                held.push_back(f);
                Ok(())
            }
            _ => self.apply_fact(f),
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
    /// commit or a decision.
    pub(super) fn apply_held_facts(&mut self) -> Result<(), EngineError> {
        while let Some(f) = self.held_facts.as_mut().and_then(|h| h.pop_front()) {
            self.apply_fact(f)?;
        }
        Ok(())
    }

    /// Applies a fact at its key's owner, now. The owner's handler reads
    /// and writes only that key's state, and may send facts in turn.
    fn apply_fact(&mut self, f: Fact) -> Result<(), EngineError> {
        match f {
            Fact::CustodianVersion { custodian, person, version } => self.custodian_version(&custodian, &person, version),
            Fact::OverloadCount { custodian, record } => self.overload_count(&custodian, &record),
            Fact::CustodianDied { beneficiary, death } => self.custodian_died_for(&beneficiary, &death),
            Fact::MemberVersion { household, person, updated_at, covered } => self.member_version(&household, &person, updated_at, covered),
            Fact::Watch { household, person } => self.watch(&household, &person),
            Fact::HouseholdEntry { person, household, entry } => {
                self.watched_households.get_or_default(&self.store, person.as_bytes())?.insert(household, entry);
                Ok(())
            }
            Fact::HouseholdVersion { person, household, member, updated_at, covered } => {
                let copies = self.watched_households.get_or_default(&self.store, person.as_bytes())?;
                copies.entry(household).or_default().record(&member, updated_at, covered);
                Ok(())
            }
        }
    }
}
