//! Applies one record at a time to the state and raises alerts.
//!
//! The order inside [`Engine::apply`] is the data path in miniature: advance
//! the event-time watermark (deciding any `MISSED_PAYMENT` month whose
//! deadline it passes), apply the record to state, run the rules that apply
//! to it, and stage the alerts. [`Engine::commit`] then writes everything
//! staged — state, timers, alerts, dead letters and the input position — as
//! one atomic batch. The engine never reads input and never writes output.

mod accounts;
mod archive;
mod away;
mod casebook;
mod cases;
mod commit;
mod coverage;
mod custodians;
pub mod merge;
pub(crate) mod facts;
mod key_stage;
mod lane;
mod parallel;
mod missed;
mod progress;
pub(crate) mod registrations;
pub(crate) mod timers;
mod months;
mod monthset;
mod payment;
mod records;
pub mod repartition;
pub mod state;
mod wire;
pub use wire::TopicVolume;
use wire::wire_error;

use crate::clock::Clock;
use crate::decode::{DeadLetter, Rejection};
use crate::detect::{Finding, RulesConfig};
use crate::model::{Alert, PaymentKind, Record, Timestamp, Tz};
use crate::store::{keys, Cf, Store, StoreError, Table, WriteFailed};
use rustc_hash::FxHashSet;
pub use commit::{Committed, Staged, RECORDS_PER_REWRITE};
use commit::InFlight;
pub use progress::{Counts, Progress};
use std::collections::VecDeque;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot encode an alert or dead letter: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the engine's lanes: {0}")]
    Lane(String),
    /// A repartition record refused (`[engine] repartition_records`): a
    /// bug in routing or order, never bad input.
    #[error("repartition records: {0}")]
    Repartition(String),
}

/// What became of one record.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Applied,
    /// Seen before (same `event_id` for the same beneficiary and month, same
    /// roster version, same death `record_id`):
    /// ignored, counted.
    Redelivered,
    /// Valid on its own but not against state (e.g. a reversal of an unknown
    /// payment): the caller dead-letters it.
    Rejected(Rejection),
}

/// The month a payment opens when it is the month's first, encoded ahead
/// of [`Engine::apply_prepared`] by [`prepare`].
pub struct Opened {
    /// The `months` key.
    key: keys::MonthKey,
    /// The month holding only this payment.
    bytes: Vec<u8>,
}

/// The part of applying a record that needs no state, so a caller can do
/// it on another thread ahead of the engine: most payments open a month,
/// and encoding it is a good share of applying them.
pub fn prepare(rec: &Record) -> Option<Opened> {
    match rec {
        Record::Payment(p) if p.kind == PaymentKind::Payment => {
            let bytes = months::encode_opened(p).ok()?;
            Some(Opened { key: keys::month(p.beneficiary_id.as_str(), p.period), bytes })
        }
        _ => None,
    }
}

/// Asked after every failed commit attempt, with the error and the number
/// of failed attempts: retry after a pause, or give up.
pub type WriteFailurePolicy = Box<dyn FnMut(&StoreError, u32) -> WriteFailed + Send>;

