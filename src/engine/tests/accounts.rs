//! The account stage (#16): account findings are turned into alerts in
//! the order one thread would have raised them, however far the stage
//! lags, and a decision waits for every finding before it.

use super::*;
use crate::model::decision::Outcome as Decided;

const P: &str = "341802196002020025";

fn roster_of(bid: &str, household: &str) -> Record {
    let mut r = enrolled();
    r.beneficiary_id = PersonId::parse(bid).unwrap();
    r.household_id = household.into();
    Record::Roster(r)
}

/// A payment of `bid` (household `household`) for `period`, into
/// `account` held by `holder`.
fn pay(id: &str, bid: &str, household: &str, period: &str, at: &str, account: &str, holder: &str) -> Record {
    let mut p = payment(id, period, "585.00", at);
    p.beneficiary_id = PersonId::parse(bid).unwrap();
    p.household_id = household.into();
    p.account_no = account.into();
    p.account_name = holder.into();
    Record::Payment(p)
}

fn ledger() -> Vec<Record> {
    const A1: &str = "6217001234567890";
    const A2: &str = "6217009876543210";
    vec![
        roster_of(BID, "H1"),
        roster_of(P, "H2"),
        pay("E1", BID, "H1", "2019-01", "2019-01-10T10:00:00+08:00", A1, "张三"),
        // A second household into A1: SHARED_ACCOUNT, from the stage.
        pay("E2", P, "H2", "2019-01", "2019-01-11T10:00:00+08:00", A1, "张三"),
        // NAME_MISMATCH, from this side, after it.
        pay("E3", BID, "H1", "2019-02", "2019-02-10T10:00:00+08:00", A2, "李四"),
        super::cases::decision("D1", Decided::Rectified, "2019-02-15T00:00:00+08:00"),
        // P's own NAME_MISMATCH first, then A2 shared by H1 and H2.
        pay("E4", P, "H2", "2019-03", "2019-03-09T10:00:00+08:00", A2, "李四"),
        // B's case was rectified: the mismatch goes on, a relapse.
        pay("E5", BID, "H1", "2019-03", "2019-03-10T10:00:00+08:00", A2, "李四"),
    ]
}

/// (rule, alert id, case id) of every alert, in the order raised.
fn run(commit_every: usize) -> Vec<(Rule, String, String)> {
    let mut h = Harness::new();
    for (i, r) in ledger().iter().enumerate() {
        assert_ne!(h.engine.apply(r).unwrap(), Outcome::Redelivered);
        if (i + 1) % commit_every == 0 {
            h.alerts.extend(h.engine.commit(None).unwrap().alerts);
        }
    }
    h.alerts.extend(h.engine.commit(None).unwrap().alerts);
    h.alerts.iter().map(|a| (a.rule, a.alert_id.clone(), a.case_id.clone())).collect()
}

#[test]
fn alerts_keep_the_order_of_one_thread_whatever_the_stage_has_answered() {
    // A commit after every record waits for the stage each time: the
    // order of one thread. The others let it lag by up to the whole
    // ledger.
    let one_by_one = run(1);
    let watched = [Rule::SharedAccount, Rule::NameMismatch, Rule::RectificationRelapse];
    let order: Vec<Rule> = one_by_one.iter().map(|a| a.0).filter(|r| watched.contains(r)).collect();
    assert_eq!(
        order,
        [
            Rule::SharedAccount,
            Rule::NameMismatch,
            Rule::NameMismatch,
            Rule::SharedAccount,
            Rule::NameMismatch,
            Rule::RectificationRelapse,
        ],
        "{one_by_one:?}"
    );
    for every in [2, 3, 100] {
        assert_eq!(run(every), one_by_one, "committing every {every} records");
    }
}

/// An account held by a custodian (王五) for the beneficiaries whose
/// rosters register it.
const HELD: &str = "6217005555555555";

