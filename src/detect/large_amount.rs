//! `LARGE_AMOUNT`: a regular payment above M × the approved monthly amount,
//! a back-pay above B ×, or any payment above the absolute cap.

use super::{Finding, PaymentView};
use crate::model::{Money, PaymentType, Rule, Severity};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub enabled: bool,
    /// M: a regular payment may be at most this many monthly amounts.
    pub regular_multiple: Decimal,
    /// B: a back-pay (补发) may be at most this many monthly amounts.
    pub back_pay_multiple: Decimal,
    /// Any single payment above this is large, whatever the roster says.
    pub absolute_cap: Money,
    /// Severity for the multiple checks.
    pub severity: Severity,
    /// Severity when the absolute cap is exceeded.
    pub severity_above_cap: Severity,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            enabled: true,
            regular_multiple: Decimal::new(3, 0),
            back_pay_multiple: Decimal::new(12, 0),
            absolute_cap: Money::from_fen(2_000_000),
            severity: Severity::Medium,
            severity_above_cap: Severity::High,
        }
    }
}

impl Config {
    pub fn validate(&self) -> Result<(), String> {
        if self.regular_multiple <= Decimal::ZERO {
            return Err("regular_multiple: must be greater than 0".into());
        }
        if self.back_pay_multiple <= Decimal::ZERO {
            return Err("back_pay_multiple: must be greater than 0".into());
        }
        if !self.absolute_cap.is_positive() {
            return Err("absolute_cap: must be greater than 0".into());
        }
        Ok(())
    }
}

pub fn check(cfg: &Config, v: &PaymentView<'_>) -> Option<Finding> {
    let p = v.payment;
    let head = || format!("{}{}{}{}元", p.period.chinese(), p.program.chinese(), p.payment_type.chinese(), p.amount);
    if p.amount > cfg.absolute_cap {
        let reason = format!("{}，超过单笔上限{}元", head(), cfg.absolute_cap);
        let mut f = v.finding(Rule::LargeAmount, cfg.severity_above_cap, reason);
        f.evidence.figures.insert("threshold".into(), cfg.absolute_cap.to_string());
        f.evidence.figures.insert("absolute_cap".into(), cfg.absolute_cap.to_string());
        return Some(f);
    }
    let roster = v.roster?;
    let multiple = match p.payment_type {
        PaymentType::Regular => cfg.regular_multiple,
        PaymentType::BackPay => cfg.back_pay_multiple,
        PaymentType::OneOff => return None,
    };
    let threshold = roster.monthly_amount.times(multiple);
    if p.amount <= threshold {
        return None;
    }
    let reason = format!(
        "{}，超过核定月额{}元的{}倍({}元)",
        head(),
        roster.monthly_amount,
        multiple.normalize(),
        threshold
    );
    let mut f = v.finding(Rule::LargeAmount, cfg.severity, reason);
    f.evidence.figures.insert("threshold".into(), threshold.to_string());
    f.evidence.figures.insert("monthly_amount".into(), roster.monthly_amount.to_string());
    f.evidence.figures.insert("multiple".into(), multiple.normalize().to_string());
    f.evidence.record_ids.push(super::roster_ref(roster, v.tz));
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testkit::*;
    use crate::model::Status;

    fn run(amount: &str, ty: PaymentType, with_roster: bool) -> Option<Finding> {
        let mut p = payment("E1", "2020-03", amount, "2020-03-10T10:00:00+08:00");
        p.payment_type = ty;
        let r = roster(Status::Active, "2018-01-01", "2018-01-01T00:00:00+08:00");
        check(&Config::default(), &view(&p, with_roster.then_some(&r)))
    }

    #[test]
    fn regular_above_three_months() {
        assert!(run("1755.00", PaymentType::Regular, true).is_none(), "exactly 3x is not above");
        let f = run("1755.01", PaymentType::Regular, true).unwrap();
        assert_eq!(f.severity, Severity::Medium);
        assert_eq!(f.evidence.figures["threshold"], "1755.00");
        assert!(f.reason.contains("超过核定月额585.00元的3倍(1755.00元)"), "{}", f.reason);
    }

    #[test]
    fn back_pay_within_twelve_months_is_fine() {
        assert!(run("7020.00", PaymentType::BackPay, true).is_none());
        assert!(run("7020.01", PaymentType::BackPay, true).is_some());
        assert!(run("5000.00", PaymentType::OneOff, true).is_none());
    }

    #[test]
    fn above_the_cap_is_high_even_without_roster() {
        let f = run("20000.01", PaymentType::OneOff, false).unwrap();
        assert_eq!(f.severity, Severity::High);
        assert!(run("20000.00", PaymentType::OneOff, false).is_none());
        assert!(run("9000.00", PaymentType::Regular, false).is_none(), "no roster, no multiple");
    }
}
