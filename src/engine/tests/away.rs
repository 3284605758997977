//! The accounts on other instances (`away.rs`): a person side that sends
//! its accounts' facts away, and account tasks that read them from
//! partition logs standing in for `by-account` (the broker's part is
//! `it::away`), together raise the alerts and refuse the decisions one
//! engine does, through crashes of either side and records published
//! twice.

use super::arrival::{cases, seen, Seen};
use super::*;
use crate::engine::repartition::{Fact, Layout, Outgoing, Reader, ReaderState, Topic};
use crate::model::decision::Outcome as Decided;
use crate::model::Timestamp;
use crate::store::Cf;
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::path::Path;

/// Where a test account task keeps its reader's checkpoint.
const CHECKPOINT: &[u8] = b"test-account-reader";

fn open(dir: &Path, lanes: u32) -> Engine {
    let store = Store::open(dir, StoreOptions { block_cache_mb: 8, write_buffer_mb: 4, sync: false, statistics: false }).unwrap();
    let clock = Arc::new(FixedClock::new(ts("2026-01-01T00:00:00+08:00")));
    Engine::open_with_lanes(store, RulesConfig::default(), Tz::default(), 64, clock, lanes).unwrap()
}

/// Beneficiaries, each in a household of their own.
const BENS: [&str; 4] = [BID, "341802196002020025", "341802198004040045", "341802197003030035"];
/// The accounts they may share, the custodian who may be registered for
/// them, and where a decision goes.
const ACCOUNTS: [&str; 2] = ["6217005555555555", "6217006666666666"];

/// One record of a generated ledger, before it is made concrete.
#[derive(Clone, Debug)]
enum Gen {
    /// A roster version of beneficiary `b`, registering a custodian on
    /// account `a` (which counts toward n of `FREQUENT_PAYMENTS`).
    Roster { b: usize, day: i64, registers: Option<usize> },
    /// A payment of beneficiary `b`, into shared account `a` or their own.
    Pay { b: usize, day: i64, into: Option<usize> },
    /// A decision on account `a`'s case (see [`decision`]).
    Decide { a: usize, kind: u8, day: i64 },
}

fn at(day: i64, minute: i64) -> Timestamp {
    Timestamp(ts("2019-01-01T08:00:00+08:00").0 + day * crate::model::time::MS_PER_DAY + minute * 60_000)
}

/// A decision on one of account `a`'s cases. Kinds 0 and 3 are one
/// decision (3 a redelivery, or the first when it comes first); 1 reuses
/// its id with other content (refused); 2 closes the other rule's case as
/// a false positive, or is refused when that case has no alert.
fn decision(a: usize, kind: u8, t: Timestamp) -> Record {
    let (id, rule, outcome) = match kind {
        0 | 3 => (format!("D-{a}"), Rule::SharedAccount, Decided::Rectified),
        1 => (format!("D-{a}"), Rule::SharedAccount, Decided::Confirmed),
        _ => (format!("F-{a}"), Rule::FrequentPayments, Decided::FalsePositive),
    };
    let Record::Decision(mut d) = super::cases::decision_on(&id, rule, ACCOUNTS[a], outcome, "2019-01-01T08:00:00+08:00") else { unreachable!() };
    d.decided_at = t;
    Record::Decision(d)
}

/// The records of a generated ledger, in event-time order.
fn ledger(gens: &[Gen]) -> Vec<Record> {
    let mut out: Vec<Record> = gens
        .iter()
        .enumerate()
        .map(|(i, g)| match *g {
            Gen::Roster { b, day, registers } => {
                let mut r = roster(Status::Active, "2018-01-01", "2019-01-01T08:00:00+08:00");
                r.beneficiary_id = PersonId::parse(BENS[b]).unwrap();
                r.household_id = format!("H{b}");
                r.updated_at = at(day, i as i64);
                r.custodians = registers
                    .map(|a| Custodian { name: "王五".into(), account_no: ACCOUNTS[a].into(), registered_at: Tz::default().date(at(0, 0)), revoked_at: None, id_no: None })
                    .into_iter()
                    .collect();
                Record::Roster(r)
            }
            Gen::Pay { b, day, into } => {
                let t = at(day, i as i64);
                let mut p = payment(&format!("E{i}"), "2019-01", "585.00", "2019-01-10T10:00:00+08:00");
                p.period = crate::model::Period::of(Tz::default().date(t));
                p.paid_at = t;
                p.scheduled_at = Tz::default().date(t);
                p.beneficiary_id = PersonId::parse(BENS[b]).unwrap();
                p.household_id = format!("H{b}").as_str().into();
                if let Some(a) = into {
                    (p.account_no, p.account_name) = (ACCOUNTS[a].into(), "张三".into());
                } else {
                    p.account_no = format!("62170000000000{b:02}").into();
                }
                Record::Payment(p)
            }
            Gen::Decide { a, kind, day } => decision(a, kind, at(day, i as i64)),
        })
        .collect();
    out.sort_by_key(Record::event_time);
    out
}

