//! Cases and decisions (contract §8) in the engine: filing, relapses,
//! quiet alerts, unknown and conflicting decisions.

use super::*;
use crate::decode::Reason;
use crate::model::decision::{case_id, Action, Decision, Outcome as Decided};
use crate::store::cases::{self, Status};

pub(super) fn decision(id: &str, outcome: Decided, at: &str) -> Record {
    decision_on(id, Rule::NameMismatch, BID, outcome, at)
}

/// A decision on the case of `rule` and `subject`.
pub(super) fn decision_on(id: &str, rule: Rule, subject: &str, outcome: Decided, at: &str) -> Record {
    Record::Decision(Decision {
        decision_id: id.into(),
        case_id: case_id(rule, subject),
        rule,
        subject: subject.into(),
        outcome,
        action: (outcome == Decided::Rectified).then_some(Action::Corrected),
        amount_recovered: None,
        document_no: None,
        clue_no: None,
        note: None,
        decided_by: "水阳镇".into(),
        decided_at: ts(at),
    })
}

fn mismatch(h: &mut Harness, m: u32) {
    let mut p = payment(&format!("N{m:02}"), &format!("2019-{m:02}"), "585.00", &format!("2019-{m:02}-10T10:00:00+08:00"));
    p.account_name = "李四".into();
    h.pay(p);
}

/// §8: a rectified case that goes on relapses once per decision, is
/// reopened, and keeps every alert; decisions before any alert, reused
/// ids and redeliveries are told apart.
#[test]
fn a_rectified_case_that_goes_on_relapses_once() {
    let mut h = Harness::new();
    h.apply(Record::Roster(enrolled()));
    let early = h.apply(decision("D0", Decided::Confirmed, "2019-01-05T00:00:00+08:00"));
    let Outcome::Rejected(r) = early else { panic!("{early:?}") };
    assert_eq!(r.reason, Reason::UnknownCase);
    mismatch(&mut h, 1);
    let nm = h.of(Rule::NameMismatch);
    assert_eq!(nm.len(), 1);
    let case = case_id(Rule::NameMismatch, BID);
    assert_eq!(nm[0].case_id, case, "the alert carries its case (§8 formula)");
    assert_eq!(h.apply(decision("D1", Decided::InProgress, "2019-01-15T00:00:00+08:00")), Outcome::Applied);
    assert_eq!(h.apply(decision("D2", Decided::Rectified, "2019-01-20T00:00:00+08:00")), Outcome::Applied);
    assert_eq!(h.apply(decision("D2", Decided::Rectified, "2019-01-20T00:00:00+08:00")), Outcome::Redelivered);
    let Outcome::Rejected(r) = h.apply(decision("D2", Decided::Confirmed, "2019-01-21T00:00:00+08:00")) else { panic!() };
    assert_eq!(r.reason, Reason::ConflictingDecision);
    let c = cases::get(h.engine.store(), &case).unwrap().unwrap();
    assert_eq!(c.status, Status::Rectified);
    assert!(!c.relapsed);

    mismatch(&mut h, 2);
    mismatch(&mut h, 3);
    let relapses = h.of(Rule::RectificationRelapse);
    assert_eq!(relapses.len(), 1, "one per case and decision: {:?}", h.rules());
    let r = relapses[0];
    assert_eq!(r.case_id, case);
    assert_eq!(r.evidence.event_ids, ["N02"]);
    assert_eq!(r.evidence.record_ids, ["D2"]);
    assert_eq!(r.evidence.figures["relapsed_rule"], "NAME_MISMATCH");
    assert_eq!(r.evidence.figures["rectified_at"], "2019-01-20T00:00:00+08:00");
    assert_eq!(r.event_time, "2019-02-10T10:00:00+08:00");
    let c = cases::get(h.engine.store(), &case).unwrap().unwrap();
    assert_eq!(c.status, Status::Open, "reopened");
    assert!(c.relapsed);
    assert_eq!(c.alerts.len(), 4, "three mismatches and the relapse");
    assert_eq!(c.amount.to_string(), "1755.00", "the relapse does not count its amount again");
    assert_eq!(c.decisions.len(), 2);
    cases::index_agrees(h.engine.store()).unwrap();
    // A new rectification can relapse again.
    h.apply(decision("D3", Decided::Rectified, "2019-03-20T00:00:00+08:00"));
    cases::index_agrees(h.engine.store()).unwrap();
    // A late alert of another township moves nothing but the township
    // entry it must.
    let mut late = payment("N00", "2018-12", "585.00", "2018-12-10T10:00:00+08:00");
    late.account_name = "李四".into();
    late.township = "狸桥镇".into();
    h.pay(late);
    cases::index_agrees(h.engine.store()).unwrap();
    mismatch(&mut h, 4);
    assert_eq!(h.of(Rule::RectificationRelapse).len(), 2);
    cases::index_agrees(h.engine.store()).unwrap();
    let mut moved = payment("N05", "2019-05", "585.00", "2019-05-10T10:00:00+08:00");
    moved.account_name = "李四".into();
    moved.township = "狸桥镇".into();
    h.pay(moved);
    let c = cases::get(h.engine.store(), &case).unwrap().unwrap();
    assert_eq!(c.township, "狸桥镇", "the township of the newest alert");
    cases::index_agrees(h.engine.store()).unwrap();
    // Another case's decision id cannot be reused.
    let mut other = decision("D3", Decided::Confirmed, "2019-04-20T00:00:00+08:00");
    if let Record::Decision(d) = &mut other {
        d.rule = Rule::DisbursementDelay;
        d.case_id = case_id(Rule::DisbursementDelay, BID);
    }
    let Outcome::Rejected(r) = h.apply(other) else { panic!() };
    assert_eq!(r.reason, Reason::ConflictingDecision);
}

/// §11.4: alerts of a false-positive case are committed but quiet (not
/// for supervisors' webhooks); §11.3: a relapse is judged against the
/// newest rectification whatever followed it.
#[test]
fn false_positive_alerts_are_quiet_and_later_decisions_do_not_hide_a_relapse() {
    let mut h = Harness::new();
    h.apply(Record::Roster(enrolled()));
    mismatch(&mut h, 1);
    h.apply(decision("F1", Decided::FalsePositive, "2019-01-15T00:00:00+08:00"));
    let mut p = payment("N02", "2019-02", "585.00", "2019-02-10T10:00:00+08:00");
    p.account_name = "李四".into();
    h.engine.apply(&Record::Payment(p)).unwrap();
    let mut quiet_seen = Vec::new();
    let c = h.engine.commit_with(None, |_, staged| {
        let (alerts, quiet) = (staged.alerts, staged.quiet);
        quiet_seen = alerts.iter().map(|a| quiet.contains(&a.alert_id)).collect();
        Ok(())
    });
    assert_eq!(c.unwrap().alerts.len(), 1);
    assert_eq!(quiet_seen, [true], "recorded, not sent to supervisors");
    assert!(h.of(Rule::RectificationRelapse).is_empty());

    h.apply(decision("R1", Decided::Rectified, "2019-02-20T00:00:00+08:00"));
    h.apply(decision("I1", Decided::InProgress, "2019-02-25T00:00:00+08:00"));
    mismatch(&mut h, 3);
    assert_eq!(h.of(Rule::RectificationRelapse).len(), 1, "{:?}", h.rules());
    let c = cases::get(h.engine.store(), &case_id(Rule::NameMismatch, BID)).unwrap().unwrap();
    assert_eq!(c.status, Status::InProgress, "status follows the newest decision; only rectified is reopened");
}
