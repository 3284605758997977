//! `paywatch restore`: a state directory rebuilt from the changelog.
//!
//! The restore starts at the newest complete snapshot (named by the
//! topic's last frame, or found by reading the topic when that frame does
//! not name one), applies it, then every delta after it whole, in order.
//! It stops once it has read what the topic held when it began and the
//! state is consistent (every delta through the snapshot's `through`
//! applied). A gap in the deltas (the publisher lost part of its log and
//! had not yet completed the snapshot that follows) ends the restore at
//! the last whole commit before it: the state is then older, never wrong,
//! and `paywatch run` replays the inputs from the offsets it holds.

use super::{join, ChangelogError, Frame, Kind, Place, WireOp};
use crate::config::KafkaConfig;
use crate::source::log_end::{fetch_from, tail};
use crate::store::{Store, StoreOptions};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What a restore applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Restored {
    /// The origin (publishing state directory) restored.
    pub origin: u64,
    /// The snapshot's offset in the topic.
    pub snapshot_offset: i64,
    /// Entries of the snapshot written.
    pub snapshot_entries: u64,
    /// Whole commits applied after it.
    pub commits: u64,
    /// Bytes of frames read.
    pub bytes: u64,
    /// Set when a gap in the deltas ended the restore early.
    pub gap: Option<String>,
}

/// Where a restorer stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for the first frame of the chosen snapshot.
    Start,
    /// Applying the snapshot's frames: the next part expected.
    Snapshot { from: u64, through: u64, part: u32 },
    /// Applying deltas: the first sequence number of the next one.
    Deltas { next: u64 },
    /// A gap was met; nothing more is applied.
    Stopped { next: u64 },
}

/// Applies one origin's frames onto a blank store.
pub struct Restorer {
    /// The store being filled (a handle: the caller may hold another).
    store: Store,
    phase: Phase,
    /// The snapshot's `through`: consistent once a delta reaching it is
    /// applied (or when it is at most the first delta's start).
    through: u64,
    /// The delta being read: its first sequence number, the next part
    /// expected, and its changes so far (pieces of a value not yet joined).
    pending: Option<(u64, u32, Vec<WireOp>)>,
    /// The snapshot's pieces of a value that goes on in its next frame.
    carry: Vec<WireOp>,
    pub done: Restored,
}

impl Restorer {
    pub fn new(store: &Store, origin: u64, snapshot_offset: i64) -> Restorer {
        Restorer {
            store: store.clone(),
            phase: Phase::Start,
            through: 0,
            pending: None,
            carry: Vec::new(),
            done: Restored { origin, snapshot_offset, ..Restored::default() },
        }
    }

    /// Whether the state written so far is one the publisher's store held:
    /// the snapshot is complete and every delta through its `through`
    /// applied.
    pub fn consistent(&self) -> bool {
        match self.phase {
            Phase::Deltas { next } | Phase::Stopped { next } => next > self.through,
            _ => false,
        }
    }

    /// Whether a gap ended what this restorer applies: only a newer
    /// snapshot goes on from here.
    pub fn stopped(&self) -> bool {
        matches!(self.phase, Phase::Stopped { .. })
    }

