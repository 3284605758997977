//! `CUSTODIAN_OVERLOAD` (代管过多, contract §9, §11.8): one custodian,
//! identified by the `id_no` on the registration, registered and valid for
//! more than N distinct households whose newest roster record is `active`.
//! Evaluated when a roster record is applied, at its `updated_at`, for the
//! custodians it or the record it replaces lists; like the account-level
//! rules, one alert when first crossed and another only after the count
//! fell to N or below and crossed again. Exempt when the account of any
//! counted registration is an institution's (敬老院、福利院) in
//! `institution_accounts`.

use super::Finding;
use crate::model::time::{Date, Tz};
use crate::model::{Custodian, Evidence, PersonId, RosterRecord, Rule, Severity, Status, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub enabled: bool,
    pub severity: Severity,
    /// N: more distinct households than this fires.
    pub max_households: u32,
    /// Accounts of institutions that hold residents' cards (敬老院、福利院):
    /// a custodian counted through one of them is not flagged.
    pub institution_accounts: Vec<String>,
}

impl Default for Config {
    fn default() -> Config {
        Config { enabled: true, severity: Severity::Medium, max_households: 3, institution_accounts: Vec::new() }
    }
}

impl Config {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_households == 0 {
            return Err("max_households: must be at least 1".into());
        }
        if let Some(a) = self.institution_accounts.iter().find(|a| !(12..=19).contains(&a.len()) || !a.bytes().all(|b| b.is_ascii_digit())) {
            return Err(format!("institution_accounts: {a:?} is not an account number of 12-19 digits"));
        }
        Ok(())
    }
}

/// A roster record that counts for a custodian, and its registration.
#[derive(Clone, Debug, PartialEq)]
pub struct Counted {
    pub record: RosterRecord,
    pub registration: Custodian,
}

/// The registrations of `id_no` that count on `day` among `records` (the
/// newest roster record as of the instant of each beneficiary that ever
/// named it): the record is `active` and lists a registration carrying
/// that `id_no` valid on the day (§11.6).
pub fn counted<'a>(id_no: &PersonId, day: Date, records: impl IntoIterator<Item = &'a RosterRecord>) -> Vec<Counted> {
    records
        .into_iter()
        .filter(|r| r.status == Status::Active)
        .filter_map(|r| {
            let c = r.custodians.iter().find(|c| c.id_no.as_ref() == Some(id_no) && c.valid_on(day))?;
            Some(Counted { record: r.clone(), registration: c.clone() })
        })
        .collect()
}

/// Whether the rule holds for these counted registrations: more than N
/// distinct households, none through an institution's account.
pub fn holds(cfg: &Config, counted: &[Counted]) -> bool {
    let households: BTreeSet<&str> = counted.iter().map(|c| c.record.household_id.as_str()).collect();
    households.len() > cfg.max_households as usize
        && !counted.iter().any(|c| cfg.institution_accounts.contains(&c.registration.account_no))
}

/// The alert at the crossing (§11.8): no beneficiary or household; the
/// smallest counted account; the applied record's township; the counted
/// records as `beneficiary_id@updated_at`.
pub fn finding(cfg: &Config, id_no: &PersonId, applied: &RosterRecord, counted: &[Counted], at: Timestamp, tz: Tz) -> Finding {
    let households: BTreeSet<&str> = counted.iter().map(|c| c.record.household_id.as_str()).collect();
    let account = counted.iter().map(|c| c.registration.account_no.as_str()).min().unwrap_or_default().to_owned();
    let name = counted.iter().find(|c| c.registration.account_no == account).map(|c| c.registration.name.clone()).unwrap_or_default();
    let mut evidence = Evidence::default();
    let mut refs: Vec<String> = counted.iter().map(|c| record_ref(&c.record, tz)).collect();
    refs.sort();
    evidence.record_ids = refs;
    let applied_ref = record_ref(applied, tz);
    for (k, v) in [
        ("custodian_id_no", id_no.as_str().to_owned()),
        ("custodian_name", name.clone()),
        ("households", households.len().to_string()),
        ("household_ids", households.iter().copied().collect::<Vec<_>>().join(",")),
        ("threshold", cfg.max_households.to_string()),
        ("applied_record", applied_ref.clone()),
    ] {
        evidence.figures.insert(k.into(), v);
    }
    let reason = format!(
        "代管人\"{name}\"同时为{}户登记代管并在有效期内（超过{}户），请核实代管备案，防止一人代管过多、挪用救助资金",
        households.len(),
        cfg.max_households
    );
    Finding {
        rule: Rule::CustodianOverload,
        severity: cfg.severity,
        township: applied.township.clone(),
        beneficiary_id: None,
        household_id: None,
        account_no: Some(account),
        period: None,
        amount: None,
        evidence,
        reason,
        event_time: at,
        identity: vec![id_no.as_str().to_owned(), applied_ref],
    }
}

