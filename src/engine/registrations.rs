//! Roster versions as facts sent to the keys they concern (#16): to each
//! account, for n of `FREQUENT_PAYMENTS` (the custodian registrations
//! naming it); to each custodian, for `CUSTODIAN_OVERLOAD` (the persons
//! registering them); and to each household, for `COVERAGE_GAP` (whether
//! the version is in it and covers it).
//!
//! n at a payment counts the persons whose roster version at that instant
//! registers the account for a custodian valid on its day. The roster
//! versions belong to their persons, so the person side sends each account
//! what it needs of them, in the order it applies them, and the account
//! stage counts n from what it received. It never reads a person's state.
//! This is the fact that a `by-account` repartition topic carries between
//! instances (docs/partitioning.md). A custodian is sent the versions
//! naming their `id_no` the same way (`by-custodian`), and a household
//! the versions in it (`by-household`).
//!
//! The account does not need every version of every person. It needs the
//! points where "this version registers the account" changes. A version v
//! arriving between the versions p (before it) and s (after it) is sent to
//! every account that p or v names. When v names an account, s is sent
//! to that account too, because s now follows a version naming it.
//!
//! Invariant: a version an account was never sent does not name it, and
//! neither does the version before it. The newest version an account knows
//! at or before t therefore answers "registered at t?" exactly as the
//! person's own newest version would. `protocol_gives_the_persons_answer`
//! checks this against the person's full history.

use crate::model::time::Date;
use crate::model::{RosterRecord, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One registration of an account in one roster version: the days it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validity {
    /// First day the registration holds (`registered_at`).
    pub from: Date,
    /// It no longer holds on and after this day (`revoked_at`).
    pub until: Option<Date>,
}

impl Validity {
    fn holds_on(&self, day: Date) -> bool {
        self.from <= day && self.until.is_none_or(|u| day < u)
    }
}

/// What one roster version of `person` says about `account_no`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    /// The account it concerns: the stage files it there.
    pub account_no: String,
    /// Whose version.
    pub person: String,
    /// The version's `updated_at`: from then on it is the person's version.
    pub updated_at: Timestamp,
    /// Its registrations of the account (none: the account is not
    /// registered for this person from `updated_at` on).
    pub valid: Vec<Validity>,
}

/// What a key (an account, a custodian) was sent of its persons' roster
/// versions, per person in `updated_at` order: the newest one at or
/// before t answers for that person at t (see the module's invariant).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Versions<T> {
    /// person → (updated_at, what the version says about the key).
    by: BTreeMap<String, Vec<(Timestamp, T)>>,
}

impl<T> Default for Versions<T> {
    fn default() -> Self {
        Versions { by: BTreeMap::new() }
    }
}

impl<T> Versions<T> {
    /// Files one version. A version with the `updated_at` of one already
    /// filed replaces it: of two versions updated at one instant the person
    /// side applies the later-arriving one, and facts arrive in that order.
    pub fn record(&mut self, person: &str, updated_at: Timestamp, what: T) {
        let versions = self.by.entry(person.to_owned()).or_default();
        let at = versions.partition_point(|(u, _)| *u < updated_at);
        match versions.get_mut(at) {
            Some((u, w)) if *u == updated_at => *w = what,
            _ => versions.insert(at, (updated_at, what)),
        }
    }

    /// What each person's version at `t` says, for persons with one.
    pub fn at(&self, t: Timestamp) -> impl Iterator<Item = &T> {
        self.by.values().filter_map(move |versions| versions.iter().rev().find(|(u, _)| *u <= t).map(|(_, w)| w))
    }

    /// The persons some version of whom was filed here.
    pub fn persons(&self) -> impl Iterator<Item = &String> {
        self.by.keys()
    }
}

/// The registrations of one account, version by version, per person: the
/// account stage's `account_custodians` entry.
pub type Registrations = Versions<Vec<Validity>>;

impl Versions<Vec<Validity>> {
    /// n: persons whose version at `t` registers the account on `day`.
    pub fn count(&self, t: Timestamp, day: Date) -> usize {
        self.at(t).filter(|valid| valid.iter().any(|r| r.holds_on(day))).count()
    }
}

