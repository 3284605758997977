//! `NAME_MISMATCH`: the account holder is not the beneficiary, and the
//! account is not a custodian registered for the beneficiary on the paid day.

use super::{account_tail, Finding, PaymentView};
use crate::model::name::same;
use crate::model::{Rule, Severity};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Turn the rule off without touching the others.
    pub enabled: bool,
    /// Contract default: high.
    pub severity: Severity,
}

impl Default for Config {
    fn default() -> Config {
        Config { enabled: true, severity: Severity::High }
    }
}

pub fn check(cfg: &Config, v: &PaymentView<'_>) -> Option<Finding> {
    let p = v.payment;
    if v.custodian.is_some() || same(&p.account_name, &p.beneficiary_name) {
        return None;
    }
    let reason = format!(
        "收款账户户名\"{}\"与{}对象\"{}\"不一致，且无登记的代管人（{}{}{}元，账户{}）",
        p.account_name,
        p.program.chinese(),
        p.beneficiary_name,
        p.period.chinese(),
        p.payment_type.chinese(),
        p.amount,
        account_tail(&p.account_no),
    );
    let mut f = v.finding(Rule::NameMismatch, cfg.severity, reason);
    f.evidence.figures.insert("account_name".into(), p.account_name.to_string());
    f.evidence.figures.insert("beneficiary_name".into(), p.beneficiary_name.to_string());
    if let Some(r) = v.roster {
        f.evidence.record_ids.push(super::roster_ref(r, v.tz));
    }
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testkit::*;
    use crate::model::Custodian;

    #[test]
    fn fires_on_another_name() {
        let mut p = payment("E1", "2020-03", "585.00", "2020-03-10T10:00:00+08:00");
        p.account_name = "李四".into();
        let f = check(&Config::default(), &view(&p, None)).unwrap();
        assert_eq!(f.rule, Rule::NameMismatch);
        assert_eq!(f.severity, Severity::High);
        assert_eq!(f.evidence.event_ids, ["E1"]);
        assert!(f.reason.starts_with("收款账户户名\"李四\"与农村低保对象\"张三\"不一致，且无登记的代管人"));
    }

    #[test]
    fn spacing_full_width_and_separators_are_the_same_name() {
        for same in ["张 三", "张\u{3000}三", " 张三 "] {
            let mut p = payment("E1", "2020-03", "585.00", "2020-03-10T10:00:00+08:00");
            p.account_name = same.into();
            assert!(check(&Config::default(), &view(&p, None)).is_none(), "{same}");
        }
        let mut p = payment("E1", "2020-03", "585.00", "2020-03-10T10:00:00+08:00");
        p.beneficiary_name = "阿依古丽·买买提".into();
        p.account_name = "阿依古丽•买买提".into();
        assert!(check(&Config::default(), &view(&p, None)).is_none());
    }

    #[test]
    fn a_registered_custodian_is_not_flagged() {
        let mut p = payment("E1", "2020-03", "585.00", "2020-03-10T10:00:00+08:00");
        p.account_name = "李四".into();
        let c = Custodian {
            name: "李四".into(),
            account_no: p.account_no.to_string(),
            registered_at: day("2019-01-01"),
            revoked_at: None,
            id_no: None,
        };
        let mut v = view(&p, None);
        v.custodian = Some(&c);
        assert!(check(&Config::default(), &v).is_none());
    }
}
