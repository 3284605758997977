//! A task's state moving between instances through its changelog
//! partition (`exchange::task_dir`), on the real broker: a task that
//! arrives at an instance is restored from its own partition, an instance
//! that had the task earlier sets its old directory aside, one that had it
//! last opens it as it is, and the tasks' partitions never mix.

use super::common::dump_state;
use super::common::kafka::Broker;
use paywatch::config::KafkaConfig;
use paywatch::engine::repartition::Layout;
use paywatch::exchange::task_dir::{Arrival, Setup, TaskDir};
use paywatch::exchange::tasks::TaskId;
use paywatch::metrics::Metrics;
use paywatch::store::{Cf, Store, StoreOptions};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use paywatch::exchange::member::{Holding, Member};

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

fn setup(root: &Path, kafka: &KafkaConfig) -> Setup {
    Setup {
        kafka: kafka.clone(),
        layout: LAYOUT,
        root: root.to_owned(),
        opts: opts(),
        wal_keep_mb: 64,
        metrics: Arc::new(Metrics::new()),
        parallel_restores: 4,
    }
}

struct Instance(Setup);

impl Instance {
    fn open(&self, task: TaskId) -> (TaskDir, Arrival) {
        TaskDir::open(&self.0, task, &AtomicBool::new(false)).unwrap()
    }

    fn state(&self, task: TaskId) -> Vec<(Cf, Vec<u8>, Vec<u8>)> {
        dump_state(&TaskDir::path(&self.0.root, task))
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
    let (x, y) = (Instance(setup(&xr, &kafka)), Instance(setup(&yr, &kafka)));
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

    // A restore given up (the task left Y before it was whole) leaves no
    // state behind that looks whole.
    let err = TaskDir::open(&y.0, account, &AtomicBool::new(true)).err().expect("stopped").to_string();
    assert!(err.contains("stopped before it was whole"), "{err}");
    assert!(!TaskDir::path(&yr, account).exists(), "nothing in the task's directory");

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
    assert_eq!(x.0.metrics.changelog_errors.get() + y.0.metrics.changelog_errors.get(), 0);
}

/// The topics of group `group` on `broker` (two input partitions, one
/// decisions partition, the repartition topics, a changelog partition per
/// task), and the group's settings: members' sessions end 6 s after their
/// last heartbeat.
fn group_topics(broker: &Broker, group: &str) -> KafkaConfig {
    let kafka = group_settings(&broker.addr, group);
    let t = &kafka.topics;
    let inputs: Vec<String> = [&t.payments, &t.roster, &t.deaths, &t.vulnerable].iter().map(|n| format!("{n}:2")).collect();
    let decisions = format!("{}:1", t.decisions);
    let changelog = format!("{}:7", kafka.changelog_topic());
    let mut made: Vec<&str> = inputs.iter().map(String::as_str).collect();
    made.extend([decisions.as_str(), changelog.as_str()]);
    broker.create_topics(&made);
    tokio::runtime::Runtime::new().unwrap().block_on(paywatch::exchange::ensure_topics(&kafka, group, LAYOUT, 1)).unwrap();
    kafka
}

/// A member of `group` at `brokers`: its session ends 6 s after its last
/// heartbeat.
fn group_settings(brokers: &str, group: &str) -> KafkaConfig {
    KafkaConfig {
        brokers: brokers.into(),
        group_id: group.into(),
        consumer: [("session.timeout.ms".to_string(), "6000".to_string())].into(),
        ..KafkaConfig::default()
    }
}

/// What the polls of a group's members saw (`settle`).
#[derive(Default)]
struct Seen {
    /// For each (member, task): the polls that returned while its
    /// restore ran.
    polls_while_restoring: std::collections::BTreeMap<(usize, TaskId), u32>,
    /// The most tasks one member was restoring at once.
    most_restoring: usize,
}

/// Polls the members until they hold the 7 tasks open between them, each
/// once, member `i` at least `counts[i]`. `each_round(i, member)` runs
/// after every poll.
fn settle(members: &mut [&mut Member], counts: &[usize], seen: &mut Seen, each_round: &mut dyn FnMut(usize, &Member)) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        for (i, m) in members.iter_mut().enumerate() {
            let moved = m.poll(Duration::from_millis(100)).unwrap();
            assert!(moved.failed.is_empty(), "{:?}", moved.failed);
            for (task, holding) in m.holding() {
                if holding == Holding::Restoring && !moved.arriving.contains(&task) {
                    *seen.polls_while_restoring.entry((i, task)).or_default() += 1;
                }
            }
            let restoring = m.holding().values().filter(|h| **h == Holding::Restoring).count();
            seen.most_restoring = seen.most_restoring.max(restoring);
            each_round(i, m);
        }
        let now: Vec<usize> = members.iter().map(|m| m.owned().tasks.len()).collect();
        let whole = members.iter().all(|m| {
            let open = m.holding().values().all(|h| *h == Holding::Open) && m.holding().len() == m.owned().tasks.len();
            open && m.owned().incomplete.is_empty() && m.owned().stray.is_empty()
        });
        if whole && now.iter().sum::<usize>() == 7 && now.iter().zip(counts).all(|(n, c)| *c == 0 || n >= c) {
            return;
        }
        assert!(Instant::now() < deadline, "the group did not settle: {now:?}");
    }
}

