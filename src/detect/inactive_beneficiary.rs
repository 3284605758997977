//! `INACTIVE_BENEFICIARY`: a payment for a month starting on or after the
//! `status_since` of a suspension or cancellation, or for someone with no
//! roster record at the payment's event time.

use super::{Finding, PaymentView};
use crate::model::{Rule, Severity, Status};
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

pub fn check(cfg: &Config, v: &PaymentView<'_>) -> Option<Finding> {
    let p = v.payment;
    let head = || format!("{}{}{}元", p.period.chinese(), p.program.money_chinese(), p.amount);
    let Some(r) = v.roster else {
        let reason = format!("{}发放给花名册中（截至发放时）没有记录的人员\"{}\"", head(), p.beneficiary_name);
        let mut f = v.finding(Rule::InactiveBeneficiary, cfg.severity, reason);
        f.evidence.figures.insert("status".into(), "not_on_roster".into());
        return Some(f);
    };
    if r.status == Status::Active || p.period.first_day() < r.status_since {
        return None;
    }
    let reason = format!("{}发放给已于{}{}的对象\"{}\"", head(), r.status_since, r.status.chinese(), r.name);
    let mut f = v.finding(Rule::InactiveBeneficiary, cfg.severity, reason);
    let status = if r.status == Status::Suspended { "suspended" } else { "cancelled" };
    f.evidence.figures.insert("status".into(), status.into());
    f.evidence.figures.insert("status_since".into(), r.status_since.to_string());
    f.evidence.record_ids.push(super::roster_ref(r, v.tz));
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testkit::*;

    #[test]
    fn no_roster_record_fires() {
        let p = payment("E1", "2020-03", "585.00", "2020-03-10T10:00:00+08:00");
        let f = check(&Config::default(), &view(&p, None)).unwrap();
        assert_eq!(f.evidence.figures["status"], "not_on_roster");
    }

    #[test]
    fn months_starting_on_or_after_status_since() {
        let r = roster(Status::Cancelled, "2020-03-15", "2020-03-15T09:00:00+08:00");
        let march = payment("E1", "2020-03", "585.00", "2020-03-20T10:00:00+08:00");
        assert!(check(&Config::default(), &view(&march, Some(&r))).is_none(), "March starts before the 15th");
        let april = payment("E2", "2020-04", "585.00", "2020-04-10T10:00:00+08:00");
        let f = check(&Config::default(), &view(&april, Some(&r))).unwrap();
        assert!(f.reason.contains("已于2020-03-15注销"), "{}", f.reason);
        let r = roster(Status::Suspended, "2020-04-01", "2020-03-25T09:00:00+08:00");
        assert!(check(&Config::default(), &view(&april, Some(&r))).is_some(), "on status_since");
        let active = roster(Status::Active, "2020-04-01", "2020-03-25T09:00:00+08:00");
        assert!(check(&Config::default(), &view(&april, Some(&active))).is_none());
    }
}
