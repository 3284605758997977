//! The repartition records' transport (`paywatch::exchange`) on a real
//! broker: writing tasks stage decisions and marks with their state,
//! senders that crash between sending and deleting send records twice,
//! instances that crash lose what their reading tasks had not committed,
//! a reading task moves from one instance to the other and back, and every
//! reading task still releases each fact once, in the single-process
//! order. A topic made with other partition counts is refused, named; a
//! record missing from its stream stops its reader at that offset; and a
//! checkpoint past the end of its partition (the topic made again) is
//! refused when the partition is assigned. A checkpoint inside the last
//! batch, past tansu's watermark, reads on to the batch's end.

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
use std::path::Path;
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

/// A reading task: its state directory holds the facts it applied,
/// committed with its partition's checkpoint, as a task's state would be.
struct ReadingTask {
    part: (Topic, u32),
    store: Store,
    applied: Vec<String>,
}

impl ReadingTask {
    fn open(dir: &Path, part: (Topic, u32)) -> ReadingTask {
        let store = Store::open(dir, opts()).unwrap();
        let applied = store.get::<Vec<String>>(Cf::Meta, APPLIED).unwrap().unwrap_or_default();
        ReadingTask { part, store, applied }
    }

    /// What it applied since its last commit is forgotten.
    fn forget(&mut self) {
        self.applied = self.store.get::<Vec<String>>(Cf::Meta, APPLIED).unwrap().unwrap_or_default();
    }

    fn commit(&self, inbox: &Inbox) {
        let mut b = self.store.batch();
        inbox.checkpoint(self.part.0, self.part.1, &mut b).unwrap();
        b.put(Cf::Meta, APPLIED, &self.applied).unwrap();
        self.store.commit(b).unwrap();
    }
}

/// An instance: one inbox for the reading tasks it holds.
struct Instance {
    inbox: Inbox,
    tasks: Vec<ReadingTask>,
}

impl Instance {
    fn open(kafka: &KafkaConfig, group: &str, tasks: Vec<ReadingTask>) -> Instance {
        let mut inbox = Inbox::open(kafka, group, LAYOUT).unwrap();
        for t in &tasks {
            inbox.assign(&t.store, &[t.part]).unwrap();
        }
        Instance { inbox, tasks }
    }

    /// Reads and applies what is released, then commits every task, or
    /// crashes: every task forgets what it applied since its commit and the
    /// instance starts again. Returns the records skipped as sent twice.
    fn step(self, crash: bool, kafka: &KafkaConfig, group: &str) -> (Instance, u64) {
        let Instance { mut inbox, mut tasks } = self;
        inbox.poll(Duration::from_millis(100)).unwrap();
        while let Some((topic, p, _, fact)) = inbox.pop() {
            let task = tasks.iter_mut().find(|t| t.part == (topic, p)).expect("a fact of a partition this instance reads");
            match fact {
                Fact::Decision(d) => task.applied.push(d.decision_id),
                other => panic!("only decisions were written, read {other:?}"),
            }
        }
        let repeats = inbox.repeats();
        if crash {
            drop(inbox);
            tasks.iter_mut().for_each(ReadingTask::forget);
            return (Instance::open(kafka, group, tasks), repeats);
        }
        tasks.iter().for_each(|t| t.commit(&inbox));
        (Instance { inbox, tasks }, repeats)
    }