/// Members of one group, subscribed under the range assignor, open the
/// tasks Kafka gives them, restored beside the poll and several at once.
/// A alone holds all seven. B joins while A commits to every task it has
/// open, and each task B is given arrives with A's last commit to it: A
/// closes its tasks inside the rebalance, before the group hands them on.
/// B leaves cleanly, and A gets them back with B's newer state (its own
/// older directories set aside).
#[test]
fn members_restore_the_tasks_the_group_gives_them() {
    use std::collections::BTreeMap;
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let kafka = group_topics(&broker, "mg");
    let member = |root: &Path| Member::join(setup(root, &kafka)).unwrap();
    let (ar, br) = (dir.path().join("a"), dir.path().join("b"));
    let base = |task: TaskId| task.changelog_partition(LAYOUT) as u32 * 1000;

    let mut a = member(&ar);
    let mut seen = Seen::default();
    settle(&mut [&mut a], &[7], &mut seen, &mut |_, _| {});
    assert!((2..=4).contains(&seen.most_restoring), "restores run in parallel, at most 4: {}", seen.most_restoring);
    // A's commits: the last one made to each task.
    let mut last: BTreeMap<TaskId, u32> = BTreeMap::new();
    for task in TaskId::all(LAYOUT) {
        a.with_dir(task, |d| work(&d.store, base(task), 40)).expect("A has every task open");
        last.insert(task, 39);
    }

    let mut b = member(&br);
    let mut seen = Seen::default();
    // A commits to whatever it has open, every round, until B holds its tasks.
    let mut commit_at_a = |i: usize, m: &Member| {
        if i != 0 {
            return;
        }
        for task in TaskId::all(LAYOUT) {
            let next = last[&task] + 1;
            if m.with_dir(task, |d| work(&d.store, base(task) + next, 1)).is_some() {
                last.insert(task, next);
            }
        }
    };
    settle(&mut [&mut a, &mut b], &[1, 1], &mut seen, &mut commit_at_a);
    let at_b: Vec<TaskId> = b.owned().tasks.clone();
    assert!(!at_b.is_empty() && at_b.len() < 7, "{at_b:?}");
    for &task in &at_b {
        let polls = seen.polls_while_restoring.get(&(1, task)).copied().unwrap_or(0);
        assert!(polls > 0, "{task}: B's polls went on while it was restored ({polls})");
        b.with_dir(task, |d| work(&d.store, 50_000 + task.changelog_partition(LAYOUT) as u32 * 100, 30)).unwrap();
    }
    eprintln!("A's commits per task before B took them: {last:?}; B's polls while restoring: {:?}", seen.polls_while_restoring);
    b.leave();
    settle(&mut [&mut a], &[7], &mut Seen::default(), &mut |_, _| {});
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
        // And A's last, made right up to the rebalance, restored at B.
        let a_last = (base(task) + last[&task]).to_be_bytes().to_vec();
        assert!(last[&task] > 39, "{task}: A committed while B joined");
        assert!(back.iter().any(|(cf, k, _)| *cf == Cf::Outbox && *k == a_last), "{task}: A's last commit came to B with the task");
    }
}

/// One commit of a counted task state: entry `i` and `last = i`, so a
/// state is a whole prefix of the commits when it holds `e0..=e<last>`
/// and nothing else.
fn count(store: &Store, i: u32) {
    let mut b = store.batch();
    b.put_raw(Cf::Accounts, format!("e{i:08}").as_bytes(), &[(i % 251) as u8; 64]);
    b.put_raw(Cf::Accounts, b"last", &i.to_be_bytes());
    store.commit(b).unwrap();
}

/// The `last` of a counted state, checked to be a whole prefix.
fn counted(store: &Store) -> Option<u32> {
    let mut entries = Vec::new();
    let mut last = None;
    store
        .each_entry_at_snapshot(|_, _| (), |_, cf, k, v| {
            match (cf, k) {
                (Cf::Accounts, b"last") => last = Some(u32::from_be_bytes(v.try_into().unwrap())),
                (Cf::Accounts, _) => entries.push(String::from_utf8(k.to_vec()).unwrap()),
                _ => {}
            }
            true
        })
        .unwrap();
    let want: Vec<String> = last.map(|l| (0..=l).map(|i| format!("e{i:08}")).collect()).unwrap_or_default();
    assert_eq!(entries, want, "a whole prefix of the commits, last {last:?}");
    last
}

