//! A standby's warm copy (`changelog::follow`) against a real broker, with
//! the frames of two publishing lines written by hand: the copy follows
//! the line whose frames are last, starts over once per change of line,
//! never on frames it reads again, and once finished is the last line's
//! state entry for entry.

use super::common::dump_state;
use super::common::kafka::Broker;
use paywatch::changelog::follow::Follower;
use paywatch::changelog::publish::each_snapshot_frame;
use paywatch::changelog::{delta_frames, Frame, Kind};
use paywatch::config::KafkaConfig;
use paywatch::store::{Cf, Store, StoreOptions};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use std::path::Path;
use std::time::{Duration, Instant};

fn opts() -> StoreOptions {
    StoreOptions { block_cache_mb: 8, write_buffer_mb: 4, sync: false, statistics: false }
}

/// A publishing state directory: its store, origin, and where its frames
/// stand (the next sequence number to send, its snapshot's offset).
struct Line {
    store: Store,
    origin: u64,
    sent: u64,
    snapshot_at: Option<i64>,
}

impl Line {
    fn new(dir: &Path, origin: u64) -> Line {
        Line { store: Store::open_keeping_wal(dir, opts(), 64).unwrap(), origin, sent: 0, snapshot_at: None }
    }

    /// One commit: a few beneficiaries' values and an outbox entry.
    fn commit(&self, i: u8) {
        let mut b = self.store.batch();
        b.put_raw(Cf::Beneficiaries, &[b'B', i % 5], &[i ^ self.origin as u8; 40]);
        b.put_raw(Cf::Outbox, &[i], b"msg");
        self.store.commit(b).unwrap();
    }

    /// Its snapshot, then the mark naming it, published at `at` on.
    fn snapshot(&mut self, p: &Publisher) {
        let mut frames = Vec::new();
        let from = each_snapshot_frame(&self.store, self.origin, None, 200, &mut |f| {
            frames.push(f);
            true
        })
        .unwrap()
        .expect("not stopped");
        let at = p.send(&frames);
        self.sent = from;
        self.snapshot_at = Some(at);
        p.send(&[Frame { origin: self.origin, kind: Kind::Mark { from }, part: 0, last: true, snapshot_at: self.snapshot_at, ops: vec![] }]);
    }

    /// The commits not sent yet, as deltas.
    fn deltas(&mut self, p: &Publisher) {
        for c in self.store.commits_after(self.sent - 1).unwrap() {
            let c = c.unwrap();
            let frames = delta_frames(self.origin, &c, self.snapshot_at, 200);
            if let Some(Kind::Delta { next, .. }) = frames.last().map(|f| f.kind) {
                self.sent = next;
            }
            p.send(&frames);
        }
    }
}

struct Publisher {
    producer: BaseProducer,
    topic: String,
    next: std::cell::Cell<i64>,
}

impl Publisher {
    /// Sends `frames` in order; the offset of the first.
    fn send(&self, frames: &[Frame]) -> i64 {
        let first = self.next.get();
        for f in frames {
            let bytes = f.encode();
            self.producer.send(BaseRecord::<(), [u8]>::to(&self.topic).partition(0).payload(&bytes)).unwrap();
            self.producer.flush(Duration::from_secs(30)).unwrap();
            self.next.set(self.next.get() + 1);
        }
        first
    }
}

/// Steps the follower until its copy is consistent, of `origin`, read to
/// the topic's end; panics with where it stands otherwise.
fn settle(f: &mut Follower, origin: u64, end: i64) {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        f.step(Duration::from_millis(200)).unwrap();
        let s = f.following();
        if s.consistent && s.origin == Some(origin) && s.offset >= end {
            return;
        }
        assert!(Instant::now() < until, "the copy did not settle on line {origin} at {end}: {s:?}");
    }
}

#[test]
fn a_standbys_copy_follows_the_last_line_and_never_flaps_on_what_it_reads_again() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let broker = Broker::start(root);
    broker.create_topics(&["paywatch.fl.changelog:1"]);
    let kafka = KafkaConfig { brokers: broker.addr.clone(), group_id: "fl".into(), ..KafkaConfig::default() };
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", &broker.addr).create().unwrap();
    let p = Publisher { producer, topic: kafka.changelog_topic(), next: std::cell::Cell::new(0) };

    // Line X: three commits, its snapshot, two more commits.
    let mut x = Line::new(&root.join("x"), 11);
    for i in 0..3 {
        x.commit(i);
    }
    x.snapshot(&p);
    x.commit(3);
    x.commit(4);
    x.deltas(&p);
    let copy = root.join("copy");
    let mut f = Follower::new(&kafka, &copy, opts()).unwrap();
    settle(&mut f, 11, p.next.get());
    assert_eq!((f.following().restarts, f.following().commits), (0, 2), "{:?}", f.following());

    // Line Y (another instance elected): its snapshot and a commit. The
    // copy starts over on it.
    let mut y = Line::new(&root.join("y"), 22);
    for i in 10..14 {
        y.commit(i);
    }
    y.snapshot(&p);
    y.commit(14);
    y.deltas(&p);
    settle(&mut f, 22, p.next.get());
    assert_eq!(f.following().restarts, 1);

    // X publishes once more (a fenced instance's stray commit): the copy
    // follows it, as a restore made now would; then Y publishes again and
    // the copy is back on Y. Re-reading the frames between Y's snapshot
    // and the end, X's among them, starts nothing over.
    x.commit(5);
    x.deltas(&p);
    settle(&mut f, 11, p.next.get());
    assert_eq!(f.following().restarts, 2);
    y.commit(15);
    y.deltas(&p);
    settle(&mut f, 22, p.next.get());
    for _ in 0..5 {
        f.step(Duration::from_millis(200)).unwrap();
    }
    assert_eq!(f.following().restarts, 3, "one start per change of line, none on history: {:?}", f.following());

    // Finished, the copy is Y's state entry for entry and no longer marked.
    let done = f.finish(Duration::from_secs(30)).unwrap().expect("a consistent copy");
    assert_eq!(done.origin, 22);
    assert!(!paywatch::changelog::follow::is_copy(&copy));
    drop(y.store);
    assert_eq!(dump_state(&copy), dump_state(&root.join("y")));
}
