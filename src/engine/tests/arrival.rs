//! Facts returning to a person (a custodian's death, a household's entry)
//! can arrive late between instances, and a partitioned engine does not
//! wait for them (docs/partitioning.md, "The one cycle"). Held back until
//! the next commit, they must give the same alerts as when applied at once:
//! same ids, same content, whatever the ledger.

use super::*;
use crate::model::time::MS_PER_DAY;
use crate::model::{Program, Timestamp, VulnerableRecord, VulnerableSource};
use proptest::prelude::*;
use crate::clock::FixedClock;
use crate::store::{Store, StoreOptions};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Beneficiaries; the custodian X (who may die); a vulnerable person who is
/// never a beneficiary (the third beneficiary may be flagged too).
const BENS: [&str; 3] = [BID, "341802196002020025", "341802198004040045"];
const X: &str = "341802195001010015";
const V: &str = "341802197003030035";
/// X's account, which the beneficiaries may register for X.
const ACCOUNT_X: &str = "6217005555555555";

/// Cases per property: `n`, times `PAYWATCH_PROPTEST_SCALE` when set
/// (`make soak`: CI draws new cases each run and once found one that
/// thousands of earlier cases had not).
pub(super) fn cases(n: u32) -> u32 {
    n * std::env::var("PAYWATCH_PROPTEST_SCALE").ok().and_then(|v| v.parse().ok()).unwrap_or(1)
}

/// Every alert by id: rule, event time, case and evidence.
pub(super) type Seen = BTreeMap<String, (Rule, String, String, String)>;

/// The alerts as [`Seen`].
pub(super) fn seen(alerts: &[Alert]) -> Seen {
    alerts
        .iter()
        .map(|a| (a.alert_id.clone(), (a.rule, a.event_time.clone(), a.case_id.clone(), serde_json::to_string(&a.evidence).unwrap())))
        .collect()
}

/// One record of a generated ledger, before it is made concrete.
#[derive(Clone, Debug)]
enum Gen {
    /// A roster version of beneficiary `b`.
    Roster { b: usize, day: i64, household: usize, registers_x: bool, covers: bool },
    /// A payment of beneficiary `b`, into X's account or the beneficiary's own.
    Pay { b: usize, day: i64, via_x: bool },
    /// A death record of X.
    XDied { died: i64, reported: i64 },
    /// A vulnerable-persons version of V (or of the third beneficiary).
    Flagged { third: bool, record: usize, household: usize, flagged: i64, updated: i64 },
}

fn at(day: i64, minute: i64) -> Timestamp {
    Timestamp(ts("2019-01-01T08:00:00+08:00").0 + day * MS_PER_DAY + minute * 60_000)
}

fn date(day: i64) -> crate::model::time::Date {
    Tz::default().date(at(day, 0))
}

/// The records of a generated ledger, in event-time order.
fn ledger(gens: &[Gen]) -> Vec<Record> {
    let mut out: Vec<(Timestamp, Record)> = Vec::new();
    for (i, g) in gens.iter().enumerate() {
        let minute = i as i64;
        let rec = match *g {
            Gen::Roster { b, day, household, registers_x, covers } => {
                let mut r = roster(Status::Active, "2018-01-01", "2019-01-01T08:00:00+08:00");
                r.beneficiary_id = PersonId::parse(BENS[b]).unwrap();
                r.household_id = format!("H{household}");
                r.program = if covers { Program::RuralDibao } else { Program::TemporaryRelief };
                r.updated_at = at(day, minute);
                if registers_x {
                    r.custodians = vec![Custodian {
                        name: "王五".into(),
                        account_no: ACCOUNT_X.into(),
                        registered_at: day_of("2018-06-01"),
                        revoked_at: None,
                        id_no: Some(PersonId::parse(X).unwrap()),
                    }];
                }
                Record::Roster(r)
            }
            Gen::Pay { b, day, via_x } => {
                let t = at(day, minute);
                let period = crate::model::Period::of(Tz::default().date(t));
                let mut p = payment(&format!("E{i}"), "2019-01", "585.00", "2019-01-10T10:00:00+08:00");
                p.period = period;
                p.paid_at = t;
                p.scheduled_at = Tz::default().date(t);
                p.beneficiary_id = PersonId::parse(BENS[b]).unwrap();
                (p.account_no, p.account_name) = match via_x {
                    true => (ACCOUNT_X.into(), "王五".into()),
                    false => (format!("62170000000000{b:02}").into(), "张三".into()),
                };
                Record::Payment(p)
            }
            Gen::XDied { died, reported } => Record::Death(DeathRecord {
                record_id: format!("D{i}"),
                person_id: PersonId::parse(X).unwrap(),
                name: "王五".into(),
                date_of_death: date(died),
                source: DeathSource::Hospital,
                reported_at: at(died + reported, minute),
            }),
            Gen::Flagged { third, record, household, flagged, updated } => Record::Vulnerable(VulnerableRecord {
                record_id: format!("CL-{record}"),
                person_id: PersonId::parse(if third { BENS[2] } else { V }).unwrap(),
                name: "李梅".into(),
                household_id: Some(format!("H{household}")),
                township: "水阳镇".into(),
                source: VulnerableSource::Disability,
                category: "grade_1".into(),
                flagged_at: date(flagged),
                cleared_at: None,
                updated_at: at(flagged + updated, minute),
            }),
        };
        out.push((rec.event_time(), rec));
    }
    out.sort_by_key(|(t, _)| *t);
    out.into_iter().map(|(_, r)| r).collect()
}

