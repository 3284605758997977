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
