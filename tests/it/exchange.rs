//! The repartition records' transport (`paywatch::exchange`) on a real
//! broker: writing tasks stage decisions and marks with their state,
//! senders that crash between sending and deleting send records twice,
//! reading tasks that crash lose what they had not committed, and every
//! reading task still releases each fact once, in the single-process
//! order. A topic made with other partition counts is refused, named, and
//! a record missing from its stream stops its reader at that offset.

use super::common::kafka::Broker;
use paywatch::config::KafkaConfig;
use paywatch::engine::repartition::{Fact, Layout, Task, Topic, Upstream, Writer, WriterState};
use paywatch::exchange::inbox::Inbox;
use paywatch::exchange::outbox::{self, Outbox};
use paywatch::exchange::publish::{Sender, ROUND};
use paywatch::exchange::{ensure_topics, ExchangeError};
use paywatch::model::decision::{case_id, Decision, Outcome};
use paywatch::model::{Rule, SortKey, Timestamp};
use paywatch::store::{Cf, Store, StoreOptions};
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const LAYOUT: Layout = Layout { persons: 2, decisions: 2, accounts: 3, custodians: 1, households: 1 };
const WRITER: &[u8] = b"test-writer";
const APPLIED: &[u8] = b"test-applied";

fn opts() -> StoreOptions {
    StoreOptions { block_cache_mb: 8, write_buffer_mb: 4, sync: false, statistics: false }
}

fn at(i: u64) -> SortKey {
    SortKey { time: Timestamp(1_600_000_000_000 + i as i64 * 60_000), rank: 0, source: 0, line: i }
}

/// Decision `i`: on an account's case (read on `by-account`) or a
/// person's (`by-person`), spread over keys.
fn decision(i: u64) -> Decision {
    let (rule, subject) = if i % 2 == 0 {
        (Rule::SharedAccount, format!("6217{:015}", i % 37))
    } else {
        (Rule::PaidAfterDeath, format!("3418021938{:08}", i % 41))
    };
    Decision {
        decision_id: format!("d{i}"),
        case_id: case_id(rule, &subject),
        rule,
        subject,
        outcome: Outcome::InProgress,
        action: None,
        amount_recovered: None,
        document_no: None,
        clue_no: None,
        note: None,
        decided_by: "test".into(),
        decided_at: at(i).time,
    }
}

/// A writing task: its state directory holds its writer's numbers and its
/// outbox, committed together.
struct WritingTask {
    store: Store,
    outbox: Outbox,
    writer: Writer,
    sender: Sender,
}

impl WritingTask {
    fn open(dir: &Path, from: Upstream, kafka: &KafkaConfig, group: &str) -> WritingTask {
        let store = Store::open(dir, opts()).unwrap();
        let writer = match store.get::<WriterState>(Cf::Meta, WRITER).unwrap() {
            Some(s) => Writer::resume(from, LAYOUT, s).unwrap(),
            None => Writer::new(from, LAYOUT),
        };
        let outbox = Outbox::open(&store).unwrap();
        let sender = Sender::new(kafka, store.clone(), group).unwrap();
        WritingTask { store, outbox, writer, sender }
    }

    /// One commit: `facts`, then marks through `through`.
    fn commit(&mut self, facts: &[(u64, Fact)], through: SortKey) {
        let mut out = Vec::new();
        for (i, f) in facts {
            out.push(self.writer.fact(at(*i), f.clone()).unwrap());
        }
        out.extend(self.writer.marks(through).unwrap());
        let mut b = self.store.batch();
        self.outbox.stage(&mut b, &out).unwrap();
        b.put(Cf::Meta, WRITER, &self.writer.checkpoint()).unwrap();
        self.store.commit(b).unwrap();
    }
}

/// A reading task: the facts it applied are committed with its inbox's
/// checkpoint, as a task's state would be.
struct ReadingTask {
    dir: PathBuf,
    part: (Topic, u32),
    store: Option<Store>,
    inbox: Option<Inbox>,
    applied: Vec<String>,
}