const CHILD: &str = "PAYWATCH_TEST_MEMBER";
/// Starts what the child member says, wherever it is on a line.
const SAYS: &str = "member says: ";

/// Run in a child process by `a_dead_member_s_tasks_arrive_at_the_next_owner_whole`,
/// which kills it: a member of group `mk` that says which tasks it opened
/// and commits to each of them every round, until killed. Does nothing
/// unless `PAYWATCH_TEST_MEMBER` names the broker and its state directory.
#[test]
#[ignore = "run in a child process by a_dead_member_s_tasks_arrive_at_the_next_owner_whole"]
fn member_in_a_child_process() {
    let Ok(spec) = std::env::var(CHILD) else { return };
    let (brokers, root) = spec.split_once('|').unwrap();
    let mut m = Member::join(setup(Path::new(root), &group_settings(brokers, "mk"))).unwrap();
    let mut next: std::collections::BTreeMap<TaskId, u32> = Default::default();
    loop {
        let moved = m.poll(Duration::from_millis(50)).unwrap();
        for (task, _) in &moved.opened {
            println!("{SAYS}open {task}");
        }
        for task in &moved.closed {
            println!("{SAYS}closed {task}");
        }
        for (task, e) in &moved.failed {
            println!("{SAYS}failed {task}: {e}");
        }
        if !moved.arriving.is_empty() {
            println!("{SAYS}arriving {:?} holding {:?}", moved.arriving, m.holding());
        }
        for task in TaskId::all(LAYOUT) {
            let i = next.get(&task).copied().unwrap_or(0);
            if m.with_dir(task, |d| count(&d.store, i)).is_some() {
                next.insert(task, i + 1);
            }
        }
    }
}

/// A member killed (`kill -9`) while it commits to its tasks: at the next
/// join (tansu ends a dead member's session only then) its tasks go to
/// the members left, each restored from what it had published, a whole
/// prefix of its commits, and at most what its own directory holds.
#[test]
fn a_dead_member_s_tasks_arrive_at_the_next_owner_whole() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let kafka = group_topics(&broker, "mk");
    let (ar, br, cr) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("c"));
    let mut a = Member::join(setup(&ar, &kafka)).unwrap();
    settle(&mut [&mut a], &[7], &mut Seen::default(), &mut |_, _| {});

    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut b = Killed(
        Command::new(std::env::current_exe().unwrap())
            .args(["moves::member_in_a_child_process", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD, format!("{}|{}", broker.addr, br.display()))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (tx, opened) = std::sync::mpsc::channel();
    let out = b.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            // The test harness may print on the same line first.
            let Some((_, said)) = line.split_once(SAYS) else { continue };
            match said.strip_prefix("open ") {
                Some(task) => drop(tx.send(task.to_owned())),
                None => eprintln!("B: {said}"),
            }
        }
    });
    // A polls until B has opened every task A gave up.
    let mut at_b: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        a.poll(Duration::from_millis(100)).unwrap();
        at_b.extend(opened.try_iter());
        let open_at_a = a.holding().values().filter(|h| **h == Holding::Open).count();
        if !at_b.is_empty() && a.owned().tasks.len() == open_at_a && open_at_a + at_b.len() == 7 {
            break;
        }
        assert!(Instant::now() < deadline, "B did not take its share: A has {:?} of {:?}, B opened {at_b:?}", a.holding(), a.owned());
    }
    // B commits for a while; then it is killed without a word.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        a.poll(Duration::from_millis(100)).unwrap();
    }
    drop(b);
    // Past its session, a new member's join gives B's tasks to A and C.
    std::thread::sleep(Duration::from_secs(7));
    let mut c = Member::join(setup(&cr, &kafka)).unwrap();
    settle(&mut [&mut a, &mut c], &[1, 1], &mut Seen::default(), &mut |_, _| {});
    for name in &at_b {
        let task = TaskId::all(LAYOUT).into_iter().find(|t| t.to_string() == *name).unwrap();
        let here = [&a, &c].into_iter().find_map(|m| m.with_dir(task, |d| counted(&d.store))).expect("owned by A or C");
        let restored = here.expect("B's commits were published");
        let at_b_dir = counted(&Store::open(&TaskDir::path(&br, task), opts()).unwrap()).unwrap();
        eprintln!("{task}: B committed {} times, its next owner has {} of them", at_b_dir + 1, restored + 1);
        assert!(restored <= at_b_dir && restored > 0, "{task}: {restored} of {at_b_dir}");
    }
    a.leave();
    c.leave();
}
