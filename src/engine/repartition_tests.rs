//! The repartition records: every fact survives the wire and reaches the
//! partition of its key; what may not be read is refused; and facts from
//! many writers, interleaved as a broker would, come out of each reader in
//! the single-process order.

use super::*;
use crate::detect::episode::{Change, WindowEntry};
use crate::engine::registrations::{Validity, Versions};
use crate::model::decision::{case_id, Action, Outcome};
use crate::model::id::check_char;
use crate::model::time::Date;
use crate::model::{Custodian, DeathRecord, DeathSource, Money, PersonId, Program, Rule, RosterRecord, Status, Timestamp};
use proptest::prelude::*;
use std::collections::BTreeMap;

pub(super) const LAYOUT: Layout = Layout { persons: 3, decisions: 2, accounts: 4, custodians: 2, households: 3 };

pub(super) fn key(time: i64, line: u64) -> SortKey {
    SortKey { time: Timestamp(time), rank: 0, source: 2, line }
}

/// A valid identity number ending in `n`.
fn id(n: u32) -> PersonId {
    let first17 = format!("11010119800101{:03}", n % 1000);
    PersonId::parse(&format!("{first17}{}", check_char(first17.as_bytes()))).unwrap()
}

fn death(n: u32) -> DeathRecord {
    DeathRecord {
        record_id: format!("DR{n}"),
        person_id: id(n),
        name: "张三".into(),
        date_of_death: Date::from_ymd(2021, 3, 4),
        source: DeathSource::FuneralHome,
        reported_at: Timestamp(1_614_816_000_000),
    }
}

fn roster(n: u32) -> RosterRecord {
    RosterRecord {
        beneficiary_id: id(n),
        name: "李四".into(),
        household_id: "H-7".into(),
        township: "城关镇".into(),
        program: Program::RuralDibao,
        status: Status::Active,
        enrolled_at: Date::from_ymd(2018, 1, 1),
        status_since: Date::from_ymd(2018, 1, 1),
        monthly_amount: Money::parse("585.00").unwrap(),
        filed_relative: false,
        custodians: vec![Custodian {
            name: "王五".into(),
            account_no: "6217000011112222".into(),
            registered_at: Date::from_ymd(2019, 5, 1),
            revoked_at: Some(Date::from_ymd(2022, 1, 1)),
            id_no: Some(id(900)),
        }],
        updated_at: Timestamp(1_546_300_800_000),
    }
}

fn decision(n: u64, rule: Rule, subject: &str) -> Decision {
    Decision {
        decision_id: format!("D{n}"),
        case_id: case_id(rule, subject),
        rule,
        subject: subject.into(),
        outcome: Outcome::Rectified,
        action: Some(Action::Recovered),
        amount_recovered: Some(Money::parse("1170.00").unwrap()),
        document_no: Some("民整〔2024〕3号".into()),
        clue_no: None,
        note: Some("已追回".into()),
        decided_by: "城关镇".into(),
        decided_at: Timestamp(1_700_000_000_000 + n as i64),
    }
}