    /// Takes one frame (frames of other origins are passed over).
    pub fn offer(&mut self, offset: i64, frame: &Frame) -> Result<(), ChangelogError> {
        if frame.origin != self.done.origin {
            return Ok(());
        }
        let broken = |why: String| ChangelogError::Frame { offset, why };
        let ops = || frame.ops.clone();
        match (self.phase, frame.kind) {
            (Phase::Start, Kind::Snapshot { from, through }) if frame.part == 0 => {
                self.carry.clear();
                self.apply_snapshot(offset, ops(), frame.last)?;
                self.through = through;
                self.phase = if frame.last { Phase::Deltas { next: from } } else { Phase::Snapshot { from, through, part: 1 } };
            }
            (Phase::Start, _) => return Err(broken("the restore's snapshot does not start here".into())),
            (Phase::Snapshot { from, through, part }, Kind::Snapshot { from: f, through: t }) if (f, t) == (from, through) => {
                if frame.part < part {
                    return Ok(());
                }
                if frame.part > part {
                    return Err(broken(format!("snapshot frame {} follows frame {}: frames are missing", frame.part, part - 1)));
                }
                self.apply_snapshot(offset, ops(), frame.last)?;
                self.phase = if frame.last { Phase::Deltas { next: from } } else { Phase::Snapshot { from, through, part: part + 1 } };
            }
            (Phase::Snapshot { .. }, _) => {
                return Err(broken("the snapshot being restored was not finished (its publisher stopped)".into()))
            }
            (Phase::Deltas { next }, Kind::Delta { seq, next: after }) => {
                if seq < next {
                    return Ok(()); // published again after a producer restart
                }
                if seq > next {
                    self.phase = Phase::Stopped { next };
                    self.done.gap = Some(format!(
                        "commits {next}..{seq} of the publisher's store are not in the topic (offset {offset}); the restored state ends before them"
                    ));
                    return Ok(());
                }
                match &mut self.pending {
                    Some((s, part, acc)) if *s == seq && frame.part == *part => {
                        acc.extend(ops());
                        *part += 1;
                    }
                    Some((s, part, _)) if *s == seq && frame.part < *part && frame.part > 0 => return Ok(()),
                    _ if frame.part == 0 => self.pending = Some((seq, 1, ops())),
                    // A commit's frames out of order: wait for it to be sent again from its first.
                    _ => {
                        self.pending = None;
                        return Ok(());
                    }
                }
                if frame.last {
                    let (_, _, commit) = self.pending.take().expect("set above");
                    let (commit, open) = join(commit).map_err(broken)?;
                    if !open.is_empty() {
                        return Err(broken("the commit's last frame ends inside a value cut into pieces".into()));
                    }
                    self.store.write_ops(&commit)?;
                    self.done.commits += 1;
                    self.phase = Phase::Deltas { next: after };
                }
            }
            (Phase::Deltas { .. } | Phase::Stopped { .. }, _) => {}
        }
        self.done.bytes += frame.ops.iter().map(|o| o.size() as u64).sum::<u64>();
        Ok(())
    }

    /// Writes a snapshot frame's whole changes; the pieces of a value
    /// that goes on wait for the next frame (`last`: there is none).
    fn apply_snapshot(&mut self, offset: i64, ops: Vec<WireOp>, last: bool) -> Result<(), ChangelogError> {
        let broken = |why: String| ChangelogError::Frame { offset, why };
        let mut all = std::mem::take(&mut self.carry);
        all.extend(ops);
        let (ops, open) = join(all).map_err(broken)?;
        if last && !open.is_empty() {
            return Err(broken("the snapshot's last frame ends inside a value cut into pieces".into()));
        }
        self.carry = open;
        self.done.snapshot_entries += ops.len() as u64;
        self.store.write_ops(&ops)?;
        Ok(())
    }
}

/// Finds where to start: the snapshot the last frame names, or else the
/// newest complete snapshot in the topic.
pub(super) fn choose(consumer: &BaseConsumer, place: &Place, tail: &End) -> Result<(u64, i64), ChangelogError> {
    let none = || ChangelogError::NoSnapshot { topic: place.to_string() };
    let (low, high) = (tail.low, tail.end);
    let Some(last) = &tail.last else { return Err(none()) };
    if let Some(at) = last.snapshot_at {
        if at >= low {
            return Ok((last.origin, at));
        }
    }
    // Read it all: the newest snapshot whose last frame was published.
    let mut started: Vec<(u64, Kind, i64)> = Vec::new();
    let mut complete = None;
    read(consumer, place, low, high, &mut |offset, f| {
        if let Kind::Snapshot { .. } = f.kind {
            if f.part == 0 {
                started.retain(|(o, _, _)| *o != f.origin);
                started.push((f.origin, f.kind, offset));
            }
            if f.last {
                if let Some((_, _, at)) = started.iter().find(|(o, k, _)| *o == f.origin && *k == f.kind) {
                    complete = Some((f.origin, *at));
                }
            }
        }
        Ok(())
    })?;
    complete.ok_or_else(none)
}

/// The origin of the last frame at `place`: the state directory that
/// published last. `None` when the partition holds nothing.
pub fn last_origin(kafka: &KafkaConfig, place: &Place) -> Result<Option<u64>, ChangelogError> {
    Ok(end(&reader(kafka)?, place)?.last.map(|f| f.origin))
}

