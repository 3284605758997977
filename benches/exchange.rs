//! The repartition records' transport (`paywatch::exchange`, #16) through a
//! real broker (tansu on 127.0.0.1, started here): one writing task stages
//! `BENCH_EXCHANGE_RECORDS` (20,000) decisions in commits of 1,000 with a
//! mark each, its sender sends them to one `by-person` partition, and one
//! reading task reads them back through its `Reader` until every one is
//! released. This is what one partition of the transport carries.
//!
//! A first run prints each phase (stage, send, read) in records/s and
//! MB/s; criterion then measures the whole trip.
//!
//! Second, a task that moves (`exchange::task_dir`): an account task's
//! state of `BENCH_RESTORE_MB` (20) MB, published to its changelog
//! partition, is restored on another instance; criterion measures the
//! restore. The broker is `PAYWATCH_TANSU`, else where `scripts/deps.sh`
//! installs it.
//!
//! Third, an account task on another instance (`exchange::account_task`):
//! a person side sends the accounts' facts of a generated ledger of
//! `BENCH_AWAY_HOUSEHOLDS` (2,000) households to one `by-account`
//! partition; criterion measures an account task reading, applying and
//! committing all of them on a fresh store.

use criterion::{criterion_group, criterion_main, Criterion};
use paywatch::config::KafkaConfig;
use paywatch::engine::repartition::{Fact, Layout, Task, Topic, Upstream, Writer};
use paywatch::exchange::inbox::Inbox;
use paywatch::exchange::outbox::Outbox;
use paywatch::exchange::publish::Sender;
use paywatch::changelog::Place;
use paywatch::exchange::ensure_topics;
use paywatch::exchange::task_dir::{Setup, TaskDir};
use paywatch::exchange::tasks::TaskId;
use paywatch::model::decision::{case_id, Decision, Outcome};
use paywatch::model::{Rule, SortKey, Timestamp};
use paywatch::store::{Store, StoreOptions};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LAYOUT: Layout = Layout { persons: 1, decisions: 1, accounts: 1, custodians: 1, households: 1 };
const PER_COMMIT: u64 = 1000;

fn opts() -> StoreOptions {
    StoreOptions { block_cache_mb: 32, write_buffer_mb: 16, sync: false, statistics: false }
}

fn records() -> u64 {
    std::env::var("BENCH_EXCHANGE_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000)
}

/// tansu on a free port of 127.0.0.1, in memory; stopped on drop.
struct Broker(Child);

impl Broker {
    fn start(dir: &Path) -> (Broker, String) {
        let bin = std::env::var_os("PAYWATCH_TANSU")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/tmp/paywatch-tools/tansu/bin/tansu"));
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let url = format!("tcp://127.0.0.1:{port}");
        let log = std::fs::File::create(dir.join("tansu.log")).expect("log");
        let child = Command::new(&bin)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url, "--storage-engine", "memory://tansu/"])
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} ({e}): run `make deps-test`", bin.display()));
        let end = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < end, "tansu did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        (Broker(child), format!("127.0.0.1:{port}"))
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn at(i: u64) -> SortKey {
    SortKey { time: Timestamp(1_600_000_000_000 + i as i64 * 1000), rank: 0, source: 0, line: i }
}

fn decision(i: u64) -> Fact {
    let subject = format!("341802193{:09}", i % 5000);
    Fact::Decision(Decision {
        decision_id: format!("bench-{i}"),
        case_id: case_id(Rule::PaidAfterDeath, &subject),
        rule: Rule::PaidAfterDeath,
        subject,
        outcome: Outcome::Confirmed,
        action: None,
        amount_recovered: None,
        document_no: None,
        clue_no: None,
        note: None,
        decided_by: "township-3".into(),
        decided_at: at(i).time,
    })
}

/// Seconds of each phase and the bytes sent.
struct Trip {
    stage: f64,
    send: f64,
    read: f64,
    bytes: u64,
}

