//! Cases on the person side (contract §8): its alerts are filed in its own
//! case book, and every decision is routed to the book of its case's owner
//! (`casebook.rs`). Which decision ids were filed under which case (§11.5)
//! is checked here first, for every owner.

use super::casebook::{self, conflict, Filed, Filing, Owner};
use super::{Engine, EngineError, Outcome};
use crate::model::decision::Decision;
use crate::detect::Finding;
use crate::store::cases;

impl Engine {
    /// Files the alert of finding `f` (id `alert_id`) under its case in the
    /// person side's book and stages it, then the relapse it causes.
    pub(super) fn stage_alert(&mut self, f: Finding, alert_id: String) -> Result<(), EngineError> {
        let how = Filing { relapse: &self.rules.rectification_relapse, tz: self.tz, now: self.clock.now() };
        let mut filed = Vec::with_capacity(1);
        let l = self.lane(casebook::subject_of(&f));
        self.lanes[l].cases.file(&self.store, &how, f, alert_id, &mut filed)?;
        self.push_filed(filed);
        Ok(())
    }

    /// Stages alerts as their owner filed them, in order.
    pub(super) fn push_filed(&mut self, filed: Vec<Filed>) {
        for f in filed {
            if let Some(c) = f.reopened {
                self.reopened.push(c);
            }
            self.push_alert(f.alert, f.quiet);
        }
    }

    /// Applies a decision to its case (§8), in its owner's book:
    /// dead-lettered `unknown_case` when the case has no alert yet,
    /// `conflicting_decision` when its id was used before with other
    /// content.
    pub(super) fn on_decision(&mut self, d: &Decision) -> Result<Outcome, EngineError> {
        // Applied, repeated or refused: a posted copy waits no more.
        self.cleared_pending.push(cases::pending_key(&d.case_id, &d.decision_id));
        let index = cases::decision_key(&d.decision_id);
        let repeated = match self.decision_cases.get(&self.store, &index)? {
            Some(filed_under) if *filed_under != d.case_id => return Ok(conflict(d, &format!("it was filed under case {filed_under}"))),
            Some(_) => true,
            None => false,
        };
        let outcome = match Owner::of(d.rule) {
            // Its account task decides it, and dead-letters it if it must
            // (`away.rs`): here it is applied by being handed on.
            Owner::Account if self.wire.as_ref().is_some_and(|w| w.accounts_away()) => {
                if let Some(w) = &mut self.wire {
                    w.write_decision(d.clone()).map_err(super::wire_error)?;
                }
                return Ok(Outcome::Applied);
            }
            Owner::Account => self.accounts.decide(d.clone(), repeated)?,
            Owner::Person if repeated => {
                let l = self.lane(&d.subject);
                self.lanes[l].cases.repeated(&self.store, d)?
            }
            Owner::Person => {
                let l = self.lane(&d.subject);
                self.lanes[l].cases.apply(&self.store, d, self.tz)?
            }
        };
        if !repeated && outcome == Outcome::Applied {
            *self.decision_cases.get_or_insert_with(&self.store, &index, String::new)? = d.case_id.clone();
        }
        Ok(outcome)
    }
}
