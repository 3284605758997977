//! `DUPLICATE_PERIOD`: the same beneficiary paid twice for the same month
//! and programme by distinct, unreversed regular payments.

use super::{Finding, PaymentView};
use crate::model::{Payment, PaymentType, Rule, Severity};
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

/// Fires on a regular payment when the month already holds unreversed
/// regular payments of the same programme (`v.month`, oldest first).
/// Evidence lists the offending (later) payment first, then the earlier
/// ones newest first.
pub fn check(cfg: &Config, v: &PaymentView<'_>) -> Option<Finding> {
    let p = v.payment;
    if p.payment_type != PaymentType::Regular {
        return None;
    }
    let earlier: Vec<&Payment> = v
        .month
        .iter()
        .filter(|sp| sp.reversed_by.is_none() && sp.payment.program == p.program && sp.payment.payment_type == PaymentType::Regular)
        .map(|sp| &sp.payment)
        .collect();
    if earlier.is_empty() {
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

    use crate::engine::state::StoredPayment;
    use crate::model::Program;

    fn earlier(id: &str) -> StoredPayment {
        StoredPayment { payment: payment(id, "2020-03", "585.00", "2020-03-10T10:00:00+08:00"), reversed_by: None }
    }

    fn with<'a>(p: &'a Payment, month: &'a [StoredPayment]) -> PaymentView<'a> {
        PaymentView { month, ..view(p, None) }
    }

    #[test]
    fn second_regular_payment_fires_with_both_later_first() {
        let p = payment("E2", "2020-03", "585.00", "2020-03-20T10:00:00+08:00");
        assert!(check(&Config::default(), &with(&p, &[])).is_none());
        let f = check(&Config::default(), &with(&p, &[earlier("E1")])).unwrap();
        assert_eq!(f.evidence.event_ids, ["E2", "E1"]);
        assert_eq!(f.evidence.figures["total"], "1170.00");
        let f = check(&Config::default(), &with(&p, &[earlier("E0"), earlier("E1")])).unwrap();
        assert_eq!(f.evidence.event_ids, ["E2", "E1", "E0"]);
    }

    #[test]
    fn back_pay_is_not_a_duplicate() {
        let mut p = payment("E2", "2020-03", "585.00", "2020-03-20T10:00:00+08:00");
        p.payment_type = PaymentType::BackPay;
        assert!(check(&Config::default(), &with(&p, &[earlier("E1")])).is_none());
    }

    /// Only unreversed regular payments of the same programme count.
    #[test]
    fn reversed_other_programme_and_back_pay_earlier_payments_do_not_count() {
        let p = payment("E2", "2020-03", "585.00", "2020-03-20T10:00:00+08:00");
        let mut reversed = earlier("E1");
        reversed.reversed_by = Some("R1".into());
        let mut other = earlier("E3");
        other.payment.program = Program::Tekun;
        let mut back = earlier("E4");
        back.payment.payment_type = PaymentType::BackPay;
        assert!(check(&Config::default(), &with(&p, &[reversed, other, back])).is_none());
    }
}