    /// Hands the task reading `part` over to `to`, after its commit.
    fn hand_over(&mut self, part: (Topic, u32), to: &mut Instance) {
        let i = self.tasks.iter().position(|t| t.part == part).unwrap();
        let task = self.tasks.remove(i);
        task.commit(&self.inbox);
        self.inbox.revoke(&[part]).unwrap();
        to.inbox.assign(&task.store, &[part]).unwrap();
        to.tasks.push(task);
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
    // Two instances: X reads by-account 0 and 1 and by-person 0, Y the
    // rest; by-account 1 moves to Y half-way, and back to X later.
    let (x_tasks, y_tasks): (Vec<_>, Vec<_>) = parts
        .iter()
        .enumerate()
        .map(|(i, p)| ReadingTask::open(&tmp.path().join(format!("r{i}")), *p))
        .partition(|t| matches!(t.part, (Topic::ByAccount, 0 | 1) | (Topic::ByPerson, 0)));
    let mut instances = [Some(Instance::open(&kafka, group, x_tasks)), Some(Instance::open(&kafka, group, y_tasks))];

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
    let (mut next, mut resent, mut reader_crashes, mut repeats, mut moves) = (0u64, 0usize, 0usize, 0u64, 0);
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
        for slot in &mut instances {
            let crash = rng.gen_bool(0.2);
            reader_crashes += usize::from(crash);
            let (instance, r) = slot.take().unwrap().step(crash, &kafka, group);
            repeats += r;
            *slot = Some(instance);
        }
        if next * 2 >= N && moves == 0 || next * 4 >= N * 3 && moves == 1 {
            let [x, y] = instances.each_mut().map(|i| i.as_mut().unwrap());
            let (from, to) = if moves == 0 { (x, y) } else { (y, x) };
            from.hand_over((Topic::ByAccount, 1), to);
            moves += 1;
        }
    }
    // Everyone marks past the last decision; everything is sent.
    for w in &mut writers {
        w.commit(&[], at(N));
        rt.block_on(w.sender.drain()).unwrap();
        assert_eq!(outbox::depth(&w.store).unwrap(), 0);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let done = |i: &Instance| i.tasks.iter().all(|t| t.applied.len() >= want[&t.part].len());
    while !instances.iter().all(|i| done(i.as_ref().unwrap())) && Instant::now() < deadline {
        for slot in &mut instances {
            let (instance, r) = slot.take().unwrap().step(false, &kafka, group);
            repeats += r;
            *slot = Some(instance);
        }
    }
    let mut seen = 0;
    for i in instances.iter().map(|i| i.as_ref().unwrap()) {
        for t in &i.tasks {
            assert_eq!(t.applied, want[&t.part], "{:?}: every decision routed here, once each, in position order", t.part);
            seen += 1;
        }
        assert_eq!(i.inbox.held(), 0);
    }
    assert_eq!((seen, moves), (5, 2));
    assert!(resent > 100 && reader_crashes > 10 && repeats > 0, "the crashes happened: {resent} sent twice, {reader_crashes} reader crashes, {repeats} repeats skipped");
}

#[test]
fn other_partition_counts_a_lost_record_and_a_checkpoint_past_the_partition_are_refused() {
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
    let mut inbox = Inbox::open(&kafka, "g", LAYOUT).unwrap();
    inbox.assign(&store, &[(topic, p)]).unwrap();
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

    // A checkpoint past what its partition holds (the topic made again):
    // an error, never a jump to wherever the partition ends.
    let mut w = WritingTask::open(&tmp.path().join("w2"), from, &kafka, "g");
    let rec = w.writer.fact(at(0), Fact::Decision(decision(0))).unwrap();
    let mut b = w.store.batch();
    w.outbox.stage(&mut b, &[rec]).unwrap();
    w.store.commit(b).unwrap();
    rt.block_on(ensure_topics(&kafka, "v", LAYOUT, 1)).unwrap();
    rt.block_on(Sender::new(&kafka, w.store.clone(), "v").unwrap().drain()).unwrap();
    let store = Store::open(&tmp.path().join("r2"), opts()).unwrap();
    let mut inbox = Inbox::open(&kafka, "v", LAYOUT).unwrap();
    inbox.assign(&store, &[(topic, p)]).unwrap();
    while inbox.next_offset(topic, p) == Some(0) {
        inbox.poll(Duration::from_millis(200)).unwrap();
        assert!(Instant::now() < deadline + Duration::from_secs(20), "the record was never read");
    }
    let mut b = store.batch();
    inbox.checkpoint(topic, p, &mut b).unwrap();
    store.commit(b).unwrap();
    rt.block_on(ensure_topics(&kafka, "empty", LAYOUT, 1)).unwrap();
    let mut inbox = Inbox::open(&kafka, "empty", LAYOUT).unwrap();
    let err = inbox.assign(&store, &[(topic, p)]).unwrap_err();
    assert!(matches!(err, ExchangeError::OffsetLost { offset: 1, low: 0, high: 0, .. }), "{err}");
    assert!(err.to_string().contains(&format!("paywatch.empty.by-account partition {p} holds offsets 0 to 0, its reader's checkpoint is at 1")), "{err}");
}

/// The broker frozen (`SIGSTOP`) for longer than the producer's request
/// timeout while a sender sends: it waits and retries, nothing times out
/// of its queue, and the reader gets every record once, in order.
#[test]
fn a_sender_waits_out_a_frozen_broker_and_loses_nothing() {
    const ONE: Layout = Layout { persons: 1, decisions: 1, accounts: 1, custodians: 1, households: 1 };
    const N: u64 = 5000;
    let tmp = tempfile::tempdir().unwrap();
    let broker = Broker::start(tmp.path());
    let mut kafka = KafkaConfig { brokers: broker.addr.clone(), ..KafkaConfig::default() };
    kafka.producer.insert("request.timeout.ms".into(), "3000".into());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(ensure_topics(&kafka, "g", ONE, 1)).unwrap();
    let store = Store::open(&tmp.path().join("w"), opts()).unwrap();
    let mut outbox = Outbox::open(&store).unwrap();
    let mut writer = Writer::new(Upstream { task: Task::Decisions, partition: 0 }, ONE);
    for chunk in (0..N).collect::<Vec<_>>().chunks(1000) {
        // Person decisions only: all on `by-person` 0.
        let mut out: Vec<_> = chunk.iter().map(|&i| writer.fact(at(i), Fact::Decision(decision(i | 1))).unwrap()).collect();
        out.extend(writer.marks(at(*chunk.last().unwrap())).unwrap());
        let mut b = store.batch();
        outbox.stage(&mut b, &out).unwrap();
        store.commit(b).unwrap();
    }
    let total = outbox::depth(&store).unwrap();
    let sending = {
        let (kafka, store) = (kafka.clone(), store.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            let mut sender = Sender::new(&kafka, store.clone(), "g").unwrap();
            // Rounds of 500; a failure makes a new producer and sends
            // again from the first record left (the reader skips what
            // went twice).
            let mut failures = Vec::new();
            while outbox::depth(&store).unwrap() > 0 {
                if let Err(e) = rt.block_on(sender.round(500)) {
                    failures.push(e.to_string());
                }
            }
            failures
        })
    };
    // Frozen once the first round is in, the rest mid-send.
    let deadline = Instant::now() + Duration::from_secs(30);
    while outbox::depth(&store).unwrap() == total {
        assert!(Instant::now() < deadline, "nothing was sent");
        std::thread::sleep(Duration::from_millis(1));
    }
    broker.freeze(true);
    std::thread::sleep(Duration::from_secs(10));
    let left = outbox::depth(&store).unwrap();
    broker.freeze(false);
    assert!(left > 0 && !sending.is_finished(), "the sender was still waiting on the frozen broker ({left} of {total} left)");
    let failures = sending.join().unwrap();
    eprintln!("sender failures while the broker was frozen: {failures:?}");
    assert_eq!(outbox::depth(&store).unwrap(), 0, "everything sent once the broker woke: {failures:?}");
    let r_store = Store::open(&tmp.path().join("r"), opts()).unwrap();
    let mut inbox = Inbox::open(&kafka, "g", ONE).unwrap();
    inbox.assign(&r_store, &[(Topic::ByPerson, 0)]).unwrap();
    let (mut got, deadline) = (Vec::new(), Instant::now() + Duration::from_secs(30));
    while got.len() < N as usize && Instant::now() < deadline {
        inbox.poll(Duration::from_millis(200)).unwrap();
        while let Some((_, _, at, _)) = inbox.pop() {
            got.push(at.line);
        }
    }
    assert_eq!(got, (0..N).collect::<Vec<_>>(), "every record once, in order (failures on the way: {failures:?})");
    // Assigned again at the log's end, inside what tansu's watermark calls
    // the last batch (`source::log_end`): accepted, nothing left to read.
    let mut b = r_store.batch();
    inbox.checkpoint(Topic::ByPerson, 0, &mut b).unwrap();
    r_store.commit(b).unwrap();
    let mut again = Inbox::open(&kafka, "g", ONE).unwrap();
    again.assign(&r_store, &[(Topic::ByPerson, 0)]).unwrap();
    assert_eq!(again.poll(Duration::from_millis(500)).unwrap(), 0);
}

