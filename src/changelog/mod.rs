//! The changelog: every commit of a state directory, published to one
//! Kafka partition, so that `paywatch restore` rebuilds the state on
//! another machine without evaluating a rule again (`docs/changelog.md`).
//!
//! RocksDB's write-ahead log already holds each atomic commit whole
//! (`store::wal`). The publisher (`publish.rs`) reads it after the commit
//! and sends each commit as one *delta*: its changes cut into frames under
//! the broker's message size, the last one marked. A restore
//! (`restore.rs`) applies a delta only once its last frame is read, so a
//! commit published in part (a crash, a broker outage) is never applied in
//! part. No Kafka transactions are needed, which the brokers the tests
//! start do not offer.
//!
//! A *snapshot* (the whole state at one instant, framed the same way)
//! starts the topic, follows a gap the log cannot fill (the publisher was
//! down longer than `wal_keep_mb` covers), and is repeated every
//! `snapshot_every_mb` of deltas. Every frame after a complete snapshot
//! names that snapshot's offset, so a restore reads the last frame and
//! starts there; the topic's retention may delete everything older.
//!
//! Where a state directory publishes is its `Place`: a topic and one
//! partition of it. The service's one state directory uses partition 0;
//! each task of a partitioned group (#16) gets a partition of its own, so
//! its changelog moves with it and is restored alone.
//!
//! Frames carry their publisher's `origin`, a random number kept in a file
//! beside the state (not in it, so a restored copy gets its own): two
//! state directories publishing to one topic (one restored from the
//! other, or two instances by mistake) never mix.

pub mod follow;
pub mod publish;
pub mod restore;

use crate::config::KafkaConfig;
use crate::store::wal::Op;
use crate::store::Cf;
use serde::{Deserialize, Serialize};

/// Where one state directory's changelog is published and read.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Place {
    /// The changelog topic (`KafkaConfig::changelog_topic`).
    pub topic: String,
    /// The partition of it that holds this state directory's frames: one
    /// per task, so that a task moves to another instance with its own.
    pub partition: i32,
}

impl Place {
    /// The service's changelog: partition 0 of the configured topic.
    pub fn of(kafka: &KafkaConfig) -> Place {
        Place::at(kafka, 0)
    }

    /// Partition `partition` of the configured topic.
    pub fn at(kafka: &KafkaConfig, partition: i32) -> Place {
        Place { topic: kafka.changelog_topic(), partition }
    }
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} partition {}", self.topic, self.partition)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChangelogError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("changelog topic {topic}: {why}")]
    Topic { topic: String, why: String },
    #[error("changelog topic {topic} holds no complete snapshot: nothing to restore from")]
    NoSnapshot { topic: String },
    #[error("changelog frame at offset {offset}: {why}")]
    Frame { offset: i64, why: String },
    #[error("state directory {dir}: {why}")]
    Target { dir: String, why: String },
    #[error("cannot read or write {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("restore from {place} stopped before it was whole (the task left this instance); the next owner restores it")]
    Stopped { place: String },
}

/// Starts every frame's value, so a foreign record on the topic is named,
/// not misread. Version 2 added `WireOp::more`.
const MAGIC: &[u8; 5] = b"PWCL2";
/// Version 1 frames (before `more`) are still read: a topic written
/// before an upgrade restores after it.
const MAGIC_V1: &[u8; 5] = b"PWCL1";

/// One Kafka record of the changelog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    /// The publishing state directory (see the module doc).
    pub origin: u64,
    pub kind: Kind,
    /// This frame's place in its delta or snapshot, from 0.
    pub part: u32,
    /// The last frame of its delta or snapshot: only then is it complete.
    pub last: bool,
    /// The Kafka offset of the first frame of the newest complete snapshot
    /// this origin published before this frame: where a restore starts.
    pub snapshot_at: Option<i64>,
    pub ops: Vec<WireOp>,
}

/// What a frame belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// One commit: its first sequence number, and the first of the commit
    /// after it (sequence numbers are the publisher's database's own).
    Delta { seq: u64, next: u64 },
    /// The whole state at one instant. The deltas after it start at
    /// `from` (some of them may already be in it: applied again, they
    /// change nothing), and the state is whole once those through
    /// `through` are applied.
    Snapshot { from: u64, through: u64 },
    /// Sent once a snapshot is acknowledged, to name its offset
    /// (`snapshot_at`) before the next commit does; `from` as in its
    /// snapshot.
    Mark { from: u64 },
}

