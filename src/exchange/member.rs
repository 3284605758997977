//! One instance's membership in its group's tasks (#16): a consumer
//! subscribed to every topic a task reads, under Kafka's range assignor
//! (another one set in `[kafka.consumer]` is refused), whose assignment
//! says which tasks this instance owns (`tasks::owned`). Each task owned
//! has its state directory open
//! (`task_dir`): restored when it arrives, closed (published to its end)
//! when it leaves.
//!
//! The member only belongs: the partitions it is given are paused at once.
//! A task reads them through its own consumer at the offsets its state
//! holds (offsets are state; the group's committed offsets are never
//! used). A task that is incomplete here (an assignor that splits tasks)
//! is not opened, and `owned` says what it lacks.
//!
//! The range assignor is eager: a rebalance takes every partition away
//! before handing them out again. A task that stays is then closed and
//! opened again, which finds its own directory newest and opens it as it
//! is.

use super::task_dir::{Arrival, TaskDir};
use super::tasks::{owned, Owned, TaskId, TopicPartition};
use super::ExchangeError;
use crate::config::KafkaConfig;
use crate::engine::repartition::Layout;
use crate::metrics::Metrics;
use crate::store::StoreOptions;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What a member needs to open its tasks' directories.
#[derive(Clone)]
pub struct Setup {
    pub kafka: KafkaConfig,
    pub layout: Layout,
    /// The instance's state directory: tasks live under `tasks/`.
    pub root: PathBuf,
    pub opts: StoreOptions,
    /// What RocksDB's log keeps for each task's publisher.
    pub wal_keep_mb: u64,
    pub metrics: Arc<Metrics>,
}

/// Tasks opened and closed by one `poll`.
#[derive(Debug, Default)]
pub struct Moved {
    /// Tasks that arrived, and how their directories were found.
    pub opened: Vec<(TaskId, Arrival)>,
    /// Tasks that left.
    pub closed: Vec<TaskId>,
}

/// This instance in the group's assignment, with its tasks' directories.
pub struct Member {
    setup: Setup,
    /// Subscribed, never read: its assignment is the ownership.
    consumer: BaseConsumer,
    /// The open directory of each task owned.
    dirs: BTreeMap<TaskId, TaskDir>,
    /// What the last assignment made of this instance (`/status`).
    owned: Owned,
}

impl Member {
    /// Joins consumer group `kafka.group_id` on every topic its tasks read.
    /// A `partition.assignment.strategy` other than `range` in
    /// `[kafka.consumer]` is refused: another assignor splits tasks.
    pub fn join(setup: Setup) -> Result<Member, ExchangeError> {
        let mut c = crate::source::kafka::client_config(&setup.kafka);
        for (k, v) in &setup.kafka.consumer {
            if k == "partition.assignment.strategy" && v.trim() != "range" {
                return Err(ExchangeError::Assignor { asked: v.clone() });
            }
            c.set(k, v);
        }
        // Whole tasks need same-numbered partitions together: range only.
        let consumer: BaseConsumer = c
            .set("group.id", &setup.kafka.group_id)
            .set("partition.assignment.strategy", "range")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "latest")
            .set("enable.partition.eof", "false")
            .create()?;
        let topics = topics(&setup);
        consumer.subscribe(&topics.iter().map(String::as_str).collect::<Vec<_>>())?;
        Ok(Member { setup, consumer, dirs: BTreeMap::new(), owned: Owned::default() })
    }

    /// Polls the membership for up to `timeout`, then opens the
    /// directories of tasks that arrived and closes those of tasks that
    /// left.
    pub fn poll(&mut self, timeout: Duration) -> Result<Moved, ExchangeError> {
        if let Some(Err(e)) = self.consumer.poll(timeout) {
            tracing::warn!(error = %e, "the group membership's consumer reports an error");
        }
        let assignment = self.consumer.assignment()?;
        if assignment.count() > 0 {
            // Paused every time: a rebalance hands partitions back unpaused.
            self.consumer.pause(&assignment)?;
        }
        let assigned: Vec<TopicPartition> =
            assignment.elements().iter().map(|e| (e.topic().to_owned(), e.partition() as u32)).collect();
        let s = &self.setup;
        self.owned = owned(&assigned, s.layout, &s.kafka.topics, &s.kafka.group_id);
        let mut moved = Moved::default();
        let leaving: Vec<TaskId> = self.dirs.keys().filter(|t| !self.owned.tasks.contains(t)).copied().collect();
        for task in leaving {
            if let Some(d) = self.dirs.remove(&task) {
                d.close();
                tracing::info!(task = %task, "task handed over: its state is published to its end");
                moved.closed.push(task);
            }
        }
        for &task in &self.owned.tasks {
            if self.dirs.contains_key(&task) {
                continue;
            }
            let (d, arrival) = TaskDir::open(&s.root, task, s.layout, &s.kafka, s.opts, s.wal_keep_mb, Arc::clone(&s.metrics))?;
            tracing::info!(task = %task, restored = arrival.restored.is_some(), set_aside = arrival.set_aside, restore_ms = arrival.restore_ms, "task arrived");
            self.dirs.insert(task, d);
            moved.opened.push((task, arrival));
        }
        Ok(moved)
    }

    /// What this instance owns, as the last poll found it.
    pub fn owned(&self) -> &Owned {
        &self.owned
    }

    /// The open directory of `task`, when this instance owns it.
    pub fn dir(&self, task: TaskId) -> Option<&TaskDir> {
        self.dirs.get(&task)
    }

    /// Leaves the group: every task's directory is closed first
    /// (published to its end), so that the next owner restores all of it.
    pub fn leave(mut self) {
        for (_, d) in std::mem::take(&mut self.dirs) {
            d.close();
        }
        self.consumer.unsubscribe();
    }
}

/// Every topic a task of the group reads (`TaskId::reads` says which).
fn topics(s: &Setup) -> BTreeSet<String> {
    TaskId::all(s.layout).into_iter().flat_map(|t| t.reads(&s.kafka.topics, &s.kafka.group_id)).map(|(topic, _)| topic).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_assignor_that_splits_tasks_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let setup = |strategy: &str| Setup {
            kafka: KafkaConfig {
                brokers: "127.0.0.1:1".into(),
                consumer: [("partition.assignment.strategy".to_string(), strategy.to_string())].into(),
                ..KafkaConfig::default()
            },
            layout: Layout { persons: 2, decisions: 1, accounts: 1, custodians: 1, households: 1 },
            root: dir.path().to_owned(),
            opts: crate::store::tests::opts(),
            wal_keep_mb: 0,
            metrics: Arc::new(Metrics::new()),
        };
        let err = Member::join(setup("roundrobin")).err().expect("refused").to_string();
        assert!(err.contains("\"roundrobin\"") && err.contains("range"), "{err}");
        assert!(Member::join(setup("cooperative-sticky")).is_err());
        assert!(Member::join(setup("range")).is_ok());
    }
}
