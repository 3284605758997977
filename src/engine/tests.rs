//! Scenario tests of the engine's stateful semantics, on a real RocksDB in a
//! temp dir, with event time from the records and a fixed wall clock.

use super::{Engine, Outcome};
use crate::clock::FixedClock;
use crate::detect::testkit::{day, payment, roster, ts, BID};
use crate::detect::RulesConfig;
use crate::model::{
    Alert, Custodian, DeathRecord, DeathSource, Payment, PaymentKind, PaymentType, PersonId, Record, RosterRecord, Rule,
    Status, Tz,
};
use crate::store::{Store, StoreOptions};
use std::sync::Arc;

struct Harness {
    engine: Engine,
    alerts: Vec<Alert>,
    _dir: tempfile::TempDir,
}

impl Harness {
    fn new() -> Harness {
        Harness::with(RulesConfig::default())
    }

    fn with(rules: RulesConfig) -> Harness {
        Harness::with_lanes(rules, 1)
    }

    /// The person side in `lanes` lanes (`lane.rs`).
    fn with_lanes(rules: RulesConfig, lanes: u32) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path(), StoreOptions { block_cache_mb: 8, write_buffer_mb: 4, sync: false, statistics: false }).unwrap();
        store.defer_background_writes();
        let clock = Arc::new(FixedClock::new(ts("2026-01-01T00:00:00+08:00")));
        let engine = Engine::open_with_lanes(store, rules, Tz::default(), 64, clock, lanes).unwrap();
        Harness { engine, alerts: Vec::new(), _dir: dir }
    }

    fn apply(&mut self, r: Record) -> Outcome {
        let o = self.engine.apply(&r).unwrap();
        self.alerts.extend(self.engine.commit(None).unwrap().alerts);
        o
    }

    fn pay(&mut self, p: Payment) -> Outcome {
        self.apply(Record::Payment(p))
    }

    fn rules(&self) -> Vec<Rule> {
        self.alerts.iter().map(|a| a.rule).collect()
    }

    fn of(&self, rule: Rule) -> Vec<&Alert> {
        self.alerts.iter().filter(|a| a.rule == rule).collect()
    }
}

fn enrolled() -> RosterRecord {
    let mut r = roster(Status::Active, "2019-01-01", "2019-01-01T08:00:00+08:00");
    r.enrolled_at = day("2019-01-01");
    r
}

fn death(dod: &str, reported: &str) -> Record {
    Record::Death(DeathRecord {
        record_id: format!("D-{reported}"),
        person_id: PersonId::parse(BID).unwrap(),
        name: "张三".into(),
        date_of_death: day(dod),
        source: DeathSource::FuneralHome,
        reported_at: ts(reported),
    })
}

fn monthly(h: &mut Harness, from: u32, to: u32) {
    for m in from..=to {
        let p = payment(&format!("E{m:02}"), &format!("2019-{m:02}"), "585.00", &format!("2019-{m:02}-10T10:00:00+08:00"));
        assert_eq!(h.pay(p), Outcome::Applied);
    }
}

#[test]
fn a_clean_beneficiary_raises_nothing() {
    let mut h = Harness::new();
    h.apply(Record::Roster(enrolled()));
    monthly(&mut h, 1, 12);
    assert!(h.alerts.is_empty(), "{:?}", h.rules());
}

#[test]
fn a_late_death_record_flags_every_earlier_improper_payment() {
    let mut h = Harness::new();
    h.apply(Record::Roster(enrolled()));
    monthly(&mut h, 1, 6);
    assert!(h.alerts.is_empty());
    h.apply(death("2019-03-20", "2019-06-25T09:00:00+08:00"));
    let found: Vec<&str> = h.of(Rule::PaidAfterDeath).iter().map(|a| a.evidence.event_ids[0].as_str()).collect();
    assert_eq!(found, ["E04", "E05", "E06"], "March is the death month and stays payable");
    assert_eq!(h.of(Rule::PaidAfterDeath)[0].event_time, "2019-06-25T09:00:00+08:00");
    // A second source reporting the same death raises nothing new.
    h.apply(death("2019-03-20", "2019-07-01T09:00:00+08:00"));
    assert_eq!(h.of(Rule::PaidAfterDeath).len(), 3);
    // A payment after the report is flagged at once.
    h.pay(payment("E07", "2019-07", "585.00", "2019-07-10T10:00:00+08:00"));
    assert_eq!(h.of(Rule::PaidAfterDeath).len(), 4);
}

