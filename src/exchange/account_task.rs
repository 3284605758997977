//! An account task (#16 step 2): the windows and cases of the accounts
//! whose `by-account` partition it reads, on an engine of their own
//! (`engine::away`). The person side writes the steps, registrations and
//! decisions on accounts' cases in the commits of the state that produced
//! them; this task reads its partition through an [`Inbox`] (which puts
//! every writer's facts back in the single-process order), applies what
//! is released, and commits the alerts it raised with the reader's
//! checkpoint, in one write. Crashed, it is opened again on its committed
//! state and reads on from the offset in it: nothing applied twice,
//! nothing skipped.

use super::inbox::Inbox;
use super::ExchangeError;
use crate::config::KafkaConfig;
use crate::decode::DeadLetter;
use crate::engine::repartition::{Fact, Layout, Topic};
use crate::engine::{Committed, Engine, EngineError, Outcome, Staged};
use crate::store::Batch;
use std::time::Duration;

/// One `by-account` partition's task on this instance.
pub struct AccountTask {
    /// The `by-account` partition it reads: its accounts are those whose
    /// number Kafka's partitioner puts there.
    partition: u32,
    /// The account stage and the accounts' cases, on the task's own store,
    /// which also holds the reader's checkpoint.
    engine: Engine,
    /// Reads the partition from the checkpoint in the engine's store.
    inbox: Inbox,
    /// The topic's name, where a refused decision's dead letter says it
    /// was read.
    topic: String,
}

impl AccountTask {
    /// The task of `by-account` partition `partition` of `group`'s
    /// topics laid out as `layout` (the person side's
    /// `Engine::away_layout`), on `engine`, opened on the task's store.
    pub fn open(cfg: &KafkaConfig, group: &str, layout: Layout, partition: u32, engine: Engine) -> Result<AccountTask, ExchangeError> {
        let mut inbox = Inbox::open(cfg, group, layout)?;
        inbox.assign(engine.store(), &[(Topic::ByAccount, partition)])?;
        Ok(AccountTask { partition, engine, inbox, topic: Topic::ByAccount.name(group) })
    }

    /// Reads what has arrived (waiting up to `timeout` for the first
    /// record), applies every fact released, and commits: the state, the
    /// alerts, the refused decisions' dead letters and the reader's
    /// checkpoint, with what `extra` adds for the alerts (the sinks'
    /// outboxes), in one write. Returns what the commit made durable.
    pub fn step(&mut self, timeout: Duration, extra: impl FnOnce(&mut Batch<'_>, Staged<'_>) -> Result<(), EngineError>) -> Result<Committed, ExchangeError> {
        self.inbox.poll(timeout)?;
        while let Some((_, _, at, fact)) = self.inbox.pop() {
            let decision = match &fact {
                Fact::Decision(d) => Some(d.clone()),
                _ => None,
            };
            if let Outcome::Rejected(r) = self.engine.apply_account_fact(fact)? {
                // Only a decision is refused here.
                let raw = decision.map(|d| serde_json::to_string(&d)).transpose().map_err(EngineError::from)?.unwrap_or_default();
                self.engine.stage_dead_letter(DeadLetter::new(&format!("{}[{}]", self.topic, self.partition), at.line, &r, raw));
            }
        }
        let (inbox, partition) = (&self.inbox, self.partition);
        Ok(self.engine.commit_with(None, |b, staged| {
            inbox.checkpoint(Topic::ByAccount, partition, b)?;
            extra(b, staged)
        })?)
    }

    /// The partition read.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// The task's engine: its store, its committed alerts.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Facts read and held back: some writer has not marked past them.
    pub fn held(&self) -> usize {
        self.inbox.held()
    }

    /// The offset of the next record to read on its partition.
    pub fn next_offset(&self) -> i64 {
        self.inbox.next_offset(Topic::ByAccount, self.partition).unwrap_or(0)
    }

    /// Records skipped as sent twice, since the task was opened.
    pub fn repeats(&self) -> u64 {
        self.inbox.repeats()
    }
}