fn day_of(s: &str) -> crate::model::time::Date {
    day(s)
}

/// Every alert by id: rule, event time, case and evidence.
fn run(records: &[Record], hold: bool, commit_every: usize) -> Seen {
    run_in(records, hold, commit_every, 1)
}

/// [`run`] with the person side in `lanes` lanes.
fn run_in(records: &[Record], hold: bool, commit_every: usize, lanes: u32) -> Seen {
    let mut h = Harness::with_lanes(RulesConfig::default(), lanes);
    if hold {
        h.engine.hold_returning_facts();
    }
    for (i, r) in records.iter().enumerate() {
        h.engine.apply(r).unwrap();
        if (i + 1) % commit_every == 0 {
            h.alerts.extend(h.engine.commit(None).unwrap().alerts);
        }
    }
    h.alerts.extend(h.engine.commit(None).unwrap().alerts);
    seen(&h.alerts)
}

fn gen() -> impl Strategy<Value = Gen> {
    prop_oneof![
        3 => (0..3usize, 0..400i64, 0..2usize, any::<bool>(), any::<bool>())
            .prop_map(|(b, day, household, registers_x, covers)| Gen::Roster { b, day, household, registers_x, covers }),
        6 => (0..3usize, 0..400i64, any::<bool>()).prop_map(|(b, day, via_x)| Gen::Pay { b, day, via_x }),
        1 => (0..400i64, 0..60i64).prop_map(|(died, reported)| Gen::XDied { died, reported }),
        2 => (any::<bool>(), 0..2usize, 0..2usize, 0..300i64, 0..120i64)
            .prop_map(|(third, record, household, flagged, updated)| Gen::Flagged { third, record, household, flagged, updated }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(96), ..ProptestConfig::default() })]

    #[test]
    fn late_returning_facts_give_the_same_alerts(gens in proptest::collection::vec(gen(), 10..60), every in 1..12usize) {
        let records = ledger(&gens);
        let at_once = run(&records, false, every);
        let held = run(&records, true, every);
        prop_assert_eq!(held, at_once);
    }

    /// #16: the person side split into lanes (each with its own caches,
    /// deadline buckets and cases) raises the same alerts as one lane,
    /// with returning facts applied at once or held, committing at any
    /// interval (a lane reading another's person through its own cache
    /// would see the store's stale copy until the commit).
    #[test]
    fn lanes_give_the_same_alerts(gens in proptest::collection::vec(gen(), 10..60), every in 1..12usize, hold: bool) {
        let records = ledger(&gens);
        let one = run(&records, false, every);
        for lanes in [2, 4] {
            prop_assert_eq!(&run_in(&records, hold, every, lanes), &one, "{} lanes", lanes);
        }
    }
}

/// The same records on fewer days (each day divided by `by`), so that
/// many share a day and the lanes apply runs of them at once.
fn squeezed(gens: &[Gen], by: i64) -> Vec<Gen> {
    gens.iter()
        .map(|g| match *g {
            Gen::Roster { b, day, household, registers_x, covers } => Gen::Roster { b, day: day / by, household, registers_x, covers },
            Gen::Pay { b, day, via_x } => Gen::Pay { b, day: day / by, via_x },
            Gen::XDied { died, reported } => Gen::XDied { died: died / by, reported: reported / by },
            Gen::Flagged { third, record, household, flagged, updated } => {
                Gen::Flagged { third, record, household, flagged: flagged / by, updated: updated / by }
            }
        })
        .collect()
}

