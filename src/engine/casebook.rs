//! The cases of one owner (contract §8; #16, fact 5).
//!
//! A case belongs to whoever raises its alerts: the person side holds the
//! cases whose subject is a person (a beneficiary, a vulnerable person, a
//! custodian), the account stage those whose subject is an account. Each
//! owner files its alerts in its own book and is sent the decisions of its
//! cases ([`Owner::of`]), so no owner reads another's cases; between
//! instances a decision travels to the partition of its case's subject.
//!
//! Filing an alert opens its case, or adds to it; an alert on a case closed
//! as `rectified` reopens it (marked relapsed), and one whose event time is
//! after the case's newest `rectified` decision raises
//! `RECTIFICATION_RELAPSE` once for that decision. An alert of a case whose
//! status is `false_positive` is recorded but marked quiet: the service
//! does not send it to supervisors' webhooks (§11.4).

use super::accounts::Changed;
use super::Outcome;
use crate::decode::{Reason, Rejection};
use crate::detect::registry::Subject;
use crate::detect::rectification_relapse::{self, Relapsed};
use crate::model::alert::alert_id;
use crate::model::decision::{case_id, Decision};
use crate::detect::Finding;
use crate::model::{Alert, Rule, Timestamp, Tz};
use crate::store::cases::{self, Case, Status, Summary};
use crate::store::{Cf, Store, StoreError, Table};
use rustc_hash::FxHashMap;

/// Who holds a rule's cases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Owner {
    /// The person side: the case's subject is a person.
    Person,
    /// The account stage: the case's subject is an account.
    Account,
}

impl Owner {
    /// The owner of `rule`'s cases, from its subject in the registry. A
    /// relapse alert is filed in the case that relapsed, by its owner.
    pub(super) fn of(rule: Rule) -> Owner {
        match rule.info().subject {
            Subject::Account => Owner::Account,
            Subject::Beneficiary | Subject::Custodian | Subject::Person | Subject::Case => Owner::Person,
        }
    }
}

/// The subject of the case a finding is filed under, read as
/// [`Subject::of`] reads it from the alert: which lane's book holds it.
pub(super) fn subject_of(f: &Finding) -> &str {
    let subject = match f.rule.info().subject {
        Subject::Beneficiary | Subject::Person => f.beneficiary_id.as_deref(),
        Subject::Account => f.account_no.as_deref(),
        Subject::Custodian => f.evidence.figures.get("custodian_id_no").map(String::as_str),
        Subject::Case => None,
    };
    subject.unwrap_or_default()
}

/// One alert as filed.
#[derive(Debug)]
pub(super) struct Filed {
    /// The alert, its `case_id` set.
    pub(super) alert: Alert,
    /// Its case is closed as `false_positive`: recorded and published, not
    /// sent to supervisors' webhooks.
    pub(super) quiet: bool,
    /// The case as it stands after this alert reopened it (it was closed as
    /// `rectified`): the service announces it (`case.relapsed`).
    pub(super) reopened: Option<Case>,
}

/// What filing needs besides the book: the same for every owner.
pub(super) struct Filing<'a> {
    pub(super) relapse: &'a rectification_relapse::Config,
    pub(super) tz: Tz,
    /// Wall time: a case's opening, a relapse alert's `detected_at`.
    pub(super) now: Timestamp,
}

pub(super) struct CaseBook {
    /// case key → case, cached (`store::cases` owns the layout).
    cases: Table<Case>,
    /// Cases changed since the last flush, with their index summary as
    /// written before (`None`: new): the flush moves their index entries.
    touched: FxHashMap<String, Option<Summary>>,
}

impl CaseBook {
    pub(super) fn new(cache_entries: usize) -> CaseBook {
        CaseBook { cases: Table::new(Cf::Cases, cache_entries), touched: FxHashMap::default() }
    }

