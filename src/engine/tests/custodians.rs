//! Custodians in the engine (contract §9, §11.6–11.8): the overload count
//! when roster records are applied, the custodian's death at a payment and
//! late, and `NAME_MISMATCH` silent meanwhile.

use super::*;

const X: &str = "341802195001010015";
const OTHERS: [&str; 4] = ["341802196002020025", "341802197003030035", "341802198004040045", "11010519491231002X"];
const ACCOUNT: &str = "6217009999999999";

fn registration(from: &str, until: Option<&str>) -> Custodian {
    Custodian {
        name: "王五".into(),
        account_no: ACCOUNT.into(),
        registered_at: day(from),
        revoked_at: until.map(day),
        id_no: Some(PersonId::parse(X).unwrap()),
    }
}

/// Beneficiary `bid` of household `h`, naming X from `from` (until
/// `until`), written at `at`.
fn named(bid: &str, h: &str, from: &str, until: Option<&str>, at: &str) -> Record {
    let mut r = enrolled();
    r.beneficiary_id = PersonId::parse(bid).unwrap();
    r.household_id = h.into();
    r.custodians = vec![registration(from, until)];
    r.updated_at = ts(at);
    Record::Roster(r)
}

/// The custodian counts from the versions sent to it, never from the
/// persons' rosters: a late version naming X is counted at its own
/// instant, and the version after it, which X had never been sent (it
/// names nobody, and nothing before it named X), is sent then, so that it
/// still ends the registration.
#[test]
fn overload_counts_late_versions_at_their_instant() {
    let mut h = Harness::new();
    for (i, bid) in OTHERS[..3].iter().enumerate() {
        h.apply(named(bid, &format!("H{i}"), "2019-02-01", None, &format!("2019-02-1{i}T10:00:00+08:00")));
    }
    // The fourth's first version, on 1 April, names nobody.
    let mut plain = enrolled();
    plain.beneficiary_id = PersonId::parse(OTHERS[3]).unwrap();
    plain.household_id = "H3".into();
    plain.updated_at = ts("2019-04-01T10:00:00+08:00");
    h.apply(Record::Roster(plain));
    assert!(h.of(Rule::CustodianOverload).is_empty());
    // Its version of 20 March naming X arrives late: four households at
    // that instant, a crossing.
    h.apply(named(OTHERS[3], "H3", "2019-02-01", None, "2019-03-20T10:00:00+08:00"));
    let o = h.of(Rule::CustodianOverload);
    assert_eq!(o.len(), 1, "{o:?}");
    assert_eq!(o[0].event_time, "2019-03-20T10:00:00+08:00");
    // At a later record of another household the fourth's version is the
    // April one: three, so X falls back; a fifth household crosses again.
    h.apply(named(OTHERS[0], "H0", "2019-02-01", None, "2019-04-05T10:00:00+08:00"));
    assert_eq!(h.of(Rule::CustodianOverload).len(), 1);
    h.apply(named("130102196605050057", "H5", "2019-02-01", None, "2019-04-06T10:00:00+08:00"));
    let o = h.of(Rule::CustodianOverload);
    assert_eq!(o.len(), 2, "it fell back to three on 5 April: {o:?}");
    assert_eq!(o[1].evidence.figures["households"], "4");
}