impl ReadingTask {
    fn open(dir: PathBuf, part: (Topic, u32), kafka: &KafkaConfig, group: &str) -> ReadingTask {
        let store = Store::open(&dir, opts()).unwrap();
        let applied = store.get::<Vec<String>>(Cf::Meta, APPLIED).unwrap().unwrap_or_default();
        let inbox = Inbox::open(kafka, &store, group, LAYOUT, &[part]).unwrap();
        ReadingTask { dir, part, store: Some(store), inbox: Some(inbox), applied }
    }

    /// Reads and applies what is released; commits unless it `crash`es,
    /// which drops everything since the last commit. Returns the records
    /// skipped as sent twice.
    fn step(&mut self, crash: bool, kafka: &KafkaConfig, group: &str) -> u64 {
        let inbox = self.inbox.as_mut().unwrap();
        inbox.poll(Duration::from_millis(100)).unwrap();
        while let Some((_, _, _, fact)) = inbox.pop() {
            match fact {
                Fact::Decision(d) => self.applied.push(d.decision_id),
                other => panic!("only decisions were written, read {other:?}"),
            }
        }
        let repeats = inbox.repeats();
        if crash {
            self.inbox = None;
            self.store = None;
            *self = ReadingTask::open(self.dir.clone(), self.part, kafka, group);
        } else {
            let store = self.store.as_ref().unwrap();
            let mut b = store.batch();
            self.inbox.as_ref().unwrap().checkpoint(&mut b).unwrap();
            b.put(Cf::Meta, APPLIED, &self.applied).unwrap();
            store.commit(b).unwrap();
        }
        repeats
    }
}

#[test]
fn facts_cross_the_broker_once_each_in_order_through_crashes_of_senders_and_readers() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = Broker::start(tmp.path());
    let kafka = KafkaConfig { brokers: broker.addr.clone(), ..KafkaConfig::default() };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let group = "g";
    let created = rt.block_on(ensure_topics(&kafka, group, LAYOUT, 1)).unwrap();
    assert_eq!(created.len(), 4, "{created:?}");
    assert_eq!(rt.block_on(ensure_topics(&kafka, group, LAYOUT, 1)).unwrap(), Vec::<String>::new(), "the second start creates nothing");

    let upstreams: Vec<Upstream> = [(Task::Decisions, 2), (Task::Person, 2), (Task::Custodian, 1), (Task::Household, 1)]
        .iter()
        .flat_map(|&(task, n)| (0..n).map(move |partition| Upstream { task, partition }))
        .collect();
    let mut writers: Vec<WritingTask> =
        upstreams.iter().enumerate().map(|(i, u)| WritingTask::open(&tmp.path().join(format!("w{i}")), *u, &kafka, group)).collect();
    let parts: Vec<(Topic, u32)> = (0..3).map(|p| (Topic::ByAccount, p)).chain((0..2).map(|p| (Topic::ByPerson, p))).collect();
    let mut readers: Vec<ReadingTask> =
        parts.iter().enumerate().map(|(i, p)| ReadingTask::open(tmp.path().join(format!("r{i}")), *p, &kafka, group)).collect();

    // What each partition must release: its decisions in position order.
    const N: u64 = 600;
    let mut want: BTreeMap<(Topic, u32), Vec<String>> = BTreeMap::new();
    for i in 0..N {
        let d = decision(i);
        let topic = if d.rule == Rule::SharedAccount { Topic::ByAccount } else { Topic::ByPerson };
        let p = paywatch::partition::of(d.subject.as_bytes(), LAYOUT.partitions(topic));
        want.entry((topic, p)).or_default().push(d.decision_id);
    }

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(16);
    let (mut next, mut resent, mut reader_crashes, mut repeats) = (0u64, 0usize, 0usize, 0u64);
    while next < N {
        // Every writer commits once: the decisions tasks the next few
        // decisions (each to one of them), everyone marks through them.
        let upto = (next + rng.gen_range(1..25)).min(N);
        let mut by_task: [Vec<(u64, Fact)>; 2] = [Vec::new(), Vec::new()];
        for i in next..upto {
            by_task[rng.gen_range(0..2)].push((i, Fact::Decision(decision(i))));
        }
        next = upto;
        for (w, u) in writers.iter_mut().zip(&upstreams) {
            let facts = if u.task == Task::Decisions { std::mem::take(&mut by_task[u.partition as usize]) } else { Vec::new() };
            w.commit(&facts, at(upto - 1));
        }
        for w in &mut writers {
            if rng.gen_bool(0.3) {
                // Sent, then a crash before the outbox forgets them.
                let pending = outbox::pending(&w.store, ROUND).unwrap();
                let (acked, failed) = rt.block_on(w.sender.send(&pending));
                assert!(failed.is_none(), "{failed:?}");
                resent += acked.len();
            } else {
                rt.block_on(w.sender.round(ROUND)).unwrap();
            }
        }
        for r in &mut readers {
            let crash = rng.gen_bool(0.25);
            reader_crashes += usize::from(crash);
            repeats += r.step(crash, &kafka, group);
        }
    }
    // Everyone marks past the last decision; everything is sent.
    for w in &mut writers {
        w.commit(&[], at(N));
        rt.block_on(w.sender.drain()).unwrap();
        assert_eq!(outbox::depth(&w.store).unwrap(), 0);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for (r, part) in readers.iter_mut().zip(&parts) {
        let want = &want[part];
        while r.applied.len() < want.len() && Instant::now() < deadline {
            repeats += r.step(false, &kafka, group);
        }
        assert_eq!(&r.applied, want, "{part:?}: every decision routed here, once each, in position order");
        assert_eq!(r.inbox.as_ref().unwrap().held(), 0, "{part:?}");
    }
    assert!(resent > 100 && reader_crashes > 10 && repeats > 0, "the crashes happened: {resent} sent twice, {reader_crashes} reader crashes, {repeats} repeats skipped");
}

