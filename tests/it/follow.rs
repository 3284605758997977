//! A standby's warm copy (`changelog::follow`) against a real broker, with
//! the frames of two publishing lines written by hand: the copy follows
//! the line whose frames are last, starts over once per change of line,
//! never on frames it reads again, and once finished is the last line's
//! state entry for entry. Frames published in one batch are read to the
//! last, though tansu's watermark stops after the first of them.

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
    /// Sent together and flushed by the caller (one producer batch), or
    /// flushed after each frame.
    burst: bool,
}

impl Publisher {
    /// Sends `frames` in order; the offset of the first.
    fn send(&self, frames: &[Frame]) -> i64 {
        let first = self.next.get();
        for f in frames {
            let bytes = f.encode();
            self.producer.send(BaseRecord::<(), [u8]>::to(&self.topic).partition(0).payload(&bytes)).unwrap();
            if !self.burst {
                self.producer.flush(Duration::from_secs(30)).unwrap();
            }
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
    let p = Publisher { producer, topic: kafka.changelog_topic(), next: std::cell::Cell::new(0), burst: false };

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

/// A line's commits sent in one producer batch: the restore, a follower's
/// copy and `last_origin` reach its last commit. tansu's high watermark
/// stops after the first frame of such a batch and it answers a fetch past
/// that watermark with nothing: trusting it restored only the snapshot
/// and the first commit of ten (seen 2026-12-03).
#[test]
fn frames_published_in_one_batch_are_restored_and_followed_to_the_last() {
    use paywatch::changelog::restore::{last_origin, restore};
    use paywatch::changelog::Place;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let broker = Broker::start(root);
    broker.create_topics(&["paywatch.burst.changelog:1"]);
    let kafka = KafkaConfig { brokers: broker.addr.clone(), group_id: "burst".into(), ..KafkaConfig::default() };
    let producer: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", &broker.addr).set("linger.ms", "200").create().unwrap();
    let p = Publisher { producer, topic: kafka.changelog_topic(), next: std::cell::Cell::new(0), burst: true };
    let mut x = Line::new(&root.join("x"), 33);
    x.commit(0);
    x.snapshot(&p);
    for i in 1..11 {
        x.commit(i);
    }
    x.deltas(&p);
    p.producer.flush(Duration::from_secs(30)).unwrap();
    let end = p.next.get();

    // The case this test is for: the watermark is inside the last batch.
    let probe: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &broker.addr).set("group.id", "probe").create().unwrap();
    let (_, watermark) = probe.fetch_watermarks(&p.topic, 0, Duration::from_secs(30)).unwrap();
    assert!(watermark < end, "the broker's watermark {watermark} is below the end {end}: the batch case");

    assert_eq!(last_origin(&kafka, &Place::of(&kafka)).unwrap(), Some(33));
    let restored = restore(&kafka, &Place::of(&kafka), &root.join("restored"), opts()).unwrap();
    assert_eq!(restored.commits, 10, "{restored:?}");
    let mut f = Follower::new(&kafka, &root.join("copy"), opts()).unwrap();
    settle(&mut f, 33, end);
    assert_eq!(f.following().end, end, "the end asked is the real one: {:?}", f.following());
    let done = f.finish(Duration::from_secs(30)).unwrap().expect("a consistent copy");
    assert_eq!(done.commits, 10);
    drop(x.store);
    let want = dump_state(&root.join("x"));
    assert!(dump_state(&root.join("restored")) == want, "the restore is the line's state");
    assert!(dump_state(&root.join("copy")) == want, "the copy is the line's state");
}

/// Two state directories (two tasks) publish to partitions 0 and 1 of one
/// changelog topic, in bursts, at once: each partition restores and is
/// followed to its own directory's state, never the other's. A third
/// place past the topic's partitions is refused, not published elsewhere.
#[test]
fn each_task_publishes_to_a_partition_of_its_own_and_is_restored_alone() {
    use paywatch::changelog::publish::{published_origin, ChangelogPublisher};
    use paywatch::changelog::restore::{last_origin, restore};
    use paywatch::changelog::Place;
    use paywatch::metrics::Metrics;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let broker = Broker::start(root);
    broker.create_topics(&["paywatch.places.changelog:2"]);
    let kafka = KafkaConfig { brokers: broker.addr.clone(), group_id: "places".into(), ..KafkaConfig::default() };
    let commit = |store: &Store, task: u8, i: u8| {
        let mut b = store.batch();
        b.put_raw(Cf::Beneficiaries, &[b'B', task, i % 7], &[i ^ task; 40]);
        b.put_raw(Cf::Outbox, &[task, i], b"msg");
        if i > 0 {
            b.delete(Cf::Outbox, &[task, i - 1]);
        }
        store.commit(b).unwrap();
    };
    let start = |task: u8, metrics: &Arc<Metrics>, stop: &Arc<AtomicBool>| {
        let store = Store::open_keeping_wal(&root.join(format!("task{task}")), opts(), 64).unwrap();
        commit(&store, task, 0);
        let p = ChangelogPublisher::new(&kafka, store.clone(), Arc::clone(metrics), Arc::clone(stop))
            .unwrap()
            .on(Place::at(&kafka, i32::from(task)));
        (store, std::thread::spawn(move || p.run()))
    };
    let metrics = Arc::new(Metrics::new());
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..2).map(|t| start(t, &metrics, &stop)).collect();
    for i in 1..60 {
        for (t, (store, _)) in tasks.iter().enumerate() {
            commit(store, t as u8, i);
        }
        if i % 20 == 0 {
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for (store, publisher) in tasks {
        publisher.join().unwrap();
        drop(store);
    }
    assert_eq!(metrics.changelog_errors.get(), 0);

    for task in 0..2u8 {
        let place = Place::at(&kafka, i32::from(task));
        let own = root.join(format!("task{task}"));
        assert_eq!(last_origin(&kafka, &place).unwrap(), published_origin(&own), "{place}");
        let restored = restore(&kafka, &place, &root.join(format!("restored{task}")), opts()).unwrap();
        assert_eq!(restored.gap, None);
        let want = dump_state(&own);
        assert!(dump_state(&root.join(format!("restored{task}"))) == want, "{place} restores task {task}'s state");
        let copy = root.join(format!("copy{task}"));
        let f = Follower::new(&kafka, &copy, opts()).unwrap().on(place.clone());
        f.finish(Duration::from_secs(30)).unwrap().expect("a consistent copy");
        assert!(dump_state(&copy) == want, "the copy of {place} is task {task}'s state");
    }

    // Partition 2 of a topic of two: the publisher fails and says so
    // (counted, logged, tried again), and publishes nowhere.
    let metrics = Arc::new(Metrics::new());
    let stop = Arc::new(AtomicBool::new(false));
    let (store, publisher) = start(2, &metrics, &stop);
    let until = Instant::now() + Duration::from_secs(30);
    while metrics.changelog_errors.get() == 0 {
        assert!(Instant::now() < until, "the publisher of a partition the topic lacks did not fail");
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    publisher.join().unwrap();
    drop(store);
    for task in 0..2u8 {
        assert_eq!(last_origin(&kafka, &Place::at(&kafka, i32::from(task))).unwrap(), published_origin(&root.join(format!("task{task}"))));
    }
}
