//! The one atomic commit of the data path: everything a batch staged (the
//! cached state it changed, timers, months, alerts, dead letters and the
//! input position) in one RocksDB write, written in the foreground or on a
//! thread of its own while the next batch is applied; and how large a
//! batch grows before it is committed.

use super::{months, Engine, EngineError};
use crate::decode::DeadLetter;
use crate::model::{Alert, SortKey};
use crate::store::{keys, Batch, Cf, PendingWrite};
use rustc_hash::FxHashSet;

/// Records a batch holds, at least, for each cached entry it rewrites
/// ([`Engine::batch_full`]). Measured on 90,000 households
/// (`scripts/bench-e2e.sh`): batches of 200,000 records rewrote 2.2 million
/// account and beneficiary entries (1.1 GB) for 4.4 million payments.
pub const RECORDS_PER_REWRITE: usize = 4;

/// What one commit made durable, for the sinks.
#[derive(Debug, Default)]
pub struct Committed {
    /// Alerts that are now durable, in the order raised.
    pub alerts: Vec<Alert>,
    /// Dead letters that are now durable.
    pub dead_letters: Vec<DeadLetter>,
    /// Attempts that failed before the write went through (see
    /// [`Engine::on_write_failure`]).
    pub failed_attempts: u32,
}

impl Committed {
    /// Adds what a later commit made durable, after this one's.
    fn absorb(&mut self, mut later: Committed) {
        self.alerts.append(&mut later.alerts);
        self.dead_letters.append(&mut later.dead_letters);
        self.failed_attempts += later.failed_attempts;
    }
}

/// What a commit stages, for the caller to add to the same write
/// ([`Engine::commit_with`]).
pub struct Staged<'a> {
    pub alerts: &'a [Alert],
    /// Ids of the alerts supervisors are not sent (§11.4).
    pub quiet: &'a FxHashSet<String>,
    /// Cases reopened by a relapse, as they stand.
    pub reopened: &'a [crate::store::cases::Case],
    /// The `by-account` records this commit's state wrote, when account
    /// tasks read them elsewhere ([`Engine::send_accounts_away`]): the
    /// caller stages them in the exchange's outbox in this batch, or they
    /// are lost. Empty otherwise.
    pub leaving: &'a [crate::engine::repartition::Outgoing],
    /// The dead letters staged for this commit ([`Engine::stage_dead_letter`]:
    /// an account task's refused decisions), for a caller that sends them
    /// on with its alerts.
    pub dead: &'a [DeadLetter],
}

/// A commit handed to RocksDB on another thread, not yet durable.
pub(super) struct InFlight {
    /// The write.
    pub(super) write: PendingWrite,
    /// Ids of its alerts: [`Engine::emit`] must not raise them again
    /// before the store has them.
    pub(super) alert_ids: FxHashSet<String>,
    /// What it makes durable, returned when it lands.
    pub(super) committed: Committed,
}

impl Engine {
    /// Cached entries changed since the last commit, which the next one
    /// rewrites whole (each beneficiary with its roster, each account with
    /// its window). Waits for the account stage.
    pub fn changed_entries(&mut self) -> Result<usize, EngineError> {
        self.drain()?;
        Ok(self.changed_so_far())
    }

    /// [`Engine::changed_entries`] without waiting: the account stage's
    /// count is the one it last reported, so this is never more than the
    /// true count (a batch's changed entries only grow until it commits).
    fn changed_so_far(&self) -> usize {
        self.lanes.iter().map(|l| l.changed()).sum::<usize>() + self.accounts.changed() + self.keys.changed() + self.decision_cases.changed()
    }

    /// Whether a batch of `records` should be committed now: at `max`
    /// records, or from `min` on once it holds at least
    /// [`RECORDS_PER_REWRITE`] records for each entry it changed. A small
    /// district thus commits every `min` records, while a large one, whose
    /// batches change an entry for nearly every record, lets them grow
    /// until each rewrite carries a few records' changes.
    pub fn batch_full(&mut self, records: usize, min: usize, max: usize) -> Result<bool, EngineError> {
        if records >= max {
            return Ok(true);
        }
        // The count so far is a lower bound: when it already says "not
        // yet", so would the exact count, and the account stage is not
        // waited for (which would stall the pipeline at every record).
        if records < min || records < RECORDS_PER_REWRITE * self.changed_so_far() {
            return Ok(false);
        }
        Ok(records >= RECORDS_PER_REWRITE * self.changed_entries()?)
    }