#[test]
fn redelivered_events_are_ignored_and_counted() {
    let mut h = Harness::new();
    h.apply(Record::Roster(enrolled()));
    let p = payment("E1", "2019-01", "585.00", "2019-01-10T10:00:00+08:00");
    assert_eq!(h.pay(p.clone()), Outcome::Applied);
    assert_eq!(h.pay(p.clone()), Outcome::Redelivered);
    assert_eq!(h.pay(p), Outcome::Redelivered);
    assert!(h.alerts.is_empty(), "a redelivery is not a duplicate: {:?}", h.rules());
    assert_eq!(h.engine.progress().counts.redelivered, 2);
}

#[test]
fn a_second_regular_payment_is_a_duplicate_unless_the_first_was_reversed() {
    let mut h = Harness::new();
    h.apply(Record::Roster(enrolled()));
    h.pay(payment("A", "2019-01", "585.00", "2019-01-10T10:00:00+08:00"));
    let mut rev = payment("R", "2019-01", "585.00", "2019-01-12T10:00:00+08:00");
    rev.kind = PaymentKind::Reversal;
    rev.reverses = Some("A".into());
    assert_eq!(h.pay(rev.clone()), Outcome::Applied);
    assert_eq!(h.pay(rev.clone()), Outcome::Redelivered, "the same reversal again");
    h.pay(payment("B", "2019-01", "585.00", "2019-01-15T10:00:00+08:00"));
    assert!(h.alerts.is_empty(), "reversal then re-payment: {:?}", h.rules());
    h.pay(payment("C", "2019-01", "585.00", "2019-01-20T10:00:00+08:00"));
    let d = h.of(Rule::DuplicatePeriod);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].evidence.event_ids, ["C", "B"]);
    let mut again = rev;
    again.event_id = "R2".into();
    assert!(matches!(h.pay(again), Outcome::Rejected(_)), "A was already reversed");
    let mut unknown = payment("R3", "2019-01", "585.00", "2019-01-21T10:00:00+08:00");
    unknown.kind = PaymentKind::Reversal;
    unknown.reverses = Some("NEVER".into());
    let Outcome::Rejected(r) = h.pay(unknown) else { panic!() };
    assert_eq!(r.reason, crate::decode::Reason::BadReversal);
}

/// Only accepted records move the watermark: a reversal the engine refuses
/// (its target was never paid) is dead-lettered, and its event time, years
/// ahead, decides no `MISSED_PAYMENT` month.
#[test]
fn a_refused_reversal_does_not_move_the_watermark() {
    let mut h = Harness::new();
    h.apply(Record::Roster(enrolled()));
    monthly(&mut h, 1, 2);
    let watermark = h.engine.progress().watermark;
    let mut unknown = payment("R9", "2019-02", "585.00", "2031-01-05T10:00:00+08:00");
    unknown.kind = PaymentKind::Reversal;
    unknown.reverses = Some("NEVER".into());
    assert!(matches!(h.pay(unknown), Outcome::Rejected(_)));
    assert_eq!(h.engine.progress().watermark, watermark);
    assert_eq!(h.engine.progress().counts.rejected, 1);
    assert!(h.of(Rule::MissedPayment).is_empty(), "{:?}", h.rules());
    // March, paid on time after it, is no MISSED_PAYMENT either.
    h.pay(payment("E03", "2019-03", "585.00", "2019-03-10T10:00:00+08:00"));
    assert!(h.alerts.is_empty(), "{:?}", h.rules());
    assert!(h.engine.progress().watermark > watermark);
}