/// The changelog partition's end, read (not taken from the watermark).
#[derive(Clone, Debug)]
pub(super) struct End {
    /// The first offset the partition holds.
    pub low: i64,
    /// The offset after its last frame.
    pub end: i64,
    /// Its last frame; `None` when it holds none.
    pub last: Option<Frame>,
}

/// Reads the end of `place` through `probe`, a consumer that reads
/// nothing else (`source::log_end`: tansu's watermark stops inside the
/// last batch).
pub(super) fn end(probe: &BaseConsumer, place: &Place) -> Result<End, ChangelogError> {
    let t = tail(probe, &place.topic, place.partition, Duration::from_secs(30))
        .map_err(|e| ChangelogError::Topic { topic: place.to_string(), why: format!("cannot be read: {e}") })?;
    let last = match t.last {
        Some(payload) => Some(Frame::decode(&payload).map_err(|why| ChangelogError::Frame { offset: t.end - 1, why })?),
        None => None,
    };
    Ok(End { low: t.low, end: t.end, last })
}

/// Whether a state directory that published as `mine` (`None`: never)
/// has been overtaken by the changelog's last frames, published as
/// `last`: then another instance went on from an older point, and this
/// state must not be resumed (its outbox and offsets are not the
/// changelog's).
pub fn superseded(mine: Option<u64>, last: Option<u64>) -> bool {
    matches!(last, Some(l) if mine != Some(l))
}

/// Moves `dir` to `<dir>.superseded`, in place of an older one: an
/// overtaken state is kept for an operator to look at, and the restore
/// gets an empty place.
pub fn set_aside(dir: &Path) -> Result<std::path::PathBuf, ChangelogError> {
    let aside = dir.with_extension("superseded");
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| ChangelogError::Io { path, source }
    };
    if aside.exists() {
        std::fs::remove_dir_all(&aside).map_err(io(&aside))?;
    }
    std::fs::rename(dir, &aside).map_err(io(dir))?;
    Ok(aside)
}

/// Whether `dir` is missing or holds nothing: a state directory a restore
/// may fill.
pub fn is_empty_dir(dir: &Path) -> bool {
    !dir.exists() || std::fs::read_dir(dir).map(|mut d| d.next().is_none()).unwrap_or(false)
}

/// A consumer for reading the changelog: assigned, never subscribed, so
/// it is in a group of its own that it never joins.
pub(super) fn reader(kafka: &KafkaConfig) -> Result<BaseConsumer, ChangelogError> {
    let mut c = crate::source::kafka::client_config(kafka);
    c.set("group.id", format!("paywatch-changelog-reader-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        // Many frames per fetch: one per round trip reads 10-20 MiB/s.
        .set("fetch.message.max.bytes", (kafka.max_message_bytes() + 4096).max(32 << 20).to_string())
        .set("fetch.max.bytes", (kafka.max_message_bytes() + 4096).max(64 << 20).to_string())
        .set("queued.max.messages.kbytes", "262144");
    for (k, v) in &kafka.consumer {
        if k != "group.instance.id" {
            c.set(k, v);
        }
    }
    Ok(c.create()?)
}

/// Reads frames at offsets `[from, until)` of `place`.
pub(super) fn read(
    consumer: &BaseConsumer,
    place: &Place,
    from: i64,
    until: i64,
    each: &mut dyn FnMut(i64, &Frame) -> Result<(), ChangelogError>,
) -> Result<u64, ChangelogError> {
    if from >= until {
        return Ok(0);
    }
    let (low, watermark) = consumer.fetch_watermarks(&place.topic, place.partition, Duration::from_secs(30))?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&place.topic, place.partition, Offset::Offset(fetch_from(from, low, watermark)))?;
    consumer.assign(&tpl)?;
    let mut next = from;
    let mut idle = Instant::now();
    let mut bytes = 0u64;
    while next < until {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                idle = Instant::now();
                let offset = m.offset();
                if offset < next {
                    continue;
                }
                let payload = m.payload().unwrap_or_default();
                bytes += payload.len() as u64;
                let f = Frame::decode(payload).map_err(|why| ChangelogError::Frame { offset, why })?;
                each(offset, &f)?;
                next = offset + 1;
            }
            Some(Err(e)) => return Err(e.into()),
            None if idle.elapsed() > Duration::from_secs(60) => {
                return Err(ChangelogError::Topic {
                    topic: place.to_string(),
                    why: format!("no record for 60 s while reading offset {next} of {until}"),
                })
            }
            None => {}
        }
    }
    Ok(bytes)
}

