//! The changelog publisher: a thread of its own that reads each commit
//! back from RocksDB's write-ahead log after the engine made it, and sends
//! it to its `Place` (partition 0 of the changelog topic for the service's
//! one state directory, a task's own partition) with an idempotent producer
//! (so frames land in the order sent, each once).
//!
//! Where to go on from is read from the topic itself at every start: its
//! last frame, when this state directory published it, names the commit
//! (or snapshot) it ends with. Anything else (an empty topic, another
//! origin's frame, a snapshot cut short, a commit the log no longer holds)
//! is answered with a new snapshot. A failure (broker down, a refused
//! frame) ends the session: it is counted, logged, and started again from
//! the topic's end after a pause, so nothing is skipped.

use super::restore::{end, reader};
use super::{delta_frames, ChangelogError, Frame, Framer, Kind, Place, WireOp};
use crate::config::KafkaConfig;
use crate::metrics::Metrics;
use crate::store::Store;
use rdkafka::config::FromClientConfigAndContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The file beside the state that holds this state directory's origin.
const ORIGIN_FILE: &str = "CHANGELOG_ORIGIN";
/// Longest pause between sessions after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The publisher; `run` until `stop` is set.
pub struct ChangelogPublisher {
    store: Store,
    kafka: KafkaConfig,
    /// Where the frames go.
    place: Place,
    /// This state directory's origin (see the module doc of `changelog`).
    origin: u64,
    /// Changes per frame, in bytes: under the producer's message size.
    max_bytes: usize,
    /// Bytes of deltas after which a new snapshot is sent.
    snapshot_every: u64,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
    /// Set when this instance lost the active role (`[kafka.standby]`):
    /// stop at once, without the last pass `stop` makes, so that a fenced
    /// instance adds nothing after the new active one's frames.
    halt: Arc<AtomicBool>,
    /// A snapshot begun is finished even once `stop` is set (a task
    /// handed over leaves its partition restorable); otherwise `stop`
    /// cuts it short, so that a shutdown is not held up by a large one.
    finish_snapshots: bool,
}

/// Where the next commit to send starts, and the snapshot to name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Resume {
    /// The next commit's first sequence number.
    next: u64,
    /// The offset of the newest complete snapshot.
    snapshot_at: Option<i64>,
    /// Everything before this is acknowledged by the broker (known from
    /// the topic or a flushed snapshot).
    acked_floor: u64,
}

impl ChangelogPublisher {
    pub fn new(kafka: &KafkaConfig, store: Store, metrics: Arc<Metrics>, stop: Arc<AtomicBool>) -> Result<Self, ChangelogError> {
        let origin = origin_of(store.path())?;
        Ok(ChangelogPublisher {
            store,
            kafka: kafka.clone(),
            place: Place::of(kafka),
            origin,
            max_bytes: kafka.max_message_bytes().saturating_sub(64 << 10).max(64 << 10),
            snapshot_every: kafka.changelog.snapshot_every_mb << 20,
            metrics,
            stop,
            halt: Arc::new(AtomicBool::new(false)),
            finish_snapshots: false,
        })
    }

    /// Publishes to `place` instead of the service's partition 0 (a
    /// task's changelog partition).
    pub fn on(self, place: Place) -> Self {
        ChangelogPublisher { place, ..self }
    }

    /// Finishes a snapshot begun even after `stop` (`finish_snapshots`).
    pub fn finishing_snapshots(self) -> Self {
        ChangelogPublisher { finish_snapshots: true, ..self }
    }

    /// Stops at once, publishing nothing more, when `halt` is set.
    pub fn halting_on(self, halt: Arc<AtomicBool>) -> Self {
        ChangelogPublisher { halt, ..self }
    }

    fn halted(&self) -> bool {
        self.halt.load(Ordering::Relaxed)
    }