/// Hardening item 9: with `[district] townships`, a record of another
/// township is refused (`unknown_township`) and moves no watermark.
#[test]
fn records_of_other_townships_are_refused_when_the_district_is_listed() {
    let mut h = Harness::new();
    h.engine.restrict_townships(&["水阳镇".into()]);
    h.apply(Record::Roster(enrolled()));
    let mut p = payment("E1", "2019-01", "585.00", "2019-01-10T10:00:00+08:00");
    assert_eq!(h.pay(p.clone()), Outcome::Applied);
    p.event_id = "E2".into();
    p.township = "外乡镇".into();
    p.paid_at = ts("2030-01-10T10:00:00+08:00");
    let Outcome::Rejected(r) = h.pay(p) else { panic!() };
    assert_eq!(r.reason, crate::decode::Reason::UnknownTownship);
    assert_eq!(h.engine.progress().watermark, Some(ts("2019-01-10T10:00:00+08:00")));
    let mut r = enrolled();
    r.township = "外乡镇".into();
    assert!(matches!(h.apply(Record::Roster(r)), Outcome::Rejected(_)));
}

/// Hardening item 13: a damaged stored value is an error naming the column
/// family and the key (identity number masked), never a panic.
#[test]
fn a_damaged_stored_beneficiary_is_an_error_not_a_panic() {
    use crate::store::Cf;
    let mut h = Harness::new();
    h.apply(Record::Roster(enrolled()));
    let store = h.engine.store().clone();
    // A month set whose base lies outside every month paywatch reads.
    let mut b = store.batch();
    let mut bytes = postcard::to_stdvec(&(Vec::<RosterRecord>::new(), Vec::<DeathRecord>::new())).unwrap();
    bytes.extend(postcard::to_stdvec(&(i32::MIN, vec![u64::MAX; 3])).unwrap());
    b.put_raw(Cf::Beneficiaries, BID.as_bytes(), &bytes);
    store.commit(b).unwrap();
    let mut fresh = Engine::open(store, RulesConfig::default(), Tz::default(), 64, Arc::new(FixedClock::new(ts("2026-01-01T00:00:00+08:00")))).unwrap();
    let err = fresh.apply(&Record::Payment(payment("E1", "2019-01", "585.00", "2019-01-10T10:00:00+08:00"))).unwrap_err().to_string();
    assert!(err.contains("beneficiaries") && err.contains("110105********002X"), "{err}");
}

#[test]
fn missed_payment_waits_for_the_watermark_to_pass_the_deadline() {
    let mut h = Harness::new();
    h.apply(Record::Roster(enrolled()));
    monthly(&mut h, 1, 2);
    // March is skipped. Its deadline is 2019-04-21T00:00+08:00.
    let before = payment("E04", "2019-04", "585.00", "2019-04-20T23:59:59.999+08:00");
    h.pay(before);
    assert!(h.of(Rule::MissedPayment).is_empty(), "the watermark is a millisecond short of the deadline");
    // §11.2: a timer due at a record's event time fires before it is
    // applied, so a March payment at the deadline itself comes too late.
    h.pay(payment("X", "2019-03", "585.00", "2019-04-21T00:00:00+08:00"));
    let m = h.of(Rule::MissedPayment);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].period.unwrap().to_string(), "2019-03");
    assert_eq!(m[0].event_time, "2019-04-21T00:00:00+08:00");
}

#[test]
fn late_back_pay_does_not_undo_a_decided_month_but_a_timely_one_prevents_it() {
    let mut h = Harness::new();
    h.apply(Record::Roster(enrolled()));
    monthly(&mut h, 1, 1);
    let mut back = payment("BP", "2019-02", "585.00", "2019-03-15T10:00:00+08:00");
    back.payment_type = PaymentType::BackPay;
    h.pay(back);
    monthly(&mut h, 3, 6);
    assert!(h.of(Rule::MissedPayment).is_empty(), "February was paid (as back pay) before its deadline");
}