/// The design's assumption, on the real broker: three members of one
/// group, subscribed to every topic a task reads, get whole tasks from
/// Kafka's range assignor (each task owned by exactly one member, none
/// split); and so do the two left when one leaves.
#[test]
fn members_of_one_group_own_whole_tasks_under_the_range_assignor() {
    use paywatch::exchange::tasks::{owned, TaskId};
    use rdkafka::consumer::{BaseConsumer, Consumer};
    const SIX: Layout = Layout { persons: 6, decisions: 2, accounts: 4, custodians: 2, households: 3 };
    let tmp = tempfile::tempdir().unwrap();
    let broker = Broker::start(tmp.path());
    let kafka = KafkaConfig { brokers: broker.addr.clone(), ..KafkaConfig::default() };
    let t = &kafka.topics;
    broker.create_topics(&[
        &format!("{}:6", t.payments),
        &format!("{}:6", t.roster),
        &format!("{}:6", t.deaths),
        &format!("{}:6", t.vulnerable),
        &format!("{}:2", t.decisions),
    ]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(ensure_topics(&kafka, "g", SIX, 1)).unwrap();
    let names: Vec<String> = [&t.payments, &t.roster, &t.deaths, &t.vulnerable, &t.decisions]
        .into_iter()
        .cloned()
        .chain(Topic::ALL.iter().map(|x| x.name("g")))
        .collect();
    let member = || {
        let c: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &kafka.brokers)
            .set("group.id", "g")
            .set("partition.assignment.strategy", "range")
            .set("session.timeout.ms", "6000")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        c.subscribe(&names.iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
        c
    };
    let assigned = |c: &BaseConsumer| -> Vec<(String, u32)> {
        c.assignment().unwrap().elements().iter().map(|e| (e.topic().to_owned(), e.partition() as u32)).collect()
    };
    // Polled until every partition is assigned to exactly one member.
    let settle = |members: &[BaseConsumer]| {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            for c in members {
                let _ = c.poll(Duration::from_millis(50));
            }
            let all: Vec<Vec<(String, u32)>> = members.iter().map(assigned).collect();
            let mut flat: Vec<&(String, u32)> = all.iter().flatten().collect();
            let n = flat.len();
            flat.sort();
            flat.dedup();
            if n == 41 && flat.len() == 41 && all.iter().all(|a| !a.is_empty()) {
                return all;
            }
            assert!(Instant::now() < deadline, "the group did not settle: {all:?}");
        }
    };
    let mut members: Vec<BaseConsumer> = (0..3).map(|_| member()).collect();
    for round in [3, 2] {
        // The third leaves the group.
        members.truncate(round);
        let mut tasks = Vec::new();
        for a in settle(&members) {
            let o = owned(&a, SIX, &kafka.topics, "g");
            assert!(o.incomplete.is_empty() && o.stray.is_empty(), "{round} members: {o:?}");
            tasks.extend(o.tasks);
        }
        tasks.sort();
        let mut want = TaskId::all(SIX);
        want.sort();
        assert_eq!(tasks, want, "{round} members: every task owned once");
    }
}