/// One fact of each kind, and who writes it.
pub(super) fn one_of_each() -> Vec<(Task, Fact)> {
    let mut entry = Versions::default();
    entry.record(id(3).as_str(), Timestamp(5), true);
    entry.record(id(4).as_str(), Timestamp(9), false);
    let entry_add = WindowEntry {
        event_id: "E1".into(),
        paid_at: Timestamp(1_600_000_000_000),
        household_id: "H-1".into(),
        amount: Money::parse("585.00").unwrap(),
        exempt: true,
        reversed: false,
    };
    let step = |change| Step {
        account_no: "6217000011112222".into(),
        township: "城关镇".into(),
        at: Timestamp(1_600_000_000_000),
        day: Date::from_ymd(2020, 9, 13),
        change,
    };
    vec![
        (Task::Person, Fact::Step(step(Change::Add(entry_add)))),
        (Task::Person, Fact::Step(step(Change::Reverse("E1".into())))),
        (
            Task::Person,
            Fact::Registered(Registration {
                account_no: "6217000011112222".into(),
                person: id(1).as_str().into(),
                updated_at: Timestamp(7),
                valid: vec![Validity { from: Date::from_ymd(2019, 5, 1), until: None }],
            }),
        ),
        (Task::Person, Fact::Key(KeyFact::CustodianVersion { custodian: id(900), person: id(1).as_str().into(), version: roster(1) })),
        (Task::Person, Fact::Key(KeyFact::OverloadCount { custodian: id(900), record: roster(2) })),
        (Task::Person, Fact::Key(KeyFact::PersonDied { person: id(900), death: death(900) })),
        (Task::Person, Fact::Key(KeyFact::MemberVersion { household: "H-7".into(), person: id(1).as_str().into(), updated_at: Timestamp(3), covered: true })),
        (Task::Person, Fact::Key(KeyFact::Watch { household: "H-7".into(), person: id(2).as_str().into() })),
        (Task::Custodian, Fact::Person(PersonFact::CustodianDied { beneficiary: id(1).as_str().into(), death: death(900) })),
        (Task::Household, Fact::Person(PersonFact::HouseholdEntry { person: id(2).as_str().into(), household: "H-7".into(), entry })),
        (
            Task::Household,
            Fact::Person(PersonFact::HouseholdVersion {
                person: id(2).as_str().into(),
                household: "H-7".into(),
                member: id(3).as_str().into(),
                updated_at: Timestamp(11),
                covered: false,
            }),
        ),
        (Task::Decisions, Fact::Decision(decision(1, Rule::SharedAccount, "6217000011112222"))),
        (Task::Decisions, Fact::Decision(decision(2, Rule::NameMismatch, id(1).as_str()))),
        (Task::Decisions, Fact::Decision(decision(3, Rule::CustodianOverload, id(900).as_str()))),
    ]
}

#[test]
fn topics_are_named_after_the_group() {
    let names: Vec<String> = Topic::ALL.iter().map(|t| t.name("district-7")).collect();
    assert_eq!(
        names,
        ["paywatch.district-7.by-account", "paywatch.district-7.by-custodian", "paywatch.district-7.by-household", "paywatch.district-7.by-person"]
    );
}

/// Each fact is written to the partition Kafka's default partitioner gives
/// its key, keyed by it, and read back there unchanged.
#[test]
fn every_fact_survives_the_wire_and_reaches_its_keys_partition() {
    let expected_topics = [
        Topic::ByAccount,
        Topic::ByAccount,
        Topic::ByAccount,
        Topic::ByCustodian,
        Topic::ByCustodian,
        Topic::ByCustodian,
        Topic::ByHousehold,
        Topic::ByHousehold,
        Topic::ByPerson,
        Topic::ByPerson,
        Topic::ByPerson,
        Topic::ByAccount,
        Topic::ByPerson,
        Topic::ByPerson,
    ];
    for (i, ((task, fact), topic)) in one_of_each().into_iter().zip(expected_topics).enumerate() {
        let mut w = Writer::new(Upstream { task, partition: 1 }, LAYOUT);
        let out = w.fact(key(100, i as u64), fact.clone()).unwrap();
        assert_eq!(out.topic, topic, "{fact:?}");
        let k = out.key.clone().expect("a fact is keyed");
        assert_eq!(k, fact.route().1.as_bytes());
        assert_eq!(out.partition, partition::of(&k, LAYOUT.partitions(topic)));
        let mut r = Reader::new(topic, out.partition, LAYOUT);
        r.receive(&out.value).unwrap();
        if task != Task::Custodian && task != Task::Household {
            assert_eq!(r.pop(), None, "an ordered fact waits for every writer's mark");
            for writer in topic.writers() {
                for p in 0..LAYOUT.tasks(writer.0) {
                    let marks = Writer::new(Upstream { task: writer.0, partition: p }, LAYOUT).marks(key(100, i as u64)).unwrap();
                    for m in marks.iter().filter(|m| m.topic == topic && m.partition == out.partition) {
                        assert_eq!(m.key, None);
                        r.receive(&m.value).unwrap();
                    }
                }
            }
        }
        assert_eq!(r.pop(), Some((key(100, i as u64), fact)));
        assert_eq!(r.held(), 0);
    }
}