/// A change as it travels: the column family by name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireOp {
    pub cf: String,
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
    /// The value goes on in the next change, which names the same key: a
    /// value larger than a frame travels in pieces, each in a frame of its
    /// own, since the broker refuses a record over its message size.
    pub more: bool,
}

/// A version 1 change (no `more`).
#[derive(Deserialize)]
struct WireOpV1 {
    cf: String,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
}

/// A version 1 frame.
#[derive(Deserialize)]
struct FrameV1 {
    origin: u64,
    kind: Kind,
    part: u32,
    last: bool,
    snapshot_at: Option<i64>,
    ops: Vec<WireOpV1>,
}

impl WireOp {
    pub(crate) fn of(cf: Cf, key: &[u8], value: Option<&[u8]>) -> WireOp {
        WireOp { cf: cf.name().to_owned(), key: key.to_vec(), value: value.map(<[u8]>::to_vec), more: false }
    }

    /// Bytes it takes in a frame, roughly (for cutting frames).
    pub(crate) fn size(&self) -> usize {
        self.cf.len() + self.key.len() + self.value.as_ref().map_or(0, Vec::len) + 8
    }

    /// A change too large for a frame, cut so that each piece fits in
    /// `max_bytes`: its value in pieces, each but the last with `more`.
    fn pieces(self, max_bytes: usize) -> Vec<WireOp> {
        let room = max_bytes.saturating_sub(self.cf.len() + self.key.len() + 8).max(1);
        let value = self.value.unwrap_or_default();
        let n = value.len().div_ceil(room);
        value
            .chunks(room)
            .enumerate()
            .map(|(i, piece)| WireOp { cf: self.cf.clone(), key: self.key.clone(), value: Some(piece.to_vec()), more: i + 1 < n })
            .collect()
    }

    /// Back to a change of a column family this paywatch has.
    pub fn to_op(&self) -> Result<Op, String> {
        let cf = Cf::ALL
            .iter()
            .copied()
            .find(|c| c.name() == self.cf)
            .ok_or_else(|| format!("names the column family {:?}, which this paywatch does not have (a newer version's changelog?)", self.cf))?;
        Ok(Op { cf, key: self.key.clone(), value: self.value.clone() })
    }
}

impl Frame {
    pub fn encode(&self) -> Vec<u8> {
        let out = MAGIC.to_vec();
        postcard::to_extend(self, out).expect("a frame always encodes")
    }

    pub fn decode(bytes: &[u8]) -> Result<Frame, String> {
        let broken = |e: postcard::Error| format!("cannot be decoded: {e}");
        if let Some(body) = bytes.strip_prefix(MAGIC.as_slice()) {
            return postcard::from_bytes(body).map_err(broken);
        }
        let body = bytes.strip_prefix(MAGIC_V1.as_slice()).ok_or("is not a paywatch changelog frame")?;
        let f: FrameV1 = postcard::from_bytes(body).map_err(broken)?;
        Ok(Frame {
            origin: f.origin,
            kind: f.kind,
            part: f.part,
            last: f.last,
            snapshot_at: f.snapshot_at,
            ops: f.ops.into_iter().map(|o| WireOp { cf: o.cf, key: o.key, value: o.value, more: false }).collect(),
        })
    }
}

/// Changes as they were read, back to whole changes: pieces of one value
/// joined. Returns the whole ones, and the pieces of a value that goes on
/// past the last one (for the next frame).
pub fn join(ops: Vec<WireOp>) -> Result<(Vec<Op>, Vec<WireOp>), String> {
    let mut whole = Vec::with_capacity(ops.len());
    let mut open: Vec<WireOp> = Vec::new();
    for mut op in ops {
        if let Some(first) = open.first() {
            if first.cf != op.cf || first.key != op.key || op.value.is_none() {
                return Err(format!("a value of {:?} cut into pieces does not go on in the next change", first.cf));
            }
        }
        if op.more {
            open.push(op);
            continue;
        }
        if open.is_empty() {
            whole.push(op.to_op()?);
            continue;
        }
        let mut value = Vec::new();
        for piece in open.drain(..) {
            value.extend(piece.value.unwrap_or_default());
        }
        value.extend(op.value.take().unwrap_or_default());
        whole.push(WireOp { value: Some(value), ..op }.to_op()?);
    }
    Ok((whole, open))
}