fn gen() -> impl Strategy<Value = Gen> {
    prop_oneof![
        2 => (0..4usize, 0..1500i64, proptest::option::of(0..2usize)).prop_map(|(b, day, registers)| Gen::Roster { b, day, registers }),
        8 => (0..4usize, 0..1500i64, proptest::option::weighted(0.7, 0..2usize)).prop_map(|(b, day, into)| Gen::Pay { b, day, into }),
        1 => (0..2usize, 0..4u8, 0..1500i64).prop_map(|(a, kind, day)| Gen::Decide { a, kind, day }),
    ]
}

/// What one engine raises, and the decisions it refuses (by id and kind).
fn one_engine(records: &[Record]) -> (Seen, BTreeSet<(String, String)>) {
    let dir = tempfile::tempdir().unwrap();
    let mut e = open(dir.path(), 1);
    let mut refused = BTreeSet::new();
    for r in records {
        if let (Outcome::Rejected(why), Record::Decision(d)) = (e.apply(r).unwrap(), r) {
            refused.insert((d.decision_id.clone(), why.reason.code().to_owned()));
        }
    }
    (seen(&e.commit(None).unwrap().alerts), refused)
}

/// An account task: its engine, its reader, where it is in its log.
struct Task {
    partition: u32,
    dir: tempfile::TempDir,
    engine: Engine,
    reader: Reader,
    offset: usize,
    /// Refused decisions since the last commit, then committed.
    refusing: Vec<(String, String)>,
}

impl Task {
    fn open(dir: tempfile::TempDir, partition: u32, layout: Layout) -> Task {
        let engine = open(dir.path(), 1);
        let (offset, reader) = match engine.store().get::<(u64, ReaderState)>(Cf::Meta, CHECKPOINT).unwrap() {
            Some((o, s)) => (o as usize, Reader::resume(Topic::ByAccount, partition, layout, s).unwrap()),
            None => (0, Reader::new(Topic::ByAccount, partition, layout)),
        };
        Task { partition, dir, engine, reader, offset, refusing: Vec::new() }
    }

    /// Reads its log to the end, applies what is released, commits.
    fn step(&mut self, log: &[Vec<u8>], alerts: &mut Vec<Alert>, refused: &mut BTreeSet<(String, String)>) {
        for bytes in &log[self.offset..] {
            self.reader.receive(bytes).unwrap();
            self.offset += 1;
        }
        while let Some((_, fact)) = self.reader.pop() {
            let id = match &fact {
                Fact::Decision(d) => d.decision_id.clone(),
                _ => String::new(),
            };
            if let Outcome::Rejected(why) = self.engine.apply_account_fact(fact).unwrap() {
                self.refusing.push((id, why.reason.code().to_owned()));
            }
        }
        let (offset, reader) = (self.offset as u64, &self.reader);
        let c = self.engine.commit_with(None, |b, _| Ok(b.put(Cf::Meta, CHECKPOINT, &(offset, reader.checkpoint()))?)).unwrap();
        alerts.extend(c.alerts);
        refused.extend(self.refusing.drain(..));
    }

    /// Loses what it did since its commit and opens again.
    fn crash(self, layout: Layout) -> Task {
        let Task { partition, dir, engine, .. } = self;
        drop(engine);
        Task::open(dir, partition, layout)
    }
}

