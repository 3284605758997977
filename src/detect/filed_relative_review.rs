//! `FILED_RELATIVE_REVIEW`: the first payment in each calendar year to a
//! beneficiary filed (备案) as a relative of cadres or civil-affairs staff.

use super::{Finding, PaymentView};
use crate::model::{Rule, Severity};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub enabled: bool,
    pub severity: Severity,
}

impl Default for Config {
    fn default() -> Config {
        Config { enabled: true, severity: Severity::Low }
    }
}

/// `v.reviewed_years` holds the years this beneficiary already has the
/// review alert of; the engine records the year when this fires.
pub fn check(cfg: &Config, v: &PaymentView<'_>) -> Option<Finding> {
    let r = v.roster?;
    if !r.filed_relative {
        return None;
    }
    let year = v.paid_on.year();
    if v.reviewed_years.contains(&year) {
        return None;
    }
    let p = v.payment;
    let reason = format!(
        "备案的干部亲属对象\"{}\"{}年首笔发放（{}{}{}元），需逐户复核",
        r.name,
        year,
        p.period.chinese(),
        p.program.money_chinese(),
        p.amount
    );
    let mut f = v.finding(Rule::FiledRelativeReview, cfg.severity, reason);
    f.evidence.figures.insert("year".into(), year.to_string());
    f.evidence.record_ids.push(super::roster_ref(r, v.tz));
    f.identity = vec![p.beneficiary_id.as_str().to_owned(), year.to_string()];
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testkit::*;
    use crate::model::Status;

    #[test]
    fn once_per_beneficiary_and_year() {
        let mut r = roster(Status::Active, "2018-01-01", "2018-01-01T00:00:00+08:00");
        let p = payment("E1", "2020-01", "585.00", "2020-01-10T10:00:00+08:00");
        assert!(check(&Config::default(), &view(&p, Some(&r))).is_none(), "not filed");
        r.filed_relative = true;
        let f = check(&Config::default(), &view(&p, Some(&r))).unwrap();
        assert_eq!(f.evidence.figures["year"], "2020");
        assert_eq!(f.severity, Severity::Low);
        let reviewed = std::collections::BTreeSet::from([2020]);
        let v = PaymentView { reviewed_years: &reviewed, ..view(&p, Some(&r)) };
        assert!(check(&Config::default(), &v).is_none());
        // The year is the district's: 16:30Z on 31 Dec is already next year.
        let p = payment("E2", "2020-12", "585.00", "2020-12-31T16:30:00Z");
        let v = PaymentView { reviewed_years: &reviewed, ..view(&p, Some(&r)) };
        let f = check(&Config::default(), &v).unwrap();
        assert_eq!(f.evidence.figures["year"], "2021");
    }
}
