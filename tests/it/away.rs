//! The accounts on other tasks, on a real broker (#16 step 2): a person
//! side that sends its accounts' facts away through the exchange's outbox
//! and three account tasks on two instances, each task on a store of its
//! own, raise together the alerts `paywatch audit` raises on the same
//! ledger, each once, and dead-letter the same decisions; through crashes
//! of the person side (what it applied since its commit is lost and
//! applied again; what it committed and had not published is published
//! by the next one), a task moving from one instance to the other, and an
//! instance crashing.

use super::common::kafka::Broker;
use super::common::{alerts, audit, ledger, read_jsonl, run_ok};
use paywatch::clock::FixedClock;
use paywatch::config::{Config, KafkaConfig};
use paywatch::decode::DeadLetter;
use paywatch::engine::repartition::Layout;
use paywatch::engine::{Engine, EngineError, Outcome};
use paywatch::exchange::account_task::AccountTasks;
use paywatch::exchange::ensure_topics;
use paywatch::exchange::outbox::Outbox;
use paywatch::exchange::publish::Sender;
use paywatch::generate::OutFormat;
use paywatch::model::{Alert, Record, Rule, Timestamp};
use paywatch::source::{stage, Inputs};
use paywatch::store::{Store, StoreOptions};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(super) const LANES: u32 = 2;
pub(super) const ACCOUNTS: u32 = 3;
pub(super) const CHUNK: usize = 2_000;

pub(super) fn opts() -> StoreOptions {
    StoreOptions { block_cache_mb: 8, write_buffer_mb: 4, sync: false, statistics: false }
}

pub(super) fn engine(dir: &Path, cfg: &Config, lanes: u32) -> Engine {
    let store = Store::open(dir, opts()).unwrap();
    let clock = Arc::new(FixedClock::new(Timestamp(1_800_000_000_000)));
    Engine::open_with_lanes(store, cfg.rules.clone(), cfg.tz(), 10_000, clock, lanes).unwrap()
}

/// The person side: its engine, the exchange's outbox in its store, and
/// the sender that publishes it.
pub(super) struct PersonSide {
    pub(super) engine: Engine,
    outbox: Outbox,
    sender: Sender,
}

impl PersonSide {
    pub(super) fn open(dir: &Path, cfg: &Config, kafka: &KafkaConfig, group: &str) -> PersonSide {
        let mut engine = engine(dir, cfg, LANES);
        engine.send_accounts_away(ACCOUNTS).unwrap();
        let outbox = Outbox::open(engine.store()).unwrap();
        let sender = Sender::new(kafka, engine.store().clone(), group).unwrap();
        PersonSide { engine, outbox, sender }
    }

    /// Commits, the accounts' records staged in the same write, and
    /// publishes them; returns the alerts the commit made durable, and
    /// counts the records sent to each partition in `sent`.
    pub(super) fn commit(&mut self, rt: &tokio::runtime::Runtime, sent: &mut [i64], publish: bool) -> Vec<Alert> {
        let outbox = &mut self.outbox;
        let c = self
            .engine
            .commit_with(None, |b, staged| {
                for o in staged.leaving {
                    sent[o.partition as usize] += 1;
                }
                Ok(outbox.stage(b, staged.leaving)?)
            })
            .unwrap();
        if publish {
            rt.block_on(self.sender.drain()).unwrap();
        }
        c.alerts
    }
}

/// The records of a ledger's files in the audit's order, and the lines
/// refused as they were read.
pub(super) fn records(inputs: &Inputs, cfg: &Config, tmp: &Path) -> (Vec<Record>, Vec<DeadLetter>) {
    let limits = cfg.limits(Timestamp(1_800_000_000_000));
    let mut dead = Vec::new();
    let runs = stage(
        inputs,
        limits,
        100_000,
        tmp,
        &mut |dl| {
            dead.push(dl);
            Ok(())
        },
        &mut |_| true,
    )
    .unwrap();
    (runs.merge(None).unwrap().map(|s| s.unwrap().record).collect(), dead)
}

/// Every instance's account tasks read what arrived, apply it and commit;
/// instance `crash`, if any, fails its first commit and is returned as
/// crashed: what its tasks applied since their last commit is lost.
pub(super) fn step(instances: &mut [AccountTasks], raised: &mut Vec<Alert>, refused: &mut BTreeSet<(String, String)>, crash: Option<usize>) -> bool {
    let mut crashed = false;
    for (n, i) in instances.iter_mut().enumerate() {
        let fail = crash == Some(n);
        match i.step(Duration::from_millis(50), |_, _, _| if fail { Err(EngineError::Repartition("crash".into())) } else { Ok(()) }) {
            Ok(committed) => {
                for (_, c) in committed {
                    raised.extend(c.alerts);
                    refused.extend(refused_decisions(&c.dead_letters));
                }
            }
            Err(e) if fail => {
                assert!(e.to_string().contains("crash"), "{e}");
                crashed = true;
            }
            Err(e) => panic!("{e}"),
        }
    }
    crashed
}

