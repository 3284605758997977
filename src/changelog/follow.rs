//! A standby's warm copy of the active instance's state: the changelog
//! followed into the standby's own state directory while it waits, so that
//! taking over reads only what was published since, not the whole state
//! (`[kafka.standby] follow`, docs/changelog.md "Standby instances").
//!
//! The copy is the restore of `restore.rs` that does not end: the newest
//! complete snapshot, then every whole delta after it as it is published.
//! It follows the line whose frames are last, as `paywatch restore` made
//! at that moment would:
//! - an instance elected after the one followed starts its own line with
//!   a snapshot; once that snapshot is complete (a later frame names it)
//!   the copy starts over from it;
//! - a fenced instance's stray frames do the same, and the copy starts
//!   over again as soon as the active one publishes (docs/changelog.md,
//!   "Losing the role");
//! - a gap in the deltas stops the copy until its origin publishes a newer
//!   snapshot, which a publisher does after a gap.
//!
//! A copy in the making is marked by a file beside its directory
//! (`<dir>.following`). A standby that finds the mark at start (it stopped
//! or crashed while following) deletes the copy and starts again: where
//! the copy stood in the topic is not recorded with it. Once elected, the
//! standby reads to the topic's end, the copy is consistent, the mark is
//! removed, and the directory is the active instance's state.

use super::restore::{choose, end, is_empty_dir, reader, Restored, Restorer};
use super::{ChangelogError, Frame, Place};
use crate::config::KafkaConfig;
use crate::source::log_end::fetch_from;
use crate::store::{Store, StoreOptions};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What `/status` shows of a standby's copy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Following {
    /// The origin (publishing state directory) the copy follows; `None`
    /// until the topic holds a complete snapshot.
    pub origin: Option<u64>,
    /// Where the copy's snapshot starts in the topic.
    pub snapshot_offset: Option<i64>,
    /// Whole commits applied after the snapshot.
    pub commits: u64,
    /// The next offset of the topic to read.
    pub offset: i64,
    /// The topic's end, as last asked.
    pub end: i64,
    /// The copy is a state the active instance held (its snapshot is
    /// complete and the deltas it overlaps applied).
    pub consistent: bool,
    /// How often the copy started over on another line or a newer
    /// snapshot.
    pub restarts: u64,
}

impl Following {
    /// Frames published and not read yet.
    pub fn behind(&self) -> i64 {
        (self.end - self.offset).max(0)
    }
}

/// The standby's reader of the changelog and the copy it fills.
pub struct Follower {
    /// The changelog partition followed.
    place: Place,
    /// The state directory the copy is made in.
    dir: PathBuf,
    opts: StoreOptions,
    consumer: BaseConsumer,
    /// Asks where the topic ends (`restore::end`): a consumer of its own,
    /// since asking assigns it to the topic's last batch.
    probe: BaseConsumer,
    /// The copy's restorer (it holds the store); `None` until the topic
    /// holds a complete snapshot.
    copy: Option<Restorer>,
    /// The next offset to read.
    next: i64,
    /// The topic's end, as last asked, and when.
    end: i64,
    asked: Option<Instant>,
    /// Copies started over.
    restarts: u64,
    /// The first offset never read: frames before it are history, read
    /// again after starting over, and never make the copy start over
    /// (lines that interleave would otherwise send it back and forth).
    frontier: i64,
}

/// Where a copy of `origin`'s line from its snapshot at `snapshot` (a gap
/// `stopped` it) starts over, on reading `f`: at the complete snapshot `f`
/// names, when `f` is another origin's (another instance publishes now),
/// or a newer one of the same line once the copy is stopped. A newer
/// snapshot of the same line changes nothing (deltas go on across it).
/// So the copy follows the line whose frames are last, as a restore made
/// at that moment would; a fenced instance's stray frames cost a copy
/// started over twice, back as soon as the active one publishes again.
fn starts_over(origin: u64, snapshot: i64, stopped: bool, f: &Frame) -> Option<i64> {
    let at = f.snapshot_at?;
    (f.origin != origin || stopped && at > snapshot).then_some(at)
}

/// The mark of a copy in the making.
fn mark(dir: &Path) -> PathBuf {
    dir.with_extension("following")
}

/// Whether `dir` is a copy a follower left unfinished.
pub fn is_copy(dir: &Path) -> bool {
    mark(dir).exists()
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ChangelogError + '_ {
    move |source| ChangelogError::Io { path: path.display().to_string(), source }
}

/// Deletes an unfinished copy and its mark.
pub fn discard_copy(dir: &Path) -> Result<(), ChangelogError> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io(dir))?;
    }
    let m = mark(dir);
    if m.exists() {
        std::fs::remove_file(&m).map_err(io(&m))?;
    }
    Ok(())
}

