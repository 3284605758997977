//! A task's state moving between instances through its changelog
//! partition (`exchange::task_dir`), on the real broker: a task that
//! arrives at an instance is restored from its own partition, an instance
//! that had the task earlier sets its old directory aside, one that had it
//! last opens it as it is, and the tasks' partitions never mix.

use super::common::dump_state;
use super::common::kafka::Broker;
use paywatch::config::KafkaConfig;
use paywatch::engine::repartition::Layout;
use paywatch::exchange::task_dir::{Arrival, TaskDir};
use paywatch::exchange::tasks::TaskId;
use paywatch::metrics::Metrics;
use paywatch::store::{Cf, Store, StoreOptions};
use std::path::Path;
use std::sync::Arc;

const LAYOUT: Layout = Layout { persons: 2, decisions: 1, accounts: 2, custodians: 1, households: 1 };

fn opts() -> StoreOptions {
    StoreOptions { block_cache_mb: 8, write_buffer_mb: 4, sync: false, statistics: false }
}

/// Commits `n` times from `from` on: a task's state as it grows (entries
/// rewritten and deleted, not only added), in bursts.
fn work(store: &Store, from: u32, n: u32) {
    for i in from..from + n {
        let mut b = store.batch();
        b.put_raw(Cf::Accounts, format!("acct{:03}", i % 97).as_bytes(), &[(i % 251) as u8; 120]);
        b.put_raw(Cf::Outbox, &i.to_be_bytes(), b"alert");
        if i > 0 {
            b.delete(Cf::Outbox, &(i - 1).to_be_bytes());
        }
        store.commit(b).unwrap();
    }
}

struct Instance<'a> {
    root: &'a Path,
    kafka: &'a KafkaConfig,
    metrics: Arc<Metrics>,
}

impl Instance<'_> {
    fn open(&self, task: TaskId) -> (TaskDir, Arrival) {
        TaskDir::open(self.root, task, LAYOUT, self.kafka, opts(), 64, Arc::clone(&self.metrics)).unwrap()
    }

    fn state(&self, task: TaskId) -> Vec<(Cf, Vec<u8>, Vec<u8>)> {
        dump_state(&TaskDir::path(self.root, task))
    }
}

#[test]
fn a_task_moves_with_its_state_through_its_own_changelog_partition() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    // One partition per task: 7 for this layout.
    broker.create_topics(&["paywatch.mv.changelog:7"]);
    let kafka = KafkaConfig { brokers: broker.addr.clone(), group_id: "mv".into(), ..KafkaConfig::default() };
    let (xr, yr) = (dir.path().join("x"), dir.path().join("y"));
    let x = Instance { root: &xr, kafka: &kafka, metrics: Arc::new(Metrics::new()) };
    let y = Instance { root: &yr, kafka: &kafka, metrics: Arc::new(Metrics::new()) };
    let (account, person) = (TaskId::Account(1), TaskId::Person(0));

    // X runs the account task first: nothing to restore.
    let (t, arrival) = x.open(account);
    assert_eq!(arrival, Arrival::default());
    assert_eq!(t.place.partition, 4);
    work(&t.store, 0, 300);
    t.close();
    // And a person task beside it, on its own partition.
    let (p, _) = x.open(person);
    work(&p.store, 1000, 50);
    p.close();

    // The account task moves to Y: restored from partition 4 alone.
    let (t, arrival) = y.open(account);
    let restored = arrival.restored.clone().expect("restored");
    assert!(!arrival.set_aside && restored.gap.is_none(), "{arrival:?}");
    eprintln!("account task restored in {} ms: {} entries, {} commits, {} bytes", arrival.restore_ms, restored.snapshot_entries, restored.commits, restored.bytes);
    t.close();
    assert!(y.state(account) == x.state(account), "Y holds X's state of the task");
    let (t, again) = y.open(account);
    assert_eq!(again, Arrival::default(), "Y had it last: opened as it is");
    work(&t.store, 300, 200);
    t.close();

    // Back to X, whose directory is older than Y's: set aside, restored.
    let (t, arrival) = x.open(account);
    assert!(arrival.set_aside && arrival.restored.is_some(), "{arrival:?}");
    assert!(TaskDir::path(&xr, account).with_extension("superseded").is_dir());
    t.close();
    assert!(x.state(account) == y.state(account), "X holds Y's newer state");

    // The person task's partition was not touched by the moves: X opens
    // its own directory as it is, and Y restores exactly it.
    let (p, arrival) = x.open(person);
    assert_eq!(arrival, Arrival::default());
    p.close();
    let (p, arrival) = y.open(person);
    assert!(arrival.restored.is_some());
    p.close();
    assert!(y.state(person) == x.state(person));
    assert_ne!(y.state(person), y.state(account));
    assert_eq!(x.metrics.changelog_errors.get() + y.metrics.changelog_errors.get(), 0);
}

