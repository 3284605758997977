//! One instance's membership in its group's tasks (#16): a consumer
//! subscribed to every topic a task reads, under Kafka's range assignor
//! (another one set in `[kafka.consumer]` is refused), whose assignment
//! says which tasks this instance owns (`tasks::owned`). Each task owned
//! has its state directory open (`task_dir`): restored when it arrives,
//! on a thread of its own beside the poll, up to `parallel_restores` at
//! once; closed (published to its end) when it leaves.
//!
//! Leaving happens inside the rebalance: the consumer's context closes
//! every task when its partitions are revoked, before this member rejoins,
//! and the group hands partitions on only once every member has rejoined.
//! So a task's next owner restores it after its last commit here was
//! published. Work on a directory goes through `with_dir`, under the lock
//! the revocation takes.
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
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::ClientContext;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use super::task_dir::Setup;

/// How long a task whose restore failed waits before it is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// What changed since the last `poll`.
#[derive(Debug, Default)]
pub struct Moved {
    /// Tasks whose directories are now open, and how they were found.
    pub opened: Vec<(TaskId, Arrival)>,
    /// Tasks whose directories were closed, published to their end: they
    /// left, or a rebalance took every partition away (range is eager).
    pub closed: Vec<TaskId>,
    /// Tasks whose restores this poll began, beside the poll.
    pub arriving: Vec<TaskId>,
    /// Restores that failed; each task is tried again after `RETRY_AFTER`.
    pub failed: Vec<(TaskId, ExchangeError)>,
}

/// Where a task owned by this member stands (`/status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Holding {
    /// Owned, its restore not begun: `parallel_restores` are running, or
    /// its last one failed and it waits to be tried again.
    Waiting,
    /// Its directory is being opened and restored.
    Restoring,
    /// Its directory is open: the task can run.
    Open,
}

/// A restore running on a thread of its own.
struct Restore {
    /// Set when the task leaves: the restore gives up at its next frame.
    left: Arc<AtomicBool>,
    /// `None` once joined.
    thread: Option<JoinHandle<Result<(TaskDir, Arrival), ExchangeError>>>,
}

impl Restore {
    fn begin(setup: &Setup, task: TaskId) -> Result<Restore, ExchangeError> {
        let left = Arc::new(AtomicBool::new(false));
        let (setup, flag) = (setup.clone(), Arc::clone(&left));
        let thread = std::thread::Builder::new()
            .name(format!("restore-{task}"))
            .spawn(move || TaskDir::open(&setup, task, &flag))
            .map_err(|e| ExchangeError::Restore { task: task.to_string(), why: e.to_string() })?;
        Ok(Restore { left, thread: Some(thread) })
    }

    fn finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Waits for the thread: its directory, or why there is none.
    fn join(mut self, task: TaskId) -> Result<(TaskDir, Arrival), ExchangeError> {
        let thread = self.thread.take().expect("joined once");
        thread.join().unwrap_or_else(|panic| {
            let why = panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned());
            Err(ExchangeError::Restore { task: task.to_string(), why: why.unwrap_or_else(|| "the restore thread panicked".into()) })
        })
    }
}