pub struct Engine {
    /// Thresholds, severities and which rules run.
    rules: RulesConfig,
    /// `[district] townships`: when given, records of other townships are
    /// refused (`unknown_township`) before they reach the watermark.
    townships: Option<FxHashSet<crate::model::Text>>,
    /// The payment-level rules that are on, read off the registry once.
    payment_checks: Vec<fn(&RulesConfig, &crate::detect::PaymentView<'_>, &mut Vec<Finding>)>,
    /// The offset calendar questions are answered in.
    tz: Tz,
    /// The only way to the disk.
    store: Store,
    /// Wall time, for `detected_at` only.
    clock: Arc<dyn Clock>,
    /// The person side, split by person (`lane.rs`): lane `i` holds the
    /// persons Kafka's default partitioner puts in partition `i`.
    lanes: Vec<lane::Lane>,
    /// Per-account windows and episodes, and who registers each account
    /// for a custodian, on the account stage's thread.
    accounts: accounts::AccountStage,
    /// Findings in the order one thread would turn them into alerts:
    /// those of account steps still on the account stage hold back every
    /// later one ([`Engine::pump`]).
    queue: VecDeque<Queued>,
    /// The account-level rules that are on (worked out once).
    window_rules: crate::detect::episode::WindowRules,
    /// The first instant of the day after the watermark's: referral
    /// deadlines (00:00) are looked for when the watermark reaches it.
    next_day: Timestamp,
    /// Custodians' and households' entries, reached only by facts.
    keys: key_stage::KeyStage,
    /// `[engine] repartition_records`: the facts between persons and
    /// other keys travel as repartition records (`wire.rs`); `None`: as
    /// calls.
    wire: Option<wire::Wire>,
    /// Facts returning to persons, held back to be applied later (tests,
    /// `facts::Engine::hold_returning_facts`); `None`: applied when sent.
    held_facts: Option<VecDeque<facts::PersonFact>>,
    /// decision_id → the case it was filed under (§11.5), cached.
    decision_cases: Table<String>,
    /// Posted decisions read back since the last commit: their pending
    /// entries are deleted with it.
    cleared_pending: Vec<Vec<u8>>,
    /// Position, watermark and counts, committed with every batch.
    progress: Progress,
    /// The earliest `MISSED_PAYMENT` deadline not yet passed, cached.
    next_deadline: Option<Timestamp>,
    /// Alerts raised since the last commit.
    staged_alerts: Vec<Alert>,
    /// Their ids, so one finding raised twice in a batch is one alert.
    staged_ids: FxHashSet<String>,
    /// The staged alerts of cases closed as `false_positive`: recorded and
    /// published, but not sent to supervisors' webhooks (§11.4).
    quiet_ids: FxHashSet<String>,
    /// Cases closed as `rectified` that an alert reopened since the last
    /// commit, as they stand after it: the service announces them
    /// (`case.relapsed`) in the same commit.
    reopened: Vec<crate::store::cases::Case>,
    /// Records the engine refused since the last commit.
    staged_dead: Vec<DeadLetter>,
    /// What a failed commit does: `None` returns the error at once (the
    /// file audit, which resumes from its last commit when run again);
    /// the service sets a policy that waits for the disk to come back,
    /// because the batch in hand is the only copy of its state.
    on_write_failure: Option<WriteFailurePolicy>,
    /// Size of the last commit, reserved for the next one: a batch of
    /// tens of megabytes would otherwise be copied every time it doubles.
    batch_bytes: usize,
    /// The commit being written in the background, if any.
    in_flight: Option<InFlight>,
    /// Records applied by the lanes at once (`parallel.rs`), for the
    /// summary.
    records_in_runs: u64,
    /// What a background commit that landed between commits made durable,
    /// returned by the next commit.
    landed: Committed,
}

impl Engine {
    /// Opens the engine on a store, resuming from its committed progress.
    pub fn open(store: Store, rules: RulesConfig, tz: Tz, cache_entries: usize, clock: Arc<dyn Clock>) -> Result<Engine, EngineError> {
        Engine::open_with_lanes(store, rules, tz, cache_entries, clock, 1)
    }

    /// [`Engine::open`] with the person side in `lanes` lanes (`lane.rs`),
    /// each with its share of `cache_entries`. A state written with
    /// another lane count has its deadline buckets moved to the new lanes
    /// first.
    pub fn open_with_lanes(store: Store, rules: RulesConfig, tz: Tz, cache_entries: usize, clock: Arc<dyn Clock>, lanes: u32) -> Result<Engine, EngineError> {
        let lanes = lanes.max(1);
        let stored: u32 = store.get(Cf::Meta, keys::META_LANES)?.unwrap_or(1);
        if stored != lanes {
            let mut b = store.batch();
            let moved = timers::repartition(&store, Cf::Timers, lanes, &mut b)? + timers::repartition(&store, Cf::Referrals, lanes, &mut b)?;
            b.put(Cf::Meta, keys::META_LANES, &lanes)?;
            store.commit(b)?;
            tracing::info!(from = stored, to = lanes, moved, "deadline buckets moved to the new lane count");
        }
        let progress = store.get(Cf::Meta, keys::META_PROGRESS)?.unwrap_or_default();
        let per_lane = (cache_entries / lanes as usize).max(16);
        let window_rules = crate::detect::episode::WindowRules::of(&rules);
        let accounts = accounts::AccountStage::start(store.clone(), rules.clone(), window_rules.clone(), tz, clock.clone(), cache_entries)?;
        Ok(Engine {
            townships: None,
            payment_checks: rules.payment_checks(),
            window_rules,
            next_day: Timestamp(i64::MIN),
            rules,
            tz,
            clock,
            lanes: (0..lanes).map(|i| lane::Lane::new(i, per_lane)).collect(),
            accounts,
            queue: VecDeque::new(),
            keys: key_stage::KeyStage::new(cache_entries),
            wire: None,
            held_facts: None,
            decision_cases: Table::new(Cf::Cases, cache_entries),
            cleared_pending: Vec::new(),
            store,
            progress,
            next_deadline: None,
            staged_alerts: Vec::new(),
            staged_ids: FxHashSet::default(),
            quiet_ids: FxHashSet::default(),
            reopened: Vec::new(),
            staged_dead: Vec::new(),
            on_write_failure: None,
            batch_bytes: 0,
            in_flight: None,
            records_in_runs: 0,
            landed: Committed::default(),
        })
    }