impl Follower {
    /// A follower of `kafka`'s changelog into `dir`, which must be empty
    /// or an unfinished copy (deleted here).
    pub fn new(kafka: &KafkaConfig, dir: &Path, opts: StoreOptions) -> Result<Follower, ChangelogError> {
        if is_copy(dir) {
            discard_copy(dir)?;
        }
        if !is_empty_dir(dir) {
            return Err(ChangelogError::Target { dir: dir.display().to_string(), why: "holds a state: a standby copies the changelog only into an empty directory".into() });
        }
        Ok(Follower {
            place: Place::of(kafka),
            dir: dir.to_owned(),
            opts,
            consumer: reader(kafka)?,
            probe: reader(kafka)?,
            copy: None,
            next: 0,
            end: 0,
            asked: None,
            restarts: 0,
            frontier: 0,
        })
    }

    /// Follows `place` instead of the service's partition 0 (a task's
    /// changelog partition).
    pub fn on(self, place: Place) -> Follower {
        Follower { place, ..self }
    }

    pub fn following(&self) -> Following {
        let c = self.copy.as_ref();
        Following {
            origin: c.map(|c| c.done.origin),
            snapshot_offset: c.map(|c| c.done.snapshot_offset),
            commits: c.map_or(0, |c| c.done.commits),
            offset: self.next,
            end: self.end,
            consistent: c.is_some_and(Restorer::consistent),
            restarts: self.restarts,
        }
    }