#[test]
fn overload_fires_when_first_crossed_and_again_only_after_falling_back() {
    let mut h = Harness::new();
    for (i, bid) in OTHERS[..3].iter().enumerate() {
        h.apply(named(bid, &format!("H{i}"), "2019-02-01", None, &format!("2019-02-0{}T10:00:00+08:00", i + 1)));
    }
    assert!(h.of(Rule::CustodianOverload).is_empty(), "three households: not above N = 3");
    // A fourth household (registered from March, written in February:
    // counted only from March, when a record is applied).
    h.apply(named(OTHERS[3], "H3", "2019-03-01", None, "2019-02-20T10:00:00+08:00"));
    assert!(h.of(Rule::CustodianOverload).is_empty(), "not valid yet on the day it was applied");
    h.apply(named(OTHERS[3], "H3", "2019-03-01", None, "2019-03-02T10:00:00+08:00"));
    let o = h.of(Rule::CustodianOverload);
    assert_eq!(o.len(), 1, "{:?}", h.rules());
    let a = o[0].clone();
    assert_eq!(a.evidence.figures["custodian_id_no"], X);
    assert_eq!(a.evidence.figures["households"], "4");
    assert_eq!(a.event_time, "2019-03-02T10:00:00+08:00");
    assert_eq!((a.beneficiary_id.as_deref(), a.account_no.as_deref()), (None, Some(ACCOUNT)));
    assert_eq!(a.case_id, crate::model::decision::case_id(Rule::CustodianOverload, X), "the case is the custodian's");
    assert!(a.evidence.record_ids.contains(&format!("{}@2019-03-02T10:00:00+08:00", OTHERS[3])));
    // Still four at the next record: no new alert.
    h.apply(named(OTHERS[0], "H0", "2019-02-01", None, "2019-04-01T10:00:00+08:00"));
    assert_eq!(h.of(Rule::CustodianOverload).len(), 1);
    // One household's registration is revoked: three (the record that
    // drops X is evaluated for X, §11.8) ...
    h.apply(named(OTHERS[1], "H1", "2019-02-01", Some("2019-05-01"), "2019-05-02T10:00:00+08:00"));
    assert_eq!(h.of(Rule::CustodianOverload).len(), 1);
    // ... and a new fourth household crosses again.
    h.apply(named(OTHERS[1], "H1", "2019-06-01", None, "2019-06-02T10:00:00+08:00"));
    assert_eq!(h.of(Rule::CustodianOverload).len(), 2, "{:?}", h.rules());
}

#[test]
fn a_custodians_death_is_flagged_at_the_payment_and_late() {
    let mut h = Harness::new();
    let mut r = enrolled();
    r.custodians = vec![registration("2019-01-01", None)];
    h.apply(Record::Roster(r));
    let to_custodian = |id: &str, m: &str| {
        let mut p = payment(id, m, "585.00", &format!("{m}-10T10:00:00+08:00"));
        p.account_no = ACCOUNT.into();
        p.account_name = "王五".into();
        p
    };
    for m in ["2019-01", "2019-02", "2019-03"] {
        h.pay(to_custodian(&format!("P{m}"), m));
    }
    assert!(h.alerts.is_empty(), "a registered custodian: {:?}", h.rules());
    // X died on 2019-02-10, the day of February's payment; reported late.
    h.apply(x_died("DX", "2019-02-10", "2019-03-20T09:00:00+08:00"));
    let late = h.of(Rule::CustodianDeceased);
    assert_eq!(late.len(), 1, "only March was paid on a day after the death: {:?}", h.rules());
    assert_eq!(late[0].evidence.event_ids, ["P2019-03"]);
    assert_eq!(late[0].event_time, "2019-03-20T09:00:00+08:00", "the late record's time (§11.1)");
    // April, with the death known: flagged at the payment; NAME_MISMATCH
    // stays silent (§11.7), and the beneficiary is not dead.
    h.pay(to_custodian("P2019-04", "2019-04"));
    assert_eq!(h.rules(), [Rule::CustodianDeceased, Rule::CustodianDeceased]);
    // The same death reported again by another source raises nothing new.
    h.apply(Record::Death(DeathRecord {
        record_id: "DX2".into(),
        person_id: PersonId::parse(X).unwrap(),
        name: "王五".into(),
        date_of_death: day("2019-02-10"),
        source: DeathSource::FuneralHome,
        reported_at: ts("2019-04-20T09:00:00+08:00"),
    }));
    assert_eq!(h.of(Rule::CustodianDeceased).len(), 2);
}