/// One trip of `n` records on a new group's topics.
fn trip(rt: &tokio::runtime::Runtime, kafka: &KafkaConfig, dir: &Path, group: &str, n: u64) -> Trip {
    let opts = opts();
    rt.block_on(ensure_topics(kafka, group, LAYOUT, 1)).expect("topics");
    let w_store = Store::open(&dir.join(format!("{group}-w")), opts).expect("store");
    let mut outbox = Outbox::open(&w_store).expect("outbox");
    let mut writer = Writer::new(Upstream { task: Task::Decisions, partition: 0 }, LAYOUT);
    let t0 = Instant::now();
    let mut bytes = 0;
    for chunk in (0..n).collect::<Vec<_>>().chunks(PER_COMMIT as usize) {
        let mut out: Vec<_> = chunk.iter().map(|&i| writer.fact(at(i), decision(i)).expect("fact")).collect();
        out.extend(writer.marks(at(*chunk.last().expect("a chunk"))).expect("marks"));
        bytes += out.iter().filter(|o| o.topic == Topic::ByPerson).map(|o| o.value.len() as u64).sum::<u64>();
        let mut b = w_store.batch();
        outbox.stage(&mut b, &out).expect("stage");
        w_store.commit(b).expect("commit");
    }
    let t1 = Instant::now();
    let mut sender = Sender::new(kafka, w_store.clone(), group).expect("sender");
    rt.block_on(sender.drain()).expect("send");
    let t2 = Instant::now();
    let r_store = Store::open(&dir.join(format!("{group}-r")), opts).expect("store");
    let mut inbox = Inbox::open(kafka, group, LAYOUT).expect("inbox");
    inbox.assign(&r_store, &[(Topic::ByPerson, 0)]).expect("assign");
    let mut released = 0;
    let end = Instant::now() + Duration::from_secs(300);
    while released < n {
        assert!(Instant::now() < end, "only {released} of {n} records came back");
        inbox.poll(Duration::from_millis(100)).expect("read");
        while inbox.pop().is_some() {
            released += 1;
        }
    }
    let t3 = Instant::now();
    Trip { stage: (t1 - t0).as_secs_f64(), send: (t2 - t1).as_secs_f64(), read: (t3 - t2).as_secs_f64(), bytes }
}

/// Makes the changelog topic: one partition per task.
fn changelog_topic(rt: &tokio::runtime::Runtime, kafka: &KafkaConfig) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> =
        rdkafka::ClientConfig::new().set("bootstrap.servers", &kafka.brokers).create().expect("admin");
    let parts = TaskId::all(LAYOUT).len() as i32;
    let topic = kafka.changelog_topic();
    rt.block_on(admin.create_topics(&[NewTopic::new(&topic, parts, TopicReplication::Fixed(1))], &AdminOptions::new()))
        .expect("changelog topic");
}

fn setup(kafka: &KafkaConfig, root: &Path) -> Setup {
    Setup {
        kafka: kafka.clone(),
        layout: LAYOUT,
        root: root.to_owned(),
        opts: opts(),
        wal_keep_mb: 256,
        metrics: std::sync::Arc::new(paywatch::metrics::Metrics::new()),
        parallel_restores: 1,
    }
}