/// Members of one group, subscribed under the range assignor, open the
/// tasks Kafka gives them: A alone holds all seven; B joins and the tasks
/// it is given arrive with A's state; B leaves cleanly and A gets them
/// back with B's newer state (its own older directories set aside).
#[test]
fn members_restore_the_tasks_the_group_gives_them() {
    use paywatch::exchange::ensure_topics;
    use paywatch::exchange::member::{Member, Setup};
    use std::collections::BTreeMap;
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let kafka = KafkaConfig { brokers: broker.addr.clone(), group_id: "mg".into(), ..KafkaConfig::default() };
    let t = &kafka.topics;
    let inputs: Vec<String> = [&t.payments, &t.roster, &t.deaths, &t.vulnerable].iter().map(|n| format!("{n}:2")).collect();
    let decisions = format!("{}:1", t.decisions);
    let mut made: Vec<&str> = inputs.iter().map(String::as_str).collect();
    made.extend([decisions.as_str(), "paywatch.mg.changelog:7"]);
    broker.create_topics(&made);
    tokio::runtime::Runtime::new().unwrap().block_on(ensure_topics(&kafka, "mg", LAYOUT, 1)).unwrap();
    let setup = |root: &Path| Setup {
        kafka: KafkaConfig { consumer: [("session.timeout.ms".to_string(), "6000".to_string())].into(), ..kafka.clone() },
        layout: LAYOUT,
        root: root.to_owned(),
        opts: opts(),
        wal_keep_mb: 64,
        metrics: Arc::new(Metrics::new()),
    };
    let (ar, br) = (dir.path().join("a"), dir.path().join("b"));
    // Polls until the members own `want` tasks between them, each once.
    let settle = |members: &mut [&mut Member], counts: &[usize]| {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            for m in members.iter_mut() {
                m.poll(Duration::from_millis(100)).unwrap();
            }
            let now: Vec<usize> = members.iter().map(|m| m.owned().tasks.len()).collect();
            let whole = members.iter().all(|m| m.owned().incomplete.is_empty() && m.owned().stray.is_empty());
            if whole && now.iter().sum::<usize>() == 7 && now.iter().zip(counts).all(|(n, c)| *c == 0 || n >= c) {
                return;
            }
            assert!(Instant::now() < deadline, "the group did not settle: {now:?}");
        }
    };

    let mut a = Member::join(setup(&ar)).unwrap();
    settle(&mut [&mut a], &[7]);
    for (i, task) in TaskId::all(LAYOUT).into_iter().enumerate() {
        work(&a.dir(task).expect("A owns every task").store, i as u32 * 1000, 40);
    }

    let mut b = Member::join(setup(&br)).unwrap();
    settle(&mut [&mut a, &mut b], &[1, 1]);
    let at_b: Vec<TaskId> = b.owned().tasks.clone();
    assert!(!at_b.is_empty() && at_b.len() < 7, "{at_b:?}");
    for &task in &at_b {
        work(&b.dir(task).unwrap().store, 50_000 + task.changelog_partition(LAYOUT) as u32 * 100, 30);
    }
    b.leave();
    settle(&mut [&mut a], &[7]);
    let mut states = BTreeMap::new();
    for &task in &at_b {
        states.insert(task, dump_state(&TaskDir::path(&br, task)));
    }
    a.leave();
    for (task, at_b_state) in states {
        let back = dump_state(&TaskDir::path(&ar, task));
        assert!(back == at_b_state, "{task}: A holds B's state after B left");
        assert!(TaskDir::path(&ar, task).with_extension("superseded").is_dir(), "{task}: A's older directory set aside");
        let before = dump_state(&TaskDir::path(&ar, task).with_extension("superseded"));
        assert!(before != back, "{task}: B's commits are in it");
        // And A's, restored at B when the task arrived there.
        let a_last = (task.changelog_partition(LAYOUT) as u32 * 1000 + 39).to_be_bytes().to_vec();
        assert!(back.iter().any(|(cf, k, _)| *cf == Cf::Outbox && *k == a_last), "{task}: A's last commit came to B with the task");
    }
}
