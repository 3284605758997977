//! The account stage (#16): account findings are turned into alerts in
//! the order one thread would have raised them, however far the stage
//! lags, and a decision waits for every finding before it.

use super::*;
use crate::model::decision::{case_id, Decision, Outcome as Decided};

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

fn rectified(id: &str, at: &str) -> Record {
    Record::Decision(Decision {
        decision_id: id.into(),
        case_id: case_id(Rule::NameMismatch, BID),
        rule: Rule::NameMismatch,
        subject: BID.into(),
        outcome: Decided::Rectified,
        action: Some(crate::model::decision::Action::Corrected),
        amount_recovered: None,
        document_no: None,
        clue_no: None,
        note: None,
        decided_by: "水阳镇".into(),
        decided_at: ts(at),
    })
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
        rectified("D1", "2019-02-15T00:00:00+08:00"),
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