/// `beneficiary_id@updated_at` (§11.8).
pub fn record_ref(r: &RosterRecord, tz: Tz) -> String {
    format!("{}@{}", r.beneficiary_id.as_str(), tz.format(r.updated_at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testkit::*;

    const X: &str = "341802195001010015";

    fn registered(bid: &str, household: &str, account: &str, from: &str, to: Option<&str>) -> RosterRecord {
        let mut r = roster(Status::Active, "2018-01-01", "2019-01-01T10:00:00+08:00");
        r.beneficiary_id = PersonId::parse(bid).unwrap();
        r.household_id = household.into();
        r.custodians = vec![Custodian {
            name: "王五".into(),
            account_no: account.into(),
            registered_at: day(from),
            revoked_at: to.map(day),
            id_no: Some(PersonId::parse(X).unwrap()),
        }];
        r
    }

    fn four() -> Vec<RosterRecord> {
        vec![
            registered("11010519491231002X", "H1", "6217000000000004", "2019-01-01", None),
            registered("341802196002020025", "H2", "6217000000000002", "2019-01-01", None),
            registered("341802197003030035", "H3", "6217000000000002", "2019-01-01", Some("2019-06-01")),
            registered("341802198004040045", "H4", "6217000000000003", "2019-01-01", None),
        ]
    }

    #[test]
    fn more_than_n_distinct_active_households_with_a_valid_registration() {
        let cfg = Config::default();
        let x = PersonId::parse(X).unwrap();
        let rs = four();
        let c = counted(&x, day("2019-05-31"), &rs);
        assert_eq!(c.len(), 4);
        assert!(holds(&cfg, &c), "four households, N = 3");
        // From the revocation day on, three: not above N.
        assert!(!holds(&cfg, &counted(&x, day("2019-06-01"), &rs)));
        // Two beneficiaries of one household are one household.
        let mut same = rs.clone();
        same[3].household_id = "H1".into();
        assert!(!holds(&cfg, &counted(&x, day("2019-05-31"), &same)));
        // A suspended beneficiary does not count.
        let mut suspended = rs.clone();
        suspended[0].status = Status::Suspended;
        assert!(!holds(&cfg, &counted(&x, day("2019-05-31"), &suspended)));
        // A registration without the id_no does not count.
        let mut anonymous = rs.clone();
        anonymous[1].custodians[0].id_no = None;
        assert!(!holds(&cfg, &counted(&x, day("2019-05-31"), &anonymous)));
        // Not yet registered on the day.
        assert!(counted(&x, day("2018-12-31"), &rs).is_empty());
    }

    #[test]
    fn an_institution_account_exempts_and_the_alert_has_the_contract_shape() {
        let x = PersonId::parse(X).unwrap();
        let rs = four();
        let c = counted(&x, day("2019-05-31"), &rs);
        let cfg = Config { institution_accounts: vec!["6217000000000003".into()], ..Config::default() };
        assert!(!holds(&cfg, &c), "one counted registration is through the nursing home's account");
        let cfg = Config::default();
        let at = ts("2019-05-31T10:00:00+08:00");
        let f = finding(&cfg, &x, &rs[3], &c, at, Tz::default());
        assert_eq!((f.beneficiary_id.as_deref(), f.household_id.as_deref()), (None, None));
        assert_eq!(f.account_no.as_deref(), Some("6217000000000002"), "the smallest counted account");
        assert_eq!(f.evidence.figures["custodian_id_no"], X);
        assert_eq!(f.evidence.figures["households"], "4");
        assert_eq!(f.evidence.record_ids.len(), 4);
        assert!(f.evidence.record_ids.contains(&"341802198004040045@2019-01-01T10:00:00+08:00".to_owned()));
        assert_eq!(f.event_time, at);
        assert!(f.reason.contains("4户") && f.reason.contains("超过3户"), "{}", f.reason);
        assert!(Config { max_households: 0, ..Config::default() }.validate().is_err());
        assert!(Config { institution_accounts: vec!["12ab".into()], ..Config::default() }.validate().is_err());
    }
}