/// Every alert by id, the records applied `chunk` at a time with
/// [`Engine::apply_many`] in `lanes` lanes; and how many were applied in
/// runs.
fn run_many(records: &[Record], chunk: usize, lanes: u32) -> (Seen, u64) {
    let mut h = Harness::with_lanes(RulesConfig::default(), lanes);
    for part in records.chunks(chunk) {
        let refs: Vec<(&Record, Option<&crate::engine::Opened>)> = part.iter().map(|r| (r, None)).collect();
        h.engine.apply_many(&refs).unwrap();
        h.alerts.extend(h.engine.commit(None).unwrap().alerts);
    }
    let runs = h.engine.records_in_runs();
    let alerts = seen(&h.alerts);
    (alerts, runs)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(96), ..ProptestConfig::default() })]

    /// #16: the lanes applying runs of records at once, each on a thread
    /// of its own, raise the alerts one thread raises record by record.
    #[test]
    fn lanes_on_threads_give_the_same_alerts(gens in proptest::collection::vec(gen(), 10..80), chunk in 1..40usize, by in prop_oneof![Just(5i64), Just(50)]) {
        let records = ledger(&squeezed(&gens, by));
        let one = run(&records, false, usize::MAX);
        for lanes in [2, 4] {
            prop_assert_eq!(&run_many(&records, chunk, lanes).0, &one, "{} lanes", lanes);
        }
    }
}

/// The squeezed ledgers do reach runs: most of their records are applied
/// by the lanes at once.
#[test]
fn squeezed_ledgers_are_applied_in_runs() {
    let gens: Vec<Gen> = (0..60)
        .map(|i| match i % 4 {
            0 => Gen::Roster { b: i % 3, day: i as i64, household: i % 2, registers_x: i % 8 == 0, covers: true },
            _ => Gen::Pay { b: i % 3, day: (i * 5) as i64, via_x: i % 7 == 0 },
        })
        .collect();
    let records = ledger(&squeezed(&gens, 50));
    let (alerts, runs) = run_many(&records, 60, 4);
    assert!(runs * 2 > records.len() as u64, "{runs} of {} records in runs", records.len());
    assert_eq!(alerts, run(&records, false, usize::MAX));
}

/// Every alert by id as [`run`] gives it, from one state directory opened
/// with `first` lanes for the first `split` records and `then` lanes for
/// the rest: the deadline buckets move to the new lanes when it reopens.
fn run_moved(records: &[Record], split: usize, first: u32, then: u32) -> Seen {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions { block_cache_mb: 8, write_buffer_mb: 4, sync: false, statistics: false };
    let clock = || Arc::new(FixedClock::new(ts("2026-01-01T00:00:00+08:00")));
    let mut alerts = Vec::new();
    for (lanes, part) in [(first, &records[..split]), (then, &records[split..])] {
        let store = Store::open(dir.path(), opts).unwrap();
        let mut e = Engine::open_with_lanes(store, RulesConfig::default(), Tz::default(), 64, clock(), lanes).unwrap();
        for r in part {
            e.apply(r).unwrap();
        }
        alerts.extend(e.commit(None).unwrap().alerts);
    }
    seen(&alerts)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(32), ..ProptestConfig::default() })]

    /// A state written with one lane count and continued with another
    /// (its deadline buckets moved when it reopens) raises what one lane
    /// throughout raises.
    #[test]
    fn a_state_continued_with_another_lane_count_gives_the_same_alerts(
        gens in proptest::collection::vec(gen(), 10..60),
        split in 0..60usize,
        first in 1..5u32,
        then in 1..5u32,
    ) {
        let records = ledger(&gens);
        let split = split.min(records.len());
        prop_assert_eq!(run_moved(&records, split, first, then), run(&records, false, usize::MAX));
    }
}

/// The generator's persons do not all share a lane, so the lanes test
/// sends facts between lanes.
#[test]
fn the_generators_persons_fall_in_several_lanes() {
    let persons = [BENS[0], BENS[1], BENS[2], X, V];
    for n in [2, 4] {
        let lanes: std::collections::BTreeSet<u32> = persons.iter().map(|p| crate::partition::of(p.as_bytes(), n)).collect();
        assert!(lanes.len() > 1, "{n} lanes: all in {lanes:?}");
    }
}

/// A beneficiary registering X, who dies, then paid through X; a household
/// a vulnerable person watches that loses its cover.
fn late_death_and_households() -> Vec<Gen> {
    vec![
        Gen::Roster { b: 0, day: 0, household: 0, registers_x: true, covers: true },
        Gen::Roster { b: 1, day: 1, household: 1, registers_x: false, covers: true },
        Gen::Flagged { third: false, record: 0, household: 1, flagged: 5, updated: 1 },
        Gen::Flagged { third: false, record: 1, household: 0, flagged: 5, updated: 1 },
        Gen::Roster { b: 0, day: 20, household: 1, registers_x: true, covers: true },
        Gen::XDied { died: 30, reported: 2 },
        Gen::Pay { b: 0, day: 40, via_x: true },
        Gen::Pay { b: 0, day: 120, via_x: false },
    ]
}