/// A task's state of about `mb` MB (account-like entries), published to
/// the task's changelog partition by `TaskDir` and closed. Returns the
/// partition.
fn published_task(kafka: &KafkaConfig, root: &Path, task: TaskId, mb: u64) -> Place {
    let (t, _) = TaskDir::open(&setup(kafka, root), task, &std::sync::atomic::AtomicBool::new(false)).expect("task dir");
    let entries = mb * 1_000_000 / 216;
    for c in 0..entries.div_ceil(1000) {
        let mut b = t.store.batch();
        for i in c * 1000..((c + 1) * 1000).min(entries) {
            b.put_raw(paywatch::store::Cf::Accounts, format!("acct{i:012}").as_bytes(), &[(i % 251) as u8; 200]);
        }
        t.store.commit(b).expect("commit");
    }
    let place = t.place.clone();
    t.close();
    place
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_broker, addr) = Broker::start(dir.path());
    let kafka = KafkaConfig { brokers: addr, ..KafkaConfig::default() };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let n = records();
    let t = trip(&rt, &kafka, dir.path(), "first", n);
    let mb = t.bytes as f64 / 1e6;
    for (phase, s) in [("stage (outbox commits)", t.stage), ("send (to acknowledged)", t.send), ("read (to released)", t.read)] {
        println!("exchange {phase}: {n} records, {mb:.1} MB in {s:.2} s = {:.0} records/s, {:.1} MB/s", n as f64 / s, mb / s);
    }
    let mut g = c.benchmark_group("exchange");
    g.sample_size(10);
    g.throughput(criterion::Throughput::Elements(n));
    let mut round = 0;
    g.bench_function("one partition: stage, send, read", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                round += 1;
                let t = trip(&rt, &kafka, dir.path(), &format!("g{round}"), n);
                total += Duration::from_secs_f64(t.stage + t.send + t.read);
            }
            total
        })
    });
    g.finish();

    // A task moves: its state restored from its changelog partition.
    let mb: u64 = std::env::var("BENCH_RESTORE_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let kafka = KafkaConfig { group_id: "moves".into(), ..kafka };
    changelog_topic(&rt, &kafka);
    let place = published_task(&kafka, &dir.path().join("x"), TaskId::Account(0), mb);
    let mut round = 0;
    let mut restore = || {
        round += 1;
        let target = dir.path().join(format!("y{round}"));
        let t0 = Instant::now();
        let r = paywatch::changelog::restore::restore(&kafka, &place, &target, opts()).expect("restored");
        let s = t0.elapsed();
        std::fs::remove_dir_all(&target).expect("cleaned");
        (s, r.bytes)
    };
    let (s, bytes) = restore();
    println!("task restore: {:.1} MB of frames in {:.2} s = {:.1} MB/s", bytes as f64 / 1e6, s.as_secs_f64(), bytes as f64 / 1e6 / s.as_secs_f64());
    let mut g = c.benchmark_group("task restore");
    g.sample_size(10);
    g.throughput(criterion::Throughput::Bytes(bytes));
    g.bench_function(format!("account task of {mb} MB from its changelog partition"), |b| {
        b.iter_custom(|iters| (0..iters).map(|_| restore().0).sum())
    });
    g.finish();

    // A lost machine's tasks: four of mb/4 MB each, restored one after
    // another and side by side (a member's `parallel_restores`).
    let four: Vec<TaskId> = TaskId::all(LAYOUT).into_iter().filter(|t| *t != TaskId::Account(0)).take(4).collect();
    let places: Vec<Place> = four.iter().map(|&task| published_task(&kafka, &dir.path().join("x"), task, mb.div_ceil(4))).collect();
    let mut round = 0;
    let mut restore_four = |at_once: usize| {
        round += 1;
        let root = dir.path().join(format!("z{round}"));
        std::fs::create_dir_all(&root).expect("root");
        let t0 = Instant::now();
        for group in places.chunks(at_once) {
            std::thread::scope(|scope| {
                for place in group {
                    let (kafka, target) = (&kafka, root.join(place.partition.to_string()));
                    scope.spawn(move || paywatch::changelog::restore::restore(kafka, place, &target, opts()).expect("restored"));
                }
            });
        }
        let took = t0.elapsed();
        std::fs::remove_dir_all(&root).expect("cleaned");
        took
    };
    for at_once in [1, 4] {
        println!("four tasks of {} MB restored {at_once} at a time: {:.2} s", mb.div_ceil(4), restore_four(at_once).as_secs_f64());
    }
    let mut g = c.benchmark_group("lost machine");
    g.sample_size(10);
    for at_once in [1, 4] {
        g.bench_function(format!("four tasks of {} MB, {at_once} at a time", mb.div_ceil(4)), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| restore_four(at_once)).sum())
        });
    }
    g.finish();
}