/// The registrations of `account_no` in `r`.
pub fn of(r: &RosterRecord, account_no: &str) -> Vec<Validity> {
    r.custodians
        .iter()
        .filter(|c| c.account_no == account_no)
        .map(|c| Validity { from: c.registered_at, until: c.revoked_at })
        .collect()
}

/// Where each version goes when `v` is applied, as (key, version) pairs,
/// for keys that `names` lists of a version: `v` to every key `before` or
/// `v` names, and `after` to every key `v` names. `before` is the person's
/// version at `v.updated_at` before `v` arrived, `after` the version that
/// takes over after `v` (the newest one updated at the first instant after
/// it).
pub fn destinations<'a, K: Ord>(
    before: Option<&'a RosterRecord>,
    v: &'a RosterRecord,
    after: Option<&'a RosterRecord>,
    names: impl Fn(&'a RosterRecord) -> Vec<K>,
) -> Vec<(K, &'a RosterRecord)> {
    let mut keys: Vec<K> = before.into_iter().chain([v]).flat_map(&names).collect();
    keys.sort_unstable();
    keys.dedup();
    let mut out: Vec<(K, &RosterRecord)> = keys.into_iter().map(|k| (k, v)).collect();
    if let Some(s) = after {
        let mut named = names(v);
        named.sort_unstable();
        named.dedup();
        out.extend(named.into_iter().map(|k| (k, s)));
    }
    out
}

/// The accounts a version registers for a custodian.
fn accounts(r: &RosterRecord) -> Vec<&str> {
    r.custodians.iter().map(|c| c.account_no.as_str()).collect()
}