/// The custodian's death is reported after the beneficiary's roster has
/// moved on twice, so the version in effect on the earliest payments is no
/// longer kept with the beneficiary but archived: every payment made after
/// the death is still flagged (found on a 16-year ledger, where a death
/// reported in January missed December's payment).
#[test]
fn a_late_custodian_death_reaches_payments_made_under_archived_roster_versions() {
    let mut h = Harness::new();
    let to_custodian = |m: &str| {
        let mut p = payment(&format!("P{m}"), m, "585.00", &format!("{m}-10T10:00:00+08:00"));
        p.account_no = ACCOUNT.into();
        p.account_name = "王五".into();
        p
    };
    let version = |since: &str, at: &str, amount: &str| {
        let mut r = enrolled();
        r.custodians = vec![registration("2019-01-01", None)];
        r.status_since = day(since);
        r.updated_at = ts(at);
        r.monthly_amount = crate::model::Money::parse(amount).unwrap();
        Record::Roster(r)
    };
    h.apply(version("2019-01-01", "2019-01-01T08:00:00+08:00", "585.00"));
    let months: Vec<String> = (0..26).map(|i| format!("{}-{:02}", 2019 + i / 12, i % 12 + 1)).collect();
    for m in &months {
        if m == "2020-01" {
            h.apply(version("2020-01-01", "2019-12-28T10:00:00+08:00", "615.00"));
        }
        if m == "2021-01" {
            h.apply(version("2021-01-01", "2020-12-28T10:00:00+08:00", "645.00"));
        }
        h.pay(to_custodian(m));
    }
    assert!(h.alerts.is_empty(), "{:?}", h.rules());
    let archived = h.engine.store().values(crate::store::Cf::RosterArchive).count();
    assert!(archived >= 1, "the first version was moved out of the beneficiary");
    h.apply(x_died("DX", "2019-06-20", "2021-03-01T09:00:00+08:00"));
    let mut flagged: Vec<String> = h.of(Rule::CustodianDeceased).iter().map(|a| a.evidence.event_ids[0].clone()).collect();
    flagged.sort();
    let want: Vec<String> = months[6..].iter().map(|m| format!("P{m}")).collect();
    assert_eq!(flagged, want, "every payment from July 2019 on, under all three versions");
}

#[test]
fn both_rules_can_be_switched_off() {
    let mut rules = RulesConfig::default();
    rules.custodian_overload.enabled = false;
    rules.custodian_deceased.enabled = false;
    rules.missed_payment.enabled = false;
    let mut h = Harness::with(rules);
    for (i, bid) in OTHERS.iter().enumerate() {
        h.apply(named(bid, &format!("H{i}"), "2019-01-01", None, &format!("2019-02-0{}T10:00:00+08:00", i + 1)));
    }
    let mut p = payment("P1", "2019-03", "585.00", "2019-03-10T10:00:00+08:00");
    p.beneficiary_id = PersonId::parse(OTHERS[0]).unwrap();
    p.account_no = ACCOUNT.into();
    p.account_name = "王五".into();
    h.apply(death_of_x());
    h.pay(p);
    assert!(h.alerts.is_empty(), "{:?}", h.rules());
}

fn death_of_x() -> Record {
    x_died("DX", "2019-01-05", "2019-01-20T09:00:00+08:00")
}

/// A hospital's death record `id` of custodian X.
/// A custodian who died before any beneficiary registered them: the
/// death reaches a beneficiary when its registration arrives (the
/// custodian answers it), so its next payment through them is flagged;
/// the payments it made before registering them are not re-checked.
#[test]
fn a_death_known_before_the_registration_reaches_the_beneficiary_that_registers_later() {
    let mut h = Harness::new();
    h.apply(Record::Roster(enrolled()));
    let to_custodian = |id: &str, m: &str| {
        let mut p = payment(id, m, "585.00", &format!("{m}-10T10:00:00+08:00"));
        p.account_no = ACCOUNT.into();
        p.account_name = "王五".into();
        p
    };
    // Paid into X's account before any registration: a name mismatch.
    h.pay(to_custodian("P1", "2019-01"));
    assert_eq!(h.rules(), [Rule::NameMismatch]);
    h.apply(x_died("DX", "2019-01-20", "2019-01-25T09:00:00+08:00"));
    let mut r = enrolled();
    r.custodians = vec![registration("2019-01-01", None)];
    r.updated_at = ts("2019-02-01T08:00:00+08:00");
    h.apply(Record::Roster(r));
    assert_eq!(h.rules(), [Rule::NameMismatch], "January was paid before X died, and is not re-checked");
    h.pay(to_custodian("P2", "2019-02"));
    let d = h.of(Rule::CustodianDeceased);
    assert_eq!(d.len(), 1, "{:?}", h.rules());
    assert_eq!(d[0].evidence.event_ids, ["P2"]);
}

