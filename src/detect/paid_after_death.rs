//! `PAID_AFTER_DEATH`: a payment for a month after the month of death,
//! whichever of the payment and the death record arrives first.

use super::{Finding, PaymentView};
use crate::model::{DeathRecord, Period, Rule, Severity};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub enabled: bool,
    pub severity: Severity,
}

impl Default for Config {
    fn default() -> Config {
        Config { enabled: true, severity: Severity::High }
    }
}

/// The payment is checked against the death known for its beneficiary.
///
/// Used both when a payment arrives after the death record and, for every
/// earlier payment, when a death record arrives late: the engine then builds
/// the view with that death, and `event_time` becomes the report's time when
/// it is newer than the payment.
pub fn check(cfg: &Config, v: &PaymentView<'_>) -> Option<Finding> {
    let p = v.payment;
    let d: &DeathRecord = v.death?;
    if p.period <= Period::of(d.date_of_death) {
        return None;
    }
    let reason = format!(
        "{}{}{}元在死亡({})之后发放",
        p.period.chinese(),
        p.program.money_chinese(),
        p.amount,
        d.date_of_death
    );
    let mut f = v.finding(Rule::PaidAfterDeath, cfg.severity, reason);
    f.evidence.record_ids.push(d.record_id.clone());
    f.evidence.figures.insert("date_of_death".into(), d.date_of_death.to_string());
    f.evidence.figures.insert("reported_at".into(), v.tz.format(d.reported_at));
    f.event_time = f.event_time.max(d.reported_at);
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testkit::*;
    use crate::model::{DeathSource, PersonId};

    fn death(dod: &str, reported: &str) -> DeathRecord {
        DeathRecord {
            record_id: "D1".into(),
            person_id: PersonId::parse(BID).unwrap(),
            name: "张三".into(),
            date_of_death: day(dod),
            source: DeathSource::FuneralHome,
            reported_at: ts(reported),
        }
    }

    #[test]
    fn the_death_month_is_still_payable() {
        let d = death("2019-11-02", "2020-04-01T10:00:00+08:00");
        let nov = payment("E1", "2019-11", "585.00", "2019-11-10T10:00:00+08:00");
        let mut v = view(&nov, None);
        v.death = Some(&d);
        assert!(check(&Config::default(), &v).is_none());
    }

    #[test]
    fn later_months_fire_with_the_contract_sentence() {
        let d = death("2019-11-02", "2020-04-01T10:00:00+08:00");
        let mar = payment("E2", "2020-03", "585.00", "2020-03-10T10:00:00+08:00");
        let mut v = view(&mar, None);
        v.death = Some(&d);
        let f = check(&Config::default(), &v).unwrap();
        assert_eq!(f.reason, "2020年3月低保金585.00元在死亡(2019-11-02)之后发放");
        assert_eq!(f.evidence.record_ids, ["D1"]);
        assert_eq!(f.event_time, d.reported_at, "the late report is the newest evidence");
    }
}