    /// Stages a dead letter for a record the engine rejected.
    pub fn stage_dead_letter(&mut self, dl: DeadLetter) {
        self.staged_dead.push(dl);
    }

    /// Commits everything staged, with `position` as the input reached.
    pub fn commit(&mut self, position: Option<SortKey>) -> Result<Committed, EngineError> {
        if self.wire.as_ref().is_some_and(|w| w.accounts_away()) {
            return Err(EngineError::Repartition("the accounts' records leave with the commit: commit with commit_with and stage Staged::leaving".into()));
        }
        self.commit_with(position, |_, _| Ok(()))
    }

    /// Commits everything staged and, in the same atomic write, what `extra`
    /// adds for the staged alerts (the streaming service's input offsets
    /// and outbox entries). A commit still being written in the background
    /// lands first; what it made durable is returned with this one.
    pub fn commit_with(
        &mut self,
        position: Option<SortKey>,
        extra: impl FnOnce(&mut Batch<'_>, Staged<'_>) -> Result<(), EngineError>,
    ) -> Result<Committed, EngineError> {
        self.drain()?;
        let mut landed = self.land()?;
        // A handle of its own, so the batch does not borrow the engine.
        let store = self.store.clone();
        let mut batch = store.batch_with_capacity(self.batch_capacity());
        // Kept until the write succeeds, as everything staged is.
        let leaving = self.wire.as_ref().map_or(&[][..], |w| &w.leaving[..]);
        extra(&mut batch, Staged { alerts: &self.staged_alerts, quiet: &self.quiet_ids, reopened: &self.reopened, leaving, dead: &self.staged_dead })?;
        if let Some(s) = self.wire.as_ref().and_then(|w| w.away_state()) {
            batch.put(Cf::Meta, keys::META_ACCOUNTS_AWAY, &s)?;
        }
        self.fill(&mut batch, position, false)?;
        let failed_attempts = match &mut self.on_write_failure {
            Some(policy) => store.commit_retrying(batch, policy.as_mut())?,
            None => {
                store.commit(batch)?;
                0
            }
        };
        for lane in &mut self.lanes {
            lane.trim();
        }
        self.accounts.trim()?;
        self.keys.trim();
        self.decision_cases.trim();
        self.staged_ids.clear();
        self.quiet_ids.clear();
        self.reopened.clear();
        if let Some(w) = &mut self.wire {
            w.leaving.clear();
        }
        landed.absorb(Committed {
            alerts: std::mem::take(&mut self.staged_alerts),
            dead_letters: std::mem::take(&mut self.staged_dead),
            failed_attempts,
        });
        Ok(landed)
    }

    /// Commits everything staged in the background and returns at once,
    /// with what the previous background commit made durable (it is
    /// waited for first): the caller applies the next records while
    /// RocksDB writes these. Reads see the batch being written (the
    /// months, timers and alert ids in it are kept in memory, and the
    /// caches keep its entries) until it lands. The file audit commits
    /// this way; with a write-failure policy set (the service), this is
    /// [`Engine::commit`].
    pub fn commit_in_background(&mut self, position: Option<SortKey>) -> Result<Committed, EngineError> {
        if self.on_write_failure.is_some() || self.wire.as_ref().is_some_and(|w| w.accounts_away()) {
            return self.commit(position);
        }
        self.drain()?;
        let landed = self.land()?;
        let store = self.store.clone();
        let mut batch = store.batch_with_capacity(self.batch_capacity());
        self.fill(&mut batch, position, true)?;
        // The months, a new entry for most payments, are put into the
        // batch by the writing thread.
        let months: Vec<_> = self.lanes.iter_mut().map(|l| l.months.hand_off()).collect();
        let segment = self.progress.commits;
        let write = store.commit_in_background(
            batch,
            Box::new(move |b| {
                for m in &months {
                    months::put_all(b, m, segment);
                }
            }),
        );
        // The file audit sends nothing to supervisors: nothing is quiet,
        // no case event is announced.
        self.quiet_ids.clear();
        self.reopened.clear();
        self.in_flight = Some(InFlight {
            write,
            alert_ids: std::mem::take(&mut self.staged_ids),
            committed: Committed {
                alerts: std::mem::take(&mut self.staged_alerts),
                dead_letters: std::mem::take(&mut self.staged_dead),
                failed_attempts: 0,
            },
        });
        Ok(landed)
    }

