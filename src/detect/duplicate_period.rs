//! `DUPLICATE_PERIOD`: the same beneficiary paid twice for the same month
//! and programme by distinct, unreversed regular payments.

use super::{Finding, PaymentView};
use crate::model::{Money, PaymentType, Rule, Severity};
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

/// An earlier unreversed regular payment for the same beneficiary, month
/// and programme.
#[derive(Clone, Debug, PartialEq)]
pub struct Earlier {
    pub event_id: String,
    pub amount: Money,
}

/// `earlier` lists the earlier payments, oldest first. Evidence lists the
/// offending (later) payment first, then the earlier ones newest first.
pub fn check(cfg: &Config, v: &PaymentView<'_>, earlier: &[Earlier]) -> Option<Finding> {
    let p = v.payment;
    if p.payment_type != PaymentType::Regular || earlier.is_empty() {
        return None;
    }
    let total = earlier.iter().fold(p.amount, |acc, e| acc.plus(e.amount));
    let others: Vec<&str> = earlier.iter().rev().map(|e| e.event_id.as_str()).collect();
    let reason = format!(
        "{}{}被重复发放{}次：本笔{}元与此前未冲正的常规发放{}同属一个月份，合计{}元",
        p.period.chinese(),
        p.program.chinese(),
        earlier.len() + 1,
        p.amount,
        others.join("、"),
        total
    );
    let mut f = v.finding(Rule::DuplicatePeriod, cfg.severity, reason);
    f.evidence.event_ids.extend(others.iter().map(|s| s.to_string()));
    f.evidence.figures.insert("payments".into(), (earlier.len() + 1).to_string());
    f.evidence.figures.insert("total".into(), total.to_string());
    f.identity = f.evidence.event_ids.clone();
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testkit::*;

    fn earlier(id: &str) -> Earlier {
        Earlier { event_id: id.into(), amount: Money::parse("585.00").unwrap() }
    }

    #[test]
    fn second_regular_payment_fires_with_both_later_first() {
        let p = payment("E2", "2020-03", "585.00", "2020-03-20T10:00:00+08:00");
        assert!(check(&Config::default(), &view(&p, None), &[]).is_none());
        let f = check(&Config::default(), &view(&p, None), &[earlier("E1")]).unwrap();
        assert_eq!(f.evidence.event_ids, ["E2", "E1"]);
        assert_eq!(f.evidence.figures["total"], "1170.00");
        let f = check(&Config::default(), &view(&p, None), &[earlier("E0"), earlier("E1")]).unwrap();
        assert_eq!(f.evidence.event_ids, ["E2", "E1", "E0"]);
    }

    #[test]
    fn back_pay_is_not_a_duplicate() {
        let mut p = payment("E2", "2020-03", "585.00", "2020-03-20T10:00:00+08:00");
        p.payment_type = PaymentType::BackPay;
        assert!(check(&Config::default(), &view(&p, None), &[earlier("E1")]).is_none());
    }
}