/// `bid`'s roster, written at `at`, registering [`HELD`] from `from`
/// (until `until`), or registering nothing.
fn holding(bid: &str, household: &str, registered: Option<(&str, Option<&str>)>, at: &str) -> Record {
    let Record::Roster(mut r) = roster_of(bid, household) else { unreachable!() };
    r.custodians = registered
        .map(|(from, until)| Custodian {
            name: "王五".into(),
            account_no: HELD.into(),
            registered_at: day(from),
            revoked_at: until.map(day),
            id_no: None,
        })
        .into_iter()
        .collect();
    r.enrolled_at = day("2018-01-01");
    r.updated_at = ts(at);
    Record::Roster(r)
}

/// Seven payments into [`HELD`] in January 2019 (K = 3 per beneficiary
/// in 30 days): four of the first beneficiary, three of the second.
fn seven_into_held() -> Vec<Record> {
    let mut out = Vec::new();
    for (i, (bid, h, period)) in [
        (BID, "H1", "2018-10"),
        (BID, "H1", "2018-11"),
        (BID, "H1", "2018-12"),
        (BID, "H1", "2019-01"),
        (P, "H2", "2018-11"),
        (P, "H2", "2018-12"),
        (P, "H2", "2019-01"),
    ]
    .into_iter()
    .enumerate()
    {
        out.push(pay(&format!("F{i}"), bid, h, period, &format!("2019-01-{:02}T10:00:00+08:00", i + 2), HELD, "王五"));
    }
    out
}

/// (the payment it fired at, n) of each FREQUENT_PAYMENTS alert.
fn frequent(records: Vec<Record>) -> Vec<(String, String)> {
    let mut h = Harness::new();
    for r in &records {
        h.engine.apply(r).unwrap();
    }
    h.alerts.extend(h.engine.commit(None).unwrap().alerts);
    h.of(Rule::FrequentPayments).iter().map(|a| (a.event_time.clone(), a.evidence.figures["custodian_of"].clone())).collect()
}

/// n of FREQUENT_PAYMENTS counts the beneficiaries whose roster version
/// at the payment's time registers the account: the account stage counts
/// it from the registrations roster versions send it.
#[test]
fn frequent_payments_allows_k_per_registered_beneficiary() {
    let both = [
        holding(BID, "H1", Some(("2018-01-01", None)), "2018-12-01T08:00:00+08:00"),
        holding(P, "H2", Some(("2018-01-01", None)), "2018-12-01T08:00:00+08:00"),
    ];
    // n = 2: six allowed, the seventh is one too many.
    let mut records = both.to_vec();
    records.extend(seven_into_held());
    assert_eq!(frequent(records), [("2019-01-08T10:00:00+08:00".to_owned(), "2".to_owned())]);

    // The second registration revoked from 2019-01-04: n = 1 from then
    // on, and the fourth payment (on the 5th) is one too many.
    let mut records = vec![both[0].clone(), holding(P, "H2", Some(("2018-01-01", Some("2019-01-04"))), "2018-12-01T08:00:00+08:00")];
    records.extend(seven_into_held());
    assert_eq!(frequent(records)[0], ("2019-01-05T10:00:00+08:00".to_owned(), "1".to_owned()));

    // A newer roster version of the second beneficiary without it,
    // written on the 4th: the same.
    let mut records = both.to_vec();
    let mut seven = seven_into_held();
    seven.insert(2, holding(P, "H2", None, "2019-01-04T00:00:00+08:00"));
    records.extend(seven);
    assert_eq!(frequent(records)[0], ("2019-01-05T10:00:00+08:00".to_owned(), "1".to_owned()));

    // Nobody registers it: n counts as 1.
    let mut records = vec![holding(BID, "H1", None, "2018-12-01T08:00:00+08:00"), holding(P, "H2", None, "2018-12-01T08:00:00+08:00")];
    records.extend(seven_into_held());
    assert_eq!(frequent(records)[0], ("2019-01-05T10:00:00+08:00".to_owned(), "0".to_owned()));
}