    /// Asks the topic's end, at most once a second unless `now`. Once a
    /// second it takes the broker's watermark (and what was read), which
    /// on tansu may stop inside the last batch: enough for `/status`.
    /// `now` (taking over) reads to the real end (`restore::end`), which
    /// costs a read of the last batch.
    fn ask_end(&mut self, now: bool) -> Result<(), ChangelogError> {
        if now {
            self.end = end(&self.probe, &self.place)?.end;
            self.asked = Some(Instant::now());
        } else if self.asked.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            let (_, high) = self.consumer.fetch_watermarks(&self.place.topic, self.place.partition, Duration::from_secs(30))?;
            self.end = high.max(self.next);
            self.asked = Some(Instant::now());
        }
        Ok(())
    }

    /// Reads what is published, for up to `wait`.
    pub fn step(&mut self, wait: Duration) -> Result<(), ChangelogError> {
        self.ask_end(false)?;
        if self.copy.is_none() {
            return self.start(wait);
        }
        let until = Instant::now() + wait;
        while Instant::now() < until {
            let (offset, frame) = match self.consumer.poll(Duration::from_millis(100)) {
                None => continue,
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(m)) => {
                    let offset = m.offset();
                    if offset < self.next {
                        continue;
                    }
                    let frame = Frame::decode(m.payload().unwrap_or_default()).map_err(|why| ChangelogError::Frame { offset, why })?;
                    (offset, frame)
                }
            };
            self.next = offset + 1;
            self.end = self.end.max(self.next);
            let fresh = offset >= self.frontier;
            self.frontier = self.frontier.max(self.next);
            if let Some(at) = self.start_over_at(&frame).filter(|_| fresh) {
                tracing::info!(origin = frame.origin, snapshot = at, "another instance publishes to the changelog now: the standby's copy starts over from its snapshot");
                self.restarts += 1;
                return self.begin(frame.origin, at);
            }
            self.copy.as_mut().expect("checked above").offer(offset, &frame)?;
        }
        Ok(())
    }

    /// The snapshot to start over from on reading `f` (`starts_over`).
    fn start_over_at(&self, f: &Frame) -> Option<i64> {
        let copy = self.copy.as_ref()?;
        starts_over(copy.done.origin, copy.done.snapshot_offset, copy.stopped(), f)
    }

    /// Starts the copy at the complete snapshot of the line whose frames
    /// are last (`restore::choose`), when there is one (otherwise waits
    /// `wait` and says nothing: the first active instance has not
    /// published one yet).
    fn start(&mut self, wait: Duration) -> Result<(), ChangelogError> {
        let tail = end(&self.probe, &self.place)?;
        self.end = tail.end;
        // `choose` took the last frame's line: what is before it is history.
        self.frontier = self.frontier.max(tail.end);
        match choose(&self.consumer, &self.place, &tail) {
            Ok((origin, at)) => self.begin(origin, at),
            Err(ChangelogError::NoSnapshot { .. }) => {
                std::thread::sleep(wait);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// A new copy of `origin`'s line from its snapshot at `at`.
    fn begin(&mut self, origin: u64, at: i64) -> Result<(), ChangelogError> {
        self.copy = None;
        discard_copy(&self.dir)?;
        let m = mark(&self.dir);
        std::fs::write(&m, format!("{origin} {at}\n")).map_err(io(&m))?;
        let store = Store::open(&self.dir, self.opts)?;
        self.copy = Some(Restorer::new(&store, origin, at));
        let p = &self.place;
        let (low, watermark) = self.consumer.fetch_watermarks(&p.topic, p.partition, Duration::from_secs(30))?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&p.topic, p.partition, Offset::Offset(fetch_from(at, low, watermark)))?;
        self.consumer.assign(&tpl)?;
        self.next = at;
        Ok(())
    }

    /// Deletes the copy and its mark.
    pub fn discard(mut self) -> Result<(), ChangelogError> {
        self.copy = None;
        discard_copy(&self.dir)
    }

    /// Once elected: reads to the topic's end as it is now (the instance
    /// followed is gone) and, when the copy is then consistent, closes it
    /// and removes its mark: the directory is the state. `None` when there
    /// is no consistent copy within `within` (no snapshot yet, or the
    /// deltas a snapshot overlaps never came): the directory is emptied,
    /// and the caller restores or replays as a standby without a copy
    /// would. On an error it is emptied too.
    pub fn finish(mut self, within: Duration) -> Result<Option<Restored>, ChangelogError> {
        let done = self.catch_up(within);
        if !matches!(done, Ok(Some(_))) {
            self.copy = None;
            discard_copy(&self.dir)?;
        }
        done
    }

    fn catch_up(&mut self, within: Duration) -> Result<Option<Restored>, ChangelogError> {
        let deadline = Instant::now() + within;
        self.ask_end(true)?;
        let target = self.end;
        if self.copy.is_none() {
            self.start(Duration::ZERO)?;
        }
        while let Some(copy) = &self.copy {
            let read = self.next >= target;
            if read && (copy.consistent() || copy.stopped()) || Instant::now() >= deadline {
                break;
            }
            if read {
                // The snapshot overlaps commits not published yet: its
                // publisher is gone, so they come only if it comes back.
                std::thread::sleep(Duration::from_millis(100));
            }
            self.step(Duration::from_millis(200))?;
        }
        match self.copy.take() {
            Some(c) if c.consistent() && self.next >= target => {
                let done = c.done.clone();
                drop(c);
                let m = mark(&self.dir);
                std::fs::remove_file(&m).map_err(io(&m))?;
                Ok(Some(done))
            }
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unfinished_copy_is_discarded_and_a_state_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        let kafka = KafkaConfig { brokers: "127.0.0.1:1".into(), ..KafkaConfig::default() };
        // A copy a previous standby left: deleted, with its mark.
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("CURRENT"), "half").unwrap();
        std::fs::write(mark(&dir), "7 0\n").unwrap();
        assert!(is_copy(&dir));
        let f = Follower::new(&kafka, &dir, crate::store::tests::opts()).unwrap();
        assert!(!dir.exists() && !is_copy(&dir));
        assert_eq!(f.following(), Following::default());
        // A state of its own is never overwritten by a copy.
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("CURRENT"), "mine").unwrap();
        let err = Follower::new(&kafka, &dir, crate::store::tests::opts()).err().expect("refused");
        assert!(err.to_string().contains("holds a state"), "{err}");
        assert_eq!(std::fs::read_to_string(dir.join("CURRENT")).unwrap(), "mine");
    }

    #[test]
    fn the_copy_starts_over_on_another_line_or_at_a_newer_snapshot_after_a_gap() {
        let frame = |origin, snapshot_at| Frame { origin, kind: super::super::Kind::Delta { seq: 1, next: 2 }, part: 0, last: true, snapshot_at, ops: vec![] };
        assert_eq!(starts_over(7, 100, false, &frame(9, Some(250))), Some(250), "another instance went on from its own snapshot");
        assert_eq!(starts_over(7, 100, false, &frame(9, Some(40))), Some(40), "the line whose frames are last, as a restore would choose, even an older one");
        assert_eq!(starts_over(7, 100, false, &frame(9, None)), None, "the new line's snapshot is not complete yet");
        assert_eq!(starts_over(7, 100, false, &frame(7, Some(250))), None, "the same line's periodic snapshot: its deltas go on");
        assert_eq!(starts_over(7, 100, true, &frame(7, Some(250))), Some(250), "after a gap, the line's next snapshot");
        assert_eq!(starts_over(7, 100, true, &frame(7, Some(100))), None, "the snapshot the copy already has");
    }

    #[test]
    fn behind_counts_frames_not_read() {
        let f = Following { offset: 40, end: 52, ..Following::default() };
        assert_eq!(f.behind(), 12);
        assert_eq!(Following { offset: 52, end: 40, ..Following::default() }.behind(), 0);
    }
}
