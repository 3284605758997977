//! `RECTIFICATION_RELAPSE` (整改后反弹 / 疑似虚假整改), contract §8: a case
//! closed as `rectified` gets a new alert whose event time is after that
//! decision's `decided_at`. Judged against the case's newest `rectified`
//! decision, whatever followed it (§11.3); once per case and decision.

use super::Finding;
use crate::model::{Money, Period, Rule, Severity, Timestamp, Tz};
use crate::store::cases::Case;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub enabled: bool,
    /// Contract default: high.
    pub severity: Severity,
}

impl Default for Config {
    fn default() -> Config {
        Config { enabled: true, severity: Severity::High }
    }
}

/// The alert that relapsed, as the engine hands it over.
pub struct Relapsed<'a> {
    pub alert_id: &'a str,
    pub rule: Rule,
    pub event_time: Timestamp,
    pub township: &'a str,
    pub beneficiary_id: Option<&'a str>,
    pub household_id: Option<&'a str>,
    pub account_no: Option<&'a str>,
    pub period: Option<Period>,
    pub amount: Option<Money>,
    pub event_ids: &'a [String],
    pub reason: &'a str,
}

/// Fires when `a`, a new alert of `case` (status and decisions as applied
/// before it), comes after the case's newest `rectified` decision that has
/// not relapsed yet. The engine marks that decision relapsed.
pub fn check(cfg: &Config, case: &Case, a: &Relapsed<'_>, tz: Tz) -> Option<Finding> {
    let r = case.rectified.as_ref()?;
    if r.relapsed || a.event_time <= r.decided_at {
        return None;
    }
    let action = r.action.map_or("", |x| x.chinese());
    let rectified_at = tz.format(r.decided_at);
    let reason = format!(
        "已于{}以\"{}\"整改销号的问题（{}）再次出现，疑似整改后反弹或虚假整改：{}",
        &rectified_at[..10],
        action,
        a.rule.chinese(),
        a.reason
    );
    let mut f = Finding {
        rule: Rule::RectificationRelapse,
        severity: cfg.severity,
        township: a.township.to_owned(),
        beneficiary_id: a.beneficiary_id.map(str::to_owned),
        household_id: a.household_id.map(str::to_owned),
        account_no: a.account_no.map(str::to_owned),
        period: a.period,
        amount: a.amount,
        evidence: Default::default(),
        reason,
        event_time: a.event_time,
        identity: vec![case.case_id.clone(), r.decision_id.clone()],
    };
    f.evidence.event_ids = a.event_ids.to_vec();
    f.evidence.record_ids = vec![r.decision_id.clone()];
    let figures = &mut f.evidence.figures;
    figures.insert("relapsed_alert_id".into(), a.alert_id.to_owned());
    figures.insert("relapsed_rule".into(), a.rule.code().to_owned());
    figures.insert("rectified_at".into(), rectified_at);
    figures.insert("action".into(), r.action.map_or("", |x| x.code()).to_owned());
    figures.insert("case_id".into(), case.case_id.clone());
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testkit::ts;
    use crate::model::decision::Action;
    use crate::store::cases::Rectified;

    fn relapsed(at: &str) -> Relapsed<'static> {
        Relapsed {
            alert_id: "A2",
            rule: Rule::NameMismatch,
            event_time: ts(at),
            township: "水阳镇",
            beneficiary_id: Some("11010519491231002X"),
            household_id: Some("H1"),
            account_no: Some("6217001234567890"),
            period: None,
            amount: Some(Money::parse("585.00").unwrap()),
            event_ids: &[],
            reason: "收款账户户名不一致",
        }
    }

    fn case(rectified_at: Option<&str>, already: bool) -> Case {
        let mut c = Case::new("c1".into(), Rule::NameMismatch, "11010519491231002X".into(), ts("2026-01-01T00:00:00+08:00"), ts("2020-01-10T00:00:00+08:00"));
        c.rectified = rectified_at.map(|t| Rectified { decision_id: "D1".into(), decided_at: ts(t), action: Some(Action::Corrected), relapsed: already });
        c
    }

    #[test]
    fn fires_only_after_the_rectification_and_once() {
        let cfg = Config::default();
        let tz = Tz::default();
        assert!(check(&cfg, &case(None, false), &relapsed("2021-01-10T00:00:00+08:00"), tz).is_none(), "never rectified");
        let c = case(Some("2021-01-10T00:00:00+08:00"), false);
        assert!(check(&cfg, &c, &relapsed("2021-01-10T00:00:00+08:00"), tz).is_none(), "at the decision: not after it");
        let f = check(&cfg, &c, &relapsed("2021-01-10T00:00:00.001+08:00"), tz).unwrap();
        assert_eq!(f.rule, Rule::RectificationRelapse);
        assert_eq!(f.severity, Severity::High);
        assert_eq!(f.evidence.record_ids, ["D1"]);
        assert_eq!(f.evidence.figures["relapsed_alert_id"], "A2");
        assert_eq!(f.evidence.figures["relapsed_rule"], "NAME_MISMATCH");
        assert_eq!(f.evidence.figures["action"], "corrected");
        assert_eq!(f.identity, ["c1", "D1"]);
        assert!(f.reason.contains("更正信息") && f.reason.contains("户名不符"), "{}", f.reason);
        let done = case(Some("2021-01-10T00:00:00+08:00"), true);
        assert!(check(&cfg, &done, &relapsed("2021-02-10T00:00:00+08:00"), tz).is_none(), "this decision already relapsed");
    }
}
