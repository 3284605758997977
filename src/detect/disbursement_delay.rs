//! `DISBURSEMENT_DELAY`: paid more than D days after the scheduled day.

use super::{Finding, PaymentView};
use crate::model::{Rule, Severity};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub enabled: bool,
    /// D: days a disbursement may lag its scheduled day.
    pub max_days: u32,
    /// Severity up to 2 × D days late.
    pub severity: Severity,
    /// Severity beyond 2 × D days late.
    pub severity_above_double: Severity,
}

impl Default for Config {
    fn default() -> Config {
        Config { enabled: true, max_days: 15, severity: Severity::Low, severity_above_double: Severity::Medium }
    }
}

impl Config {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_days == 0 || self.max_days > 3650 {
            return Err("max_days: must be 1-3650".into());
        }
        Ok(())
    }
}

pub fn check(cfg: &Config, v: &PaymentView<'_>) -> Option<Finding> {
    let p = v.payment;
    let late = p.scheduled_at.days_until(v.paid_on);
    let max = i64::from(cfg.max_days);
    if late <= max {
        return None;
    }
    let severity = if late > 2 * max { cfg.severity_above_double } else { cfg.severity };
    let reason = format!(
        "{}{}{}元于{}发放，比计划日期{}晚{}天（限{}天）",
        p.period.chinese(),
        p.program.money_chinese(),
        p.amount,
        v.paid_on,
        p.scheduled_at,
        late,
        max
    );
    let mut f = v.finding(Rule::DisbursementDelay, severity, reason);
    f.evidence.figures.insert("days_late".into(), late.to_string());
    f.evidence.figures.insert("threshold".into(), max.to_string());
    f.evidence.figures.insert("scheduled_at".into(), p.scheduled_at.to_string());
    f.evidence.figures.insert("paid_on".into(), v.paid_on.to_string());
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testkit::*;

    fn late(paid_at: &str) -> Option<Finding> {
        let mut p = payment("E1", "2020-03", "585.00", paid_at);
        p.scheduled_at = day("2020-03-01");
        check(&Config::default(), &view(&p, None))
    }

    #[test]
    fn more_than_d_days_in_the_district_day() {
        assert!(late("2020-03-16T23:59:00+08:00").is_none(), "15 days is allowed");
        assert_eq!(late("2020-03-17T00:00:00+08:00").unwrap().severity, Severity::Low);
        // 16:30Z on the 16th is the 17th in +08:00.
        assert!(late("2020-03-16T16:30:00Z").is_some());
        assert_eq!(late("2020-03-31T10:00:00+08:00").unwrap().severity, Severity::Low, "30 days");
        assert_eq!(late("2020-04-01T10:00:00+08:00").unwrap().severity, Severity::Medium, "31 days");
    }
}