    /// Publishes until `stop`, starting a new session after each failure.
    /// One session at least, even when `stop` was set before it began:
    /// a task that leaves at once still publishes what it committed.
    pub fn run(mut self) {
        let mut backoff = Duration::from_secs(1);
        let mut first = true;
        while (first || !self.stop.load(Ordering::Relaxed)) && !self.halted() {
            first = false;
            match self.session() {
                Ok(()) => return,
                Err(e) => {
                    self.metrics.changelog_errors.inc();
                    tracing::error!(place = %self.place, error = %e, "changelog publishing failed; starting again from the topic's end");
                    let until = Instant::now() + backoff;
                    while Instant::now() < until && !self.stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    fn session(&mut self) -> Result<(), ChangelogError> {
        let producer = self.producer()?;
        let mut at = match self.resume()? {
            Some(r) => r,
            None => self.snapshot(&producer, None)?,
        };
        tracing::info!(place = %self.place, next = at.next, "changelog publishing");
        let mut since_snapshot = 0u64;
        loop {
            if self.halted() {
                tracing::warn!(place = %self.place, "changelog publishing halted: this instance is no longer the active one");
                return Ok(());
            }
            // At shutdown: one more pass, so the last commits go too.
            let stopping = self.stop.load(Ordering::Relaxed);
            let mut sent = false;
            let mut gap = None;
            // The log is read only when it holds something new: opening it
            // reads its file up to the position asked for.
            let fresh = self.store.latest_seq() >= at.next;
            match if fresh { self.store.commits_after(at.next.saturating_sub(1)).map(Some) } else { Ok(None) } {
                Err(e) => gap = Some(e.to_string()),
                Ok(None) => {}
                Ok(Some(commits)) => {
                    for c in commits {
                        let c = match c {
                            Ok(c) => c,
                            Err(e) => {
                                gap = Some(e.to_string());
                                break;
                            }
                        };
                        if c.ops.is_empty() {
                            continue;
                        }
                        if c.seq != at.next {
                            gap = Some(format!("the log goes on at change {} where {} was expected", c.seq, at.next));
                            break;
                        }
                        let frames = delta_frames(self.origin, &c, at.snapshot_at, self.max_bytes);
                        let bytes: u64 = frames.iter().flat_map(|f| &f.ops).map(|o| o.size() as u64).sum();
                        let next = c.seq + c.ops.len() as u64;
                        for f in &frames {
                            send(&producer, &self.place, f, if f.last { Watch::CommitEnd(next) } else { Watch::Nothing })?;
                        }
                        // Behind first, then the count: a reader that sees
                        // the count include this commit and `behind` at 0
                        // knows the broker acknowledged it.
                        self.behind(&producer, at.acked_floor);
                        self.metrics.changelog_commits.inc();
                        self.metrics.changelog_bytes.with_label_values(&["delta"]).inc_by(bytes);
                        since_snapshot += bytes;
                        at.next = next;
                        sent = true;
                    }
                }
            }
            failed(&producer)?;
            if stopping && gap.is_none() {
                flush(&producer, self.kafka.drain_timeout)?;
                return Ok(());
            }
            if let Some(why) = gap {
                tracing::warn!(place = %self.place, why = %why, "the write-ahead log no longer holds every commit not yet published (raise kafka.changelog.wal_keep_mb); publishing a snapshot");
                at = self.snapshot(&producer, None)?;
                since_snapshot = 0;
                continue;
            }
            if since_snapshot >= self.snapshot_every {
                at = self.snapshot(&producer, Some(at.next))?;
                since_snapshot = 0;
            }
            self.behind(&producer, at.acked_floor);
            producer.poll(if sent { Duration::ZERO } else { Duration::from_millis(50) });
        }
    }

    /// Sets the gauge of changes committed but not acknowledged.
    fn behind(&self, producer: &BaseProducer<Acks>, acked_floor: u64) {
        let acked = producer.context().acked_next.load(Ordering::Relaxed).max(acked_floor);
        let behind = self.store.latest_seq().saturating_sub(acked.saturating_sub(1));
        self.metrics.changelog_behind.set(i64::try_from(behind).unwrap_or(i64::MAX));
    }

    fn producer(&self) -> Result<BaseProducer<Acks>, ChangelogError> {
        let mut c = crate::source::kafka::client_config(&self.kafka);
        c.set("linger.ms", "20");
        for (k, v) in &self.kafka.producer {
            c.set(k, v);
        }
        c.set("enable.idempotence", "true").set("acks", "all");
        let p = BaseProducer::from_config_and_context(&c, Acks::default())?;
        let md = p.client().fetch_metadata(Some(&self.place.topic), Duration::from_secs(30))?;
        let partitions = md
            .topics()
            .iter()
            .find(|t| t.name() == self.place.topic && t.error().is_none())
            .map_or(0, |t| t.partitions().len());
        if partitions == 0 {
            return Err(ChangelogError::Topic {
                topic: self.place.topic.clone(),
                why: "does not exist: create it (one partition, retention longer than two snapshots apart)".into(),
            });
        }
        if partitions <= self.place.partition as usize {
            return Err(ChangelogError::Topic {
                topic: self.place.topic.clone(),
                why: format!("has {partitions} partitions: partition {} is needed, one per task", self.place.partition),
            });
        }
        Ok(p)
    }

    /// Where to go on from, read from the topic's last frame; `None` when
    /// a snapshot must come first.
    fn resume(&self) -> Result<Option<Resume>, ChangelogError> {
        let Some(last) = end(&reader(&self.kafka)?, &self.place)?.last else { return Ok(None) };
        Ok(resume_after(self.origin, &last))
    }

    /// Sends the whole state, then a mark naming its offset. `continuing`:
    /// the next commit to send when the deltas go on unbroken (a periodic
    /// snapshot); otherwise they start after the snapshot's instant.
    fn snapshot(&self, producer: &BaseProducer<Acks>, continuing: Option<u64>) -> Result<Resume, ChangelogError> {
        flush(producer, Duration::from_secs(60))?;
        *producer.context().first_offset.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let mut error = None;
        let mut bytes = 0u64;
        let started = Instant::now();
        let mut first = true;
        let from = each_snapshot_frame(&self.store, self.origin, continuing, self.max_bytes, &mut |f| {
            bytes += f.ops.iter().map(|o| o.size() as u64).sum::<u64>();
            let watch = if std::mem::take(&mut first) { Watch::SnapshotFirst } else { Watch::Nothing };
            match send(producer, &self.place, &f, watch) {
                Ok(()) => self.finish_snapshots || !self.stop.load(Ordering::Relaxed),
                Err(e) => {
                    error = Some(e);
                    false
                }
            }
        })?;
        if let Some(e) = error {
            return Err(e);
        }
        let Some(from) = from else {
            return Err(ChangelogError::Topic { topic: self.place.to_string(), why: "snapshot interrupted by the shutdown".into() });
        };
        flush(producer, Duration::from_secs(120))?;
        let at = producer.context().first_offset.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(at) = at else {
            return Err(ChangelogError::Topic { topic: self.place.to_string(), why: "the snapshot's first frame was not acknowledged".into() });
        };
        let mark = Frame { origin: self.origin, kind: Kind::Mark { from }, part: 0, last: true, snapshot_at: Some(at), ops: vec![] };
        send(producer, &self.place, &mark, Watch::Nothing)?;
        self.metrics.changelog_snapshots.inc();
        self.metrics.changelog_bytes.with_label_values(&["snapshot"]).inc_by(bytes);
        tracing::info!(place = %self.place, offset = at, bytes, seconds = started.elapsed().as_secs_f64(), "changelog snapshot published");
        Ok(Resume { next: from, snapshot_at: Some(at), acked_floor: from })
    }
}

/// What the topic's last frame says about where `origin` goes on.
fn resume_after(origin: u64, last: &Frame) -> Option<Resume> {
    if last.origin != origin {
        return None;
    }
    let snapshot_at = Some(last.snapshot_at?);
    let next = match last.kind {
        Kind::Delta { next, .. } if last.last => next,
        // Cut short: that commit is sent again whole.
        Kind::Delta { seq, .. } => seq,
        Kind::Mark { from } => from,
        Kind::Snapshot { .. } => return None,
    };
    Some(Resume { next, snapshot_at, acked_floor: next })
}

/// Calls `emit` with the frames of a snapshot of `store` (stopping when it
/// returns false: `None`); returns the first sequence number of the
/// deltas that must follow it.
pub fn each_snapshot_frame(
    store: &Store,
    origin: u64,
    continuing: Option<u64>,
    max_bytes: usize,
    emit: &mut dyn FnMut(Frame) -> bool,
) -> Result<Option<u64>, ChangelogError> {
    let mut go = true;
    let done = store.each_entry_at_snapshot(
        |lo, hi| {
            let from = continuing.unwrap_or(lo + 1);
            (from, Framer::new(origin, Kind::Snapshot { from, through: hi }, None, max_bytes))
        },
        |(_, framer), cf, k, v| {
            for f in framer.push(WireOp::of(cf, k, Some(v))) {
                go = go && emit(f);
            }
            go
        },
    )?;
    let Some((from, framer)) = done else { return Ok(None) };
    if !emit(framer.finish()) {
        return Ok(None);
    }
    Ok(Some(from))
}

/// Tests: a snapshot's frames, and the first sequence number after it.
#[cfg(test)]
pub fn snapshot_frames(store: &Store, origin: u64, _at: Option<i64>, continuing: Option<u64>, max_bytes: usize) -> Result<(Vec<Frame>, u64), ChangelogError> {
    let mut frames = Vec::new();
    let from = each_snapshot_frame(store, origin, continuing, max_bytes, &mut |f| {
        frames.push(f);
        true
    })?;
    Ok((frames, from.expect("not stopped")))
}

/// The origin `dir` publishes under, when it has published; `None` also
/// when the file cannot be read (a standby then treats the state as not
/// the changelog's).
pub fn published_origin(dir: &Path) -> Option<u64> {
    std::fs::read_to_string(dir.join(ORIGIN_FILE)).ok()?.trim().parse().ok()
}

/// This state directory's origin, made at the first publish.
fn origin_of(dir: &Path) -> Result<u64, ChangelogError> {
    let path = dir.join(ORIGIN_FILE);
    let io = |source| ChangelogError::Io { path: path.display().to_string(), source };
    match std::fs::read_to_string(&path) {
        Ok(s) => s.trim().parse().map_err(|_| io(std::io::Error::other("does not hold a number"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            let origin = (now.as_nanos() as u64) ^ (u64::from(std::process::id()) << 40) | 1;
            std::fs::write(&path, format!("{origin}\n")).map_err(io)?;
            Ok(origin)
        }
        Err(e) => Err(io(e)),
    }
}

/// Sends one frame, waiting while librdkafka's queue is full.
fn send(producer: &BaseProducer<Acks>, place: &Place, f: &Frame, watch: Watch) -> Result<(), ChangelogError> {
    let payload = f.encode();
    let mut record: BaseRecord<'_, [u8], Vec<u8>, Box<Watch>> =
        BaseRecord::with_opaque_to(&place.topic, Box::new(watch)).partition(place.partition).payload(&payload);
    loop {
        match producer.send(record) {
            Ok(()) => return failed(producer),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                producer.poll(Duration::from_millis(50));
                failed(producer)?;
            }
            Err((e, _)) => return Err(e.into()),
        }
    }
}

fn flush(producer: &BaseProducer<Acks>, timeout: Duration) -> Result<(), ChangelogError> {
    producer.flush(timeout)?;
    failed(producer)
}

/// The first delivery failure reported, as an error.
fn failed(producer: &BaseProducer<Acks>) -> Result<(), ChangelogError> {
    match producer.context().failed.lock().unwrap_or_else(|e| e.into_inner()).take() {
        Some(why) => Err(ChangelogError::Topic { topic: "changelog".into(), why: format!("a frame was refused: {why}") }),
        None => Ok(()),
    }
}

/// What a frame's delivery report is wanted for.
#[derive(Clone, Copy, Debug)]
enum Watch {
    Nothing,
    /// A snapshot's first frame: its offset is the snapshot's.
    SnapshotFirst,
    /// A commit's last frame: the commit is safe, up to this sequence
    /// number.
    CommitEnd(u64),
}

/// Delivery reports: the first failure, the offset of a snapshot's first
/// frame, and how far commits are acknowledged.
#[derive(Default)]
struct Acks {
    failed: Mutex<Option<String>>,
    first_offset: Mutex<Option<i64>>,
    /// The first sequence number after the last commit acknowledged.
    acked_next: std::sync::atomic::AtomicU64,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = Box<Watch>;

    fn delivery(&self, r: &DeliveryResult<'_>, watch: Box<Watch>) {
        match r {
            Ok(m) => match *watch {
                Watch::SnapshotFirst => *self.first_offset.lock().unwrap_or_else(|e| e.into_inner()) = Some(m.offset()),
                Watch::CommitEnd(next) => {
                    self.acked_next.fetch_max(next, Ordering::Relaxed);
                }
                Watch::Nothing => {}
            },
            Err((e, _)) => {
                self.failed.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(|| e.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: Kind, last: bool, snapshot_at: Option<i64>) -> Frame {
        Frame { origin: 5, kind, part: 0, last, snapshot_at, ops: vec![] }
    }

    #[test]
    fn the_topics_last_frame_says_where_to_go_on() {
        let at = Some(40);
        let go_on = |next| Some(Resume { next, snapshot_at: at, acked_floor: next });
        assert_eq!(resume_after(5, &frame(Kind::Delta { seq: 10, next: 13 }, true, at)), go_on(13));
        assert_eq!(resume_after(5, &frame(Kind::Delta { seq: 10, next: 13 }, false, at)), go_on(10), "a commit cut short is sent again");
        assert_eq!(resume_after(5, &frame(Kind::Mark { from: 7 }, true, at)), go_on(7));
        assert_eq!(resume_after(5, &frame(Kind::Snapshot { from: 7, through: 9 }, true, None)), None, "an unmarked snapshot is sent again");
        assert_eq!(resume_after(6, &frame(Kind::Delta { seq: 10, next: 13 }, true, at)), None, "another origin's topic");
        assert_eq!(resume_after(5, &frame(Kind::Delta { seq: 10, next: 13 }, true, None)), None, "no snapshot of its own yet");
    }

    #[test]
    fn the_origin_is_kept_beside_the_state_and_a_copy_gets_its_own() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let first = origin_of(a.path()).unwrap();
        assert_eq!(origin_of(a.path()).unwrap(), first);
        assert_ne!(origin_of(b.path()).unwrap(), first);
    }
}