/// A roster version arriving late, older than one already applied: the
/// account learns both where the late one's registration starts and that
/// the newer version (sent again, now that it follows a version naming
/// the account) ends it. The same n as when they arrive in order.
#[test]
fn a_late_roster_version_reaches_the_accounts_it_names() {
    let mut records = vec![
        holding(BID, "H1", Some(("2018-01-01", None)), "2018-12-01T08:00:00+08:00"),
        // The newer version of the second beneficiary first, without it…
        holding(P, "H2", None, "2019-01-04T00:00:00+08:00"),
        // …then the older one registering it.
        holding(P, "H2", Some(("2018-01-01", None)), "2018-12-01T08:00:00+08:00"),
    ];
    records.extend(seven_into_held());
    assert_eq!(frequent(records)[0], ("2019-01-05T10:00:00+08:00".to_owned(), "1".to_owned()));
    // Only the older one, late after a version of nobody's: n = 2 on the
    // 8th, as the registration holds throughout.
    let mut records = vec![
        holding(BID, "H1", Some(("2018-01-01", None)), "2018-12-01T08:00:00+08:00"),
        holding(P, "H2", None, "2018-06-01T08:00:00+08:00"),
        holding(P, "H2", Some(("2018-01-01", None)), "2018-12-01T08:00:00+08:00"),
    ];
    records.extend(seven_into_held());
    assert_eq!(frequent(records), [("2019-01-08T10:00:00+08:00".to_owned(), "2".to_owned())]);
}

/// Which accounts are named for a custodian is state: after a restart,
/// n is still counted.
#[test]
fn the_accounts_named_for_custodians_are_known_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        let store = Store::open(dir.path(), StoreOptions { block_cache_mb: 8, write_buffer_mb: 4, sync: false, statistics: false }).unwrap();
        let clock = Arc::new(FixedClock::new(ts("2026-01-01T00:00:00+08:00")));
        Engine::open(store, RulesConfig::default(), Tz::default(), 64, clock).unwrap()
    };
    {
        let mut engine = open();
        engine.apply(&holding(BID, "H1", Some(("2018-01-01", None)), "2018-12-01T08:00:00+08:00")).unwrap();
        engine.apply(&holding(P, "H2", Some(("2018-01-01", None)), "2018-12-01T08:00:00+08:00")).unwrap();
        engine.commit(None).unwrap();
    }
    let mut engine = open();
    for r in seven_into_held() {
        engine.apply(&r).unwrap();
    }
    let alerts = engine.commit(None).unwrap().alerts;
    let n: Vec<&str> = alerts.iter().filter(|a| a.rule == Rule::FrequentPayments).map(|a| a.evidence.figures["custodian_of"].as_str()).collect();
    assert_eq!(n, ["2"]);
}

