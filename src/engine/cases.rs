//! Cases (contract §8): every alert is filed under its case, and decisions
//! are applied to cases like any other record.
//!
//! Filing an alert opens its case, or adds to it; an alert on a case closed
//! as `rectified` reopens it (marked relapsed), and one whose event time is
//! after the case's newest `rectified` decision raises
//! `RECTIFICATION_RELAPSE` once for that decision. An alert of a case whose
//! status is `false_positive` is recorded but marked quiet: the service
//! does not send it to supervisors' webhooks (§11.4).

use super::{Engine, EngineError, Outcome};
use crate::decode::{Reason, Rejection};
use crate::detect::rectification_relapse::{self, Relapsed};
use crate::model::alert::alert_id;
use crate::model::decision::{case_id, Decision};
use crate::model::{Alert, Timestamp};
use crate::store::cases::{self, Case, Status};

impl Engine {
    /// Files `alert` (raised at event time `at`) under its case and stages
    /// it, then the relapse it causes, if any.
    pub(super) fn stage_alert(&mut self, mut alert: Alert, at: Timestamp) -> Result<(), EngineError> {
        let subject = alert.rule.info().subject.of(&alert).unwrap_or_default().to_owned();
        alert.case_id = case_id(alert.rule, &subject);
        let now = self.clock.now();
        let key = cases::key(&alert.case_id);
        let (rule, tz) = (alert.rule, self.tz);
        self.touch_case(&alert.case_id, &key)?;
        let case = self.cases.get_or_insert_with(&self.store, &key, || Case::new(alert.case_id.clone(), rule, subject, now, at))?;
        let quiet = case.status == Status::FalsePositive;
        let reopened = case.status == Status::Rectified;
        if reopened {
            case.status = Status::Open;
            case.relapsed = true;
            case.opened_at = now;
        }
        let relapse = if self.rules.rectification_relapse.enabled {
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
            rectification_relapse::check(&self.rules.rectification_relapse, case, &a, tz)
        } else {
            None
        };
        if let (Some(_), Some(r)) = (&relapse, case.rectified.as_mut()) {
            r.relapsed = true;
        }
        case.add_alert(&alert.alert_id, &alert, at, true);
        let relapse = relapse.map(|f| {
            let parts: Vec<&str> = f.identity.iter().map(String::as_str).collect();
            let id = alert_id(f.rule, &parts);
            case.add_alert(&id, &alert, at, false);
            (id, f)
        });
        if reopened {
            let snapshot = case.clone();
            self.reopened.push(snapshot);
        }
        let case_id = alert.case_id.clone();
        self.push_alert(alert, quiet);
        if let Some((id, f)) = relapse {
            let a = self.alert_of(f, id, case_id, now);
            self.push_alert(a, quiet);
        }
        Ok(())
    }

    /// Applies a decision to its case (§8): dead-lettered `unknown_case` when
    /// the case has no alert yet, `conflicting_decision` when its id was
    /// used before with other content.
    pub(super) fn on_decision(&mut self, d: &Decision) -> Result<Outcome, EngineError> {
        // Applied, repeated or refused: a posted copy waits no more.
        self.cleared_pending.push(cases::pending_key(&d.case_id, &d.decision_id));
        let index = cases::decision_key(&d.decision_id);
        if let Some(filed_under) = self.decision_cases.get(&self.store, &index)? {
            if *filed_under != d.case_id {
                return Ok(conflict(d, &format!("it was filed under case {filed_under}")));
            }
            let case = self.cases.get(&self.store, &cases::key(&d.case_id))?;
            return Ok(match case.and_then(|c| c.decisions.iter().find(|x| x.decision_id == d.decision_id)) {
                Some(old) if old == d => Outcome::Redelivered,
                _ => conflict(d, "its content differs"),
            });
        }
        let key = cases::key(&d.case_id);
        if self.cases.get(&self.store, &key)?.is_none() {
            let why = format!(
                "case {} ({} on {}) has no alert by {}",
                d.case_id,
                d.rule.code(),
                d.subject,
                self.tz.format(d.decided_at)
            );
            return Ok(Outcome::Rejected(Rejection::new(Reason::UnknownCase, why)));
        }
        self.touch_case(&d.case_id, &key)?;
        if let Some(case) = self.cases.get_mut(&self.store, &key)? {
            case.apply(d);
        }
        *self.decision_cases.get_or_insert_with(&self.store, &index, String::new)? = d.case_id.clone();
        Ok(Outcome::Applied)
    }
}

impl Engine {
    /// Notes a case about to change, with its index summary as written
    /// before this batch (the first time it is touched in the batch).
    fn touch_case(&mut self, case_id: &str, key: &[u8]) -> Result<(), EngineError> {
        if !self.cases_touched.contains_key(case_id) {
            let before = self.cases.get(&self.store, key)?.map(cases::Summary::of);
            self.cases_touched.insert(case_id.to_owned(), before);
        }
        Ok(())
    }
}

fn conflict(d: &Decision, why: &str) -> Outcome {
    Outcome::Rejected(Rejection::new(
        Reason::ConflictingDecision,
        format!("decision_id {} was seen before with other content ({why}); a correction needs a new decision_id", d.decision_id),
    ))
}
