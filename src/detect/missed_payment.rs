//! `MISSED_PAYMENT`: a month that was due for a monthly programme and has no
//! unreversed payment once the event-time watermark passes the end of the
//! month plus G days.
//!
//! A month P is due when, from what was known at its deadline:
//! - the beneficiary's newest roster record is for a monthly programme;
//! - P is not before the month of `enrolled_at` (nor before `feed_start`, the
//!   first month the feed covers);
//! - the status in effect on the first day of P is `active`: the status of
//!   the most recently updated record whose `status_since` is on or before
//!   that day, or — before any `status_since` — active from the enrolment
//!   month. This mirrors `INACTIVE_BENEFICIARY`: a month is owed exactly when
//!   paying it would not be a payment to an inactive case;
//! - P is not after the month of death.

use super::Finding;
use crate::model::time::{Date, Tz};
use crate::model::{DeathRecord, Evidence, Period, RosterRecord, Rule, Severity, Status, Timestamp};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub enabled: bool,
    /// G: days after the end of a month before it counts as missed.
    pub grace_days: u32,
    /// The first benefit month the feed covers; earlier months are never
    /// expected (an enrolment from 2012 does not make 2012–2017 "missed").
    pub feed_start: Period,
    pub severity: Severity,
}

impl Default for Config {
    fn default() -> Config {
        Config { enabled: true, grace_days: 20, feed_start: Period::new(2018, 1), severity: Severity::Medium }
    }
}

impl Config {
    pub fn validate(&self) -> Result<(), String> {
        if self.grace_days > 3650 {
            return Err("grace_days: must be 0-3650".into());
        }
        Ok(())
    }

    /// The instant at which month P is decided: end of P plus G days. A
    /// record at or after it is applied after the decision (§11.2).
    pub fn deadline(&self, tz: Tz, p: Period) -> Timestamp {
        tz.day_start(p.next().first_day().plus_days(i64::from(self.grace_days)))
    }

    /// The first month not yet decided: whose deadline is after the
    /// watermark.
    pub fn first_open_month(&self, tz: Tz, from: Period, watermark: Option<Timestamp>) -> Period {
        let mut p = from.max(self.feed_start);
        if let Some(w) = watermark {
            while self.deadline(tz, p) <= w {
                p = p.next();
            }
        }
        p
    }
}

/// The roster record in effect for month P as known at `as_of`, when P is
/// due; `None` when it is not.
pub fn due<'a>(
    cfg: &Config,
    p: Period,
    roster: &'a [RosterRecord],
    deaths: &[DeathRecord],
    as_of: Timestamp,
) -> Option<&'a RosterRecord> {
    let known = || roster.iter().filter(|r| r.updated_at <= as_of);
    let latest = known().max_by_key(|r| r.updated_at)?;
    if !latest.program.is_monthly() || p < Period::of(latest.enrolled_at) || p < cfg.feed_start {
        return None;
    }
    let died = deaths.iter().filter(|d| d.reported_at <= as_of).map(|d| d.date_of_death).min();
    if died.is_some_and(|d: Date| p > Period::of(d)) {
        return None;
    }
    let first = p.first_day();
    // Most recently updated wins; `roster` is in update order, so the last
    // qualifying record is the one.
    let in_effect = known().rfind(|r| r.status_since <= first);
    match in_effect {
        Some(r) if r.status != Status::Active => None,
        Some(r) => Some(r),
        None => Some(latest),
    }
}

