//! An instance's account tasks as the group gives them (#16 step 2): the
//! `by-account` partitions Kafka assigns this instance (`member`), each
//! task on the state directory the member opened or restored for it
//! (`task_dir`), run by [`AccountTasks`], with its alerts and refused
//! decisions sent to the alerts and dead-letter topics from an outbox in
//! the task's own store.
//!
//! One straight line per step:
//!
//! ```text
//! membership poll (tasks that left are released, arrived ones opened)
//! → AccountTasks::step (read, apply, one write per task: state, alerts,
//!   their outbox entries, the reader's checkpoint)
//! → each task's outbox published, entries deleted once acknowledged
//! ```
//!
//! - A task's outbox lives in its store, so it moves with the task: what
//!   one instance committed and had not published, the next owner
//!   publishes (at least once; the alerts topic is keyed by `alert_id`).
//! - A task that leaves is released before any restore begins, so the
//!   directory a rebalance closes and hands back is free to open again.
//! - Between steps every task has committed what it read; the membership
//!   closes tasks only inside its own poll, at the start of a step.

use super::account_task::AccountTasks;
use super::member::{Holding, Member, Moved, Setup};
use super::tasks::{Owned, TaskId};
use super::ExchangeError;
use crate::clock::Clock;
use crate::config::KafkaConfig;
use crate::detect::RulesConfig;
use crate::engine::{Committed, Engine, EngineError};
use crate::metrics::Metrics;
use crate::model::Tz;
use crate::sink::kafka::{producer, Publisher};
use crate::sink::outbox::{self, OutMessage, Source};
use crate::store::{keys, Cf};
use rdkafka::producer::FutureProducer;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// What an account task's engine is opened with.
#[derive(Clone)]
pub struct TaskEngines {
    /// The rules' thresholds: the account windows' among them.
    pub rules: RulesConfig,
    /// The district's time zone (months and days of the windows).
    pub tz: Tz,
    /// Entries each task's engine caches.
    pub cache_entries: usize,
    /// Wall-clock time of the outbox entries (`queued_ms`).
    pub clock: Arc<dyn Clock>,
}

/// A task's way to the alerts and dead-letter topics.
struct TaskSink {
    /// The last outbox sequence number used in the task's store.
    seq: u64,
    /// Publishes the task's outbox.
    publisher: Publisher,
    /// Something may wait in the outbox: the task committed alerts or
    /// dead letters, arrived with its store's outbox, or a publish left
    /// entries unacknowledged.
    behind: bool,
}

/// What one step did.
#[derive(Debug, Default)]
pub struct Stepped {
    /// Tasks that arrived, left or failed to arrive.
    pub moved: Moved,
    /// Each commit of a task that read something, by partition.
    pub committed: Vec<(u32, Committed)>,
    /// Outbox entries acknowledged by the broker this step.
    pub published: usize,
    /// Entries left waiting for a later step.
    pub unsent: usize,
}

/// An instance's account tasks, as the group assigns them.
pub struct AccountWorker {
    member: Member,
    tasks: AccountTasks,
    /// Per task held: its outbox's sequence and publisher.
    sinks: BTreeMap<u32, TaskSink>,
    /// One producer for every task's publisher.
    producer: FutureProducer,
    kafka: KafkaConfig,
    engines: TaskEngines,
    metrics: Arc<Metrics>,
    /// `by-account`'s name, where a refused decision's dead letter says it
    /// was read.
    topic: String,
    /// Publishing is async; the step waits for it on this runtime.
    rt: tokio::runtime::Handle,
}

impl AccountWorker {
    /// Joins `setup.kafka.group_id` for its account tasks only (it reads
    /// no input topic) and opens the inbox of the layout's `by-account`.
    /// Tasks arrive at the following steps.
    pub fn join(setup: Setup, engines: TaskEngines, rt: tokio::runtime::Handle) -> Result<AccountWorker, ExchangeError> {
        let (kafka, layout, metrics) = (setup.kafka.clone(), setup.layout, Arc::clone(&setup.metrics));
        let tasks = AccountTasks::open(&kafka, &kafka.group_id, layout)?;
        let member = Member::join_tasks(setup, |t| matches!(t, TaskId::Account(_)))?;
        let topic = crate::engine::repartition::Topic::ByAccount.name(&kafka.group_id);
        Ok(AccountWorker { member, tasks, sinks: BTreeMap::new(), producer: producer(&kafka)?, kafka, engines, metrics, topic, rt })
    }