/// "Whichever arrives first" (§9): a registration version that arrives
/// late, after a payment through it to a custodian already dead, flags
/// that payment when it arrives, as a late death record would. (Between
/// instances the custodian's answer to a registration can always arrive
/// after the payments, #16.)
#[test]
fn a_late_registration_of_a_dead_custodian_flags_the_payments_already_made_through_it() {
    let mut h = Harness::new();
    h.apply(Record::Roster(enrolled()));
    h.apply(x_died("DX", "2019-01-20", "2019-01-25T09:00:00+08:00"));
    let mut p = payment("P2", "2019-02", "585.00", "2019-02-10T10:00:00+08:00");
    p.account_no = ACCOUNT.into();
    p.account_name = "王五".into();
    h.pay(p);
    assert_eq!(h.rules(), [Rule::NameMismatch], "no registration known yet");
    // The version registering X from January, updated on 1 February,
    // arrives only now.
    let mut r = enrolled();
    r.custodians = vec![registration("2019-01-01", None)];
    r.updated_at = ts("2019-02-01T08:00:00+08:00");
    h.apply(Record::Roster(r));
    let d = h.of(Rule::CustodianDeceased);
    assert_eq!(d.len(), 1, "{:?}", h.rules());
    assert_eq!(d[0].evidence.event_ids, ["P2"]);
}

/// Reading 38: X's death is reported twice, the later report with the
/// earlier date. A payment cites the first report dated before its day,
/// whether it was checked before the second report arrived, after it, or
/// when the registration reached a beneficiary after both: an alert never
/// depends on how late the custodian's answer came.
#[test]
fn a_payment_cites_the_first_report_of_the_custodians_death_that_precedes_it() {
    let to_custodian = |id: &str, m: &str, at: &str| {
        let mut p = payment(id, m, "585.00", at);
        p.account_no = ACCOUNT.into();
        p.account_name = "王五".into();
        p
    };
    let registered = || {
        let mut r = enrolled();
        r.custodians = vec![registration("2019-01-01", None)];
        r.updated_at = ts("2019-01-02T08:00:00+08:00");
        Record::Roster(r)
    };
    let first = || x_died("DX-HOSPITAL", "2019-03-05", "2019-03-06T09:00:00+08:00");
    let second = || x_died("DX-FUNERAL", "2019-02-20", "2019-03-25T09:00:00+08:00");
    let cited = |h: &Harness| -> Vec<(String, String, String)> {
        let mut v: Vec<_> = h
            .of(Rule::CustodianDeceased)
            .iter()
            .map(|a| (a.evidence.event_ids[0].clone(), a.evidence.record_ids[0].clone(), a.event_time.clone()))
            .collect();
        v.sort();
        v
    };
    let want = vec![
        // Paid 1 March: after the second report's date only; raised when
        // that report arrives, at its time.
        ("P-0301".to_owned(), "DX-FUNERAL".to_owned(), "2019-03-25T09:00:00+08:00".to_owned()),
        ("P-0310".to_owned(), "DX-HOSPITAL".to_owned(), "2019-03-10T10:00:00+08:00".to_owned()),
        ("P-0410".to_owned(), "DX-HOSPITAL".to_owned(), "2019-04-10T10:00:00+08:00".to_owned()),
    ];

    // In feed order.
    let mut h = Harness::new();
    h.apply(registered());
    h.pay(to_custodian("P-0210", "2019-02", "2019-02-10T10:00:00+08:00"));
    h.pay(to_custodian("P-0301", "2019-03", "2019-03-01T10:00:00+08:00"));
    h.apply(first());
    h.pay(to_custodian("P-0310", "2019-03", "2019-03-10T10:00:00+08:00"));
    h.apply(second());
    h.pay(to_custodian("P-0410", "2019-04", "2019-04-10T10:00:00+08:00"));
    assert_eq!(cited(&h), want, "{:?}", h.rules());

    // Both reports known before the registration reaches the beneficiary:
    // the custodian answers with both, in the order they came.
    let mut h = Harness::new();
    h.apply(Record::Roster(enrolled()));
    h.apply(first());
    h.apply(second());
    h.pay(to_custodian("P-0410", "2019-04", "2019-04-10T10:00:00+08:00"));
    h.apply(registered());
    h.pay(to_custodian("P-0411", "2019-04", "2019-04-11T10:00:00+08:00"));
    let got = cited(&h);
    assert_eq!(got.iter().map(|(p, d, _)| (p.as_str(), d.as_str())).collect::<Vec<_>>(), [("P-0410", "DX-HOSPITAL"), ("P-0411", "DX-HOSPITAL")]);
}