/// Cuts changes into frames of at most `max_bytes` of changes each (a
/// change larger than that is cut into pieces, `WireOp::more`).
pub struct Framer {
    origin: u64,
    kind: Kind,
    snapshot_at: Option<i64>,
    max_bytes: usize,
    part: u32,
    ops: Vec<WireOp>,
    bytes: usize,
}

impl Framer {
    pub fn new(origin: u64, kind: Kind, snapshot_at: Option<i64>, max_bytes: usize) -> Framer {
        Framer { origin, kind, snapshot_at, max_bytes, part: 0, ops: Vec::new(), bytes: 0 }
    }

    /// Adds one change; returns the frames it filled (none, mostly; more
    /// than one when a large value was cut into pieces).
    pub fn push(&mut self, op: WireOp) -> Vec<Frame> {
        let mut full = Vec::new();
        // Only a value is cut: a deletion, or a key alone too large, goes
        // whole in a frame of its own.
        if op.size() > self.max_bytes && op.value.as_ref().is_some_and(|v| !v.is_empty()) {
            for piece in op.pieces(self.max_bytes) {
                full.extend(self.add(piece));
            }
        } else {
            full.extend(self.add(op));
        }
        full
    }

    /// Adds a change that fits in a frame; returns the full frame when it
    /// did not fit in this one.
    fn add(&mut self, op: WireOp) -> Option<Frame> {
        let size = op.size();
        let full = (!self.ops.is_empty() && self.bytes + size > self.max_bytes).then(|| self.take(false));
        self.bytes += size;
        self.ops.push(op);
        full
    }

    /// The last frame (possibly with no changes: an empty snapshot).
    pub fn finish(mut self) -> Frame {
        self.take(true)
    }

    fn take(&mut self, last: bool) -> Frame {
        let f = Frame {
            origin: self.origin,
            kind: self.kind,
            part: self.part,
            last,
            snapshot_at: self.snapshot_at,
            ops: std::mem::take(&mut self.ops),
        };
        self.part += 1;
        self.bytes = 0;
        f
    }
}

