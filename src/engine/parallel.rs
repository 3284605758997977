//! The lanes on every core (#16): runs of records applied by each lane on a
//! thread of its own, with the same alerts as one thread.
//!
//! [`Engine::apply_many`] cuts its records into runs that the lanes can
//! apply without each other: payments (not reversals), roster records and
//! deaths of known townships, none of which moves the watermark past a
//! deadline (no `MISSED_PAYMENT` or referral sweep falls inside a run).
//! Everything else (a reversal, whose refusal must not move the watermark;
//! a decision; a vulnerable-persons record, whose late referral waits for
//! its household's answer; a record that crosses a deadline) is applied
//! alone, in order, between runs, exactly as [`Engine::apply_prepared`]
//! applies it.
//!
//! Inside a run each record is applied by the lane of its person, with the
//! watermark as it stands once that record moved it, reading and writing
//! only that lane's state. What a record hands on (findings, facts for the
//! key stage, steps for the account stage, `lane::Out`) is kept with the
//! record's place in the run, and once every lane is done the engine hands
//! it all on in that order: the key stage and the account stage see their
//! inputs in the order one thread would send them. What differs from one
//! thread is only that a fact *returning* to a person (a custodian's death,
//! a household's entry) reaches it after the run rather than at once, which
//! the checks are built for (`facts.rs`, `tests::arrival`): a late custodian
//! death re-checks the payments already applied, and referrals are never
//! decided inside a run.

use super::lane::{Ctx, Lane, Out};
use super::{Engine, EngineError, Opened, Outcome};
use crate::model::{PaymentKind, Record, Timestamp};

/// Runs shorter than this are applied on the caller's thread: starting
/// threads would cost more than the run. Tests take every run of two.
#[cfg(not(test))]
const MIN_PARALLEL_RUN: usize = 64;
#[cfg(test)]
const MIN_PARALLEL_RUN: usize = 2;

/// One record of a run, for its lane: its place in the run, the record,
/// what [`super::prepare`] made of it, and the watermark once it moved it.
type Item<'a> = (usize, &'a Record, Option<&'a Opened>, Option<Timestamp>);

/// What a lane made of its part of a run: each record's outcome and what
/// it hands on, by place in the run.
type LaneResult = Result<(Vec<(usize, Outcome)>, Vec<(usize, Out)>), EngineError>;

impl Engine {
    /// Applies records in order with the same outcomes and alerts as
    /// [`Engine::apply_prepared`] on each in turn; with more than one lane,
    /// runs of them are applied by the lanes at once (see the module's
    /// doc). The outcomes are in the records' order.
    pub fn apply_many(&mut self, records: &[(&Record, Option<&Opened>)]) -> Result<Vec<Outcome>, EngineError> {
        let mut outcomes = Vec::with_capacity(records.len());
        let mut i = 0;
        while i < records.len() {
            let end = if self.lanes.len() > 1 { self.run_end(records, i) } else { i };
            if end - i >= MIN_PARALLEL_RUN {
                self.apply_run(&records[i..end], &mut outcomes)?;
                i = end;
            } else {
                let stop = end.max(i + 1);
                for (rec, opened) in &records[i..stop] {
                    outcomes.push(self.apply_prepared(rec, *opened)?);
                }
                i = stop;
            }
        }
        Ok(outcomes)
    }

    /// The person side's lanes.
    pub fn lanes(&self) -> u32 {
        self.lanes.len() as u32
    }

    /// Records applied so far by the lanes at once (in runs), against
    /// those applied one at a time: how much of the work was parallel.
    pub fn records_in_runs(&self) -> u64 {
        self.records_in_runs
    }

    /// Where the run of records starting at `start` that the lanes can
    /// apply at once ends (`start` itself: none).
    fn run_end(&self, records: &[(&Record, Option<&Opened>)], start: usize) -> usize {
        let Some(mut w) = self.progress.watermark else { return start };
        let next_deadline = self.next_deadline.unwrap_or_else(|| self.deadline_after(w));
        for (j, (rec, _)) in records.iter().enumerate().skip(start) {
            let in_lane = match rec {
                Record::Payment(p) => p.kind == PaymentKind::Payment,
                Record::Roster(_) | Record::Death(_) => true,
                _ => false,
            };
            if !in_lane || self.foreign_township(rec).is_some() {
                return j;
            }
            let t = rec.event_time();
            if t > w && (t >= self.next_day || t >= next_deadline) {
                return j;
            }
            w = w.max(t);
        }
        records.len()
    }

