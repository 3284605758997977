//! Account tasks as the group gives them (`exchange::account_worker`), on
//! a real broker: a person side sends its accounts away; instance A owns
//! every account task, B joins and is given some of them (restored from
//! their changelog partitions), A leaves and B takes the rest. Every
//! account alert of `paywatch audit` reaches the alerts topic from the
//! tasks' own outboxes, no other; with the person side's alerts they are
//! the audit's; the decision an account task refuses reaches the
//! dead-letter topic.

use super::away::{opts, prepare, refused_decisions, PersonSide, Prepared, ACCOUNTS, CHUNK, LANES};
use super::common::kafka::{consume, Broker};
use paywatch::clock::FixedClock;
use paywatch::config::KafkaConfig;
use paywatch::engine::repartition::Layout;
use paywatch::engine::Outcome;
use paywatch::exchange::account_worker::{AccountWorker, Stepped, TaskEngines};
use paywatch::exchange::ensure_topics;
use paywatch::exchange::member::{Holding, Setup};
use paywatch::exchange::tasks::TaskId;
use paywatch::metrics::Metrics;
use paywatch::model::{Alert, Record, Rule, Timestamp};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The account tasks `w` has open.
fn open_tasks(w: &AccountWorker) -> BTreeSet<TaskId> {
    w.holding().into_iter().filter(|(_, h)| *h == Holding::Open).map(|(t, _)| t).collect()
}

/// What the workers did, summed over their steps.
#[derive(Default)]
struct Seen {
    /// Decisions their commits refused: id and reason code.
    refused: BTreeSet<(String, String)>,
    /// Outbox entries the broker acknowledged.
    published: usize,
    /// Tasks that arrived with state restored from their changelog
    /// partition (commits applied).
    restored: Vec<(TaskId, u64)>,
}

/// Steps every worker present once.
fn step_all(workers: &mut [&mut Option<AccountWorker>], seen: &mut Seen) {
    for w in workers.iter_mut().filter_map(|w| w.as_mut()) {
        let Stepped { committed, published, moved, .. } = w.step(Duration::from_millis(50)).unwrap();
        assert!(moved.failed.is_empty(), "{:?}", moved.failed);
        seen.published += published;
        seen.restored.extend(moved.opened.iter().filter_map(|(t, a)| a.restored.as_ref().map(|r| (*t, r.commits))));
        for (_, c) in committed {
            seen.refused.extend(refused_decisions(&c.dead_letters));
        }
    }
}