    /// Takes in what the membership changed, runs every task held for up
    /// to `timeout` of reading (see the module's doc), and publishes what
    /// their commits put in their outboxes.
    pub fn step(&mut self, timeout: Duration) -> Result<Stepped, ExchangeError> {
        let (tasks, sinks) = (&mut self.tasks, &mut self.sinks);
        let mut released = Ok(());
        let moved = self.member.poll_releasing(Duration::ZERO, |task| {
            if let TaskId::Account(p) = task {
                sinks.remove(&p);
                if let Err(e) = tasks.remove(p) {
                    released = Err(e);
                }
            }
        })?;
        released?;
        for (task, _) in &moved.opened {
            if let TaskId::Account(p) = *task {
                self.arrive(p)?;
            }
        }
        let mut stepped = Stepped { moved, ..Stepped::default() };
        let now_ms = self.engines.clock.now().0;
        let max_bytes = self.kafka.max_message_bytes();
        let (sinks, topic) = (&mut self.sinks, &self.topic);
        stepped.committed = self.tasks.step(timeout, |p, batch, staged| {
            let sink = sinks.get_mut(&p).ok_or_else(|| EngineError::Repartition(format!("account task {p} runs without its outbox")))?;
            for a in staged.alerts {
                outbox::stage(batch, &mut sink.seq, &OutMessage::alert(a, now_ms)?)?;
            }
            for d in staged.dead {
                // The decision as the person side read it: its line or
                // offset there, and the partition it was handed on by.
                let src = Source { topic, partition: p as i32, offset: d.line as i64, key: None, value: d.raw.as_bytes() };
                outbox::stage(batch, &mut sink.seq, &OutMessage::dead_letter(&src, &d.reason, now_ms, max_bytes))?;
            }
            sink.behind |= !staged.alerts.is_empty() || !staged.dead.is_empty();
            batch.put(Cf::Meta, keys::META_TASK_OUTBOX, &sink.seq)?;
            Ok(())
        })?;
        for (p, sink) in self.sinks.iter_mut().filter(|(_, s)| s.behind) {
            let (sent, left) = self.rt.block_on(sink.publisher.publish_pending())?;
            if left > 0 {
                tracing::warn!(task = %TaskId::Account(*p), left, "the broker did not acknowledge some of an account task's alerts; they stay in its outbox");
            }
            sink.behind = left > 0;
            stepped.published += sent;
            stepped.unsent += left;
        }
        Ok(stepped)
    }

    /// Opens the engine of the account task of `partition` on the store
    /// its directory holds, and starts it.
    fn arrive(&mut self, partition: u32) -> Result<(), ExchangeError> {
        let task = TaskId::Account(partition);
        let Some(store) = self.member.with_dir(task, |d| d.store.clone()) else {
            // Closed again since the poll that opened it: nothing to run.
            return Ok(());
        };
        let seq: u64 = store.get(Cf::Meta, keys::META_TASK_OUTBOX)?.unwrap_or(0);
        let e = &self.engines;
        let engine = Engine::open(store.clone(), e.rules.clone(), e.tz, e.cache_entries, Arc::clone(&e.clock))?;
        let publisher = Publisher::with_producer(self.producer.clone(), &self.kafka, store, Arc::clone(&self.metrics));
        self.tasks.add(partition, engine)?;
        self.sinks.insert(partition, TaskSink { seq, publisher, behind: true });
        tracing::info!(task = %task, next_offset = ?self.tasks.next_offset(partition), "account task started");
        Ok(())
    }

    /// Where each task owned stands (`/status`).
    pub fn holding(&self) -> BTreeMap<TaskId, Holding> {
        self.member.holding()
    }

    /// What the last assignment made of this instance.
    pub fn owned(&self) -> &Owned {
        self.member.owned()
    }

    /// The tasks running here, and their engines.
    pub fn tasks(&self) -> &AccountTasks {
        &self.tasks
    }

    /// Leaves the group: every task is stopped first (each has committed
    /// what it read), then its directory is published to its end, so the
    /// next owner restores all of it.
    pub fn leave(mut self) -> Result<(), ExchangeError> {
        let held: Vec<u32> = self.tasks.partitions().collect();
        self.sinks.clear();
        for p in held {
            self.tasks.remove(p)?;
        }
        self.member.leave();
        Ok(())
    }
}