/// The person side of a generated ledger, its accounts sent away to one
/// `by-account` partition of `group`'s topics: how many records it sent.
fn person_side(rt: &tokio::runtime::Runtime, kafka: &KafkaConfig, dir: &Path, group: &str, cfg: &paywatch::config::Config) -> i64 {
    let households = std::env::var("BENCH_AWAY_HOUSEHOLDS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000);
    let g = paywatch::generate::generate(&paywatch::generate::GenerateOptions {
        out: dir.join("ledger"),
        households,
        from: paywatch::model::Period::new(2018, 1),
        to: paywatch::model::Period::new(2021, 12),
        seed: 11,
        format: paywatch::generate::OutFormat::Jsonl,
    })
    .expect("ledger");
    let inputs = paywatch::source::Inputs::new(g.roster, g.deaths, g.payments);
    let sort = dir.join("sort");
    std::fs::create_dir_all(&sort).expect("sort dir");
    let runs = paywatch::source::stage(&inputs, cfg.limits(Timestamp(1_800_000_000_000)), 1 << 20, &sort, &mut |_| Ok(()), &mut |_| true).expect("staged");
    let records: Vec<paywatch::model::Record> = runs.merge(None).expect("merge").map(|s| s.expect("record").record).collect();
    let mut engine = engine(&dir.join("person"), cfg);
    engine.send_accounts_away(1).expect("away");
    rt.block_on(ensure_topics(kafka, group, engine.away_layout().expect("away"), 1)).expect("topics");
    let mut outbox = Outbox::open(engine.store()).expect("outbox");
    let mut sender = Sender::new(kafka, engine.store().clone(), group).expect("sender");
    let (t0, mut sent) = (Instant::now(), 0);
    for chunk in records.chunks(10_000) {
        for r in chunk {
            engine.apply(r).expect("applied");
        }
        engine
            .commit_with(None, |b, staged| {
                sent += staged.leaving.len() as i64;
                Ok(outbox.stage(b, staged.leaving)?)
            })
            .expect("committed");
        rt.block_on(sender.drain()).expect("sent");
    }
    let s = t0.elapsed().as_secs_f64();
    println!("person side, accounts away: {} records in {s:.2} s = {:.0} records/s; {sent} by-account records sent", records.len(), records.len() as f64 / s);
    sent
}

fn engine(dir: &Path, cfg: &paywatch::config::Config) -> paywatch::engine::Engine {
    let clock = std::sync::Arc::new(paywatch::clock::FixedClock::new(Timestamp(1_800_000_000_000)));
    paywatch::engine::Engine::open(Store::open(dir, opts()).expect("store"), cfg.rules.clone(), cfg.tz(), 100_000, clock).expect("engine")
}

/// An account task reads, applies and commits every one of `sent`
/// records on a fresh store.
fn account_task(kafka: &KafkaConfig, dir: &Path, group: &str, cfg: &paywatch::config::Config, sent: i64) -> Duration {
    let layout = Layout { persons: 1, decisions: 1, accounts: 1, custodians: 1, households: 1 };
    let t0 = Instant::now();
    let mut tasks = paywatch::exchange::account_task::AccountTasks::open(kafka, group, layout).expect("tasks");
    tasks.add(0, engine(dir, cfg)).expect("task");
    while tasks.next_offset(0).unwrap_or(0) < sent {
        tasks.step(Duration::from_millis(20), |_, _, _| Ok(())).expect("step");
    }
    let took = t0.elapsed();
    drop(tasks);
    std::fs::remove_dir_all(dir).expect("cleaned");
    took
}

fn bench_away(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_broker, addr) = Broker::start(dir.path());
    let kafka = KafkaConfig { brokers: addr, ..KafkaConfig::default() };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let cfg = paywatch::config::Config::parse("").expect("default config");
    let sent = person_side(&rt, &kafka, dir.path(), "away", &cfg);
    let mut round = 0;
    let mut read = || {
        round += 1;
        account_task(&kafka, &dir.path().join(format!("task{round}")), "away", &cfg, sent)
    };
    let s = read().as_secs_f64();
    println!("account task: {sent} by-account records read, applied and committed in {s:.2} s = {:.0} records/s", sent as f64 / s);
    let mut g = c.benchmark_group("account task");
    g.sample_size(10);
    g.throughput(criterion::Throughput::Elements(sent as u64));
    g.bench_function("one by-account partition, read and applied", |b| b.iter_custom(|iters| (0..iters).map(|_| read()).sum()));
    g.finish();
}

criterion_group!(benches, bench, bench_away);
criterion_main!(benches);