/// Rebuilds the state directory `dir` (which must not exist) from the
/// changelog at `place`: written into `<dir>.restoring` and renamed at
/// the end, so an interrupted restore never leaves a state directory that
/// looks whole.
pub fn restore(kafka: &KafkaConfig, place: &Place, dir: &Path, opts: StoreOptions) -> Result<Restored, ChangelogError> {
    restore_unless(kafka, place, dir, opts, &AtomicBool::new(false))
}

/// `restore`, given up with `ChangelogError::Stopped` once `stop` is set
/// (checked at every frame and every wait): a task that leaves while it
/// is restored does not hold up the group's rebalance. What was written
/// stays in `<dir>.restoring`, which the next restore starts over.
pub fn restore_unless(kafka: &KafkaConfig, place: &Place, dir: &Path, opts: StoreOptions, stop: &AtomicBool) -> Result<Restored, ChangelogError> {
    let stopped = || ChangelogError::Stopped { place: place.to_string() };
    let target = |why: String| ChangelogError::Target { dir: dir.display().to_string(), why };
    if !is_empty_dir(dir) {
        return Err(target("already holds a state; restore into a new directory".into()));
    }
    let work = dir.with_extension("restoring");
    if work.exists() {
        std::fs::remove_dir_all(&work).map_err(|source| ChangelogError::Io { path: work.display().to_string(), source })?;
    }
    let consumer = reader(kafka)?;
    let probe = reader(kafka)?;
    let first = end(&probe, place)?;
    let high = first.end;
    let (origin, at) = choose(&consumer, place, &first)?;
    let store = Store::open(&work, opts)?;
    if !store.is_blank()? {
        return Err(target(format!("{} is not empty", work.display())));
    }
    let mut r = Restorer::new(&store, origin, at);
    let offer = |r: &mut Restorer, offset, f: &Frame| if stop.load(Ordering::Relaxed) { Err(stopped()) } else { r.offer(offset, f) };
    read(&consumer, place, at, high, &mut |offset, f| offer(&mut r, offset, f))?;
    // The snapshot may hold commits its deltas have not reached yet: read
    // on (its publisher is still sending them) until the state is whole.
    let mut until = high;
    let started = Instant::now();
    while !r.consistent() && r.done.gap.is_none() {
        let now = end(&probe, place)?.end;
        if now > until {
            read(&consumer, place, until, now, &mut |offset, f| offer(&mut r, offset, f))?;
            until = now;
        } else if stop.load(Ordering::Relaxed) {
            return Err(stopped());
        } else if started.elapsed() > Duration::from_secs(120) {
            return Err(ChangelogError::Topic {
                topic: place.to_string(),
                why: "the newest snapshot is not followed by the commits it overlaps (its publisher stopped); restore again once it publishes, or replay the inputs".into(),
            });
        } else {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    if !r.consistent() {
        return Err(target(r.done.gap.clone().unwrap_or_default()));
    }
    let done = r.done.clone();
    drop(store);
    std::fs::rename(&work, dir).map_err(|source| ChangelogError::Io { path: dir.display().to_string(), source })?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::changelog::publish::snapshot_frames;
    use crate::changelog::{delta_frames, Frame};
    use crate::store::tests::opts;
    use crate::store::wal::tests::dump;
    use crate::store::Cf;

    /// A store with some history, its frames as a publisher would send
    /// them (a snapshot after the first commits, then deltas), and how
    /// the source store ended.
    fn published(dir: &Path) -> (Vec<Frame>, Store) {
        let a = Store::open_keeping_wal(&dir.join("a"), opts(), 64).unwrap();
        let write = |i: u8| {
            let mut b = a.batch();
            b.put_raw(Cf::Beneficiaries, &[b'B', i % 3], &[i; 40]);
            b.put_raw(Cf::Outbox, &[i], b"msg");
            if i > 0 {
                b.delete(Cf::Outbox, &[i - 1]);
            }
            a.commit(b).unwrap();
        };
        for i in 0..3 {
            write(i);
        }
        let mut frames = Vec::new();
        let (snap, from) = snapshot_frames(&a, 9, None, None, 60).unwrap();
        frames.extend(snap);
        for i in 3..8 {
            write(i);
        }
        for c in a.commits_after(from - 1).unwrap() {
            frames.extend(delta_frames(9, &c.unwrap(), Some(0), 60));
        }
        (frames, a)
    }

    #[test]
    fn a_snapshot_and_the_deltas_after_it_rebuild_the_store_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let (frames, a) = published(dir.path());
        assert!(frames.iter().filter(|f| matches!(f.kind, Kind::Snapshot { .. })).count() > 1, "cut into frames");
        let b = Store::open(&dir.path().join("b"), opts()).unwrap();
        let mut r = Restorer::new(&b, 9, 0);
        // Another origin's frames in between change nothing.
        let mut stranger = frames[3].clone();
        stranger.origin = 1;
        stranger.ops[0].value = Some(b"not mine".to_vec());
        for (i, f) in frames.iter().enumerate() {
            r.offer(i as i64, f).unwrap();
            if i == 3 {
                r.offer(100, &stranger).unwrap();
            }
        }
        assert!(r.consistent());
        assert_eq!(r.done.commits, 5);
        assert_eq!(dump(&b), dump(&a));
    }

    #[test]
    fn a_commit_published_in_part_is_applied_only_when_sent_again_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (frames, a) = published(dir.path());
        let b = Store::open(&dir.path().join("b"), opts()).unwrap();
        let mut r = Restorer::new(&b, 9, 0);
        // The last commit: its first frame, a crash, then all of it again.
        let last_commit: Vec<&Frame> =
            frames.iter().filter(|f| f.kind == frames.last().unwrap().kind).collect();
        assert!(last_commit.len() > 1, "the last commit spans frames");
        let head = frames.len() - last_commit.len();
        for (i, f) in frames[..head].iter().enumerate() {
            r.offer(i as i64, f).unwrap();
        }
        let before = dump(&b);
        r.offer(50, last_commit[0]).unwrap();
        assert_eq!(dump(&b), before, "not applied in part");
        assert_ne!(before, dump(&a));
        // Published again from its first frame (and the earlier commits too).
        for (i, f) in frames[head - 2..].iter().enumerate() {
            r.offer(60 + i as i64, f).unwrap();
        }
        assert_eq!(dump(&b), dump(&a));
        assert_eq!(r.done.commits, 5, "nothing applied twice");
    }

    #[test]
    fn a_snapshot_overlapping_the_deltas_after_it_restores_once_they_pass_it() {
        // A periodic snapshot: the deltas go on from before its instant,
        // so the first ones after it are already in it.
        let dir = tempfile::tempdir().unwrap();
        let a = Store::open_keeping_wal(&dir.path().join("a"), opts(), 64).unwrap();
        let start = a.latest_seq();
        for i in 0..6u8 {
            let mut b = a.batch();
            b.put_raw(Cf::Cases, &[i % 2], &[i; 8]);
            if i % 3 == 2 {
                b.delete(Cf::Cases, &[0]);
            }
            a.commit(b).unwrap();
        }
        let commits: Vec<_> = a.commits_after(start).unwrap().map(Result::unwrap).collect();
        let (mut frames, from) = snapshot_frames(&a, 9, None, Some(commits[2].seq), 1000).unwrap();
        assert_eq!(from, commits[2].seq);
        for c in &commits[2..] {
            frames.extend(delta_frames(9, c, Some(0), 1000));
        }
        let b = Store::open(&dir.path().join("b"), opts()).unwrap();
        let mut r = Restorer::new(&b, 9, 0);
        let snapshot_len = frames.iter().filter(|f| matches!(f.kind, Kind::Snapshot { .. })).count();
        for (i, f) in frames.iter().enumerate() {
            r.offer(i as i64, f).unwrap();
            if i + 1 == snapshot_len + 1 {
                assert!(!r.consistent(), "a delta older than the snapshot leaves the state mixed");
            }
        }
        assert!(r.consistent());
        assert_eq!(dump(&b), dump(&a));
    }

    /// Values larger than a frame, in the snapshot and in a delta, travel
    /// in pieces and are written whole.
    #[test]
    fn values_larger_than_a_frame_are_restored_whole() {
        let dir = tempfile::tempdir().unwrap();
        let a = Store::open_keeping_wal(&dir.path().join("a"), opts(), 64).unwrap();
        let big = |i: u8| -> Vec<u8> { (0..700u32).map(|j| (j as u8).wrapping_mul(i)).collect() };
        let mut b = a.batch();
        b.put_raw(Cf::Accounts, b"A1", &big(1));
        b.put_raw(Cf::Accounts, b"A2", &big(2));
        a.commit(b).unwrap();
        let (mut frames, from) = snapshot_frames(&a, 9, None, None, 200).unwrap();
        let mut b = a.batch();
        b.put_raw(Cf::Cases, b"c", b"x");
        b.put_raw(Cf::Accounts, b"A1", &big(3));
        a.commit(b).unwrap();
        for c in a.commits_after(from - 1).unwrap() {
            frames.extend(delta_frames(9, &c.unwrap(), Some(0), 200));
        }
        let cut = |kind: fn(&Kind) -> bool| frames.iter().filter(|f| kind(&f.kind)).any(|f| f.ops.iter().any(|o| o.more));
        assert!(cut(|k| matches!(k, Kind::Snapshot { .. })) && cut(|k| matches!(k, Kind::Delta { .. })), "values were cut in both");
        let b = Store::open(&dir.path().join("b"), opts()).unwrap();
        let mut r = Restorer::new(&b, 9, 0);
        for (i, f) in frames.iter().enumerate() {
            r.offer(i as i64, &Frame::decode(&f.encode()).unwrap()).unwrap();
        }
        assert!(r.consistent());
        assert_eq!(dump(&b), dump(&a));
        // A delta whose last frame ends inside a value is refused, not written.
        let delta: Vec<&Frame> = frames.iter().filter(|f| matches!(f.kind, Kind::Delta { .. })).collect();
        let c = Store::open(&dir.path().join("c"), opts()).unwrap();
        let mut r = Restorer::new(&c, 9, 0);
        for (i, f) in frames.iter().filter(|f| matches!(f.kind, Kind::Snapshot { .. })).enumerate() {
            r.offer(i as i64, f).unwrap();
        }
        let mut truncated: Vec<Frame> = delta.iter().map(|f| (*f).clone()).collect();
        let n = truncated.len();
        let last = truncated.iter().rposition(|f| f.ops.iter().any(|o| o.more)).unwrap();
        truncated.truncate(last + 1);
        truncated[last].last = true;
        let mut refused = None;
        for (i, f) in truncated.iter().enumerate() {
            if let Err(e) = r.offer(100 + i as i64, f) {
                refused = Some(e.to_string());
            }
        }
        assert!(n > last + 1);
        assert!(refused.as_deref().is_some_and(|e| e.contains("ends inside a value")), "{refused:?}");
    }

    #[test]
    fn a_gap_ends_the_restore_at_the_last_whole_commit() {
        let dir = tempfile::tempdir().unwrap();
        let (frames, _) = published(dir.path());
        let b = Store::open(&dir.path().join("b"), opts()).unwrap();
        let mut r = Restorer::new(&b, 9, 0);
        let seqs: Vec<u64> = frames.iter().filter_map(|f| match f.kind { Kind::Delta { seq, .. } => Some(seq), _ => None }).collect();
        let dropped = seqs[seqs.len() / 2];
        for (i, f) in frames.iter().enumerate() {
            if !matches!(f.kind, Kind::Delta { seq, .. } if seq == dropped) {
                r.offer(i as i64, f).unwrap();
            }
        }
        assert!(r.done.gap.as_deref().unwrap().contains("not in the topic"), "{:?}", r.done.gap);
        assert!(r.done.commits < 5);
        // A snapshot's first frame must be where the restore starts.
        let mut r = Restorer::new(&b, 9, 0);
        assert!(r.offer(0, frames.last().unwrap()).unwrap_err().to_string().contains("does not start here"));
    }
}