fn x_died(id: &str, on: &str, reported_at: &str) -> Record {
    Record::Death(DeathRecord {
        record_id: id.into(),
        person_id: PersonId::parse(X).unwrap(),
        name: "王五".into(),
        date_of_death: day(on),
        source: DeathSource::Hospital,
        reported_at: ts(reported_at),
    })
}

/// v3 → v4: a roster history stored before custodians had `id_no` is
/// rewritten in place and read with none; the registration still exempts.
#[test]
fn a_v3_roster_with_custodians_is_upgraded() {
    use crate::model::time::Date;
    use crate::model::{Money, Program, Timestamp};
    use crate::store::{keys, Cf};
    #[derive(serde::Serialize)]
    struct CustodianV3<'a>(&'a str, &'a str, Date, Option<Date>);
    #[derive(serde::Serialize)]
    struct RosterV3<'a>(&'a PersonId, &'a str, &'a str, &'a str, Program, Status, Date, Date, Money, bool, Vec<CustodianV3<'a>>, Timestamp);

    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions { block_cache_mb: 8, write_buffer_mb: 4, sync: false, statistics: false };
    let clock = || Arc::new(FixedClock::new(ts("2026-01-01T00:00:00+08:00")));
    let mut r = enrolled();
    r.custodians = vec![Custodian { id_no: None, ..registration("2019-01-01", None) }];
    {
        let store = Store::open(dir.path(), opts).unwrap();
        let mut e = Engine::open(store.clone(), RulesConfig::default(), Tz::default(), 64, clock()).unwrap();
        e.apply(&Record::Roster(r.clone())).unwrap();
        e.commit(None).unwrap();
        let v4 = store.get_raw(Cf::Beneficiaries, BID.as_bytes()).unwrap().unwrap();
        let (_, rest) = postcard::take_from_bytes::<Vec<RosterRecord>>(&v4).unwrap();
        let c = &r.custodians[0];
        let old = vec![RosterV3(
            &r.beneficiary_id,
            &r.name,
            &r.household_id,
            &r.township,
            r.program,
            r.status,
            r.enrolled_at,
            r.status_since,
            r.monthly_amount,
            r.filed_relative,
            vec![CustodianV3(&c.name, &c.account_no, c.registered_at, c.revoked_at)],
            r.updated_at,
        )];
        let mut v3 = postcard::to_stdvec(&old).unwrap();
        v3.extend_from_slice(rest);
        assert_ne!(v3, v4, "the layouts differ by the id_no");
        let mut b = store.batch();
        b.put_raw(Cf::Beneficiaries, BID.as_bytes(), &v3);
        b.put_raw(Cf::Meta, keys::META_SCHEMA, b"paywatch-state-v3");
        store.commit(b).unwrap();
        crate::store::accounts_as_v3(&store);
    }
    let store = Store::open(dir.path(), opts).unwrap();
    assert_eq!(store.get_raw(Cf::Meta, keys::META_SCHEMA).unwrap().as_deref(), Some(b"paywatch-state-v10".as_slice()));
    let mut e = Engine::open(store.clone(), RulesConfig::default(), Tz::default(), 64, clock()).unwrap();
    assert_eq!(e.apply(&Record::Roster(r)).unwrap(), Outcome::Redelivered, "the stored version reads as the same record");
    let mut p = payment("P1", "2019-01", "585.00", "2019-01-10T10:00:00+08:00");
    p.account_no = ACCOUNT.into();
    p.account_name = "王五".into();
    e.apply(&Record::Payment(p)).unwrap();
    assert!(e.commit(None).unwrap().alerts.is_empty(), "the registration still exempts");
}