#[test]
fn suspended_cancelled_and_dead_months_are_not_expected() {
    let mut h = Harness::new();
    h.apply(Record::Roster(enrolled()));
    monthly(&mut h, 1, 3);
    let mut s = roster(Status::Suspended, "2019-04-01", "2019-03-25T08:00:00+08:00");
    s.enrolled_at = day("2019-01-01");
    h.apply(Record::Roster(s));
    h.pay(payment("X", "2019-08", "1.00", "2019-08-30T10:00:00+08:00"));
    assert!(h.of(Rule::MissedPayment).is_empty(), "{:?}", h.rules());
    let mut back = roster(Status::Active, "2019-09-01", "2019-08-31T08:00:00+08:00");
    back.enrolled_at = day("2019-01-01");
    h.apply(Record::Roster(back));
    h.apply(death("2019-09-15", "2019-09-20T09:00:00+08:00"));
    h.pay(payment("Y", "2019-12", "1.00", "2019-12-30T10:00:00+08:00"));
    let months: Vec<String> = h.of(Rule::MissedPayment).iter().map(|a| a.period.unwrap().to_string()).collect();
    assert_eq!(months, ["2019-09"], "September is owed (reactivated, died in it); later months are not");
}

#[test]
fn inactive_uses_the_roster_version_at_the_payment_time() {
    let mut h = Harness::new();
    h.pay(payment("E0", "2018-12", "585.00", "2018-12-10T10:00:00+08:00"));
    assert_eq!(h.rules(), [Rule::InactiveBeneficiary], "not on the roster yet");
    h.apply(Record::Roster(enrolled()));
    let c = roster(Status::Cancelled, "2019-03-01", "2019-02-25T08:00:00+08:00");
    h.apply(Record::Roster(c));
    h.pay(payment("E3", "2019-03", "585.00", "2019-03-10T10:00:00+08:00"));
    h.pay(payment("E2", "2019-02", "585.00", "2019-03-11T10:00:00+08:00"));
    let ids: Vec<&str> = h.of(Rule::InactiveBeneficiary).iter().map(|a| a.evidence.event_ids[0].as_str()).collect();
    assert_eq!(ids, ["E0", "E3"], "February began before the cancellation");
}

#[test]
fn custodians_are_exempt_only_while_registered_and_matching() {
    let mut h = Harness::new();
    let mut r = enrolled();
    r.custodians = vec![Custodian {
        name: "李四".into(),
        account_no: "6217009999999999".into(),
        registered_at: day("2019-01-01"),
        revoked_at: Some(day("2019-03-01")),
        id_no: None,
    }];
    h.apply(Record::Roster(r));
    let to_custodian = |id: &str, m: &str, name: &str| {
        let mut p = payment(id, m, "585.00", &format!("{m}-10T10:00:00+08:00"));
        p.account_no = "6217009999999999".into();
        p.account_name = name.into();
        p
    };
    h.pay(to_custodian("E1", "2019-01", "李 四"));
    h.pay(to_custodian("E2", "2019-02", "王五"));
    h.pay(to_custodian("E3", "2019-03", "李四"));
    let ids: Vec<&str> = h.of(Rule::NameMismatch).iter().map(|a| a.evidence.event_ids[0].as_str()).collect();
    assert_eq!(ids, ["E2", "E3"], "wrong name, then revoked");
}

#[test]
fn filed_relatives_are_reviewed_once_a_year() {
    let mut h = Harness::new();
    let mut r = enrolled();
    r.filed_relative = true;
    h.apply(Record::Roster(r));
    monthly(&mut h, 1, 12);
    h.pay(payment("N1", "2020-01", "585.00", "2020-01-10T10:00:00+08:00"));
    let years: Vec<&str> = h.of(Rule::FiledRelativeReview).iter().map(|a| a.evidence.figures["year"].as_str()).collect();
    assert_eq!(years, ["2019", "2020"]);
}

#[test]
fn disabled_rules_stay_silent() {
    let mut rules = RulesConfig::default();
    rules.inactive_beneficiary.enabled = false;
    let mut h = Harness::with(rules);
    h.pay(payment("E0", "2018-12", "585.00", "2018-12-10T10:00:00+08:00"));
    assert!(h.alerts.is_empty());
}