#[test]
fn a_fact_read_where_its_key_does_not_live_is_refused() {
    let mut w = Writer::new(Upstream { task: Task::Person, partition: 0 }, LAYOUT);
    let (_, fact) = one_of_each().swap_remove(0);
    let out = w.fact(key(1, 1), fact).unwrap();
    let other = (out.partition + 1) % LAYOUT.accounts;
    let e = Reader::new(Topic::ByAccount, other, LAYOUT).receive(&out.value).unwrap_err();
    assert!(matches!(e, WireError::Misrouted { topic: Topic::ByAccount, partition, expected } if partition == other && expected == out.partition), "{e}");
    assert!(e.to_string().contains("partition counts differ"), "{e}");
    let e = Reader::new(Topic::ByCustodian, 0, LAYOUT).receive(&out.value).unwrap_err();
    assert!(matches!(e, WireError::WrongTopic { topic: Topic::ByCustodian, wanted: Topic::ByAccount }), "{e}");
}

#[test]
fn a_task_that_may_not_send_a_fact_is_refused_on_both_sides() {
    let (_, step) = one_of_each().swap_remove(0);
    let mut custodians = Writer::new(Upstream { task: Task::Custodian, partition: 0 }, LAYOUT);
    let e = custodians.fact(key(1, 1), step.clone()).unwrap_err();
    assert!(matches!(e, WireError::NotAWriter { task: Task::Custodian, topic: Topic::ByAccount }), "{e}");
    // Written by hand, as a broken or foreign writer would.
    let forged = encode(&Envelope { from: Upstream { task: Task::Custodian, partition: 0 }, at: key(1, 1), seq: 0, fact: Some(step.clone()) }).unwrap();
    let p = partition::of(step.route().1.as_bytes(), LAYOUT.accounts);
    let e = Reader::new(Topic::ByAccount, p, LAYOUT).receive(&forged).unwrap_err();
    assert!(matches!(e, WireError::NotAWriter { .. }), "{e}");
    let beyond = encode(&Envelope { from: Upstream { task: Task::Person, partition: LAYOUT.persons }, at: key(1, 1), seq: 0, fact: Some(step) }).unwrap();
    let e = Reader::new(Topic::ByAccount, p, LAYOUT).receive(&beyond).unwrap_err();
    assert!(matches!(e, WireError::NoSuchUpstream { task: Task::Person, partition: 3, tasks: 3 }), "{e}");
}

#[test]
fn another_version_and_garbage_are_refused() {
    let mut r = Reader::new(Topic::ByAccount, 0, LAYOUT);
    assert!(matches!(r.receive(&[]), Err(WireError::Empty)));
    assert!(matches!(r.receive(&[1, 0, 0]), Err(WireError::Version { found: 1 })), "the version before stream numbers");
    assert!(matches!(r.receive(&[VERSION, 0xff, 0xff, 0xff]), Err(WireError::Decode(_))));
    let mark = Writer::new(Upstream { task: Task::Person, partition: 0 }, LAYOUT).marks(key(5, 5)).unwrap().swap_remove(0);
    assert!(matches!(r.receive(&mark.value[..mark.value.len() - 1]), Err(WireError::Decode(_))), "a cut record");
    assert_eq!(r.through(Task::Person), None, "nothing refused was kept");
}

#[test]
fn a_writer_going_back_is_refused() {
    let mut w = Writer::new(Upstream { task: Task::Custodian, partition: 1 }, LAYOUT);
    let (_, fact) = one_of_each().swap_remove(8);
    let late = w.fact(key(9, 9), fact.clone()).unwrap();
    let early = w.fact(key(3, 3), fact).unwrap();
    let mut r = Reader::new(Topic::ByPerson, late.partition, LAYOUT);
    r.receive(&late.value).unwrap();
    assert!(matches!(r.receive(&early.value), Err(WireError::OutOfOrder(_))), "order-free facts too come in their writer's order");
}

/// Marks go to every partition of every topic the task writes to, and
/// nowhere else.
#[test]
fn marks_reach_every_partition_the_task_writes_to() {
    let count = |task| {
        let marks = Writer::new(Upstream { task, partition: 0 }, LAYOUT).marks(key(1, 1)).unwrap();
        let mut by: BTreeMap<Topic, Vec<u32>> = BTreeMap::new();
        for m in marks {
            by.entry(m.topic).or_default().push(m.partition);
        }
        by
    };
    let all = |n: u32| (0..n).collect::<Vec<_>>();
    assert_eq!(
        count(Task::Person),
        BTreeMap::from([(Topic::ByAccount, all(4)), (Topic::ByCustodian, all(2)), (Topic::ByHousehold, all(3))])
    );
    assert_eq!(count(Task::Decisions), BTreeMap::from([(Topic::ByAccount, all(4)), (Topic::ByPerson, all(3))]));
    assert_eq!(count(Task::Household), BTreeMap::from([(Topic::ByPerson, all(3))]));
    assert_eq!(count(Task::Custodian), BTreeMap::from([(Topic::ByPerson, all(3))]));
}