#[test]
fn a_topic_with_other_partition_counts_is_refused_and_a_lost_record_stops_its_reader() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = Broker::start(tmp.path());
    let kafka = KafkaConfig { brokers: broker.addr.clone(), ..KafkaConfig::default() };
    let rt = tokio::runtime::Runtime::new().unwrap();
    broker.create_topics(&["paywatch.other.by-account:2"]);
    let err = rt.block_on(ensure_topics(&kafka, "other", LAYOUT, 1)).unwrap_err().to_string();
    assert!(err.contains("paywatch.other.by-account has 2 partitions") && err.contains("needs 3"), "{err}");

    // A record whose predecessor in its stream never reached the broker.
    rt.block_on(ensure_topics(&kafka, "g", LAYOUT, 1)).unwrap();
    let from = Upstream { task: Task::Decisions, partition: 1 };
    let mut w = WritingTask::open(&tmp.path().join("w"), from, &kafka, "g");
    let topic = Topic::ByAccount;
    let p = paywatch::partition::of(decision(0).subject.as_bytes(), 3);
    let first = w.writer.fact(at(0), Fact::Decision(decision(0))).unwrap();
    let second = w.writer.fact(at(74), Fact::Decision(decision(74))).unwrap();
    assert_eq!((first.partition, second.partition), (p, p), "decision 74 is on the same account as decision 0");
    let mut b = w.store.batch();
    w.outbox.stage(&mut b, &[second]).unwrap();
    w.store.commit(b).unwrap();
    rt.block_on(w.sender.drain()).unwrap();
    let store = Store::open(&tmp.path().join("r"), opts()).unwrap();
    let mut inbox = Inbox::open(&kafka, &store, "g", LAYOUT, &[(topic, p)]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let err = loop {
        match inbox.poll(Duration::from_millis(200)) {
            Err(e) => break e,
            Ok(_) => assert!(Instant::now() < deadline, "the record after the gap was never read"),
        }
    };
    assert!(matches!(err, ExchangeError::Refused { offset: 0, .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains(&format!("paywatch.g.by-account partition {p} offset 0")) && text.contains("record 0") && text.contains("record 1 came next"), "{text}");
    assert_eq!(inbox.next_offset(topic, p), Some(0), "not read past");
}