/// A restore dropped (the task left, the member stopped) is stopped and
/// waited for: two restores of one directory never overlap.
impl Drop for Restore {
    fn drop(&mut self) {
        self.left.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The member's tasks, shared with the rebalance callback, which closes
/// them before the group hands their partitions to anyone else.
#[derive(Default)]
struct Desk {
    /// The open directory of each task owned.
    dirs: BTreeMap<TaskId, TaskDir>,
    /// Restores running, at most `parallel_restores`.
    restoring: BTreeMap<TaskId, Restore>,
    /// Owned, restore not begun; with the time before which it may not be.
    waiting: BTreeMap<TaskId, Instant>,
    /// Closed since the last poll.
    closed: Vec<TaskId>,
}

impl Desk {
    /// Stops the restores, and closes (publishes to its end) every
    /// directory: the tasks' partitions are being taken away.
    fn close_all(&mut self) {
        let stopped = self.restoring.len();
        self.restoring.clear();
        self.waiting.clear();
        let closed: Vec<String> = self.dirs.keys().map(ToString::to_string).collect();
        for (task, d) in std::mem::take(&mut self.dirs) {
            d.close();
            self.closed.push(task);
        }
        if !closed.is_empty() || stopped > 0 {
            tracing::info!(?closed, restores_stopped = stopped, "partitions revoked: the tasks' state is published to its end before the group hands them on");
        }
    }
}

fn lock(desk: &Mutex<Desk>) -> MutexGuard<'_, Desk> {
    desk.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The membership consumer's context: on a revocation, every task is
/// closed inside the rebalance, so the next owner restores all of it.
struct Handover {
    desk: Arc<Mutex<Desk>>,
}

impl ClientContext for Handover {}

impl ConsumerContext for Handover {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(_) = rebalance {
            lock(&self.desk).close_all();
        }
    }
}

/// This instance in the group's assignment, with its tasks' directories.
pub struct Member {
    setup: Setup,
    /// Subscribed, never read: its assignment is the ownership.
    consumer: BaseConsumer<Handover>,
    /// The tasks' directories and restores (shared with the callback).
    desk: Arc<Mutex<Desk>>,
    /// What the last assignment made of this instance (`/status`).
    owned: Owned,
    /// The kinds of task this member takes: it subscribes only to what
    /// they read (an instance of account tasks alone, beside a person
    /// side that reads the inputs itself).
    which: fn(TaskId) -> bool,
}

impl Member {
    /// Joins consumer group `kafka.group_id` on every topic its tasks read.
    /// A `partition.assignment.strategy` other than `range` in
    /// `[kafka.consumer]` is refused: another assignor splits tasks.
    pub fn join(setup: Setup) -> Result<Member, ExchangeError> {
        Member::join_tasks(setup, |_| true)
    }

    /// Joins as `join` does, for the tasks `which` accepts only: it
    /// subscribes to the topics they read, and owns no other task.
    pub fn join_tasks(setup: Setup, which: fn(TaskId) -> bool) -> Result<Member, ExchangeError> {
        let mut c = crate::source::kafka::client_config(&setup.kafka);
        for (k, v) in &setup.kafka.consumer {
            if k == "partition.assignment.strategy" && v.trim() != "range" {
                return Err(ExchangeError::Assignor { asked: v.clone() });
            }
            c.set(k, v);
        }
        let desk = Arc::new(Mutex::new(Desk::default()));
        // Whole tasks need same-numbered partitions together: range only.
        let consumer: BaseConsumer<Handover> = c
            .set("group.id", &setup.kafka.group_id)
            .set("partition.assignment.strategy", "range")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "latest")
            .set("enable.partition.eof", "false")
            .create_with_context(Handover { desk: Arc::clone(&desk) })?;
        let topics = topics(&setup, which);
        consumer.subscribe(&topics.iter().map(String::as_str).collect::<Vec<_>>())?;
        Ok(Member { setup, consumer, desk, owned: Owned::default(), which })
    }

    /// Polls the membership for up to `timeout` (a revocation closes every
    /// task inside it), then closes the tasks that left, takes in the
    /// restores that finished, and begins restoring the tasks that
    /// arrived, up to `parallel_restores` at once, each on a thread of its
    /// own: the poll never waits on a restore, so a long one does not
    /// drop the member from the group (`max.poll.interval.ms`).
    pub fn poll(&mut self, timeout: Duration) -> Result<Moved, ExchangeError> {
        self.poll_releasing(timeout, |_| {})
    }