/// Facts returning to a person never wait, not even for a decisions task
/// that has said nothing; decisions do. A referral's wait on households is
/// `through(Household)`: the least any household task has written.
#[test]
fn returning_facts_do_not_wait_and_household_progress_is_known() {
    let facts = one_of_each();
    let died = facts[8].1.clone();
    let p = partition::of(died.route().1.as_bytes(), LAYOUT.persons);
    let mut r = Reader::new(Topic::ByPerson, p, LAYOUT);
    let mut custodians = Writer::new(Upstream { task: Task::Custodian, partition: 0 }, LAYOUT);
    r.receive(&custodians.fact(key(50, 1), died.clone()).unwrap().value).unwrap();
    assert_eq!(r.pop(), Some((key(50, 1), died)));
    assert_eq!(r.through(Task::Household), None);
    for h in 0..LAYOUT.households {
        let marks = Writer::new(Upstream { task: Task::Household, partition: h }, LAYOUT).marks(key(60 + i64::from(h), 0)).unwrap();
        let mine = marks.into_iter().find(|m| m.topic == Topic::ByPerson && m.partition == p).unwrap();
        r.receive(&mine.value).unwrap();
    }
    assert_eq!(r.through(Task::Household), Some(key(60, 0)));
    assert_eq!(r.pop(), None);
}

/// One record of the generated ledger: which writer applies it (a person
/// task, else a decisions task), the facts it produces, and whether the
/// writer commits (marks) after it.
type Rec = (usize, Vec<(u8, u8)>, bool);

fn fact_of(i: usize, kind: u8, k: u8) -> Fact {
    let person = id(u32::from(k)).as_str().to_string();
    let account = format!("62170000{k:04}");
    match kind % 5 {
        0 => Fact::Step(Step {
            account_no: account.into(),
            township: "城关镇".into(),
            at: Timestamp(i as i64),
            day: Date::from_ymd(2020, 1, 1),
            change: Change::Reverse(format!("E{i}").into()),
        }),
        1 => Fact::Registered(Registration { account_no: account, person, updated_at: Timestamp(i as i64), valid: Vec::new() }),
        2 => Fact::Key(KeyFact::Watch { household: format!("H{k}"), person }),
        3 => Fact::Key(KeyFact::MemberVersion { household: format!("H{k}"), person, updated_at: Timestamp(i as i64), covered: k % 2 == 0 }),
        _ => Fact::Key(KeyFact::PersonDied { person: id(u32::from(k)), death: death(u32::from(k)) }),
    }
}

fn decision_of(i: usize, k: u8) -> Fact {
    if k % 2 == 0 {
        Fact::Decision(decision(i as u64, Rule::FrequentPayments, &format!("62170000{k:04}")))
    } else {
        Fact::Decision(decision(i as u64, Rule::NameMismatch, id(u32::from(k)).as_str()))
    }
}

/// The facts expected on each partition, in the single-process order.
type Expected = BTreeMap<(Topic, u32), Vec<(SortKey, Fact)>>;