    /// Waits for the commit being written in the background, if any, and
    /// returns what it (and any that landed earlier) made durable.
    pub(super) fn land(&mut self) -> Result<Committed, EngineError> {
        let mut landed = std::mem::take(&mut self.landed);
        let Some(f) = self.in_flight.take() else { return Ok(landed) };
        f.write.wait()?;
        for lane in &mut self.lanes {
            lane.landed();
        }
        self.accounts.landed()?;
        self.keys.landed();
        self.decision_cases.landed();
        landed.absorb(f.committed);
        Ok(landed)
    }

    /// Room to reserve for the next batch: twice the last one's size
    /// (months aside), plus the months pending now with a quarter more.
    ///
    /// A batch that outgrows its reservation is copied whole into one
    /// twice as large (RocksDB's batch is one C++ string), and for that
    /// moment both are in memory: on a 16-year ledger, where batches vary
    /// from 8 to 20 MiB, that copy was 108 MiB of the peak (heaptrack)
    /// and most of what its peak RSS had over a 4-year ledger's. Room
    /// reserved and never written costs address space, not memory: a
    /// reservation this large is mapped fresh, and its pages become
    /// resident only when written.
    fn batch_capacity(&self) -> usize {
        let months = self.lanes.iter().map(|l| l.months.pending_bytes()).sum::<usize>();
        2 * self.batch_bytes + months + months / 4
    }

    /// Puts everything staged, and the progress, into `batch`; with
    /// `in_flight`, all but the months (see [`Engine::commit_in_background`]).
    fn fill(&mut self, batch: &mut Batch<'_>, position: Option<SortKey>, in_flight: bool) -> Result<(), EngineError> {
        for lane in &mut self.lanes {
            lane.flush(&self.store, batch, in_flight)?;
        }
        self.accounts.flush(in_flight, |(cf, k, v)| match v {
            Some(v) => batch.put_raw(cf, &k, &v),
            None => batch.delete(cf, &k),
        })?;
        self.keys.flush(batch, in_flight)?;
        self.decision_cases.flush(batch, in_flight)?;
        for k in self.cleared_pending.drain(..) {
            batch.delete(Cf::Cases, &k);
        }
        for a in &self.staged_alerts {
            self.progress.alert_seq += 1;
            batch.put_raw(Cf::Alerts, a.alert_id.as_bytes(), &serde_json::to_vec(a)?);
            batch.put_raw(Cf::AlertLog, &keys::alert_seq(self.progress.alert_seq), a.alert_id.as_bytes());
            crate::store::alert_index::stage(batch, self.progress.alert_seq, a);
        }
        for d in &self.staged_dead {
            self.progress.dead_seq += 1;
            batch.put_raw(Cf::DeadLetters, &keys::alert_seq(self.progress.dead_seq), &serde_json::to_vec(d)?);
        }
        if position.is_some() {
            self.progress.position = position;
        }
        self.progress.commits += 1;
        batch.put(Cf::Meta, keys::META_PROGRESS, &self.progress)?;
        // The next batch reserves this size plus its months.
        self.batch_bytes = batch.size();
        tracing::debug!(commit = self.progress.commits, bytes = self.batch_bytes, "batch filled (months aside)");
        if !in_flight {
            for lane in &mut self.lanes {
                lane.months.flush(batch, self.progress.commits);
            }
        }
        Ok(())
    }

    /// Every alert committed so far, in the order raised.
    pub fn committed_alerts(&self) -> impl Iterator<Item = Result<Alert, EngineError>> + '_ {
        self.store.values(Cf::AlertLog).map(move |id| {
            let id = id?;
            let json = self.store.get_raw(Cf::Alerts, &id)?.unwrap_or_default();
            Ok(serde_json::from_slice(&json)?)
        })
    }

    /// Every dead letter the engine committed so far.
    pub fn committed_dead_letters(&self) -> impl Iterator<Item = Result<DeadLetter, EngineError>> + '_ {
        self.store.values(Cf::DeadLetters).map(|v| Ok(serde_json::from_slice(&v?)?))
    }
}