    /// `poll`, calling `release` with each task closed before any restore
    /// begins: a caller that holds a handle on a task's store drops it
    /// there, so that a task closed and owned again (an eager rebalance)
    /// can open its directory at once.
    pub fn poll_releasing(&mut self, timeout: Duration, mut release: impl FnMut(TaskId)) -> Result<Moved, ExchangeError> {
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
        let which = self.which;
        self.owned.tasks.retain(|t| which(*t));
        let mine: BTreeSet<TaskId> = self.owned.tasks.iter().copied().collect();
        let mut desk = lock(&self.desk);
        let mut moved = Moved { closed: std::mem::take(&mut desk.closed), ..Moved::default() };
        desk.waiting.retain(|t, _| mine.contains(t));
        desk.restoring.retain(|t, _| mine.contains(t));
        let leaving: Vec<TaskId> = desk.dirs.keys().filter(|t| !mine.contains(t)).copied().collect();
        for task in leaving {
            if let Some(d) = desk.dirs.remove(&task) {
                d.close();
                tracing::info!(task = %task, "task handed over: its state is published to its end");
                moved.closed.push(task);
            }
        }
        for &task in &moved.closed {
            release(task);
        }
        let done: Vec<TaskId> = desk.restoring.iter().filter(|(_, r)| r.finished()).map(|(t, _)| *t).collect();
        for task in done {
            let r = desk.restoring.remove(&task).expect("listed");
            match r.join(task) {
                Ok((d, arrival)) => {
                    tracing::info!(task = %task, restored = arrival.restored.is_some(), set_aside = arrival.set_aside, restore_ms = arrival.restore_ms, "task arrived");
                    desk.dirs.insert(task, d);
                    moved.opened.push((task, arrival));
                }
                Err(e) => {
                    tracing::error!(task = %task, error = %e, retry_s = RETRY_AFTER.as_secs(), "the task's directory could not be opened; trying again");
                    desk.waiting.insert(task, Instant::now() + RETRY_AFTER);
                    moved.failed.push((task, e));
                }
            }
        }
        for &task in &mine {
            if !desk.dirs.contains_key(&task) && !desk.restoring.contains_key(&task) {
                desk.waiting.entry(task).or_insert_with(Instant::now);
            }
        }
        let now = Instant::now();
        let ready: Vec<TaskId> = desk.waiting.iter().filter(|(_, at)| **at <= now).map(|(t, _)| *t).collect();
        for task in ready {
            if desk.restoring.len() >= s.parallel_restores.max(1) {
                break;
            }
            desk.waiting.remove(&task);
            match Restore::begin(s, task) {
                Ok(r) => {
                    desk.restoring.insert(task, r);
                    moved.arriving.push(task);
                }
                Err(e) => {
                    desk.waiting.insert(task, now + RETRY_AFTER);
                    moved.failed.push((task, e));
                }
            }
        }
        Ok(moved)
    }

    /// What this instance owns, as the last poll found it.
    pub fn owned(&self) -> &Owned {
        &self.owned
    }

    /// Where each task owned stands, as the last poll left it.
    pub fn holding(&self) -> BTreeMap<TaskId, Holding> {
        let desk = lock(&self.desk);
        let open = desk.dirs.keys().map(|t| (*t, Holding::Open));
        let restoring = desk.restoring.keys().map(|t| (*t, Holding::Restoring));
        open.chain(restoring).chain(desk.waiting.keys().map(|t| (*t, Holding::Waiting))).collect()
    }

    /// Runs `f` on `task`'s open directory, when this instance has it
    /// open. A revocation waits for `f` to return before it closes the
    /// directory: what `f` commits is published before the task moves.
    pub fn with_dir<R>(&self, task: TaskId, f: impl FnOnce(&TaskDir) -> R) -> Option<R> {
        lock(&self.desk).dirs.get(&task).map(f)
    }

    /// Leaves the group: every restore is stopped and every task's
    /// directory closed first (published to its end), so that the next
    /// owner restores all of it.
    pub fn leave(self) {
        lock(&self.desk).close_all();
        self.consumer.unsubscribe();
    }
}

/// Every topic a task of the group that `which` accepts reads (`TaskId::reads` says which).
fn topics(s: &Setup, which: fn(TaskId) -> bool) -> BTreeSet<String> {
    TaskId::all(s.layout).into_iter().filter(|t| which(*t)).flat_map(|t| t.reads(&s.kafka.topics, &s.kafka.group_id)).map(|(topic, _)| topic).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KafkaConfig;
    use crate::engine::repartition::Layout;

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
            metrics: Arc::new(crate::metrics::Metrics::new()),
            parallel_restores: 2,
        };
        let err = Member::join(setup("roundrobin")).err().expect("refused").to_string();
        assert!(err.contains("\"roundrobin\"") && err.contains("range"), "{err}");
        assert!(Member::join(setup("cooperative-sticky")).is_err());
        assert!(Member::join(setup("range")).is_ok());
    }
}