/// Every writer's records in the order it produces them: each ledger
/// record's facts, its marks, and the marks of a finished writer at the
/// end; and what each partition must release.
fn write(layout: Layout, records: &[Rec]) -> Result<(Vec<Vec<Outgoing>>, Expected), TestCaseError> {
    let mut writers: Vec<Writer> = (0..layout.persons)
        .map(|p| Upstream { task: Task::Person, partition: p })
        .chain((0..layout.decisions).map(|p| Upstream { task: Task::Decisions, partition: p }))
        .map(|from| Writer::new(from, layout))
        .collect();
    let mut streams: Vec<Vec<Outgoing>> = vec![Vec::new(); writers.len()];
    let mut expected = Expected::new();
    for (i, (u, facts, marks)) in records.iter().enumerate() {
        let u = u % writers.len();
        let at = key(1_000 + (i as i64) / 3, i as u64);
        for &(kind, k) in facts {
            let fact = if u < layout.persons as usize { fact_of(i, kind, k) } else { decision_of(i, k) };
            let out = writers[u].fact(at, fact.clone()).map_err(|e| TestCaseError::fail(e.to_string()))?;
            expected.entry((out.topic, out.partition)).or_default().push((at, fact));
            streams[u].push(out);
        }
        if *marks {
            streams[u].extend(writers[u].marks(at).unwrap());
        }
    }
    for (w, stream) in writers.iter_mut().zip(&mut streams) {
        stream.extend(w.marks(super::super::merge::END).unwrap());
    }
    Ok((streams, expected))
}

/// Writers apply their records in order, interleaved as `schedule` says;
/// each record's facts and marks are appended to the partitions' logs as
/// a broker would. Every partition's reader reads its log in that order,
/// applying what it can after each record. What comes out of each reader
/// must be the single-process order of the facts routed to it.
fn replay(layout: Layout, records: &[Rec], schedule: &[usize]) -> Result<(), TestCaseError> {
    let (streams, mut expected) = write(layout, records)?;
    let writers = streams.len();
    let mut streams: Vec<VecDeque<Outgoing>> = streams.into_iter().map(VecDeque::from).collect();
    let mut logs: BTreeMap<(Topic, u32), Vec<Vec<u8>>> = BTreeMap::new();
    let mut append = |o: Outgoing| logs.entry((o.topic, o.partition)).or_default().push(o.value);
    for &u in schedule {
        if let Some(o) = streams[u % writers].pop_front() {
            append(o);
        }
    }
    for stream in streams {
        stream.into_iter().for_each(&mut append);
    }
    for ((topic, partition), log) in logs {
        let mut r = Reader::new(topic, partition, layout);
        let mut out = Vec::new();
        for record in log {
            r.receive(&record).map_err(|e| TestCaseError::fail(e.to_string()))?;
            while let Some(x) = r.pop() {
                out.push(x);
            }
        }
        prop_assert_eq!(r.held(), 0, "{:?} {} kept facts back after every writer finished", topic, partition);
        let want = expected.remove(&(topic, partition)).unwrap_or_default();
        prop_assert_eq!(out, want, "{:?} {}", topic, partition);
    }
    Ok(())
}

/// 1–3 person, account and household partitions, 1–2 decisions and
/// custodian partitions.
fn layouts() -> impl Strategy<Value = Layout> {
    (1..4u32, 1..3u32, 1..4u32, 1..3u32, 1..4u32).prop_map(|(persons, decisions, accounts, custodians, households)| Layout {
        persons,
        decisions,
        accounts,
        custodians,
        households,
    })
}

/// Up to 60 records of six writers, each with up to three facts.
fn ledgers() -> impl Strategy<Value = Vec<Rec>> {
    proptest::collection::vec((0..6usize, proptest::collection::vec((0..5u8, 0..12u8), 0..4), any::<bool>()), 0..60)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn facts_reach_their_keys_in_the_single_process_order(
        layout in layouts(),
        records in ledgers(),
        schedule in proptest::collection::vec(0..6usize, 0..400),
    ) {
        replay(layout, &records, &schedule)?;
    }
}

/// A record its stream already brought is skipped and counted; a record
/// after a gap is refused as lost, naming the writer and the numbers.
#[test]
fn a_record_sent_again_is_skipped_and_a_gap_is_refused() {
    let facts = one_of_each();
    let died = facts[8].1.clone();
    let p = partition::of(died.route().1.as_bytes(), LAYOUT.persons);
    let mut custodians = Writer::new(Upstream { task: Task::Custodian, partition: 1 }, LAYOUT);
    let sent: Vec<Outgoing> = (0..3).map(|i| custodians.fact(key(50 + i, 1), died.clone()).unwrap()).collect();
    let mut r = Reader::new(Topic::ByPerson, p, LAYOUT);
    for o in [&sent[0], &sent[1], &sent[0], &sent[1], &sent[2], &sent[1]] {
        r.receive(&o.value).unwrap();
    }
    assert_eq!(r.repeats(), 3);
    let got: Vec<SortKey> = std::iter::from_fn(|| r.pop()).map(|(at, _)| at).collect();
    assert_eq!(got, [key(50, 1), key(51, 1), key(52, 1)], "each once");
    let _lost = custodians.fact(key(53, 1), died.clone()).unwrap();
    let after = custodians.fact(key(54, 1), died).unwrap();
    let e = r.receive(&after.value).unwrap_err();
    assert!(
        matches!(e, WireError::Lost { task: Task::Custodian, partition: 1, topic: Topic::ByPerson, on, expected: 3, found: 4 } if on == p),
        "{e}"
    );
    assert!(e.to_string().contains("record 3") && e.to_string().contains("lost"), "{e}");
    assert_eq!(r.pop(), None, "nothing of the refused record was kept");
}