#[test]
fn alert_ids_are_stable_across_engines() {
    let run = || {
        let mut h = Harness::new();
        h.apply(Record::Roster(enrolled()));
        monthly(&mut h, 1, 3);
        h.apply(death("2019-01-20", "2019-04-01T09:00:00+08:00"));
        h.alerts.iter().map(|a| a.alert_id.clone()).collect::<Vec<_>>()
    };
    let a = run();
    assert_eq!(a.len(), 2);
    assert_eq!(a, run());
}

/// Every value of the state column families, and the alerts in the order
/// raised.
fn snapshot(engine: &Engine) -> (Vec<Vec<u8>>, Vec<Alert>) {
    use crate::store::Cf;
    let mut values = Vec::new();
    for cf in [Cf::Beneficiaries, Cf::Months, Cf::Accounts, Cf::Timers, Cf::Alerts, Cf::AlertLog, Cf::DeadLetters] {
        values.extend(engine.store().values(cf).map(Result::unwrap));
    }
    (values, engine.committed_alerts().map(Result::unwrap).collect())
}

#[test]
fn background_commits_leave_the_same_state_and_alerts_as_synchronous_ones() {
    use crate::generate::{generate, GenerateOptions, OutFormat};
    use crate::model::Period;
    use crate::source::{stage, Inputs};
    let dir = tempfile::tempdir().unwrap();
    let g = generate(&GenerateOptions {
        out: dir.path().join("ledger"),
        households: 120,
        from: Period::parse("2019-01").unwrap(),
        to: Period::parse("2020-06").unwrap(),
        seed: 11,
        format: OutFormat::Jsonl,
    })
    .unwrap();
    let inputs = Inputs::new(g.roster, g.deaths, g.payments);
    // Read as the audit reads: the ledger's mistyped years (2199) are
    // dead-lettered, not applied.
    let limits = crate::decode::Limits::default().read_at(ts("2026-01-01T00:00:00+08:00"), 86_400_000);
    let runs = stage(&inputs, limits, 5_000, dir.path(), &mut |_| Ok(()), &mut |_| true).unwrap();
    let audit = |background: bool| {
        let state = tempfile::tempdir().unwrap();
        let mut store = Store::open(state.path(), StoreOptions { block_cache_mb: 8, write_buffer_mb: 4, sync: false, statistics: false }).unwrap();
        store.defer_background_writes();
        let clock = Arc::new(FixedClock::new(ts("2026-01-01T00:00:00+08:00")));
        // 16 cached entries and batches of 97 records: entries of a batch
        // still being written are evicted and read again all the time.
        let mut engine = Engine::open(store, RulesConfig::default(), Tz::default(), 16, clock).unwrap();
        let mut durable = Vec::new();
        let mut last = None;
        for (i, s) in runs.merge(None).unwrap().enumerate() {
            let s = s.unwrap();
            engine.apply(&s.record).unwrap();
            last = Some(s.key);
            if i % 97 == 96 {
                let c = if background { engine.commit_in_background(last) } else { engine.commit(last) };
                durable.extend(c.unwrap().alerts);
            }
        }
        durable.extend(engine.commit(last).unwrap().alerts);
        let (values, committed) = snapshot(&engine);
        assert_eq!(durable, committed, "each alert handed out once, in order, after it was written");
        (values, committed, engine.progress().clone())
    };
    let (sync_values, sync_alerts, sync_progress) = audit(false);
    assert!(sync_values.len() > 2_000, "months are compared too: {}", sync_values.len());
    let (bg_values, bg_alerts, bg_progress) = audit(true);
    assert!(sync_alerts.len() > 20, "the ledger plants cases of every rule: {}", sync_alerts.len());
    let ids = |a: &[Alert]| a.iter().map(|a| format!("{:?} {}", a.rule, a.alert_id)).collect::<Vec<_>>();
    let (b, s) = (ids(&bg_alerts), ids(&sync_alerts));
    let only_b: Vec<_> = b.iter().filter(|x| !s.contains(x)).collect();
    let only_s: Vec<_> = s.iter().filter(|x| !b.contains(x)).collect();
    assert!(only_b.is_empty() && only_s.is_empty(), "only background: {only_b:?}; only synchronous: {only_s:?}");
    assert_eq!(b, s);
    assert!(bg_alerts == sync_alerts);
    assert_eq!(bg_progress, sync_progress);
    assert!(bg_values == sync_values, "the stored state differs");
}

