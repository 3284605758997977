//! `CUSTODIAN_DECEASED` (代管人已死亡, contract §9, §11.6–11.7): a payment
//! exempt from `NAME_MISMATCH` through a custodian registration that
//! carries the custodian's `id_no`, paid on a day after that person's death.
//! The registration does not end with the death (§11.7): `NAME_MISMATCH`
//! stays silent and this rule speaks instead. Whichever arrives first: at
//! the payment when the death is known, else when the death record arrives
//! (the engine re-checks that custodian's payments with the record).

use super::{account_tail, Finding, PaymentView};
use crate::model::{DeathRecord, Rule, Severity};
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

/// The payment against the death of the custodian its registration names
/// (`v.custodian` and `v.custodian_death`). A late death record: `event_time`
/// becomes the report's time (§11.1).
pub fn check(cfg: &Config, v: &PaymentView<'_>) -> Option<Finding> {
    let c = v.custodian?;
    let id_no = c.id_no.as_ref()?;
    let d: &DeathRecord = v.custodian_death?;
    if d.person_id != *id_no || d.date_of_death >= v.paid_on {
        return None;
    }
    let p = v.payment;
    let reason = format!(
        "代管人\"{}\"已于{}死亡，{}{}{}元仍发放至其代管账户（{}，对象\"{}\"），请核实代管关系并变更代管人",
        c.name,
        d.date_of_death,
        p.period.chinese(),
        p.program.money_chinese(),
        p.amount,
        account_tail(&p.account_no),
        p.beneficiary_name
    );
    let mut f = v.finding(Rule::CustodianDeceased, cfg.severity, reason);
    f.evidence.record_ids.push(d.record_id.clone());
    f.evidence.figures.insert("custodian_id_no".into(), id_no.as_str().to_owned());
    f.evidence.figures.insert("custodian_name".into(), c.name.clone());
    f.evidence.figures.insert("account_name".into(), p.account_name.to_string());
    f.evidence.figures.insert("date_of_death".into(), d.date_of_death.to_string());
    f.evidence.figures.insert("paid_on".into(), v.paid_on.to_string());
    f.evidence.figures.insert("reported_at".into(), v.tz.format(d.reported_at));
    f.event_time = f.event_time.max(d.reported_at);
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testkit::*;
    use crate::model::{Custodian, DeathSource, PersonId};

    const CUSTODIAN: &str = "341802195001010015";

    fn custodian(id_no: Option<&str>) -> Custodian {
        Custodian {
            name: "李四".into(),
            account_no: "6217009999999999".into(),
            registered_at: day("2019-01-01"),
            revoked_at: None,
            id_no: id_no.map(|i| PersonId::parse(i).unwrap()),
        }
    }

    fn death(dod: &str) -> DeathRecord {
        DeathRecord {
            record_id: "D9".into(),
            person_id: PersonId::parse(CUSTODIAN).unwrap(),
            name: "李四".into(),
            date_of_death: day(dod),
            source: DeathSource::Hospital,
            reported_at: ts("2020-06-01T10:00:00+08:00"),
        }
    }

    fn fires(paid: &str, c: &Custodian, d: &DeathRecord) -> Option<Finding> {
        let mut p = payment("E1", "2020-03", "585.00", paid);
        p.account_no = c.account_no.as_str().into();
        p.account_name = "李四".into();
        let mut v = view(&p, None);
        v.custodian = Some(c);
        v.custodian_death = Some(d);
        check(&Config::default(), &v)
    }

    #[test]
    fn a_payment_on_a_day_after_the_death_fires_and_on_the_day_of_death_does_not() {
        let (c, d) = (custodian(Some(CUSTODIAN)), death("2020-03-09"));
        let f = fires("2020-03-10T10:00:00+08:00", &c, &d).unwrap();
        assert_eq!(f.rule, Rule::CustodianDeceased);
        assert_eq!(f.evidence.figures["custodian_id_no"], CUSTODIAN);
        assert_eq!(f.evidence.record_ids, ["D9"]);
        assert_eq!(f.event_time, d.reported_at, "a late record dates the alert");
        assert!(f.reason.contains("代管人\"李四\"已于2020-03-09死亡"), "{}", f.reason);
        // Paid at 23:30 UTC on the 9th is the 10th in +08:00: after.
        assert!(fires("2020-03-09T23:30:00+00:00", &c, &d).is_some());
        assert!(fires("2020-03-09T10:00:00+08:00", &c, &d).is_none(), "the day of death itself");
    }

    #[test]
    fn only_a_registration_with_that_id_no_counts() {
        let d = death("2020-01-01");
        assert!(fires("2020-03-10T10:00:00+08:00", &custodian(None), &d).is_none(), "no id_no: not checked");
        assert!(fires("2020-03-10T10:00:00+08:00", &custodian(Some("11010519491231002X")), &d).is_none(), "another person's death");
    }
}
