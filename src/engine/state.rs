//! What the engine keeps per beneficiary, per month, per event and per
//! account. These are the values of the state column families.

use crate::detect::episode::AccountWindow;
use crate::model::name;
use crate::model::time::Date;
use crate::model::{Custodian, DeathRecord, Payment, Period, RosterRecord, Timestamp};
use serde::{Deserialize, Serialize};
use super::monthset::MonthSet;
use super::registrations::Versions;
use std::collections::BTreeSet;

/// One beneficiary (keyed by identity number).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Beneficiary {
    /// Roster history in `updated_at` order (arrival order among equals), so
    /// the version that applied at any instant can be found (§6).
    pub roster: Vec<RosterRecord>,
    /// Death notifications; several sources may report one death.
    pub deaths: Vec<DeathRecord>,
    /// Months with any payment, reversed or not: only these months are read
    /// back (a redelivery, a second payment, a reversal, a late death).
    pub months_any: MonthSet,
    /// Months with at least one unreversed payment: what `MISSED_PAYMENT`
    /// asks.
    pub months_paid: MonthSet,
    /// Years whose `FILED_RELATIVE_REVIEW` has been raised.
    pub reviewed_years: BTreeSet<i32>,
    /// The next month `MISSED_PAYMENT` will decide (its timer is keyed by
    /// that month's deadline); `None` when nothing more is expected.
    pub missed_next: Option<Period>,
    /// Vulnerable-persons records about this person (§10), every version
    /// in `updated_at` order: the version applying at a deadline is
    /// found, and a late version decided. Last, because state v3 ended
    /// before it (the v3 → v4 upgrade appends it empty).
    pub vulnerable: Vec<crate::model::VulnerableRecord>,
}

impl Beneficiary {
    /// The roster version that applies at `t`: the newest whose `updated_at`
    /// is not after `t`.
    pub fn roster_at(&self, t: Timestamp) -> Option<&RosterRecord> {
        self.roster.iter().rev().find(|r| r.updated_at <= t)
    }

    /// Adds a roster version in order; false when the same version is
    /// already there (a redelivery).
    pub fn insert_roster(&mut self, r: RosterRecord) -> bool {
        if self.roster.contains(&r) {
            return false;
        }
        let at = self.roster.partition_point(|x| x.updated_at <= r.updated_at);
        self.roster.insert(at, r);
        true
    }

    /// Moves out the roster versions that questions asked at the watermark
    /// or later no longer reach, and returns them, oldest first, for the
    /// archive (questions about an earlier instant — a late custodian
    /// death, a late referral — still need them). A version is dominated
    /// by a newer one `j` that already applies at the watermark (so every
    /// later payment sees `j` or newer) and whose `status_since` is not
    /// after the first undecided `MISSED_PAYMENT` month (so `j`, or a newer
    /// version, decides every month still open). What stays with the
    /// beneficiary is then a few versions however many years the ledger
    /// covers.
    pub fn prune_roster(&mut self, watermark: Timestamp) -> Vec<RosterRecord> {
        let open_from = self.missed_next.map(|p| p.first_day());
        let keep_from = self
            .roster
            .iter()
            .rposition(|r| r.updated_at <= watermark && open_from.is_none_or(|d| r.status_since <= d));
        match keep_from {
            Some(j) => self.roster.drain(..j).collect(),
            None => Vec::new(),
        }
    }

    /// The newest version of vulnerable-persons record `record_id` with
    /// `updated_at` not after `t`.
    pub fn vulnerable_at(&self, record_id: &str, t: Timestamp) -> Option<&crate::model::VulnerableRecord> {
        self.vulnerable.iter().rev().find(|v| v.record_id == record_id && v.updated_at <= t)
    }

    /// The death with the earliest date among those reported.
    pub fn death(&self) -> Option<&DeathRecord> {
        self.deaths.iter().min_by_key(|d| (d.date_of_death, d.reported_at))
    }
}