/// What the person side and `accounts` account tasks raise and refuse
/// together: the person side in `lanes` lanes commits every `chunk`
/// records and crashes (losing what it applied since) where `crashes`
/// says, publishing its last commit's records twice when `twice`; each
/// account task reads its log after every commit and crashes every
/// `task_crash`th time.
fn split(records: &[Record], lanes: u32, accounts: u32, chunk: usize, crashes: &[usize], twice: bool, task_crash: usize) -> (Seen, BTreeSet<(String, String)>, u64) {
    let person_dir = tempfile::tempdir().unwrap();
    let mut person = open(person_dir.path(), lanes);
    person.send_accounts_away(accounts).unwrap();
    let layout = person.away_layout().unwrap();
    assert_eq!((layout.persons, layout.accounts), (lanes, accounts));
    let mut logs: Vec<Vec<Vec<u8>>> = vec![Vec::new(); accounts as usize];
    let mut tasks: Vec<Task> = (0..accounts).map(|p| Task::open(tempfile::tempdir().unwrap(), p, layout)).collect();
    let (mut alerts, mut refused) = (Vec::new(), BTreeSet::new());
    let (mut done, mut round, mut crashed) = (0usize, 0usize, 0usize);
    while done < records.len() {
        let end = (done + chunk).min(records.len());
        for r in &records[done..end] {
            if let (Outcome::Rejected(why), Record::Decision(d)) = (person.apply(r).unwrap(), r) {
                refused.insert((d.decision_id.clone(), why.reason.code().to_owned()));
            }
        }
        round += 1;
        if crashed < crashes.len() && crashes[crashed] == round {
            // Nothing of these records was committed, so nothing left.
            crashed += 1;
            drop(person);
            person = open(person_dir.path(), lanes);
            person.send_accounts_away(accounts).unwrap();
            continue;
        }
        let mut sent: Vec<Outgoing> = Vec::new();
        let c = person.commit_with(None, |_, staged| {
            sent = staged.leaving.to_vec();
            Ok(())
        });
        alerts.extend(c.unwrap().alerts);
        for o in sent.iter().chain(if twice { &sent[sent.len() / 2..] } else { &[][..] }) {
            assert_eq!(o.topic, Topic::ByAccount, "only by-account leaves");
            logs[o.partition as usize].push(o.value.clone());
        }
        done = end;
        tasks = tasks
            .into_iter()
            .map(|mut t| {
                t.step(&logs[t.partition as usize], &mut alerts, &mut refused);
                if round % task_crash == 0 { t.crash(layout) } else { t }
            })
            .collect();
    }
    let mut repeats = 0;
    for t in &mut tasks {
        t.step(&logs[t.partition as usize], &mut alerts, &mut refused);
        assert_eq!(t.reader.held(), 0, "every writer marked past what it wrote");
        repeats += t.reader.repeats();
    }
    // A step's alerts belong to the account tasks alone.
    let accounts_ids: Vec<&Alert> = alerts.iter().filter(|a| matches!(a.rule, Rule::SharedAccount | Rule::FrequentPayments)).collect();
    assert_eq!(accounts_ids.len(), accounts_ids.iter().map(|a| &a.alert_id).collect::<BTreeSet<_>>().len(), "no alert raised twice");
    (seen(&alerts), refused, repeats)
}

/// A hand-made ledger: three beneficiaries paid into one account raise
/// SHARED_ACCOUNT there, and FREQUENT_PAYMENTS; the shared case is
/// rectified, and relapses when the account is shared again after more
/// than a window (W = 365 days) below the threshold. A redelivery is accepted,
/// a reused id and a decision on a case with no alert are refused.
#[test]
fn account_tasks_elsewhere_raise_and_decide_what_one_engine_does() {
    let mut gens: Vec<Gen> = (0..3).map(|b| Gen::Roster { b, day: b as i64, registers: None }).collect();
    for day in [10i64, 11, 12, 13, 800, 801, 802] {
        gens.push(Gen::Pay { b: (day % 3) as usize, day, into: Some(0) });
    }
    gens.push(Gen::Decide { a: 1, kind: 2, day: 5 });
    gens.push(Gen::Decide { a: 0, kind: 0, day: 410 });
    gens.push(Gen::Decide { a: 0, kind: 3, day: 411 });
    gens.push(Gen::Decide { a: 0, kind: 1, day: 412 });
    let records = ledger(&gens);
    let (alerts, refused) = one_engine(&records);
    let rules: BTreeSet<Rule> = alerts.values().map(|a| a.0).collect();
    for r in [Rule::SharedAccount, Rule::FrequentPayments, Rule::RectificationRelapse] {
        assert!(rules.contains(&r), "{r:?} not in {rules:?}");
    }
    let want_refused: BTreeSet<(String, String)> = [("D-0", "conflicting_decision"), ("F-1", "unknown_case")].iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    assert_eq!(refused, want_refused);
    for (lanes, accounts) in [(1, 1), (2, 3)] {
        let (got, got_refused, _) = split(&records, lanes, accounts, 2, &[], false, usize::MAX);
        assert!(got == alerts, "{lanes} lanes, {accounts} account partitions: {} alerts, not {}", got.len(), alerts.len());
        assert_eq!(got_refused, refused);
    }
}