    /// Files the alert of finding `f` (its id `alert_id`, see [`id_of`])
    /// under its case and adds it, then the relapse it causes, if any, to
    /// `out`.
    pub(super) fn file(&mut self, store: &Store, how: &Filing<'_>, f: Finding, alert_id: String, out: &mut Vec<Filed>) -> Result<(), StoreError> {
        let at = f.event_time;
        let mut alert = super::alert_of(how.tz, f, alert_id, String::new(), how.now);
        let subject = alert.rule.info().subject.of(&alert).unwrap_or_default().to_owned();
        alert.case_id = case_id(alert.rule, &subject);
        let key = cases::key(&alert.case_id);
        let rule = alert.rule;
        self.touch(store, &alert.case_id, &key)?;
        let case = self.cases.get_or_insert_with(store, &key, || Case::new(alert.case_id.clone(), rule, subject, how.now, at))?;
        let quiet = case.status == Status::FalsePositive;
        let reopened = case.status == Status::Rectified;
        if reopened {
            case.status = Status::Open;
            case.relapsed = true;
            case.opened_at = how.now;
        }
        let relapse = if how.relapse.enabled {
            let a = Relapsed {
                alert_id: &alert.alert_id,
                rule: alert.rule,
                event_time: at,
                township: &alert.township,
                beneficiary_id: alert.beneficiary_id.as_deref(),
                household_id: alert.household_id.as_deref(),
                account_no: alert.account_no.as_deref(),
                period: alert.period,
                amount: alert.amount,
                event_ids: &alert.evidence.event_ids,
                reason: &alert.reason,
            };
            rectification_relapse::check(how.relapse, case, &a, how.tz)
        } else {
            None
        };
        if let (Some(_), Some(r)) = (&relapse, case.rectified.as_mut()) {
            r.relapsed = true;
        }
        case.add_alert(&alert.alert_id, &alert, at, true);
        let relapse = relapse.map(|f| {
            let id = id_of(&f);
            case.add_alert(&id, &alert, at, false);
            (id, f)
        });
        let snapshot = reopened.then(|| case.clone());
        let case_id = alert.case_id.clone();
        out.push(Filed { alert, quiet, reopened: snapshot });
        if let Some((id, f)) = relapse {
            out.push(Filed { alert: super::alert_of(how.tz, f, id, case_id, how.now), quiet, reopened: None });
        }
        Ok(())
    }

    /// A decision whose id was filed under this case before: a redelivery
    /// when it is the same, else a conflict.
    pub(super) fn repeated(&mut self, store: &Store, d: &Decision) -> Result<Outcome, StoreError> {
        let case = self.cases.get(store, &cases::key(&d.case_id))?;
        Ok(match case.and_then(|c| c.decisions.iter().find(|x| x.decision_id == d.decision_id)) {
            Some(old) if old == d => Outcome::Redelivered,
            _ => conflict(d, "its content differs"),
        })
    }

    /// Applies a new decision to its case (§8): `unknown_case` when the case
    /// has no alert yet.
    pub(super) fn apply(&mut self, store: &Store, d: &Decision, tz: Tz) -> Result<Outcome, StoreError> {
        let key = cases::key(&d.case_id);
        if self.cases.get(store, &key)?.is_none() {
            let why = format!("case {} ({} on {}) has no alert by {}", d.case_id, d.rule.code(), d.subject, tz.format(d.decided_at));
            return Ok(Outcome::Rejected(Rejection::new(Reason::UnknownCase, why)));
        }
        self.touch(store, &d.case_id, &key)?;
        if let Some(case) = self.cases.get_mut(store, &key)? {
            case.apply(d);
        }
        Ok(Outcome::Applied)
    }

    /// Notes a case about to change, with its index summary as written
    /// before this batch (the first time it is touched in the batch).
    fn touch(&mut self, store: &Store, case_id: &str, key: &[u8]) -> Result<(), StoreError> {
        if !self.touched.contains_key(case_id) {
            let before = self.cases.get(store, key)?.map(Summary::of);
            self.touched.insert(case_id.to_owned(), before);
        }
        Ok(())
    }

    /// Cases the next commit rewrites.
    pub(super) fn changed(&self) -> usize {
        self.cases.changed()
    }

    /// Hands every change since the last flush to `put`: the index entries
    /// of the cases touched, then the cases (see `Table::flush`).
    pub(super) fn flush(&mut self, store: &Store, in_flight: bool, mut put: impl FnMut(Changed)) -> Result<(), StoreError> {
        for (case_id, before) in std::mem::take(&mut self.touched) {
            if let Some(c) = self.cases.get(store, &cases::key(&case_id))? {
                for (k, v) in cases::index_changes(&case_id, before.as_ref(), &Summary::of(c))? {
                    put((Cf::Cases, k, v));
                }
            }
        }
        self.cases.flush_with(in_flight, |k, v| put((Cf::Cases, k.to_vec(), v.map(<[u8]>::to_vec))))
    }

    pub(super) fn landed(&mut self) {
        self.cases.landed();
    }

    pub(super) fn trim(&mut self) {
        self.cases.trim();
    }
}

/// The id of a finding's alert: its rule and identity (§4).
pub(super) fn id_of(f: &Finding) -> String {
    let parts: Vec<&str> = f.identity.iter().map(String::as_str).collect();
    alert_id(f.rule, &parts)
}

pub(super) fn conflict(d: &Decision, why: &str) -> Outcome {
    Outcome::Rejected(Rejection::new(
        Reason::ConflictingDecision,
        format!("decision_id {} was seen before with other content ({why}); a correction needs a new decision_id", d.decision_id),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every rule's cases have one owner, and it is the side that raises
    /// the rule's alerts: the account stage raises exactly the account
    /// window rules.
    #[test]
    fn the_account_stage_owns_exactly_the_cases_of_the_rules_it_raises() {
        for info in crate::detect::registry::RULES {
            let window = matches!(info.hook, crate::detect::registry::Hook::AccountWindow(_));
            assert_eq!(Owner::of(info.rule) == Owner::Account, window, "{}", info.code);
        }
    }
}
