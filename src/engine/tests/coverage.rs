//! `COVERAGE_GAP` in the engine (contract §10, §11.10): decided when the
//! watermark passes the deadline, against the roster, the household and
//! deaths known by then; late versions; a new `flagged_at`.

use super::*;
use crate::model::{Program, VulnerableRecord, VulnerableSource};

const P: &str = "341802196002020025";

fn flagged(record_id: &str, category: &str, flagged_at: &str, updated_at: &str) -> VulnerableRecord {
    VulnerableRecord {
        record_id: record_id.into(),
        person_id: PersonId::parse(P).unwrap(),
        name: "李梅".into(),
        household_id: Some("H7".into()),
        township: "水阳镇".into(),
        source: VulnerableSource::Disability,
        category: category.into(),
        flagged_at: day(flagged_at),
        cleared_at: None,
        updated_at: ts(updated_at),
    }
}

/// Moves the watermark with a payment of the (enrolled) clean beneficiary.
fn tick(h: &mut Harness, id: &str, at: &str) {
    let mut p = payment(id, &at[..7], "585.00", at);
    p.period = crate::model::Period::of(day(&at[..10]));
    h.pay(p);
}

fn harness() -> Harness {
    let mut rules = RulesConfig::default();
    rules.missed_payment.enabled = false;
    let mut h = Harness::with(rules);
    h.apply(Record::Roster(enrolled()));
    h
}

#[test]
fn a_qualifying_person_not_covered_is_referred_at_the_deadline_exactly() {
    let mut h = harness();
    h.apply(Record::Vulnerable(flagged("CL-1", "grade_1", "2019-01-10", "2019-01-11T09:00:00+08:00")));
    // Deadline 2019-01-10 + 90 days = 2019-04-10 00:00 +08:00.
    tick(&mut h, "T1", "2019-04-09T23:59:00+08:00");
    assert!(h.of(Rule::CoverageGap).is_empty(), "before the deadline");
    tick(&mut h, "T2", "2019-04-10T00:00:00+08:00");
    let g = h.of(Rule::CoverageGap);
    assert_eq!(g.len(), 1);
    assert_eq!(g[0].event_time, "2019-04-10T00:00:00+08:00");
    assert_eq!((g[0].beneficiary_id.as_deref(), g[0].household_id.as_deref()), (Some(P), Some("H7")));
    assert_eq!(g[0].evidence.record_ids, ["CL-1"]);
    assert_eq!(g[0].case_id, crate::model::decision::case_id(Rule::CoverageGap, P));
    // Redelivered: nothing new.
    h.apply(Record::Vulnerable(flagged("CL-1", "grade_1", "2019-01-10", "2019-01-11T09:00:00+08:00")));
    tick(&mut h, "T3", "2019-05-10T10:00:00+08:00");
    assert_eq!(h.of(Rule::CoverageGap).len(), 1);
}