/// The registrations to send the accounts concerned when `v` is applied
/// ([`destinations`]).
pub fn facts(before: Option<&RosterRecord>, v: &RosterRecord, after: Option<&RosterRecord>) -> Vec<Registration> {
    destinations(before, v, after, accounts)
        .into_iter()
        .map(|(account, r)| Registration {
            account_no: account.to_owned(),
            person: v.beneficiary_id.as_str().to_owned(),
            updated_at: r.updated_at,
            valid: of(r, account),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testkit::*;
    use crate::model::{Custodian, Status};
    use proptest::prelude::*;

    const A: &str = "6217001111111111";
    const B: &str = "6217002222222222";

    fn day(s: &str) -> Date {
        Date::parse(s).unwrap()
    }

    /// A version of person `who` updated at hour `hour` of 2019-01-01,
    /// registering each (account, first day, revoked day) given.
    fn version(who: u8, hour: i64, regs: &[(&str, u32, Option<u32>)]) -> RosterRecord {
        let mut r = roster(Status::Active, "2018-01-01", "2019-01-01T00:00:00+08:00");
        r.beneficiary_id = crate::model::PersonId::parse(["341802196002020025", "11010519491231002X"][usize::from(who)]).unwrap();
        r.updated_at = Timestamp(r.updated_at.0 + hour * 3_600_000);
        r.custodians = regs
            .iter()
            .map(|(a, from, until)| Custodian {
                name: "张三".into(),
                account_no: (*a).into(),
                registered_at: day("2019-01-01").plus_days(i64::from(*from)),
                revoked_at: until.map(|u| day("2019-01-01").plus_days(i64::from(u))),
                id_no: None,
            })
            .collect();
        r
    }

    /// The person side: its versions in the order `insert_roster` keeps
    /// them, and the facts each arrival sends.
    #[derive(Default)]
    struct Person {
        versions: Vec<RosterRecord>,
    }

    impl Person {
        fn at(&self, t: Timestamp) -> Option<&RosterRecord> {
            self.versions.iter().rev().find(|r| r.updated_at <= t)
        }

        fn apply(&mut self, v: RosterRecord) -> Vec<Registration> {
            let before = self.at(v.updated_at).cloned();
            let at = self.versions.partition_point(|x| x.updated_at <= v.updated_at);
            self.versions.insert(at, v.clone());
            let after = self.versions.iter().find(|x| x.updated_at > v.updated_at).and_then(|x| self.at(x.updated_at)).cloned();
            facts(before.as_ref(), &v, after.as_ref())
        }

        /// What the person side counted before #16: its own version at t.
        fn registers(&self, account: &str, t: Timestamp, d: Date) -> bool {
            self.at(t).is_some_and(|r| of(r, account).iter().any(|x| x.holds_on(d)))
        }
    }

    #[test]
    fn a_late_version_naming_the_account_ends_at_the_version_after_it() {
        let mut p = Person::default();
        let mut regs: BTreeMap<String, Registrations> = BTreeMap::new();
        let send = |regs: &mut BTreeMap<String, Registrations>, facts: Vec<Registration>| {
            for f in facts {
                regs.entry(f.account_no.clone()).or_default().record(&f.person, f.updated_at, f.valid);
            }
        };
        // 10:00 names nobody; the 05:00 version naming A arrives after it.
        send(&mut regs, p.apply(version(0, 10, &[])));
        assert!(regs.is_empty(), "nothing to tell any account yet");
        send(&mut regs, p.apply(version(0, 5, &[(A, 0, None)])));
        let t = |h: i64| Timestamp(version(0, h, &[]).updated_at.0);
        let a = &regs[A];
        assert_eq!(a.count(t(7), day("2019-01-01")), 1);
        assert_eq!(a.count(t(10), day("2019-01-01")), 0, "the 10:00 version was sent to A as well");
        assert_eq!(a.count(t(4), day("2019-01-01")), 0);
        assert_eq!(a.count(t(7), day("2018-12-31")), 0, "not registered before its first day");
    }

    #[test]
    fn a_version_that_drops_the_account_is_sent_to_it() {
        let mut p = Person::default();
        let mut a = Registrations::default();
        for v in [version(0, 1, &[(A, 0, None)]), version(0, 2, &[(B, 0, None)])] {
            for f in p.apply(v) {
                if f.account_no == A {
                    a.record(&f.person, f.updated_at, f.valid);
                }
            }
        }
        let t2 = version(0, 2, &[]).updated_at;
        assert_eq!(a.count(Timestamp(t2.0 - 1), day("2019-01-05")), 1);
        assert_eq!(a.count(t2, day("2019-01-05")), 0);
    }

    fn any_version() -> impl Strategy<Value = (u8, i64, Vec<(bool, u32, Option<u32>)>)> {
        (0u8..2, 0i64..8, proptest::collection::vec((any::<bool>(), 0u32..4, proptest::option::of(1u32..6)), 0..3))
    }

    proptest! {
        /// Any versions of two persons in any order: every account counts,
        /// at every hour and day, what the persons' own full histories say.
        #[test]
        fn protocol_gives_the_persons_answer(arrivals in proptest::collection::vec(any_version(), 1..12)) {
            let mut people = [Person::default(), Person::default()];
            let mut regs: BTreeMap<String, Registrations> = BTreeMap::new();
            for (who, hour, rs) in arrivals {
                let rs: Vec<(&str, u32, Option<u32>)> = rs.iter().map(|(a, f, u)| (if *a { A } else { B }, *f, u.map(|u| f + u))).collect();
                let v = version(who, hour, &rs);
                if people[usize::from(who)].versions.contains(&v) {
                    continue;
                }
                for f in people[usize::from(who)].apply(v) {
                    regs.entry(f.account_no.clone()).or_default().record(&f.person, f.updated_at, f.valid);
                }
            }
            for account in [A, B] {
                for hour in -1..9 {
                    let t = Timestamp(version(0, hour, &[]).updated_at.0);
                    for d in 0..8 {
                        let d = day("2019-01-01").plus_days(d);
                        let want = people.iter().filter(|p| p.registers(account, t, d)).count();
                        let got = regs.get(account).map_or(0, |r| r.count(t, d));
                        prop_assert_eq!(got, want, "account {} at hour {} on {}", account, hour, d);
                    }
                }
            }
        }
    }
}