/// A decision on an account's case (§8) is applied by the account stage,
/// which holds the accounts' cases (#16, fact 5): it is redelivered,
/// conflicts and relapses as a person's case does, and a decision id of
/// another case is still refused. What the stage files reaches the commit
/// (the reopened case, a quiet alert).
#[test]
fn the_account_stage_decides_and_relapses_its_own_cases() {
    use crate::model::decision::case_id;
    use crate::store::cases::{self, Status};
    const A1: &str = "6217001234567890";
    const A2: &str = "6217009876543210";
    let decide = |id: &str, account: &str, outcome: Decided, at: &str| super::cases::decision_on(id, Rule::SharedAccount, account, outcome, at);
    let mut rules = RulesConfig::default();
    rules.missed_payment.enabled = false;
    let mut h = Harness::with(rules);
    h.apply(roster_of(BID, "H1"));
    h.apply(roster_of(P, "H2"));
    let Outcome::Rejected(r) = h.apply(decide("D0", A1, Decided::Confirmed, "2019-01-05T00:00:00+08:00")) else { panic!() };
    assert_eq!(r.reason, crate::decode::Reason::UnknownCase, "no alert on A1 yet");
    for (i, account) in [A1, A2].into_iter().enumerate() {
        let period = format!("2019-0{}", i + 1);
        h.apply(pay(&format!("E{i}1"), BID, "H1", &period, &format!("2019-01-1{i}T10:00:00+08:00"), account, "张三"));
        h.apply(pay(&format!("E{i}2"), P, "H2", &period, &format!("2019-01-1{i}T11:00:00+08:00"), account, "张三"));
    }
    assert_eq!(h.of(Rule::SharedAccount).len(), 2);
    assert_eq!(h.apply(decide("D1", A1, Decided::Rectified, "2019-01-20T00:00:00+08:00")), Outcome::Applied);
    assert_eq!(h.apply(decide("D1", A1, Decided::Rectified, "2019-01-20T00:00:00+08:00")), Outcome::Redelivered);
    let Outcome::Rejected(r) = h.apply(decide("D1", A1, Decided::Confirmed, "2019-01-21T00:00:00+08:00")) else { panic!() };
    assert_eq!(r.reason, crate::decode::Reason::ConflictingDecision);
    assert_eq!(h.apply(decide("F1", A2, Decided::FalsePositive, "2019-01-20T00:00:00+08:00")), Outcome::Applied);
    // A person's case cannot reuse an account case's decision id.
    let Record::Decision(mut d) = super::cases::decision("D1", Decided::Confirmed, "2019-01-22T00:00:00+08:00") else { unreachable!() };
    d.case_id = case_id(Rule::NameMismatch, BID);
    let Outcome::Rejected(r) = h.apply(Record::Decision(d)) else { panic!() };
    assert_eq!(r.reason, crate::decode::Reason::ConflictingDecision);
    let c = cases::get(h.engine.store(), &case_id(Rule::SharedAccount, A1)).unwrap().unwrap();
    assert_eq!(c.status, Status::Rectified);
    // Below the threshold for a whole window (W = 365 days) and shared
    // again in 2021: a new episode each. A1 relapses and is reopened; A2's
    // alert is quiet.
    for (i, account) in [A1, A2].into_iter().enumerate() {
        let period = format!("2021-0{}", i + 3);
        h.engine.apply(&pay(&format!("G{i}1"), BID, "H1", &period, &format!("2021-03-1{i}T10:00:00+08:00"), account, "张三")).unwrap();
        h.engine.apply(&pay(&format!("G{i}2"), P, "H2", &period, &format!("2021-03-1{i}T11:00:00+08:00"), account, "张三")).unwrap();
    }
    let mut seen = Vec::new();
    let mut reopened = Vec::new();
    let committed = h.engine.commit_with(None, |_, staged| {
        seen = staged.alerts.iter().map(|a| (a.rule, a.account_no.clone().unwrap_or_default(), staged.quiet.contains(&a.alert_id))).collect();
        reopened = staged.reopened.iter().map(|c| c.case_id.clone()).collect();
        Ok(())
    });
    h.alerts.extend(committed.unwrap().alerts);
    let (a1, a2) = (A1.to_owned(), A2.to_owned());
    assert_eq!(seen, [(Rule::SharedAccount, a1.clone(), false), (Rule::RectificationRelapse, a1, false), (Rule::SharedAccount, a2, true)]);
    assert_eq!(reopened, [case_id(Rule::SharedAccount, A1)]);
    let c = cases::get(h.engine.store(), &case_id(Rule::SharedAccount, A1)).unwrap().unwrap();
    assert_eq!((c.status, c.relapsed, c.alerts.len()), (Status::Open, true, 3));
    assert_eq!(h.of(Rule::RectificationRelapse)[0].case_id, case_id(Rule::SharedAccount, A1));
    cases::index_agrees(h.engine.store()).unwrap();
}