#[test]
fn covered_cleared_dead_or_not_qualifying_people_are_not_referred() {
    let mut h = harness();
    // Enrolled in the person's own name before the deadline.
    h.apply(Record::Vulnerable(flagged("CL-1", "grade_1", "2019-01-10", "2019-01-11T09:00:00+08:00")));
    let mut own = enrolled();
    own.beneficiary_id = PersonId::parse(P).unwrap();
    own.household_id = "H8".into();
    own.updated_at = ts("2019-03-01T08:00:00+08:00");
    h.apply(Record::Roster(own));
    // A household member covered (another person, household H7).
    let mut v = flagged("CL-2", "grade_2", "2019-01-10", "2019-01-11T09:00:00+08:00");
    v.person_id = PersonId::parse("341802197003030035").unwrap();
    h.apply(Record::Vulnerable(v));
    let mut member = enrolled();
    member.beneficiary_id = PersonId::parse("341802198004040045").unwrap();
    member.household_id = "H7".into();
    member.updated_at = ts("2019-02-01T08:00:00+08:00");
    h.apply(Record::Roster(member));
    // Not qualifying (grade 3); cleared on the deadline day; died before.
    let mut v = flagged("CL-3", "grade_3", "2019-01-10", "2019-01-11T09:00:00+08:00");
    v.person_id = PersonId::parse("341802195001010015").unwrap();
    h.apply(Record::Vulnerable(v));
    let mut v = flagged("CL-4", "grade_1", "2019-01-10", "2019-01-11T09:00:00+08:00");
    v.person_id = PersonId::parse("11010519491231002X").unwrap();
    v.household_id = None;
    v.cleared_at = Some(day("2019-04-10"));
    h.apply(Record::Vulnerable(v));
    // A temporary-relief roster record does not cover.
    let mut v = flagged("CL-5", "grade_1", "2019-01-10", "2019-01-11T09:00:00+08:00");
    v.person_id = PersonId::parse("341802196002020025").unwrap();
    v.record_id = "CL-5".into();
    v.household_id = Some("H9".into());
    h.apply(Record::Vulnerable(v));
    let mut relief = enrolled();
    relief.beneficiary_id = PersonId::parse("341802196002020025").unwrap();
    relief.program = Program::TemporaryRelief;
    relief.household_id = "H9".into();
    relief.updated_at = ts("2019-03-02T08:00:00+08:00");
    // (P's rural dibao record above is replaced by this newer one, which
    // is what applies at the deadline)
    h.apply(Record::Roster(relief));
    // Covered in their own name (the harness's enrolled beneficiary).
    let mut v = flagged("CL-6", "grade_1", "2019-01-10", "2019-01-11T09:00:00+08:00");
    v.person_id = PersonId::parse(BID).unwrap();
    v.household_id = None;
    h.apply(Record::Vulnerable(v));
    // Died before the deadline (reported before it too).
    let mut v = flagged("CL-7", "grade_1", "2019-01-10", "2019-01-11T09:00:00+08:00");
    v.person_id = PersonId::parse("341802195001010015").unwrap();
    v.household_id = None;
    h.apply(Record::Vulnerable(v));
    h.apply(Record::Death(DeathRecord {
        record_id: "D7".into(),
        person_id: PersonId::parse("341802195001010015").unwrap(),
        name: "李梅".into(),
        date_of_death: day("2019-03-01"),
        source: DeathSource::Village,
        reported_at: ts("2019-03-05T09:00:00+08:00"),
    }));
    tick(&mut h, "T1", "2019-04-11T10:00:00+08:00");
    let got: Vec<&str> = h.of(Rule::CoverageGap).iter().map(|a| a.evidence.record_ids[0].as_str()).collect();
    // CL-1: P's own record is temporary relief by then, but a member of
    // its household H7 is covered. CL-5: household H9 has only P.
    assert_eq!(got, ["CL-5"]);
}

#[test]
fn a_new_flagged_at_replaces_the_deadline_and_a_late_version_is_decided_when_applied() {
    let mut h = harness();
    h.apply(Record::Vulnerable(flagged("CL-1", "grade_3", "2019-01-10", "2019-01-11T09:00:00+08:00")));
    // Re-assessed as grade 1 and flagged again from February: deadline
    // 2019-02-01 + 90 = 2019-05-02.
    h.apply(Record::Vulnerable(flagged("CL-1", "grade_1", "2019-02-01", "2019-02-02T09:00:00+08:00")));
    tick(&mut h, "T1", "2019-04-20T10:00:00+08:00");
    assert!(h.of(Rule::CoverageGap).is_empty(), "the first deadline was replaced");
    tick(&mut h, "T2", "2019-05-02T10:00:00+08:00");
    assert_eq!(h.of(Rule::CoverageGap).len(), 1);
    // A record that first qualifies after its deadline: decided when applied.
    h.apply(Record::Vulnerable(flagged("CL-9", "grade_2", "2019-01-05", "2019-05-03T09:00:00+08:00")));
    let g = h.of(Rule::CoverageGap);
    assert_eq!(g.len(), 2);
    assert_eq!(g[1].event_time, "2019-04-05T00:00:00+08:00", "event_time is the deadline");
}