pub fn finding(cfg: &Config, p: Period, r: &RosterRecord, tz: Tz) -> Finding {
    let deadline = cfg.deadline(tz, p);
    let mut evidence = Evidence::default();
    evidence.record_ids.push(super::roster_ref(r, tz));
    evidence.figures.insert("monthly_amount".into(), r.monthly_amount.to_string());
    evidence.figures.insert("enrolled_at".into(), r.enrolled_at.to_string());
    evidence.figures.insert("grace_days".into(), cfg.grace_days.to_string());
    evidence.figures.insert("deadline".into(), tz.format(deadline));
    let last_day = p.next().first_day().plus_days(i64::from(cfg.grace_days) - 1);
    let reason = format!(
        "{}{}对象\"{}\"（核定月额{}元）截至{}仍无未冲正的发放记录，应发未发",
        p.chinese(),
        r.program.chinese(),
        r.name,
        r.monthly_amount,
        last_day
    );
    Finding {
        rule: Rule::MissedPayment,
        severity: cfg.severity,
        township: r.township.clone(),
        beneficiary_id: Some(r.beneficiary_id.as_str().to_owned()),
        household_id: Some(r.household_id.clone()),
        account_no: None,
        period: Some(p),
        amount: Some(r.monthly_amount),
        evidence,
        reason,
        event_time: deadline,
        identity: vec![r.beneficiary_id.as_str().to_owned(), p.to_string()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testkit::*;
    use crate::model::{DeathSource, PersonId, Program};

    fn p(s: &str) -> Period {
        Period::parse(s).unwrap()
    }

    fn enrolled(at: &str) -> RosterRecord {
        let mut r = roster(Status::Active, at, &format!("{at}T08:00:00+08:00"));
        r.enrolled_at = day(at);
        r
    }

    const LATER: &str = "2030-01-01T00:00:00+08:00";

    #[test]
    fn deadline_is_end_of_month_plus_grace() {
        let cfg = Config::default();
        let tz = Tz::default();
        assert_eq!(tz.format(cfg.deadline(tz, p("2020-03"))), "2020-04-21T00:00:00+08:00");
        let w = ts("2020-04-21T00:00:00+08:00");
        assert_eq!(cfg.first_open_month(tz, p("2019-06"), Some(w)), p("2020-04"), "March is decided at its deadline");
        let w = ts("2020-04-20T23:59:59.999+08:00");
        assert_eq!(cfg.first_open_month(tz, p("2019-06"), Some(w)), p("2020-03"));
        assert_eq!(cfg.first_open_month(tz, p("2016-06"), None), p("2018-01"), "feed start");
    }

    #[test]
    fn due_from_the_enrolment_month() {
        let cfg = Config::default();
        let r = [enrolled("2019-03-10")];
        assert!(due(&cfg, p("2019-02"), &r, &[], ts(LATER)).is_none());
        assert!(due(&cfg, p("2019-03"), &r, &[], ts(LATER)).is_some());
        assert!(due(&cfg, p("2019-03"), &r, &[], ts("2019-03-01T00:00:00+08:00")).is_none(), "not yet known");
    }

    #[test]
    fn suspension_and_reactivation() {
        let cfg = Config::default();
        let mut s = roster(Status::Suspended, "2020-06-15", "2020-06-15T09:00:00+08:00");
        s.enrolled_at = day("2019-03-10");
        let mut back = roster(Status::Active, "2020-09-01", "2020-09-02T09:00:00+08:00");
        back.enrolled_at = day("2019-03-10");
        let r = [enrolled("2019-03-10"), s, back];
        assert!(due(&cfg, p("2020-06"), &r, &[], ts(LATER)).is_some(), "June began before the suspension");
        assert!(due(&cfg, p("2020-07"), &r, &[], ts(LATER)).is_none());
        assert!(due(&cfg, p("2020-08"), &r, &[], ts(LATER)).is_none());
        assert!(due(&cfg, p("2020-09"), &r, &[], ts(LATER)).is_some());
    }

    #[test]
    fn not_after_the_death_month_nor_for_temporary_relief() {
        let cfg = Config::default();
        let d = DeathRecord {
            record_id: "D".into(),
            person_id: PersonId::parse(BID).unwrap(),
            name: "张三".into(),
            date_of_death: day("2020-03-28"),
            source: DeathSource::Village,
            reported_at: ts("2020-04-02T10:00:00+08:00"),
        };
        let r = [enrolled("2019-03-10")];
        assert!(due(&cfg, p("2020-03"), &r, std::slice::from_ref(&d), ts(LATER)).is_some());
        assert!(due(&cfg, p("2020-04"), &r, std::slice::from_ref(&d), ts(LATER)).is_none());
        let mut t = enrolled("2019-03-10");
        t.program = Program::TemporaryRelief;
        assert!(due(&cfg, p("2020-04"), &[t], &[], ts(LATER)).is_none());
    }

    #[test]
    fn finding_is_one_per_beneficiary_and_month() {
        let f = finding(&Config::default(), p("2020-03"), &enrolled("2019-03-10"), Tz::default());
        assert_eq!(f.identity, [BID.to_string(), "2020-03".to_string()]);
        assert!(f.reason.contains("截至2020-04-20"), "{}", f.reason);
        assert_eq!(f.severity, Severity::Medium);
    }
}