    /// Applies a run that [`Engine::run_end`] found, each lane on its own
    /// thread, then hands on what the records produced in their order.
    fn apply_run(&mut self, run: &[(&Record, Option<&Opened>)], outcomes: &mut Vec<Outcome>) -> Result<(), EngineError> {
        // As `apply_prepared` does before each record.
        if self.in_flight.as_ref().is_some_and(|f| f.write.is_finished()) {
            self.landed = self.land()?;
        }
        self.pump(false)?;
        if self.next_deadline.is_none() {
            let w = self.progress.watermark.expect("a run starts after the first record");
            self.next_deadline = Some(self.deadline_after(w));
        }
        let mut w = self.progress.watermark;
        let mut items: Vec<Vec<Item<'_>>> = (0..self.lanes.len()).map(|_| Vec::new()).collect();
        for (k, (rec, opened)) in run.iter().enumerate() {
            w = w.max(Some(rec.event_time()));
            // A payment's and a roster record's beneficiary, a death's person.
            let (_, person) = rec.contract_key();
            items[self.lane(person)].push((k, rec, *opened, w));
        }
        let (lanes, ctx) = self.split();
        let results: Vec<LaneResult> = std::thread::scope(|scope| {
            let mut work: Vec<(&mut Lane, Vec<Item<'_>>)> = lanes.iter_mut().zip(items).filter(|(_, items)| !items.is_empty()).collect();
            // The first lane's part on this thread, the others' on their own.
            let first = work.pop();
            let mut results: Vec<LaneResult> = Vec::with_capacity(work.len() + 1);
            let mut handles = Vec::with_capacity(work.len());
            for (lane, items) in work {
                // Named, so `top -H` and profiles show the lanes' share.
                match std::thread::Builder::new().name("paywatch-lane".into()).spawn_scoped(scope, move || apply_items(lane, &ctx, items)) {
                    Ok(h) => handles.push(h),
                    Err(e) => results.push(Err(EngineError::Lane(format!("cannot start a lane's thread: {e}")))),
                }
            }
            results.extend(first.map(|(lane, items)| apply_items(lane, &ctx, items)));
            for h in handles {
                results.push(h.join().unwrap_or_else(|_| Err(EngineError::Lane("a lane's thread panicked".into()))));
            }
            results
        });
        let mut placed: Vec<Option<Outcome>> = vec![None; run.len()];
        let mut out: Vec<(usize, Out)> = Vec::new();
        for r in results {
            let (o, handed) = r?;
            for (k, outcome) in o {
                placed[k] = Some(outcome);
            }
            out.extend(handed);
        }
        // Each lane's are in order; the lanes' places never coincide.
        out.sort_by_key(|(k, _)| *k);
        self.progress.watermark = w;
        self.records_in_runs += run.len() as u64;
        let mut handed = out.into_iter().peekable();
        for (k, (rec, _)) in run.iter().enumerate() {
            let mut of_k = Vec::new();
            while let Some((_, o)) = handed.next_if(|(at, _)| *at == k) {
                of_k.push(o);
            }
            // Its facts are its lane's, at its place in the engine's order.
            self.wire_begin(rec)?;
            self.take_out(of_k)?;
            let outcome = placed[k].take().expect("every record of a run has an outcome");
            outcomes.push(self.count(outcome, rec));
        }
        Ok(())
    }
}

/// Applies one lane's part of a run, in order.
fn apply_items(lane: &mut Lane, ctx: &Ctx<'_>, items: Vec<Item<'_>>) -> LaneResult {
    let mut outcomes = Vec::with_capacity(items.len());
    let mut handed = Vec::new();
    let mut out = Vec::new();
    for (k, rec, opened, watermark) in items {
        let ctx = Ctx { watermark, ..*ctx };
        let outcome = match rec {
            Record::Payment(p) => lane.on_payment(&ctx, p, opened, &mut out)?,
            Record::Roster(r) => lane.on_roster(&ctx, r, &mut out)?,
            Record::Death(d) => lane.on_death(&ctx, d, &mut out)?,
            _ => unreachable!("runs hold payments, roster records and deaths only"),
        };
        outcomes.push((k, outcome));
        handed.extend(out.drain(..).map(|o| (k, o)));
    }
    Ok((outcomes, handed))
}