    /// The lanes, and what they read of the rest of the engine.
    fn split(&mut self) -> (&mut [lane::Lane], lane::Ctx<'_>) {
        let ctx = lane::Ctx {
            rules: &self.rules,
            tz: self.tz,
            store: &self.store,
            payment_checks: &self.payment_checks,
            account_rules: !self.window_rules.rules.is_empty(),
            watermark: self.progress.watermark,
        };
        (&mut self.lanes, ctx)
    }

    /// Applies a record of `person` in its lane, now, and hands on what it
    /// produced.
    fn in_lane(
        &mut self,
        person: &str,
        apply: impl FnOnce(&mut lane::Lane, &lane::Ctx<'_>, &mut Vec<lane::Out>) -> Result<Outcome, EngineError>,
    ) -> Result<Outcome, EngineError> {
        let l = self.lane(person);
        let mut out = Vec::new();
        let (lanes, ctx) = self.split();
        let outcome = apply(&mut lanes[l], &ctx, &mut out)?;
        self.take_out(out)?;
        Ok(outcome)
    }

    /// Hands on what a lane's records produced, in order: findings filed,
    /// facts sent to the key stage, steps and registrations to the account
    /// stage.
    fn take_out(&mut self, out: Vec<lane::Out>) -> Result<(), EngineError> {
        for o in out {
            match o {
                lane::Out::Findings(f) => self.emit(f)?,
                lane::Out::Key(k) => self.send(k)?,
                lane::Out::Step(s) => self.send_to_account(repartition::Fact::Step(s))?,
                lane::Out::Registered(r) => self.send_to_account(repartition::Fact::Registered(r))?,
            }
        }
        Ok(())
    }

    /// Sends a step or a registration to its account: as a record, or to
    /// the account stage now.
    fn send_to_account(&mut self, f: repartition::Fact) -> Result<(), EngineError> {
        match &mut self.wire {
            Some(w) => w.write(f).map_err(wire_error),
            None => self.to_accounts(f),
        }
    }

    /// Hands a step or a registration to the account stage: a step's
    /// alerts follow every finding queued before it ([`Engine::pump`]).
    fn to_accounts(&mut self, f: repartition::Fact) -> Result<(), EngineError> {
        match f {
            repartition::Fact::Step(s) => {
                self.accounts.step(s)?;
                self.queue.push_back(Queued::Step);
            }
            repartition::Fact::Registered(r) => self.accounts.register(r)?,
            // Never with an id in it: errors are logged.
            _ => return Err(EngineError::Repartition("only steps and registrations go to the account stage".into())),
        }
        Ok(())
    }

    /// The lane of the person (or other subject) `id`.
    fn lane(&self, id: &str) -> usize {
        crate::partition::of(id.as_bytes(), self.lanes.len() as u32) as usize
    }

    /// Accepts payments and roster records of these townships only
    /// (normalised names); an empty list accepts all.
    pub fn restrict_townships(&mut self, townships: &[String]) {
        self.townships = (!townships.is_empty()).then(|| townships.iter().map(|t| crate::model::Text::from(t.as_str())).collect());
    }

    /// Sets what a commit that cannot be written does (see
    /// [`Store::commit_retrying`]).
    pub fn on_write_failure(&mut self, policy: WriteFailurePolicy) {
        self.on_write_failure = Some(policy);
    }

    /// A handle on the engine's store, for the sinks (outbox) and the API.
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// Records which inputs this state is built from (committed with the
    /// next batch).
    pub fn set_inputs(&mut self, inputs: Vec<(String, u64)>) {
        self.progress.inputs = inputs;
    }

    /// Applies one record at its event time.
    pub fn apply(&mut self, rec: &Record) -> Result<Outcome, EngineError> {
        self.apply_prepared(rec, None)
    }

    /// Applies one record with what [`prepare`] made of it ahead of time.
    pub fn apply_prepared(&mut self, rec: &Record, opened: Option<&Opened>) -> Result<Outcome, EngineError> {
        // A background commit that has landed releases what it held (its
        // months, and the clean entries the caches keep for it) at once.
        if self.in_flight.as_ref().is_some_and(|f| f.write.is_finished()) {
            self.landed = self.land()?;
        }
        // Alerts of account steps that came back, in order.
        self.pump(false)?;
        self.wire_begin(rec)?;
        if let Some(t) = self.foreign_township(rec) {
            let why = format!("township {t:?} is not one of the district's ([district] townships)");
            return Ok(self.count(Outcome::Rejected(Rejection::new(crate::decode::Reason::UnknownTownship, why)), rec));
        }
        // A reversal's target is found first: one the engine refuses is
        // dead-lettered, and only accepted records move the watermark.
        let target = match rec {
            Record::Payment(p) if p.kind == PaymentKind::Reversal => match self.reversal_target(p)? {
                Ok(t) => Some(t),
                Err(outcome) => return Ok(self.count(outcome, rec)),
            },
            _ => None,
        };
        self.advance_watermark(rec.event_time())?;
        let outcome = match (rec, target) {
            (Record::Roster(r), _) => self.on_roster(r)?,
            (Record::Death(d), _) => self.on_death(d)?,
            (Record::Decision(d), _) => {
                // A decision reads and changes cases: every finding before
                // it is filed first.
                self.drain()?;
                self.on_decision(d)?
            }
            (Record::Vulnerable(v), _) => self.on_vulnerable(v)?,
            (Record::Payment(p), Some(t)) => self.on_reversal(p, t)?,
            (Record::Payment(p), None) => self.on_payment(p, opened)?,
        };
        Ok(self.count(outcome, rec))
    }

    /// The township of a payment or roster record that `[district]
    /// townships` does not list (such records are refused).
    fn foreign_township<'r>(&self, rec: &'r Record) -> Option<&'r str> {
        let known = self.townships.as_ref()?;
        let township = match rec {
            Record::Payment(p) => p.township.as_str(),
            Record::Roster(r) => r.township.as_str(),
            _ => return None,
        };
        (!known.contains(township)).then_some(township)
    }