#[test]
fn account_tasks_follow_the_group_and_publish_their_alerts() {
    let tmp = tempfile::tempdir().unwrap();
    let Prepared { cfg, want, want_refused, records, decoded_dead } = prepare(tmp.path(), 1_500);
    let account_rules = [Rule::SharedAccount, Rule::FrequentPayments];
    let want_accounts: BTreeSet<String> = want.iter().filter(|(_, r)| account_rules.contains(r)).map(|(id, _)| id.clone()).collect();
    assert!(!want_accounts.is_empty());

    let broker = Broker::start(tmp.path());
    broker.create_contract_topics();
    let group = "worker";
    let kafka = KafkaConfig { brokers: broker.addr.clone(), group_id: group.into(), ..KafkaConfig::default() };
    let layout = Layout { persons: LANES, decisions: 1, accounts: ACCOUNTS, custodians: LANES, households: LANES };
    broker.create_topics(&[&format!("paywatch.{group}.changelog:{}", TaskId::all(layout).len())]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(ensure_topics(&kafka, group, layout, 1)).unwrap();

    let setup = |root: PathBuf| Setup { kafka: kafka.clone(), layout, root, opts: opts(), wal_keep_mb: 64, metrics: Arc::new(Metrics::new()), parallel_restores: 2 };
    let engines = TaskEngines { rules: cfg.rules.clone(), tz: cfg.tz(), cache_entries: 10_000, clock: Arc::new(FixedClock::new(Timestamp(1_800_000_000_000))) };
    let all: BTreeSet<TaskId> = (0..ACCOUNTS).map(TaskId::Account).collect();
    let (mut a, mut b) = (Some(AccountWorker::join(setup(tmp.path().join("a")), engines.clone(), rt.handle().clone()).unwrap()), None);
    let mut seen = Seen { refused: refused_decisions(&decoded_dead), ..Seen::default() };
    let wait = |a: &mut Option<AccountWorker>, b: &mut Option<AccountWorker>, seen: &mut Seen, what: &str, done: &dyn Fn(&Option<AccountWorker>, &Option<AccountWorker>) -> bool| {
        let by = Instant::now() + Duration::from_secs(90);
        while !done(a, b) {
            assert!(Instant::now() < by, "{what} within 90 s: A {:?}, B {:?}", a.as_ref().map(open_tasks), b.as_ref().map(open_tasks));
            step_all(&mut [a, b], seen);
        }
    };
    wait(&mut a, &mut b, &mut seen, "A owns every account task", &|a, _| a.as_ref().map(open_tasks) == Some(all.clone()));

    let mut person = PersonSide::open(&tmp.path().join("person"), &cfg, &kafka, group);
    let mut raised: Vec<Alert> = Vec::new();
    let mut sent = vec![0i64; ACCOUNTS as usize];
    let (mut done, mut round) = (0usize, 0usize);
    let mut split = BTreeMap::new();
    while done < records.len() {
        let end = (done + CHUNK).min(records.len());
        let mut person_refused = Vec::new();
        for r in &records[done..end] {
            if let Outcome::Rejected(why) = person.engine.apply(r).unwrap() {
                person_refused.push((r.clone(), why));
            }
        }
        raised.extend(person.commit(&rt, &mut sent, true));
        for (r, why) in person_refused {
            if let Record::Decision(d) = r {
                seen.refused.insert((d.decision_id, why.reason.code().to_owned()));
            }
        }
        done = end;
        round += 1;
        step_all(&mut [&mut a, &mut b], &mut seen);
        if round == 3 {
            // B joins: the group gives it some of A's tasks, restored
            // from their changelog partitions.
            b = Some(AccountWorker::join(setup(tmp.path().join("b")), engines.clone(), rt.handle().clone()).unwrap());
            wait(&mut a, &mut b, &mut seen, "A and B share the tasks", &|a, b| {
                let (x, y) = (a.as_ref().map(open_tasks).unwrap_or_default(), b.as_ref().map(open_tasks).unwrap_or_default());
                !x.is_empty() && !y.is_empty() && x.is_disjoint(&y) && x.union(&y).copied().collect::<BTreeSet<_>>() == all
            });
            split.insert("a", a.as_ref().map(open_tasks).unwrap());
            split.insert("b", b.as_ref().map(open_tasks).unwrap());
        }
        if round == 6 {
            // A leaves; B takes its tasks, restored from what A published.
            a.take().unwrap().leave().unwrap();
            wait(&mut a, &mut b, &mut seen, "B owns every account task", &|_, b| b.as_ref().map(open_tasks) == Some(all.clone()));
            let moved: BTreeSet<TaskId> = seen.restored.iter().filter(|(_, commits)| *commits > 0).map(|(t, _)| *t).collect();
            assert!(moved.is_superset(&split["a"]), "B restored A's tasks with their commits: {:?}", seen.restored);
        }
    }
    assert!(round > 6, "the ledger lasts past A's leaving ({round} rounds)");
    // B reads to the end of what was sent to each partition.
    let read = |b: &Option<AccountWorker>| -> Vec<i64> { (0..ACCOUNTS).map(|p| b.as_ref().unwrap().tasks().next_offset(p).unwrap_or(0)).collect() };
    let by = Instant::now() + Duration::from_secs(90);
    while read(&b).iter().zip(&sent).any(|(r, s)| r < s) {
        assert!(Instant::now() < by, "B read to {:?}, {sent:?} were sent", read(&b));
        step_all(&mut [&mut a, &mut b], &mut seen);
    }
    let b = b.unwrap();
    assert_eq!(b.tasks().held(), 0, "every writer marked past what it wrote");

    // The alerts topic holds every account alert of the audit, no other.
    let on_topic = consume(&broker, &kafka.topics.alerts, &tmp.path().join("alerts.jsonl"), Some(want_accounts.len()));
    let keys: BTreeSet<String> = on_topic.iter().map(|m| m.key.clone()).collect();
    let missing: Vec<_> = want_accounts.difference(&keys).take(5).collect();
    let extra: Vec<_> = keys.difference(&want_accounts).take(5).collect();
    assert!(missing.is_empty() && extra.is_empty(), "missing {missing:?}, extra {extra:?} ({} of {})", keys.len(), want_accounts.len());
    // Handed over at step boundaries, published before each leaving: no
    // alert was sent twice, and none raised again by a task restored empty.
    assert_eq!(on_topic.len(), want_accounts.len(), "an account alert sent twice");
    assert!(seen.published >= want_accounts.len(), "{} acknowledged", seen.published);
    // With the person side's, they are the audit's alerts.
    let mut got: BTreeSet<String> = raised.iter().map(|a| a.alert_id.clone()).collect();
    assert_eq!(got.len(), raised.len(), "the person side raised an alert twice");
    got.extend(keys);
    assert!(got == want.keys().cloned().collect::<BTreeSet<_>>(), "{} alerts, the audit {}", got.len(), want.len());
    // The decision on an account no alert names is refused by its task,
    // and its dead letter reaches the dead-letter topic.
    assert_eq!(seen.refused, want_refused);
    let dead = consume(&broker, &kafka.topics.deadletter, &tmp.path().join("dead.jsonl"), Some(1));
    let account_dead: Vec<_> = dead.iter().filter(|m| m.value.contains("DEC-ACCOUNT-2")).collect();
    assert_eq!(account_dead.len(), 1, "{dead:?}");
    let headers = &account_dead[0].headers;
    assert!(headers.get("reason").is_some_and(|r| r.starts_with("unknown_case")), "{headers:?}");
    assert_eq!(headers.get("source_topic").map(String::as_str), Some("paywatch.worker.by-account"), "{headers:?}");
    eprintln!("{} account alerts on the topic ({} messages, {} acknowledged); tasks split {split:?}; restored {:?}", want_accounts.len(), on_topic.len(), seen.published, seen.restored);
    b.leave().unwrap();
}