#[test]
fn a_commit_in_the_background_is_read_back_before_it_lands() {
    // Every record is its own batch, so each read meets the batch before
    // it still being written.
    let mut h = Harness::new();
    let bg = |h: &mut Harness, r: Record| {
        let o = h.engine.apply(&r).unwrap();
        h.alerts.extend(h.engine.commit_in_background(None).unwrap().alerts);
        o
    };
    bg(&mut h, Record::Roster(enrolled()));
    let p = payment("E1", "2019-01", "585.00", "2019-01-10T10:00:00+08:00");
    assert_eq!(bg(&mut h, Record::Payment(p.clone())), Outcome::Applied);
    assert_eq!(bg(&mut h, Record::Payment(p)), Outcome::Redelivered, "the month in flight is read");
    let mut rev = payment("R1", "2019-01", "585.00", "2019-01-11T10:00:00+08:00");
    rev.kind = PaymentKind::Reversal;
    rev.reverses = Some("E1".into());
    assert_eq!(bg(&mut h, Record::Payment(rev)), Outcome::Applied, "the payment in flight is found");
    bg(&mut h, Record::Payment(payment("E2", "2019-02", "585.00", "2019-02-10T10:00:00+08:00")));
    bg(&mut h, Record::Payment(payment("E3", "2019-03", "585.00", "2019-03-10T10:00:00+08:00")));
    bg(&mut h, death("2019-02-20", "2019-03-15T09:00:00+08:00"));
    // An earlier date from another source: E3 again, while the alert for
    // it is still in flight.
    bg(&mut h, death("2019-01-20", "2019-03-16T09:00:00+08:00"));
    h.alerts.extend(h.engine.commit(None).unwrap().alerts);
    let found: Vec<&str> = h.of(Rule::PaidAfterDeath).iter().map(|a| a.evidence.event_ids[0].as_str()).collect();
    assert_eq!(found, ["E3", "E2"], "E3 raised once");
    let stored: Vec<String> = h.engine.committed_alerts().map(|a| a.unwrap().alert_id).collect();
    let handed: Vec<String> = h.alerts.iter().map(|a| a.alert_id.clone()).collect();
    assert_eq!(stored, handed);
}

/// A state directory of the previous layout (v1: one `months` entry per
/// beneficiary and month, progress without `commits`) is upgraded in place
/// when opened: its payments are still found, and its counts go on.
/// The progress as v2 wrote it: no `counts.decisions`, payments ranked 2
/// (reversals 3) in the position.
fn as_v2_progress(v3: &[u8]) -> Vec<u8> {
    use crate::model::SortKey;
    let (mut position, rest) = postcard::take_from_bytes::<Option<SortKey>>(v3).unwrap();
    if let Some(p) = position.as_mut() {
        p.rank -= 2;
    }
    let (head, rest) = postcard::take_from_bytes::<(Option<crate::model::Timestamp>, u64, u64, u64, u64, u64, u64)>(rest).unwrap();
    let (decisions, rest) = postcard::take_from_bytes::<u64>(rest).unwrap();
    assert_eq!(decisions, 0, "v2 had no decisions");
    let (vulnerable, rest) = postcard::take_from_bytes::<u64>(rest).unwrap();
    assert_eq!(vulnerable, 0, "nor vulnerable-persons records");
    let mut out = postcard::to_stdvec(&(position, head)).unwrap();
    out.extend_from_slice(rest);
    out
}