    /// Adds one record's outcome to the running totals.
    fn count(&mut self, outcome: Outcome, rec: &Record) -> Outcome {
        let c = &mut self.progress.counts;
        match (&outcome, rec) {
            (Outcome::Redelivered, _) => c.redelivered += 1,
            (Outcome::Rejected(_), _) => c.rejected += 1,
            (Outcome::Applied, Record::Roster(_)) => c.roster += 1,
            (Outcome::Applied, Record::Death(_)) => c.deaths += 1,
            (Outcome::Applied, Record::Decision(_)) => c.decisions += 1,
            (Outcome::Applied, Record::Vulnerable(_)) => c.vulnerable += 1,
            (Outcome::Applied, Record::Payment(p)) if p.kind == PaymentKind::Payment => c.payments += 1,
            (Outcome::Applied, Record::Payment(_)) => c.reversals += 1,
        }
        outcome
    }

    /// Turns findings into alerts, once per `alert_id` ever — at once, or
    /// after the findings of the account steps queued before them.
    fn emit(&mut self, findings: Vec<Finding>) -> Result<(), EngineError> {
        if self.queue.is_empty() {
            self.emit_now(findings)
        } else {
            if !findings.is_empty() {
                self.queue.push_back(Queued::Findings(findings));
            }
            Ok(())
        }
    }

