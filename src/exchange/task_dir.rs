//! A task's own state directory (#16, docs/partitioning.md "Restore when
//! a partition moves"): where the task's state lives on the instance that
//! owns it, published to the task's changelog partition
//! (`TaskId::changelog_partition`), and restored from that partition when
//! the task arrives at an instance that does not hold its newest state.
//!
//! On arrival (`TaskDir::open`), the directory `<root>/tasks/<task>` is:
//! - opened as it is when its origin published the partition's last frame
//!   (this instance had the task last: nothing newer exists);
//! - set aside as `<dir>.superseded` when another origin published after
//!   it (the task was run elsewhere meanwhile), then restored;
//! - restored when empty: the partition's newest snapshot and the deltas
//!   after it. A partition without a snapshot leaves it empty, and the
//!   task replays its inputs from their first offsets.
//!
//! Then a publisher thread sends each commit to the partition until
//! `close`, which publishes to the end first (a snapshot begun included),
//! as the service's shutdown does. A directory restored here gets its own origin at its first
//! publish, so its publisher starts the partition's new line with a
//! snapshot; the restore then reads only that line.

use super::tasks::TaskId;
use super::ExchangeError;
use crate::changelog::publish::{published_origin, ChangelogPublisher};
use crate::changelog::restore::{is_empty_dir, last_origin, restore_unless, set_aside, superseded, Restored};
use crate::changelog::{ChangelogError, Place};
use crate::config::KafkaConfig;
use crate::engine::repartition::Layout;
use crate::metrics::Metrics;
use crate::store::{Store, StoreOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

/// What an instance's tasks need to open their directories.
#[derive(Clone)]
pub struct Setup {
    /// Brokers, the group, and the changelog topic the tasks publish to.
    pub kafka: KafkaConfig,
    /// The group's tasks: which changelog partition is whose.
    pub layout: Layout,
    /// The instance's state directory: tasks live under `tasks/`.
    pub root: PathBuf,
    /// Each task's RocksDB options.
    pub opts: StoreOptions,
    /// What RocksDB's log keeps for each task's publisher
    /// (`[kafka.changelog] wal_keep_mb`).
    pub wal_keep_mb: u64,
    /// Where the publishers count what they send and their errors.
    pub metrics: Arc<Metrics>,
    /// How many tasks a member restores at once, beside its poll: each
    /// restore holds two consumers and their fetch buffers, and on a
    /// small machine the broker's reads are the limit.
    pub parallel_restores: usize,
}

/// How a task's directory was found on arrival.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Arrival {
    /// Restored from the task's changelog partition: what was applied.
    pub restored: Option<Restored>,
    /// The directory held an older state (another instance ran the task
    /// since): moved to `<dir>.superseded` before the restore.
    pub set_aside: bool,
    /// Milliseconds the restore took (0 when there was none).
    pub restore_ms: u64,
}

/// A task's state directory, open, with its changelog publisher running.
pub struct TaskDir {
    /// The task it holds.
    pub task: TaskId,
    /// Its directory, `<root>/tasks/<task>`.
    pub dir: PathBuf,
    /// Its state: the task commits here, and only here.
    pub store: Store,
    /// Where its commits are published.
    pub place: Place,
    /// Tells the publisher to publish to the end and stop.
    stop: Arc<AtomicBool>,
    /// The publisher's thread; `None` once closed.
    publisher: Option<JoinHandle<()>>,
}

impl TaskDir {
    /// The directory of `task` under `root`.
    pub fn path(root: &Path, task: TaskId) -> PathBuf {
        root.join("tasks").join(task.to_string())
    }

    /// Opens `task`'s directory under `setup.root` as the module doc
    /// says, and starts its publisher. A restore is given up
    /// (`ChangelogError::Stopped`) once `left` is set: the task left.
    pub fn open(setup: &Setup, task: TaskId, left: &AtomicBool) -> Result<(TaskDir, Arrival), ExchangeError> {
        let Setup { kafka, layout, root, opts, wal_keep_mb, metrics, .. } = setup;
        let (opts, root) = (*opts, root.as_path());
        let dir = TaskDir::path(root, task);
        let place = Place::at(kafka, task.changelog_partition(*layout));
        let mut arrival = Arrival::default();
        if !is_empty_dir(&dir) && superseded(published_origin(&dir), last_origin(kafka, &place)?) {
            let aside = set_aside(&dir)?;
            tracing::warn!(task = %task, aside = %aside.display(), "another instance ran this task after this directory's state: set aside, restored from the task's changelog partition");
            arrival.set_aside = true;
        }
        if is_empty_dir(&dir) {
            let io = |source| ChangelogError::Io { path: dir.display().to_string(), source };
            std::fs::create_dir_all(dir.parent().unwrap_or(root)).map_err(io)?;
            let started = Instant::now();
            match restore_unless(kafka, &place, &dir, opts, left) {
                Ok(r) => {
                    arrival.restore_ms = started.elapsed().as_millis() as u64;
                    tracing::info!(task = %task, place = %place, commits = r.commits, bytes = r.bytes, restore_ms = arrival.restore_ms, "task state restored from its changelog partition");
                    arrival.restored = Some(r);
                }
                Err(ChangelogError::NoSnapshot { .. }) => {
                    tracing::info!(task = %task, place = %place, "the task's changelog partition holds no snapshot: the task starts empty and replays its inputs");
                }
                Err(e) => return Err(e.into()),
            }
        }
        let store = Store::open_keeping_wal(&dir, opts, *wal_keep_mb)?;
        let stop = Arc::new(AtomicBool::new(false));
        let publisher = ChangelogPublisher::new(kafka, store.clone(), Arc::clone(metrics), Arc::clone(&stop))?.on(place.clone()).finishing_snapshots();
        let thread = std::thread::Builder::new()
            .name(format!("changelog-{task}"))
            .spawn(move || publisher.run())
            .map_err(|source| ChangelogError::Io { path: dir.display().to_string(), source })?;
        Ok((TaskDir { task, dir, store, place, stop, publisher: Some(thread) }, arrival))
    }

    /// The task leaves this instance (or the instance stops): its
    /// publisher sends what is committed and stops, and the store is
    /// closed. The directory stays: if the task comes back before another
    /// instance publishes, it is opened as it is.
    pub fn close(self) {
        drop(self);
    }
}

/// Closing is dropping: the publisher is stopped and joined either way.
impl Drop for TaskDir {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.publisher.take() {
            let _ = t.join();
        }
    }
}