/// v2 → v3: stored alerts gain their case, the cases are built, stored
/// reviews become decisions of their cases (listed for publishing), and
/// the input position moves to the new ranks.
#[test]
fn a_v2_state_directory_is_upgraded_in_place() {
    use crate::store::{cases, keys, Cf};
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions { block_cache_mb: 8, write_buffer_mb: 4, sync: false, statistics: false };
    let clock = || Arc::new(FixedClock::new(ts("2026-01-01T00:00:00+08:00")));
    let (alerts, position) = {
        let store = Store::open(dir.path(), opts).unwrap();
        let mut e = Engine::open(store.clone(), RulesConfig::default(), Tz::default(), 64, clock()).unwrap();
        e.apply(&Record::Roster(enrolled())).unwrap();
        let mut p = payment("N1", "2019-01", "585.00", "2019-01-10T10:00:00+08:00");
        p.account_name = "李四".into();
        e.apply(&Record::Payment(p)).unwrap();
        let position = crate::model::SortKey { time: ts("2019-01-10T10:00:00+08:00"), rank: 4, source: 2, line: 7 };
        let alerts = e.commit(Some(position)).unwrap().alerts;
        assert_eq!(alerts.len(), 1);
        // Written back as v2 had it: alerts without a case, no cases, a
        // review of the alert, the old progress layout.
        let mut b = store.batch();
        for a in &alerts {
            let mut v: serde_json::Value = serde_json::to_value(a).unwrap();
            v.as_object_mut().unwrap().remove("case_id");
            b.put_raw(Cf::Alerts, a.alert_id.as_bytes(), &serde_json::to_vec(&v).unwrap());
        }
        for (k, _) in store.entries_between(Cf::Cases, &[], &[0xff], usize::MAX).unwrap() {
            b.delete(Cf::Cases, &k);
        }
        let review = serde_json::json!({"outcome": "corrected", "note": "已更正账户", "reviewer": "水阳镇", "at": "2026-02-01T10:00:00+08:00"});
        let key = [alerts[0].alert_id.as_bytes(), &[0], &0u64.to_be_bytes()].concat();
        b.put_raw(Cf::Reviews, &key, &serde_json::to_vec(&review).unwrap());
        b.put_raw(Cf::Meta, keys::META_PROGRESS, &as_v2_progress(&store.get_raw(Cf::Meta, keys::META_PROGRESS).unwrap().unwrap()));
        b.put_raw(Cf::Meta, keys::META_SCHEMA, b"paywatch-state-v2");
        // A v2 directory has no alert index: the v4 → v5 upgrade builds it.
        for (k, _) in store.entries_between(Cf::AlertIndex, &[], &[0xff], usize::MAX).unwrap() {
            b.delete(Cf::AlertIndex, &k);
        }
        store.commit(b).unwrap();
        crate::store::accounts_as_v3(&store);
        (alerts, position)
    };
    let store = Store::open(dir.path(), opts).unwrap();
    assert_eq!(store.get_raw(Cf::Meta, keys::META_SCHEMA).unwrap().as_deref(), Some(b"paywatch-state-v10".as_slice()));
    let e = Engine::open(store.clone(), RulesConfig::default(), Tz::default(), 64, clock()).unwrap();
    assert_eq!(e.progress().position, Some(position), "the payment rank is the new one again");
    assert_eq!(e.progress().counts.payments, 1);
    let stored: Vec<Alert> = e.committed_alerts().map(Result::unwrap).collect();
    assert_eq!(stored[0].case_id, alerts[0].case_id, "the upgrade gives the alert its case");
    let c = cases::get(&store, &alerts[0].case_id).unwrap().unwrap();
    assert_eq!(c.alerts, [alerts[0].alert_id.clone()]);
    assert_eq!(c.status, cases::Status::Rectified, "corrected is rectified");
    assert_eq!(c.decisions[0].decision_id, format!("review-{}-0", alerts[0].alert_id));
    assert_eq!(c.decisions[0].note.as_deref(), Some("已更正账户"));
    let listed: serde_json::Value = serde_json::from_slice(&store.get_raw(Cf::Meta, keys::META_MIGRATED_DECISIONS).unwrap().unwrap()).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "to be published");
    let mut indexed = Vec::new();
    crate::store::alert_index::walk::<crate::store::StoreError>(&store, Default::default(), None, 1000, |e| {
        indexed.push(e.alert_id.to_owned());
        Ok(crate::store::alert_index::Step::More)
    })
    .unwrap();
    assert_eq!(indexed.len(), alerts.len(), "every alert indexed by the upgrade");
    cases::index_agrees(&store).unwrap();
    assert!(alerts.iter().all(|a| indexed.contains(&a.alert_id)));
}