/// A writer and a reader resumed from their checkpoints (through postcard,
/// as stored) carry on as the originals would; a checkpoint of another
/// layout is refused.
#[test]
fn checkpoints_resume_writers_and_readers_where_they_were() {
    let (_, step) = one_of_each().swap_remove(0);
    let from = Upstream { task: Task::Person, partition: 2 };
    let mut w = Writer::new(from, LAYOUT);
    let first = w.fact(key(1, 1), step.clone()).unwrap();
    let stored = postcard::to_allocvec(&w.checkpoint()).unwrap();
    let second = w.fact(key(2, 2), step.clone()).unwrap();
    let mut resumed = Writer::resume(from, LAYOUT, postcard::from_bytes(&stored).unwrap()).unwrap();
    assert_eq!(resumed.fact(key(2, 2), step.clone()).unwrap(), second, "the same record, the same number");

    let mut r = Reader::new(Topic::ByAccount, first.partition, LAYOUT);
    r.receive(&first.value).unwrap();
    let stored = postcard::to_allocvec(&r.checkpoint()).unwrap();
    let mut back = Reader::resume(Topic::ByAccount, first.partition, LAYOUT, postcard::from_bytes(&stored).unwrap()).unwrap();
    back.receive(&first.value).unwrap();
    assert_eq!(back.repeats(), 1, "the resumed reader knows what it read");
    back.receive(&second.value).unwrap();
    for writer in Topic::ByAccount.writers() {
        for p in 0..LAYOUT.tasks(writer.0) {
            let mut m = Writer::new(Upstream { task: writer.0, partition: p }, LAYOUT);
            if writer.0 == Task::Person && p == 2 {
                m = resumed;
                resumed = Writer::new(from, LAYOUT);
            }
            for o in m.marks(key(9, 9)).unwrap().into_iter().filter(|o| o.topic == Topic::ByAccount && o.partition == first.partition) {
                back.receive(&o.value).unwrap();
            }
        }
    }
    assert_eq!(std::iter::from_fn(|| back.pop()).count(), 2, "the fact held at the checkpoint and the one after");

    let other = Layout { persons: LAYOUT.persons + 1, ..LAYOUT };
    let e = Reader::resume(Topic::ByAccount, 0, other, r.checkpoint()).err().expect("refused");
    assert!(matches!(e, WireError::LayoutChanged { .. }) && e.to_string().contains("partition counts changed"), "{e}");
    let e = Writer::resume(from, Layout { accounts: 5, ..LAYOUT }, w.checkpoint()).err().expect("refused");
    assert!(matches!(e, WireError::LayoutChanged { topic: Topic::ByAccount, had: 4, has: 5, .. }), "{e}");
}

/// One step of [`crashes`]: a writer publishes its next record, or
/// crashes and publishes again from up to `n` records back; a reader
/// reads what has arrived, commits, or crashes back to its commit.
type Op = (u8, usize, usize);