/// A reader checkpointed inside the last batch of its partition, after
/// tansu's watermark (which stops at that batch's first record), resumes
/// there and reads the rest of the batch with nothing new written: a fetch
/// from the checkpoint itself would bring nothing until another batch
/// came. Every fact is released once, before the checkpoint or after it.
#[test]
fn a_checkpoint_inside_the_last_batch_reads_on_to_its_end() {
    use paywatch::exchange::inbox::POLL_MAX;
    use paywatch::source::log_end::tail;
    use rdkafka::consumer::BaseConsumer;
    let tmp = tempfile::tempdir().unwrap();
    let broker = Broker::start(tmp.path());
    // One producer batch for every record of the commit.
    let producer = [("linger.ms", "200"), ("batch.num.messages", "1000000"), ("batch.size", "67108864")];
    let kafka = KafkaConfig {
        brokers: broker.addr.clone(),
        producer: producer.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..KafkaConfig::default()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(ensure_topics(&kafka, "lb", LAYOUT, 1)).unwrap();
    let n = POLL_MAX as u64 * 3 / 2;
    // The other upstreams mark past every fact first, so that the facts
    // are released as they are read, and come last, in one batch.
    for (i, from) in [(Task::Person, 0), (Task::Person, 1), (Task::Decisions, 1)].into_iter().enumerate() {
        let mut w = WritingTask::open(&tmp.path().join(format!("m{i}")), Upstream { task: from.0, partition: from.1 }, &kafka, "lb");
        w.commit(&[], at(n));
        rt.block_on(w.sender.drain()).unwrap();
    }
    let mut w = WritingTask::open(&tmp.path().join("w"), Upstream { task: Task::Decisions, partition: 0 }, &kafka, "lb");
    // Every decision on one account's case: one partition holds them all.
    let facts: Vec<(u64, Fact)> = (0..n).map(|i| (i, Fact::Decision(Decision { decision_id: format!("d{i}"), ..decision(0) }))).collect();
    w.commit(&facts, at(n));
    rt.block_on(w.sender.drain()).unwrap();
    let part = (Topic::ByAccount, paywatch::partition::of(decision(0).subject.as_bytes(), 3));
    let name = part.0.name("lb");

    let mut released = Vec::new();
    let mut task = ReadingTask::open(&tmp.path().join("r"), part);
    let mut inbox = Inbox::open(&kafka, "lb", LAYOUT).unwrap();
    inbox.assign(&task.store, &[part]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while inbox.next_offset(part.0, part.1) == Some(0) {
        inbox.poll(Duration::from_millis(200)).unwrap();
        assert!(Instant::now() < deadline, "nothing read");
    }
    while let Some((_, _, _, Fact::Decision(d))) = inbox.pop() {
        released.push(d.decision_id);
    }
    task.applied = released.clone();
    task.commit(&inbox);
    let checkpoint = inbox.next_offset(part.0, part.1).unwrap();
    drop((inbox, task));
    let probe: BaseConsumer = rdkafka::ClientConfig::new().set("bootstrap.servers", &kafka.brokers).set("group.id", "probe").create().unwrap();
    let t = tail(&probe, &name, part.1 as i32, Duration::from_secs(10)).unwrap();
    assert!(t.watermark < checkpoint && checkpoint < t.end, "the checkpoint {checkpoint} is inside the last batch, past the watermark {} and before the end {}", t.watermark, t.end);

    // The reader starts again from its checkpoint; nothing more is written.
    let task = ReadingTask::open(&tmp.path().join("r"), part);
    let mut inbox = Inbox::open(&kafka, "lb", LAYOUT).unwrap();
    inbox.assign(&task.store, &[part]).unwrap();
    let mut after = Vec::new();
    while inbox.next_offset(part.0, part.1) < Some(t.end) {
        inbox.poll(Duration::from_millis(200)).unwrap();
        while let Some((_, _, _, Fact::Decision(d))) = inbox.pop() {
            after.push(d.decision_id);
        }
        assert!(Instant::now() < deadline + Duration::from_secs(30), "read to {:?} of {}", inbox.next_offset(part.0, part.1), t.end);
    }
    eprintln!("checkpoint {checkpoint} in the batch from {} to {}: {} facts before it, {} after", t.watermark - 1, t.end, task.applied.len(), after.len());
    let all: Vec<String> = task.applied.iter().chain(&after).cloned().collect();
    let want: Vec<String> = (0..n).map(|i| format!("d{i}")).collect();
    let wrong = all.iter().zip(&want).position(|(a, w)| a != w);
    assert!(all == want, "each fact once, in order: {} of {n} released, the first out of place at {wrong:?}", all.len());
    assert!(!task.applied.is_empty() && !after.is_empty(), "released on both sides of the checkpoint");
}