/// A version decided after its deadline asks who was covered at that past
/// deadline: the person's roster version of then may have been moved out of
/// the beneficiary (archived) since, and still counts.
#[test]
fn a_late_version_sees_the_roster_of_its_deadline_even_when_archived() {
    let mut h = harness();
    let version = |status: Status, since: &str, at: &str| {
        let mut r = enrolled();
        r.beneficiary_id = PersonId::parse(P).unwrap();
        r.household_id = "H8".into();
        r.status = status;
        r.status_since = day(since);
        r.updated_at = ts(at);
        Record::Roster(r)
    };
    // P is on dibao through 2019, then cancelled; the watermark moves on.
    h.apply(version(Status::Active, "2019-01-01", "2019-01-01T08:00:00+08:00"));
    h.apply(version(Status::Active, "2020-01-01", "2019-12-28T08:00:00+08:00"));
    tick(&mut h, "T1", "2020-02-10T10:00:00+08:00");
    h.apply(version(Status::Cancelled, "2020-03-01", "2020-03-01T08:00:00+08:00"));
    tick(&mut h, "T2", "2020-04-10T10:00:00+08:00");
    assert!(h.engine.store().values(crate::store::Cf::RosterArchive).count() >= 1, "2019's version archived");
    // Flagged in January 2019 (deadline 2019-04-11), shared only in 2020:
    // P was covered then.
    h.apply(Record::Vulnerable(flagged("CL-1", "grade_1", "2019-01-11", "2020-04-11T09:00:00+08:00")));
    // Flagged in January 2020 (deadline 2020-04-10), after the cancellation
    // of March: not covered at the deadline.
    h.apply(Record::Vulnerable(flagged("CL-2", "grade_1", "2020-01-11", "2020-04-11T09:00:00+08:00")));
    let got: Vec<&str> = h.of(Rule::CoverageGap).iter().map(|a| a.evidence.record_ids[0].as_str()).collect();
    assert_eq!(got, ["CL-2"]);
}

/// §10: a household is covered by a beneficiary whose roster record
/// applying at d is in that household. A member who moved to another
/// household before d covers the new one, not the old.
#[test]
fn a_member_who_moved_away_before_the_deadline_no_longer_covers_the_household() {
    let mut h = harness();
    let member = |household: &str, at: &str| {
        let mut r = enrolled();
        r.beneficiary_id = PersonId::parse("341802198004040045").unwrap();
        r.household_id = household.into();
        r.updated_at = ts(at);
        Record::Roster(r)
    };
    h.apply(Record::Vulnerable(flagged("CL-1", "grade_1", "2019-01-10", "2019-01-11T09:00:00+08:00")));
    let mut other = flagged("CL-2", "grade_1", "2019-01-10", "2019-01-11T09:00:00+08:00");
    other.person_id = PersonId::parse("341802197003030035").unwrap();
    other.household_id = Some("H8".into());
    h.apply(Record::Vulnerable(other));
    // In P's household H7 from January, in H8 from March.
    h.apply(member("H7", "2019-01-02T08:00:00+08:00"));
    h.apply(member("H8", "2019-03-01T08:00:00+08:00"));
    tick(&mut h, "T1", "2019-04-11T10:00:00+08:00");
    let got: Vec<&str> = h.of(Rule::CoverageGap).iter().map(|a| a.evidence.record_ids[0].as_str()).collect();
    assert_eq!(got, ["CL-1"], "H7 had nobody covered at the deadline; H8 had the member");
}

/// A household is sent its members' versions; a person whose vulnerable
/// record names it is sent its entry as it stands the first time, and
/// what the household is sent after (#16: the referral reads only the
/// person's copy). Here the members are known before the records.
#[test]
fn a_household_sends_its_entry_when_first_named_and_every_version_after() {
    let mut h = harness();
    let member = |id: &str, household: &str, at: &str| {
        let mut r = enrolled();
        r.beneficiary_id = PersonId::parse(id).unwrap();
        r.household_id = household.into();
        r.updated_at = ts(at);
        Record::Roster(r)
    };
    const Q: &str = "341802197003030035";
    h.apply(member("341802198004040045", "H7", "2019-01-02T08:00:00+08:00"));
    h.apply(member("341802198505050057", "H8", "2019-01-02T08:00:00+08:00"));
    // P names H7, covered since January: the entry P is sent says so.
    h.apply(Record::Vulnerable(flagged("CL-1", "grade_1", "2019-01-10", "2019-01-11T09:00:00+08:00")));
    // Q's record names H5 (nobody), then a new version names H8 (covered).
    let mut q = flagged("CL-2", "grade_1", "2019-01-10", "2019-01-11T09:00:00+08:00");
    q.person_id = PersonId::parse(Q).unwrap();
    q.household_id = Some("H5".into());
    h.apply(Record::Vulnerable(q.clone()));
    q.household_id = Some("H8".into());
    q.updated_at = ts("2019-02-01T09:00:00+08:00");
    h.apply(Record::Vulnerable(q));
    // H8's member moves to H9 in March: H8 sends that on to Q.
    h.apply(member("341802198505050057", "H9", "2019-03-01T08:00:00+08:00"));
    tick(&mut h, "T1", "2019-04-11T10:00:00+08:00");
    let got: Vec<&str> = h.of(Rule::CoverageGap).iter().map(|a| a.evidence.record_ids[0].as_str()).collect();
    assert_eq!(got, ["CL-2"], "H7 is covered at the deadline; H8 no longer");
}