/// Writers publish their streams interleaved as `ops` say, crashing and
/// sending again what they had sent; readers read, commit their
/// checkpoint with their offset, and crash back to it, dropping what they
/// released since (their task's state goes back with it). After every
/// writer has published everything, each reader must have released every
/// fact routed to it exactly once, in the single-process order.
fn crashes(layout: Layout, records: &[Rec], ops: &[Op]) -> Result<u64, TestCaseError> {
    let (streams, mut expected) = write(layout, records)?;
    let fail = |e: WireError| TestCaseError::fail(e.to_string());
    let parts: Vec<(Topic, u32)> = Topic::ALL.iter().flat_map(|t| (0..layout.partitions(*t)).map(move |p| (*t, p))).collect();
    let mut logs: BTreeMap<(Topic, u32), Vec<Vec<u8>>> = BTreeMap::new();
    let mut sent = vec![0usize; streams.len()];
    struct Side {
        reader: Reader,
        offset: usize,
        out: Vec<(SortKey, Fact)>,
        commit: (ReaderState, usize, usize),
    }
    let mut sides: Vec<Side> = parts
        .iter()
        .map(|&(t, p)| {
            let reader = Reader::new(t, p, layout);
            let commit = (reader.checkpoint(), 0, 0);
            Side { reader, offset: 0, out: Vec::new(), commit }
        })
        .collect();
    let read = |s: &mut Side, log: &[Vec<u8>]| -> Result<(), WireError> {
        while let Some(bytes) = log.get(s.offset) {
            s.reader.receive(bytes)?;
            s.offset += 1;
            s.out.extend(std::iter::from_fn(|| s.reader.pop()));
        }
        Ok(())
    };
    let mut repeats = 0;
    for &(op, i, n) in ops {
        match op % 5 {
            0 | 1 => {
                let u = i % streams.len();
                if let Some(o) = streams[u].get(sent[u]) {
                    logs.entry((o.topic, o.partition)).or_default().push(o.value.clone());
                    sent[u] += 1;
                }
            }
            2 => sent[i % streams.len()] = sent[i % streams.len()].saturating_sub(n),
            op => {
                let s = &mut sides[i % parts.len()];
                let at = parts[i % parts.len()];
                match op {
                    3 => read(s, logs.get(&at).map_or(&[][..], Vec::as_slice)).map_err(fail)?,
                    _ if n % 2 == 0 => s.commit = (s.reader.checkpoint(), s.offset, s.out.len()),
                    _ => {
                        repeats += s.reader.repeats();
                        s.reader = Reader::resume(at.0, at.1, layout, s.commit.0.clone()).map_err(fail)?;
                        s.offset = s.commit.1;
                        s.out.truncate(s.commit.2);
                    }
                }
            }
        }
    }
    for (u, stream) in streams.iter().enumerate() {
        for o in &stream[sent[u]..] {
            logs.entry((o.topic, o.partition)).or_default().push(o.value.clone());
        }
    }
    for (s, at) in sides.iter_mut().zip(&parts) {
        read(s, logs.get(at).map_or(&[][..], Vec::as_slice)).map_err(fail)?;
        prop_assert_eq!(s.reader.held(), 0, "{:?} kept facts back after every writer finished", at);
        let want = expected.remove(at).unwrap_or_default();
        prop_assert_eq!(&s.out, &want, "{:?}", at);
        repeats += s.reader.repeats();
    }
    Ok(repeats)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// Exactly once without transactions: whatever crashes on either side,
    /// every fact is applied once, in the single-process order.
    #[test]
    fn crashes_neither_lose_nor_double_a_fact(
        layout in layouts(),
        records in ledgers(),
        ops in proptest::collection::vec((0..5u8, 0..40usize, 0..8usize), 0..600),
    ) {
        crashes(layout, &records, &ops)?;
    }
}

/// The property's generator reaches what it is for: writers send again
/// and readers skip, and a reader resumed before records it had read
/// reads them again.
#[test]
fn the_crash_schedule_sends_records_again() {
    let layout = Layout { persons: 2, decisions: 1, accounts: 1, custodians: 1, households: 1 };
    let records: Vec<Rec> = (0..6).map(|i| (i % 2, vec![(0, 1), (2, 2)], true)).collect();
    // Writer 0 publishes 4, crashes back 3, publishes 4; the by-account
    // reader (index 0) reads, commits, reads on, crashes, reads again.
    let mut ops: Vec<Op> = vec![(0, 0, 0); 4];
    ops.push((2, 0, 3));
    ops.extend(vec![(0, 0, 0); 4]);
    ops.extend([(3, 0, 0), (4, 0, 0), (0, 1, 0), (0, 1, 0), (3, 0, 0), (4, 0, 1), (3, 0, 0)]);
    let repeats = crashes(layout, &records, &ops).unwrap();
    assert!(repeats >= 3, "{repeats}");
}
