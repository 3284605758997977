//! An instance's account tasks (#16 step 2): the windows and cases of the
//! accounts whose `by-account` partitions it holds, each task on an engine
//! and store of its own (`engine::away`). The person side writes the
//! steps, registrations and decisions on accounts' cases in the commits of
//! the state that produced them; the tasks read their partitions through
//! one [`Inbox`] (which puts every writer's facts back in the
//! single-process order), apply what is released, and each commits the
//! alerts it raised with its reader's checkpoint, in one write.
//!
//! - Between two `step`s every task has committed everything its
//!   partition's reader read, so a task can be taken out (`remove`) and
//!   given to another instance (`add`) there, with its store: it reads on
//!   from the offset in it.
//! - Crashed, a task is added again on its committed store: what it applied
//!   and did not commit is read and applied again, nothing twice.

use super::inbox::Inbox;
use super::ExchangeError;
use crate::config::KafkaConfig;
use crate::decode::DeadLetter;
use crate::engine::repartition::{Fact, Layout, Topic};
use crate::engine::{Committed, Engine, EngineError, Outcome, Staged};
use crate::store::Batch;
use std::collections::BTreeMap;
use std::time::Duration;

/// The account tasks of one instance.
pub struct AccountTasks {
    /// Reads every task's partition, each from the checkpoint in the
    /// task's store.
    inbox: Inbox,
    /// Per `by-account` partition held: the task's engine (its account
    /// stage, its accounts' cases, its store).
    tasks: BTreeMap<u32, Engine>,
    /// The topic's name, where a refused decision's dead letter says it
    /// was read.
    topic: String,
}

impl AccountTasks {
    /// No task yet, reading `group`'s topics laid out as `layout` (the
    /// person side's `Engine::away_layout`).
    pub fn open(cfg: &KafkaConfig, group: &str, layout: Layout) -> Result<AccountTasks, ExchangeError> {
        Ok(AccountTasks { inbox: Inbox::open(cfg, group, layout)?, tasks: BTreeMap::new(), topic: Topic::ByAccount.name(group) })
    }

    /// Starts the task of `by-account` partition `partition` on `engine`,
    /// opened on the task's store: it reads from the checkpoint there.
    pub fn add(&mut self, partition: u32, engine: Engine) -> Result<(), ExchangeError> {
        self.inbox.assign(engine.store(), &[(Topic::ByAccount, partition)])?;
        self.tasks.insert(partition, engine);
        Ok(())
    }

    /// Stops the task of `partition` and hands back its engine, committed
    /// through everything its reader read (see the module's doc).
    pub fn remove(&mut self, partition: u32) -> Result<Option<Engine>, ExchangeError> {
        self.inbox.revoke(&[(Topic::ByAccount, partition)])?;
        Ok(self.tasks.remove(&partition))
    }

    /// Reads what has arrived (waiting up to `timeout` for the first
    /// record), applies every fact released to its task, and commits every
    /// task that read something: its state, alerts, refused decisions'
    /// dead letters and reader's checkpoint, with what `extra` adds for
    /// its alerts (the sinks' outboxes), in one write each. Returns what
    /// each commit made durable, by partition.
    pub fn step(
        &mut self,
        timeout: Duration,
        mut extra: impl FnMut(u32, &mut Batch<'_>, Staged<'_>) -> Result<(), EngineError>,
    ) -> Result<Vec<(u32, Committed)>, ExchangeError> {
        let before: Vec<Option<i64>> = self.tasks.keys().map(|&p| self.inbox.next_offset(Topic::ByAccount, p)).collect();
        self.inbox.poll(timeout)?;
        while let Some((_, partition, at, fact)) = self.inbox.pop() {
            // The inbox reads only the partitions of tasks held here.
            let engine = self.tasks.get_mut(&partition).ok_or_else(|| EngineError::Repartition(format!("by-account partition {partition} was read, but no task here holds it")))?;
            let decision = match &fact {
                Fact::Decision(d) => Some(serde_json::to_string(d).map_err(EngineError::from)?),
                _ => None,
            };
            if let Outcome::Rejected(r) = engine.apply_account_fact(fact)? {
                // Only a decision is refused here.
                let source = format!("{}[{partition}]", self.topic);
                engine.stage_dead_letter(DeadLetter::new(&source, at.line, &r, decision.unwrap_or_default()));
            }
        }
        let mut committed = Vec::with_capacity(self.tasks.len());
        for ((&partition, engine), before) in self.tasks.iter_mut().zip(before) {
            let inbox = &self.inbox;
            // Nothing read on its partition: nothing applied, nothing to
            // write (a fact is released only by a record read).
            if inbox.next_offset(Topic::ByAccount, partition) == before {
                continue;
            }
            let c = engine.commit_with(None, |b, staged| {
                inbox.checkpoint(Topic::ByAccount, partition, b)?;
                extra(partition, b, staged)
            })?;
            committed.push((partition, c));
        }
        Ok(committed)
    }

    /// The partitions whose tasks run here.
    pub fn partitions(&self) -> impl Iterator<Item = u32> + '_ {
        self.tasks.keys().copied()
    }

    /// The engine of `partition`'s task: its store, its committed alerts.
    pub fn engine(&self, partition: u32) -> Option<&Engine> {
        self.tasks.get(&partition)
    }

    /// The offset of the next record to read on `partition`.
    pub fn next_offset(&self, partition: u32) -> Option<i64> {
        self.inbox.next_offset(Topic::ByAccount, partition)
    }

    /// Facts read and held back: some writer has not marked past them.
    pub fn held(&self) -> usize {
        self.inbox.held()
    }

    /// Records skipped as sent twice, since the inbox was opened.
    pub fn repeats(&self) -> u64 {
        self.inbox.repeats()
    }
}