#[test]
fn a_v1_state_directory_is_upgraded_in_place() {
    use crate::store::{keys, Cf};
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions { block_cache_mb: 8, write_buffer_mb: 4, sync: false, statistics: false };
    let clock = || Arc::new(FixedClock::new(ts("2026-01-01T00:00:00+08:00")));
    let paid = |m: u32| payment(&format!("E{m:02}"), &format!("2019-{m:02}"), "585.00", &format!("2019-{m:02}-10T10:00:00+08:00"));
    {
        let store = Store::open(dir.path(), opts).unwrap();
        let mut e = Engine::open(store.clone(), RulesConfig::default(), Tz::default(), 64, clock()).unwrap();
        e.apply(&Record::Roster(enrolled())).unwrap();
        for m in 1..=6 {
            assert_eq!(e.apply(&Record::Payment(paid(m))).unwrap(), Outcome::Applied);
            if m == 3 {
                e.commit(None).unwrap();
            }
        }
        e.commit(None).unwrap();
        // Written back as v1 would have it.
        let mut segments = Vec::new();
        store.scan_prefix(Cf::Months, BID.as_bytes(), |k, v| {
            segments.push((k.to_vec(), v.to_vec()));
            Ok(())
        }).unwrap();
        assert_eq!(segments.len(), 2, "one segment per commit");
        let mut b = store.batch();
        for (k, v) in &segments {
            keys::for_each_segment_month(v, |month, bytes| b.put_raw(Cf::Months, &[BID.as_bytes(), month].concat(), bytes))
                .unwrap();
            b.delete(Cf::Months, k);
        }
        let mut progress = as_v2_progress(&store.get_raw(Cf::Meta, keys::META_PROGRESS).unwrap().unwrap());
        assert_eq!(progress.pop(), Some(2), "`commits` is the last field");
        b.put_raw(Cf::Meta, keys::META_PROGRESS, &progress);
        b.put_raw(Cf::Meta, keys::META_SCHEMA, b"paywatch-state-v1");
        store.commit(b).unwrap();
        crate::store::accounts_as_v3(&store);
    }
    let store = Store::open(dir.path(), opts).unwrap();
    assert_eq!(store.get_raw(Cf::Meta, keys::META_SCHEMA).unwrap().as_deref(), Some(b"paywatch-state-v10".as_slice()));
    let mut e = Engine::open(store.clone(), RulesConfig::default(), Tz::default(), 64, clock()).unwrap();
    assert_eq!((e.progress().counts.payments, e.progress().commits), (6, 0));
    assert_eq!(e.apply(&Record::Payment(paid(2))).unwrap(), Outcome::Redelivered, "a v1 month is read");
    e.apply(&death("2019-03-20", "2019-07-01T09:00:00+08:00")).unwrap();
    let alerts = e.commit(None).unwrap().alerts;
    let found: Vec<&str> = alerts.iter().filter(|a| a.rule == Rule::PaidAfterDeath).map(|a| a.evidence.event_ids[0].as_str()).collect();
    assert_eq!(found, ["E04", "E05", "E06"], "the v1 months after the death, from both v1 commits");
    let mut keys_left = Vec::new();
    store.scan_prefix(Cf::Months, BID.as_bytes(), |k, _| {
        keys_left.push(k.len());
        Ok(())
    }).unwrap();
    assert_eq!(keys_left, [BID.len() + 8], "the v1 entries became one segment");
}

mod accounts;
mod arrival;
mod away;
mod batches;
mod cases;
mod custodians;
mod coverage;