/// A decision record on an account's case, as the decisions file has it:
/// closed as a false positive at the end of the ledger.
pub(super) fn decision_line(id: &str, rule: Rule, subject: &str, tz: paywatch::model::Tz) -> String {
    use paywatch::model::decision::{case_id, Decision, Outcome as Decided};
    let d = Decision {
        decision_id: id.into(),
        case_id: case_id(rule, subject),
        rule,
        subject: subject.into(),
        outcome: Decided::FalsePositive,
        action: None,
        amount_recovered: None,
        document_no: None,
        clue_no: None,
        note: None,
        decided_by: "水阳镇".into(),
        decided_at: tz.day_start(paywatch::model::time::Date::from_ymd(2021, 12, 31)),
    };
    let mut v = paywatch::report::decision_json(&d, tz);
    if let Some(m) = v.as_object_mut() {
        m.retain(|_, v| !v.is_null());
    }
    v.to_string()
}

/// Refused decisions, as (id, reason code).
pub(super) fn refused_decisions(dead: &[DeadLetter]) -> BTreeSet<(String, String)> {
    dead.iter()
        .filter_map(|d| {
            let v: serde_json::Value = serde_json::from_str(&d.raw).ok()?;
            let id = v.get("decision_id")?.as_str()?.to_owned();
            Some((id, d.code().to_owned()))
        })
        .collect()
}

/// A generated ledger with two decisions on accounts' cases added (one
/// closing the first `SHARED_ACCOUNT` case, one on an account no alert
/// names), what `paywatch audit` makes of it, and its records in order.
pub(super) struct Prepared {
    pub(super) cfg: Config,
    /// The audit's alerts: id and rule.
    pub(super) want: BTreeMap<String, Rule>,
    /// The audit's refused decisions: id and reason code.
    pub(super) want_refused: BTreeSet<(String, String)>,
    pub(super) records: Vec<Record>,
    /// Lines refused as they were read.
    pub(super) decoded_dead: Vec<DeadLetter>,
}

pub(super) fn prepare(tmp: &Path, households: usize) -> Prepared {
    let g = ledger(&tmp.join("ledger"), households, OutFormat::Jsonl, 7);
    let first_out = tmp.join("first.jsonl");
    run_ok(audit(&g, &first_out, &[]));
    let shared = alerts(&first_out).into_iter().find(|a| a.rule == Rule::SharedAccount).expect("the generator plants shared accounts");
    let cfg = Config::parse("").unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(&g.decisions).unwrap();
    writeln!(f, "{}", decision_line("DEC-ACCOUNT-1", Rule::SharedAccount, shared.account_no.as_deref().unwrap(), cfg.tz())).unwrap();
    writeln!(f, "{}", decision_line("DEC-ACCOUNT-2", Rule::FrequentPayments, "6217009999999999", cfg.tz())).unwrap();
    drop(f);
    let out = tmp.join("audit.jsonl");
    let dead_out = tmp.join("audit-dead.jsonl");
    run_ok(audit(&g, &out, &["--deadletter", dead_out.to_str().unwrap()]));
    let want: BTreeMap<String, Rule> = alerts(&out).into_iter().map(|a| (a.alert_id, a.rule)).collect();
    let want_refused = refused_decisions(&read_jsonl(&dead_out));
    assert!(want_refused.contains(&("DEC-ACCOUNT-2".into(), "unknown_case".into())), "{want_refused:?}");
    assert!(!want_refused.iter().any(|(id, _)| id == "DEC-ACCOUNT-1"), "{want_refused:?}");
    let inputs = Inputs { decisions: Some(g.decisions.clone()), vulnerable: Some(g.vulnerable.clone()), ..Inputs::new(g.roster.clone(), g.deaths.clone(), g.payments.clone()) };
    let sort = tmp.join("sort");
    std::fs::create_dir_all(&sort).unwrap();
    let (records, decoded_dead) = records(&inputs, &cfg, &sort);
    Prepared { cfg, want, want_refused, records, decoded_dead }
}