/// The generated ledgers reach what the property is about: both
/// accounts' rules, a relapse of an account's case, and decisions refused
/// there.
#[test]
fn the_generator_reaches_the_accounts_rules_and_refusals() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let ledgers = proptest::collection::vec(gen(), 10..60);
    let (mut rules, mut reasons) = (BTreeSet::new(), BTreeSet::new());
    for _ in 0..48 {
        let (alerts, refused) = one_engine(&ledger(&ledgers.new_tree(&mut runner).unwrap().current()));
        rules.extend(alerts.values().map(|a| a.0));
        reasons.extend(refused.into_iter().map(|(_, why)| why));
    }
    for r in [Rule::SharedAccount, Rule::FrequentPayments, Rule::RectificationRelapse] {
        assert!(rules.contains(&r), "{r:?} not in {rules:?}");
    }
    for why in ["unknown_case", "conflicting_decision"] {
        assert!(reasons.contains(why), "{why} not in {reasons:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(32), ..ProptestConfig::default() })]

    /// Any ledger of the arrival generator, with decisions on X's
    /// account's cases anywhere: the person side in 1 or 2 lanes and 1 to
    /// 3 account tasks raise the alerts and refuse the decisions one
    /// engine does, whatever the commits, with the person side crashing
    /// before commits, its records published twice in part, and account
    /// tasks crashing after theirs.
    #[test]
    fn the_person_side_and_its_account_tasks_give_one_engine_s_alerts(
        gens in proptest::collection::vec(gen(), 10..60),
        by in prop_oneof![Just(1i64), Just(10)],
        lanes in 1..=2u32,
        accounts in 1..=3u32,
        chunk in 1..12usize,
        crashes in proptest::collection::btree_set(1..20usize, 0..3),
        twice: bool,
        task_crash in 1..5usize,
    ) {
        let squeezed: Vec<Gen> = gens
            .into_iter()
            .map(|g| match g {
                Gen::Roster { b, day, registers } => Gen::Roster { b, day: day / by, registers },
                Gen::Pay { b, day, into } => Gen::Pay { b, day: day / by, into },
                Gen::Decide { a, kind, day } => Gen::Decide { a, kind, day: day / by },
            })
            .collect();
        let records = ledger(&squeezed);
        let (alerts, refused) = one_engine(&records);
        let crashes: Vec<usize> = crashes.into_iter().collect();
        let (got, got_refused, repeats) = split(&records, lanes, accounts, chunk, &crashes, twice, task_crash);
        prop_assert!(got == alerts, "{} alerts, not {}", got.len(), alerts.len());
        prop_assert_eq!(got_refused, refused);
        if !twice {
            prop_assert_eq!(repeats, 0);
        }
    }
}

/// The person side's writers are committed with its state: opened again
/// with another lane count or partition count it refuses, naming both.
#[test]
fn a_person_side_opened_with_other_counts_is_refused() {
    let records = ledger(&[Gen::Roster { b: 0, day: 0, registers: None }, Gen::Pay { b: 0, day: 1, into: Some(0) }]);
    let dir = tempfile::tempdir().unwrap();
    let mut e = open(dir.path(), 2);
    e.send_accounts_away(3).unwrap();
    for r in &records {
        e.apply(r).unwrap();
    }
    let err = e.commit(None).unwrap_err().to_string();
    assert!(err.contains("commit_with"), "{err}");
    e.commit_with(None, |_, s| {
        assert!(!s.leaving.is_empty());
        Ok(())
    })
    .unwrap();
    drop(e);
    let mut e = open(dir.path(), 2);
    let err = e.send_accounts_away(2).unwrap_err().to_string();
    assert!(err.contains("2 lanes and 2 partitions"), "{err}");
    drop(e);
    let mut e = open(dir.path(), 1);
    let err = e.send_accounts_away(3).unwrap_err().to_string();
    assert!(err.contains("1 lanes and 3 partitions"), "{err}");
    // An account's fact is refused by the side that sends them away.
    drop(e);
    let mut e = open(dir.path(), 2);
    e.send_accounts_away(3).unwrap();
    let Record::Decision(d) = decision(0, 0, Timestamp(0)) else { unreachable!() };
    assert!(e.apply_account_fact(Fact::Decision(d)).is_err());
}
