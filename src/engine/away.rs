//! The accounts on other instances (#16 step 2, docs/partitioning.md):
//! the person side writes what it hands the account stage (steps,
//! registrations, decisions on accounts' cases) as `by-account` records
//! that leave with each commit, and an account task elsewhere applies
//! them to an account stage of its own ([`Engine::apply_account_fact`]),
//! files the alerts under its own cases and commits them with its
//! reader's checkpoint (`exchange::account_task`).
//!
//! ```text
//! person side: record → lane → Step/Registered/Decision → Writer
//!   → Staged::leaving → exchange outbox, in the commit of the state
//! account task: by-account partition → Inbox (merge) → apply_account_fact
//!   → account stage → alerts, committed with the Inbox's checkpoint
//! ```
//!
//! - Exactly once across crashes: the writers' numbers and the position
//!   (the count of records applied) are committed with the state that
//!   wrote them (`keys::META_ACCOUNTS_AWAY`). After a restart the person
//!   side applies its input again from its committed position and writes
//!   the same records under the same numbers; the account tasks' readers
//!   skip them as repeats.
//! - A decision on an account's case is applied on the person side by
//!   being handed on. Its account task decides it, and dead-letters it
//!   when it must (`unknown_case`, `conflicting_decision`), against the
//!   decision ids filed under its own accounts' cases: a decision id is
//!   unique per owner, not across owners (the contract question of
//!   docs/partitioning.md, fact 5).
//! - Its alerts keep their ids (they depend only on the finding), so the
//!   person side's alerts and the account tasks' together are the
//!   single-process audit's (`tests::away`, and `it::away` on a broker).

use super::casebook::Owner;
use super::repartition::{Fact, Layout};
use super::wire::{AwayState, Wire};
use super::{Engine, EngineError, Outcome};
use crate::store::{keys, Cf};

impl Engine {
    /// From now on what the person side hands the account stage leaves as
    /// `by-account` records on `accounts` partitions, in each commit's
    /// [`crate::engine::Staged::leaving`] (see the module's doc); the other
    /// repartition topics stay in this process. Set before the first
    /// record. [`Engine::commit`] and background commits are refused from
    /// then on: only [`Engine::commit_with`] can stage what leaves.
    pub fn send_accounts_away(&mut self, accounts: u32) -> Result<(), EngineError> {
        if accounts == 0 {
            return Err(EngineError::Repartition("by-account needs at least one partition".into()));
        }
        let lanes = self.lanes.len() as u32;
        let resumed: Option<AwayState> = self.store.get(Cf::Meta, keys::META_ACCOUNTS_AWAY)?;
        let mut w = Wire::with_accounts(lanes, accounts);
        w.send_accounts_away(resumed).map_err(|e| {
            EngineError::Repartition(format!(
                "this state wrote by-account records with another lane count or partition count than {lanes} lanes and {accounts} partitions ({e}): keep both, or start the person side and its account tasks over"
            ))
        })?;
        self.wire = Some(w);
        Ok(())
    }

    /// The partition counts of the records that leave, for the account
    /// tasks' readers; `None` unless the accounts are away.
    pub fn away_layout(&self) -> Option<Layout> {
        self.wire.as_ref().filter(|w| w.accounts_away()).map(Wire::layout)
    }

    /// An account task applies a fact read on its `by-account` partition,
    /// in the order its reader released it: a step moves its account's
    /// window (its alerts are staged in order, as one process stages
    /// them), a registration counts toward n, a decision is applied to its
    /// account's case. `Rejected` is a decision the caller dead-letters.
    pub fn apply_account_fact(&mut self, fact: Fact) -> Result<Outcome, EngineError> {
        if self.wire.as_ref().is_some_and(Wire::accounts_away) {
            return Err(EngineError::Repartition("an engine that sends its accounts away applies no account's facts".into()));
        }
        match fact {
            f @ (Fact::Step(_) | Fact::Registered(_)) => {
                // Alerts of steps that came back, in order.
                self.pump(false)?;
                self.to_accounts(f)?;
                Ok(Outcome::Applied)
            }
            Fact::Decision(d) if Owner::of(d.rule) == Owner::Account => {
                // Every alert before it is filed first.
                self.drain()?;
                self.on_decision(&d)
            }
            Fact::Decision(d) => Err(EngineError::Repartition(format!("decision {} on a {} case was routed to an account task", d.decision_id, d.rule.code()))),
            _ => Err(EngineError::Repartition("only steps, registrations and decisions go to an account task".into())),
        }
    }
}