#[test]
fn a_person_side_and_account_tasks_on_the_broker_raise_the_audit_s_alerts() {
    let tmp = tempfile::tempdir().unwrap();
    let Prepared { cfg, want, want_refused, records, decoded_dead } = prepare(tmp.path(), 1_000);

    let broker = Broker::start(tmp.path());
    let kafka = KafkaConfig { brokers: broker.addr.clone(), ..KafkaConfig::default() };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let group = "away";
    let layout = Layout { persons: LANES, decisions: 1, accounts: ACCOUNTS, custodians: LANES, households: LANES };
    rt.block_on(ensure_topics(&kafka, group, layout, 1)).unwrap();

    let person_dir = tmp.path().join("person");
    let mut person = PersonSide::open(&person_dir, &cfg, &kafka, group);
    assert_eq!(person.engine.away_layout(), Some(layout));
    let task_dir = |p: u32| tmp.path().join(format!("accounts-{p}"));
    let open_task = |p: u32| engine(&task_dir(p), &cfg, 1);
    // Instance X holds tasks 0 and 1, Y task 2.
    let mut instances: Vec<AccountTasks> = (0..2).map(|_| AccountTasks::open(&kafka, group, layout).unwrap()).collect();
    for p in 0..ACCOUNTS {
        instances[(p / 2) as usize].add(p, open_task(p)).unwrap();
    }

    let mut raised: Vec<Alert> = Vec::new();
    // Decisions refused as their lines were read are refused by nobody else.
    let mut refused = refused_decisions(&decoded_dead);
    let (mut done, mut round) = (0usize, 0usize);
    let mut sent = vec![0i64; ACCOUNTS as usize];
    let mut y_crashed = false;
    let mut person_refused = Vec::new();
    while done < records.len() {
        let end = (done + CHUNK).min(records.len());
        for r in &records[done..end] {
            if let Outcome::Rejected(why) = person.engine.apply(r).unwrap() {
                person_refused.push((r.clone(), why));
            }
        }
        round += 1;
        if round == 3 {
            // The person side crashes: what it applied since its commit
            // is lost, and applied again from there.
            drop(person);
            person_refused.clear();
            person = PersonSide::open(&person_dir, &cfg, &kafka, group);
            continue;
        }
        // Round 4 is committed and the person side crashes before
        // publishing it: the next one publishes it with its own.
        raised.extend(person.commit(&rt, &mut sent, round != 4));
        for (r, why) in person_refused.drain(..) {
            if let Record::Decision(d) = r {
                refused.insert((d.decision_id, why.reason.code().to_owned()));
            }
        }
        if round == 4 {
            drop(person);
            person = PersonSide::open(&person_dir, &cfg, &kafka, group);
        }
        done = end;
        // Y crashes in round 6 after applying what it read, before its
        // commit (stepped until it has read something), and starts again
        // on its tasks' stores.
        let mut crashed = step(&mut instances, &mut raised, &mut refused, (round == 6).then_some(1));
        let crash_by = Instant::now() + Duration::from_secs(30);
        while round == 6 && !crashed {
            assert!(Instant::now() < crash_by, "Y read nothing in round 6");
            crashed = step(&mut instances, &mut raised, &mut refused, Some(1));
        }
        if crashed {
            y_crashed = true;
            let held: Vec<u32> = instances[1].partitions().collect();
            assert_eq!(held, [1, 2]);
            instances[1] = AccountTasks::open(&kafka, group, layout).unwrap();
            for p in held {
                instances[1].add(p, open_task(p)).unwrap();
            }
        }
        if round == 5 {
            // Task 1 moves from X to Y with its store.
            let e = instances[0].remove(1).unwrap().expect("X holds task 1");
            instances[1].add(1, e).unwrap();
        }
    }
    // Everything is published: the tasks read to the end of what was
    // sent to their partitions (the records of a commit lost in the crash
    // were never sent).
    let deadline = Instant::now() + Duration::from_secs(60);
    let read = |instances: &[AccountTasks]| -> Vec<i64> {
        (0..ACCOUNTS).map(|p| instances.iter().find_map(|i| i.next_offset(p)).expect("a task of every partition")).collect()
    };
    while read(&instances).iter().zip(&sent).any(|(r, s)| r < s) {
        assert!(Instant::now() < deadline, "the tasks read to {:?}, {sent:?} were sent", read(&instances));
        step(&mut instances, &mut raised, &mut refused, None);
    }
    assert!(y_crashed, "Y read something in round 6 and crashed before committing it");
    assert!(instances.iter().all(|i| i.held() == 0), "every writer marked past what it wrote");
    let got: BTreeMap<String, Rule> = raised.iter().map(|a| (a.alert_id.clone(), a.rule)).collect();
    assert_eq!(raised.len(), got.len(), "an alert raised twice");
    let missing: Vec<_> = want.iter().filter(|(id, _)| !got.contains_key(*id)).take(5).collect();
    let extra: Vec<_> = got.iter().filter(|(id, _)| !want.contains_key(*id)).take(5).collect();
    assert!(missing.is_empty() && extra.is_empty(), "missing {missing:?}, extra {extra:?} ({} of {})", got.len(), want.len());
    assert_eq!(refused, want_refused);
    // The account tasks raised the accounts' alerts, and only those.
    let engines: Vec<&Engine> = (0..ACCOUNTS).map(|p| instances.iter().find_map(|i| i.engine(p)).unwrap()).collect();
    let by_tasks: BTreeSet<String> = engines.iter().flat_map(|e| e.committed_alerts().map(|a| a.unwrap().rule.code().to_owned())).collect();
    assert_eq!(by_tasks, ["FREQUENT_PAYMENTS", "SHARED_ACCOUNT"].map(String::from).into_iter().collect());
    let per_task: Vec<usize> = engines.iter().map(|e| e.committed_alerts().count()).collect();
    assert!(per_task.iter().filter(|n| **n > 0).count() >= 2, "the accounts' alerts fall on several tasks: {per_task:?}");
    eprintln!("{} alerts, {} of them raised by the account tasks {per_task:?}; {} records", got.len(), per_task.iter().sum::<usize>(), records.len());
}