/// A registration in `r` matching number and normalised name, valid on `day`.
pub fn custodian_in<'a>(r: &'a RosterRecord, day: Date, account_no: &str, account_name: &str) -> Option<&'a Custodian> {
    r.custodians
        .iter()
        .find(|c| c.account_no == account_no && c.valid_on(day) && name::same(&c.name, account_name))
}

/// A payment kept under its beneficiary and month.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredPayment {
    pub payment: Payment,
    /// The reversal that cancelled it.
    pub reversed_by: Option<String>,
}

/// One receiving account, as the account stage keeps it. Who registers
/// it for a custodian is kept apart (`Cf::AccountCustodians`, also the
/// stage's): most accounts have nobody, and their windows stay small.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Account {
    /// Recent payments and the account-level rules' episodes.
    pub window: AccountWindow,
}

/// One custodian identity number (contract §9).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CustodianState {
    /// Who registers this `id_no`, version by version, as roster versions
    /// were sent here (`engine::registrations`: each keeps only its
    /// registrations of this custodian). `CUSTODIAN_OVERLOAD` counts from
    /// it without reading any person's state; its persons are those whose
    /// payments a late death of the custodian re-checks.
    pub of: Versions<RosterRecord>,
    /// `CUSTODIAN_OVERLOAD` has fired and the count has not fallen to N or
    /// below since (§6).
    pub over: bool,
    /// The death records of this person as sent here, in the order they
    /// came, keeping only each one whose `date_of_death` is earlier than
    /// every one kept before it (so the dates fall along the list). Any
    /// person who died has an entry: they may be registered later. A
    /// registration naming them is answered with the whole list, in order,
    /// so a beneficiary cites the first one reported that precedes its
    /// payment, whenever the answer reaches it (`engine::custodians`). One
    /// element encodes as the `Option` of v9 did.
    pub died: Vec<crate::model::DeathRecord>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testkit::*;
    use crate::model::Status;

    #[test]
    fn roster_version_at_an_instant() {
        let mut b = Beneficiary::default();
        let r1 = roster(Status::Active, "2018-01-01", "2018-01-01T08:00:00+08:00");
        let r2 = roster(Status::Cancelled, "2020-05-01", "2020-04-20T08:00:00+08:00");
        assert!(b.insert_roster(r2.clone()));
        assert!(b.insert_roster(r1.clone()));
        assert!(!b.insert_roster(r1.clone()), "redelivered");
        assert!(b.roster_at(ts("2017-12-31T08:00:00+08:00")).is_none());
        assert_eq!(b.roster_at(ts("2020-04-20T08:00:00+08:00")), Some(&r2), "updated_at equal to t applies");
        assert_eq!(b.roster_at(ts("2020-04-20T07:59:59+08:00")), Some(&r1));
    }

    #[test]
    fn pruning_keeps_what_open_months_and_later_payments_need() {
        let mut b = Beneficiary::default();
        let r1 = roster(Status::Active, "2018-01-01", "2018-01-01T08:00:00+08:00");
        let r2 = roster(Status::Active, "2019-01-01", "2018-12-28T08:00:00+08:00");
        let r3 = roster(Status::Active, "2020-01-01", "2019-12-28T08:00:00+08:00");
        for r in [&r1, &r2, &r3] {
            b.insert_roster(r.clone());
        }
        b.missed_next = Some(crate::model::Period::parse("2019-12").unwrap());
        assert_eq!(b.prune_roster(ts("2019-12-29T00:00:00+08:00")), std::slice::from_ref(&r1));
        assert_eq!(b.roster, [r2.clone(), r3.clone()], "r3 starts after December, which is still open");
        b.missed_next = Some(crate::model::Period::parse("2020-01").unwrap());
        assert_eq!(b.prune_roster(ts("2019-12-29T00:00:00+08:00")), std::slice::from_ref(&r2), "moved out for the archive");
        assert_eq!(b.roster, std::slice::from_ref(&r3));
        assert!(b.prune_roster(ts("2017-01-01T00:00:00+08:00")).is_empty());
        assert_eq!(b.roster, [r3], "nothing applies yet at an earlier watermark: keep all");
    }
}