/// The generated ledgers reach what the property is about: a custodian's
/// death that a beneficiary learns late, and a referral that reads a
/// household's copy.
#[test]
fn the_generator_reaches_late_deaths_and_covered_households() {
    let records = ledger(&late_death_and_households());
    let alerts = run(&records, true, 100);
    let rules: Vec<Rule> = alerts.values().map(|a| a.0).collect();
    assert!(rules.contains(&Rule::CustodianDeceased), "{rules:?}");
    // CL-1 names H0, which nobody covers from day 20 on; CL-0 names H1,
    // covered throughout.
    let gaps: Vec<&String> = alerts.values().filter(|a| a.0 == Rule::CoverageGap).map(|a| &a.3).collect();
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert!(gaps[0].contains("CL-1"), "{gaps:?}");
    assert_eq!(alerts, run(&records, false, 100));
}

/// Every alert by id, the records applied `chunk` at a time in `lanes`
/// lanes, the facts between keys travelling as repartition records (#16
/// step 2, `wire.rs`), committing after each chunk; and what each
/// repartition topic carried.
fn run_wired(records: &[Record], chunk: usize, lanes: u32, hold: bool, republish: bool) -> (Seen, Vec<crate::engine::TopicVolume>) {
    let mut h = Harness::with_lanes(RulesConfig::default(), lanes);
    h.engine.route_through_repartition_records();
    if hold {
        h.engine.hold_returning_facts();
    }
    if republish {
        h.engine.republish_repartition_records();
    }
    for part in records.chunks(chunk) {
        let refs: Vec<(&Record, Option<&crate::engine::Opened>)> = part.iter().map(|r| (r, None)).collect();
        h.engine.apply_many(&refs).unwrap();
        h.alerts.extend(h.engine.commit(None).unwrap().alerts);
    }
    h.alerts.extend(h.engine.commit(None).unwrap().alerts);
    let volume = h.engine.repartition_volume().expect("routed through repartition records");
    (seen(&h.alerts), volume)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(96), ..ProptestConfig::default() })]

    /// #16 step 2: steps, registrations, custodians' and households' facts
    /// and their answers written as repartition records by each lane's
    /// task, read back per partition and released by the ordered merge,
    /// raise the alerts the calls raise: in 1, 2 and 4 lanes, in runs or
    /// one by one, with returning facts applied as read or held, and with
    /// part of every batch read twice (a publisher sending again after a
    /// crash), which the readers skip.
    #[test]
    fn repartition_records_give_the_same_alerts(
        gens in proptest::collection::vec(gen(), 10..80),
        chunk in 1..40usize,
        by in prop_oneof![Just(1i64), Just(5), Just(50)],
        hold: bool,
        republish: bool,
    ) {
        let records = ledger(&squeezed(&gens, by));
        let one = run(&records, false, usize::MAX);
        for lanes in [1, 2, 4] {
            let (alerts, volume) = run_wired(&records, chunk, lanes, hold, republish);
            prop_assert_eq!(&alerts, &one, "{} lanes", lanes);
            let repeats: u64 = volume.iter().map(|t| t.repeats).sum();
            prop_assert_eq!(repeats > 0, republish, "{:?}", volume);
        }
    }
}

/// The ledger of [`late_death_and_households`] sends facts on every
/// repartition topic when they travel as records, and raises what the
/// calls raise.
#[test]
fn repartition_records_carry_facts_on_every_topic() {
    let mut gens = late_death_and_households();
    // A second beneficiary paid into X's account: two lanes write to it.
    gens.push(Gen::Pay { b: 1, day: 41, via_x: true });
    let records = ledger(&gens);
    let (alerts, volume) = run_wired(&records, 3, 2, false, false);
    assert_eq!(alerts, run(&records, false, usize::MAX));
    assert!(alerts.values().any(|a| a.0 == Rule::CustodianDeceased), "{alerts:?}");
    let topics: Vec<&str> = volume.iter().map(|t| t.topic).collect();
    assert_eq!(topics, ["by-account", "by-custodian", "by-household", "by-person"]);
    for t in &volume {
        assert!(t.facts > 0 && t.marks > 0 || t.topic == "by-person" && t.facts > 0, "{t:?}");
        assert!(t.bytes > t.facts + t.marks, "{t:?}");
        assert_eq!(t.repeats, 0, "nothing was sent twice: {t:?}");
    }
}