    /// Emits queued findings from the front while they are known: with
    /// `wait`, waits for the account stage until the queue is empty.
    fn pump(&mut self, wait: bool) -> Result<(), EngineError> {
        while let Some(front) = self.queue.front_mut() {
            match front {
                Queued::Findings(f) => {
                    let findings = std::mem::take(f);
                    self.queue.pop_front();
                    self.emit_now(findings)?;
                }
                Queued::Step => match self.accounts.take(wait)? {
                    Some(filed) => {
                        self.queue.pop_front();
                        self.push_filed(filed);
                    }
                    None => return Ok(()),
                },
            }
        }
        Ok(())
    }

    /// Waits for every account step (and registration) and emits
    /// everything queued: before a commit, a decision, or counting changed
    /// entries.
    fn drain(&mut self) -> Result<(), EngineError> {
        self.apply_held_facts()?;
        self.pump(true)?;
        debug_assert!(self.queue.is_empty());
        self.accounts.settle()?;
        Ok(())
    }

    /// Turns findings into alerts now.
    fn emit_now(&mut self, findings: Vec<Finding>) -> Result<(), EngineError> {
        for f in findings {
            let id = casebook::id_of(&f);
            let in_flight = self.in_flight.as_ref().is_some_and(|f| f.alert_ids.contains(&id));
            if in_flight || self.staged_ids.contains(&id) || self.store.get_raw(Cf::Alerts, id.as_bytes())?.is_some() {
                continue;
            }
            self.stage_alert(f, id)?;
        }
        Ok(())
    }


    /// Stages one alert (its case already filed), `quiet` when supervisors
    /// are not to be sent it.
    fn push_alert(&mut self, alert: Alert, quiet: bool) {
        if quiet {
            self.quiet_ids.insert(alert.alert_id.clone());
        }
        self.staged_ids.insert(alert.alert_id.clone());
        self.staged_alerts.push(alert);
    }

    /// Moves the watermark to `t` when `t` is newer, first deciding every
    /// month whose deadline is at or before `t` (§11.2: timers due at or
    /// before a record's event time fire before the record is applied).
    fn advance_watermark(&mut self, t: Timestamp) -> Result<(), EngineError> {
        let Some(w) = self.progress.watermark else {
            self.progress.watermark = Some(t);
            return Ok(());
        };
        if t <= w {
            return Ok(());
        }
        // Referral deadlines are at 00:00: asked once a day of event time.
        if t >= self.next_day {
            self.sweep_coverage(t)?;
            self.next_day = self.tz.day_start(self.tz.date(t).plus_days(1));
        }
        let next = match self.next_deadline {
            Some(d) => d,
            None => self.deadline_after(w),
        };
        if t >= next {
            self.sweep_missed(t)?;
            self.next_deadline = Some(self.deadline_after(t));
        } else {
            self.next_deadline = Some(next);
        }
        self.progress.watermark = Some(t);
        Ok(())
    }

    /// The first `MISSED_PAYMENT` deadline after `t`.
    fn deadline_after(&self, t: Timestamp) -> Timestamp {
        let cfg = &self.rules.missed_payment;
        let back = t.plus_days(-i64::from(cfg.grace_days));
        let mut p = crate::model::Period(crate::model::Period::of(self.tz.date(back)).0 - 2);
        while cfg.deadline(self.tz, p) <= t {
            p = p.next();
        }
        cfg.deadline(self.tz, p)
    }
}

/// The alert of a finding, with its id, case and detection time.
fn alert_of(tz: Tz, f: Finding, alert_id: String, case_id: String, detected: Timestamp) -> Alert {
    Alert {
        alert_id,
        rule: f.rule,
        severity: f.severity,
        township: f.township,
        beneficiary_id: f.beneficiary_id,
        household_id: f.household_id,
        account_no: f.account_no,
        period: f.period,
        amount: f.amount,
        evidence: f.evidence,
        reason: f.reason,
        event_time: tz.format(f.event_time),
        detected_at: tz.format(detected),
        case_id,
    }
}

/// What waits to be turned into alerts, in order.
enum Queued {
    /// Findings raised on this side after an account step still out.
    Findings(Vec<Finding>),
    /// The alerts of one account step, as the account stage filed them.
    Step,
}

#[cfg(test)]
mod tests;