/// The frames of one commit.
pub fn delta_frames(origin: u64, commit: &crate::store::wal::Commit, snapshot_at: Option<i64>, max_bytes: usize) -> Vec<Frame> {
    let next = commit.seq + commit.ops.len() as u64;
    let mut framer = Framer::new(origin, Kind::Delta { seq: commit.seq, next }, snapshot_at, max_bytes);
    let mut frames = Vec::new();
    for op in &commit.ops {
        frames.extend(framer.push(WireOp::of(op.cf, &op.key, op.value.as_deref())));
    }
    frames.push(framer.finish());
    frames
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::wal::Commit;

    #[test]
    fn frames_round_trip_and_foreign_records_are_named() {
        let f = Frame {
            origin: 7,
            kind: Kind::Delta { seq: 10, next: 12 },
            part: 0,
            last: true,
            snapshot_at: Some(3),
            ops: vec![WireOp::of(Cf::Outbox, b"k", None), WireOp::of(Cf::Months, b"m", Some(b"v"))],
        };
        assert_eq!(Frame::decode(&f.encode()).unwrap(), f);
        assert!(Frame::decode(b"{\"alert_id\":1}").unwrap_err().contains("not a paywatch changelog frame"));
        let mut cut = f.encode();
        cut.truncate(cut.len() - 2);
        assert!(Frame::decode(&cut).unwrap_err().contains("cannot be decoded"));
        let foreign = WireOp { cf: "later".into(), key: vec![], value: None, more: false };
        assert!(foreign.to_op().unwrap_err().contains("\"later\""));
    }

    #[test]
    fn a_commit_is_cut_under_the_size_and_only_its_last_frame_is_marked() {
        let ops: Vec<Op> =
            (0..10u8).map(|i| Op { cf: Cf::Beneficiaries, key: vec![i], value: Some(vec![i; 30]) }).collect();
        let commit = Commit { seq: 100, ops };
        let frames = delta_frames(1, &commit, None, 110);
        assert_eq!(frames.len(), 5, "two changes of 52 bytes fit in 110");
        assert!(frames.iter().enumerate().all(|(i, f)| f.part == i as u32 && f.last == (i == 4)));
        assert!(frames.iter().all(|f| f.kind == Kind::Delta { seq: 100, next: 110 }));
        let back: Vec<Op> = frames.iter().flat_map(|f| f.ops.iter().map(|o| o.to_op().unwrap())).collect();
        assert_eq!(back, commit.ops);
        // An empty commit is one frame.
        assert_eq!(delta_frames(1, &Commit { seq: 5, ops: vec![] }, None, 100).len(), 1);
        // A deletion is never cut or lost, whatever the size of its key.
        let del = Commit { seq: 6, ops: vec![Op { cf: Cf::Outbox, key: vec![1; 200], value: None }] };
        let frames = delta_frames(1, &del, None, 100);
        assert_eq!(frames.iter().flat_map(|f| f.ops.iter().map(|o| o.to_op().unwrap())).collect::<Vec<_>>(), del.ops);
    }

    /// A value larger than a frame (the broker refuses a record over its
    /// message size) is cut into pieces, one frame each, and joined back.
    #[test]
    fn a_value_larger_than_a_frame_travels_in_pieces() {
        let value: Vec<u8> = (0..500u32).map(|i| (i % 251) as u8).collect();
        let ops = vec![
            Op { cf: Cf::Outbox, key: vec![0], value: Some(vec![7; 10]) },
            Op { cf: Cf::Alerts, key: vec![1], value: Some(value.clone()) },
            Op { cf: Cf::Outbox, key: vec![2], value: None },
        ];
        let commit = Commit { seq: 5, ops: ops.clone() };
        let frames = delta_frames(1, &commit, None, 100);
        assert!(frames.iter().all(|f| f.ops.iter().map(WireOp::size).sum::<usize>() <= 100), "every frame fits");
        // "alerts" + key + 8 leaves 85 bytes a piece: 6 pieces.
        let pieces: Vec<&WireOp> = frames.iter().flat_map(|f| &f.ops).filter(|o| o.cf == "alerts").collect();
        assert_eq!(pieces.len(), 6);
        assert!(pieces.iter().enumerate().all(|(i, p)| p.more == (i < 5)));
        let wire: Vec<WireOp> = frames.iter().flat_map(|f| Frame::decode(&f.encode()).unwrap().ops).collect();
        let (back, open) = join(wire.clone()).unwrap();
        assert_eq!(back, ops);
        assert!(open.is_empty());
        // Read up to the middle of the value: its pieces are held, not written.
        let (head, open) = join(wire[..4].to_vec()).unwrap();
        assert_eq!(head, ops[..1]);
        assert_eq!(open.len(), 3);
        // A piece not followed by the rest of its value is refused.
        let mut broken = wire.clone();
        broken.remove(3);
        broken[2].key = vec![9];
        assert!(join(broken).unwrap_err().contains("does not go on"));
    }

    /// Frames of version 1 (before values in pieces) are still read.
    #[test]
    fn version_1_frames_are_still_read() {
        #[derive(Serialize)]
        struct V1Op<'a> {
            cf: &'a str,
            key: Vec<u8>,
            value: Option<Vec<u8>>,
        }
        #[derive(Serialize)]
        struct V1<'a> {
            origin: u64,
            kind: Kind,
            part: u32,
            last: bool,
            snapshot_at: Option<i64>,
            ops: Vec<V1Op<'a>>,
        }
        let v1 = V1 {
            origin: 3,
            kind: Kind::Delta { seq: 1, next: 2 },
            part: 0,
            last: true,
            snapshot_at: None,
            ops: vec![V1Op { cf: "months", key: b"k".to_vec(), value: Some(b"v".to_vec()) }],
        };
        let bytes = postcard::to_extend(&v1, MAGIC_V1.to_vec()).unwrap();
        let f = Frame::decode(&bytes).unwrap();
        assert_eq!(f.ops, vec![WireOp::of(Cf::Months, b"k", Some(b"v"))]);
        assert_eq!((f.origin, f.kind, f.last), (3, Kind::Delta { seq: 1, next: 2 }, true));
    }
}
