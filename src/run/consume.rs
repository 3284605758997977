//! The main loop of `paywatch run`, on its own thread:
//! poll → decode → hold for order → apply → commit (state + offsets +
//! outbox, one `WriteBatch`) → wake the publisher.

use super::{RunError, StreamMeta};
use crate::clock::Clock;
use crate::config::Config;
use crate::decode::{decode_json_bytes, Limits, Reason, Rejection};
use crate::engine::{Engine, Outcome};
use crate::http::{Health, Status};
use crate::metrics::Metrics;
use crate::model::Record;
use crate::sink::outbox::{self, OutMessage, Source};
use crate::sink::{case_events, webhook};
use crate::source::kafka::{Incoming, KafkaSource, Rebalanced};
use crate::source::offsets::{Admit, OffsetBook, Part};
use crate::source::positions::{AtCheck, OnMessage, Positions};
use crate::source::reorder::{Held, Reorder};
use crate::store::{keys, Cf};
use rustc_hash::FxHashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

mod inputs;

/// Messages read per poll round before releasing and committing.
const READ_ROUND: usize = 4096;
/// How often partitions are checked for being caught up.
const CHECK_EVERY: Duration = Duration::from_millis(50);
/// A partition behind its end that delivers nothing for this long, while
/// it may be read, is read again from its beginning (see
/// `KafkaSource::rewind`).
const STUCK_AFTER: Duration = Duration::from_secs(3);
/// How often the broker is asked for the end of a partition that has
/// delivered nothing yet.
const ASK_END_EVERY: Duration = Duration::from_secs(1);

/// The handles the loop shares with the rest of the service.
pub struct Shared {
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    /// Wakes the outbox publisher after a commit.
    pub wake: Arc<Notify>,
    /// Wakes the webhook dispatcher after a commit.
    pub wake_webhooks: Arc<Notify>,
    /// `[kafka.accounts]`: where the accounts' records leave.
    pub away: Option<super::accounts::Away>,
}

pub struct Consume {
    /// Webhook routes: deliveries are queued in the commit.
    routes: Vec<crate::config::RouteConfig>,
    /// `[cases]`: the deadline a `case.relapsed` event names.
    cases_cfg: crate::config::CasesConfig,
    tz: crate::model::Tz,
    wake_webhooks: Arc<Notify>,
    pub engine: Engine,
    pub source: KafkaSource,
    /// Offsets as state; shared with the rebalance callback.
    pub book: Arc<Mutex<OffsetBook>>,
    pub reorder: Reorder,
    /// Committed with every batch.
    pub meta: StreamMeta,
    /// Size limits; the event-time bound is set from the clock for each
    /// message read (`decode`).
    pub limits: Limits,
    /// `input.max_future`, in milliseconds.
    max_future_ms: i64,
    /// The largest message the producer may send: dead letters are cut
    /// to fit.
    max_message_bytes: usize,
    /// Records per batch: `engine.batch_records` and `batch_records_max`
    /// (see `Engine::batch_full`).
    pub batch_records: (usize, usize),
    /// Longest time between commits (`kafka.commit_interval`).
    pub commit_interval: Duration,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    /// Wakes the outbox publisher after a commit.
    pub wake: Arc<Notify>,
    /// Dead letters staged for the next commit.
    staged: Vec<OutMessage>,
    /// When each record applied in this batch was read.
    read_at: Vec<Instant>,
    /// Per partition, the current read pass: how far it has read (for
    /// "caught up") and whether the log still matches the stored offsets.
    positions: Positions,
    /// A topic was stopped: commit (the stop is stored) even with nothing
    /// applied.
    must_commit: bool,
    /// When the stopped topics were last logged (once a minute).
    stopped_logged: Option<Instant>,
    /// When a record keyed otherwise than the contract says was last
    /// logged (once a minute; the counter has them all).
    miskeyed_logged: Option<Instant>,
    /// When a record on the wrong partition for its key was last logged.
    mispartitioned_logged: Option<Instant>,
    /// When each partition last delivered a message, or was last left
    /// unread on purpose (the stuck-partition clock runs only while it may
    /// be read).
    last_seen: FxHashMap<Part, Instant>,
    /// When each partition's end was last asked of the broker.
    asked_end: FxHashMap<Part, Instant>,
    /// When RocksDB's figures were last copied into the metrics.
    store_observed: Instant,
    /// Every partition of the input topics, from the broker's metadata
    /// (refreshed at each assignment and every minute).
    all_parts: std::collections::BTreeSet<Part>,
    /// When the input partitions were last read from the metadata.
    all_parts_at: Instant,
    /// Since when another member of the group has held some of them.
    shared_since: Option<Instant>,
    /// Input partitions another member of the group holds, as last
    /// counted: while there are any, nothing is applied (a judgement on
    /// half of a person's records would be wrong) and reading stops at
    /// half the reorder buffer.
    elsewhere: usize,
    /// When that was last logged (once a minute).
    shared_logged: Option<Instant>,
    /// `kafka.revoked_grace`: how long another member may hold partitions
    /// (a rebalance) before this instance says it is not alone.
    revoked_grace: Duration,
    /// `kafka.group_id`, for the message.
    group_id: String,
    /// Totals for `/status`.
    status: Status,
    /// `[kafka.accounts]`: the exchange's outbox, staged in each commit.
    away: Option<super::accounts::Away>,
}

impl Consume {
    pub fn new(cfg: &Config, engine: Engine, source: KafkaSource, book: Arc<Mutex<OffsetBook>>, meta: StreamMeta, shared: Shared) -> Consume {
        let Shared { clock, metrics, health, wake, wake_webhooks, away } = shared;
        metrics.lanes.set(i64::from(engine.lanes()));
        let status = Status { lanes: engine.lanes(), ..Status::default() };
        Consume {
            routes: cfg.webhooks.routes.clone(),
            cases_cfg: cfg.cases.clone(),
            tz: cfg.tz(),
            wake_webhooks,
            away,
            engine,
            source,
            book,
            reorder: Reorder::new(cfg.kafka.max_out_of_order, cfg.kafka.reorder_buffer_records, cfg.kafka.revoked_grace),
            meta,
            limits: cfg.limits(clock.now()),
            max_future_ms: cfg.max_future_ms(),
            max_message_bytes: cfg.kafka.max_message_bytes(),
            batch_records: (cfg.engine.batch_records, cfg.engine.batch_records_max),
            commit_interval: cfg.kafka.commit_interval,
            clock,
            metrics,
            health,
            wake,
            staged: Vec::new(),
            read_at: Vec::new(),
            positions: Positions::default(),
            must_commit: false,
            stopped_logged: None,
            asked_end: FxHashMap::default(),
            last_seen: FxHashMap::default(),
            store_observed: Instant::now().checked_sub(Duration::from_secs(2)).unwrap_or_else(Instant::now),
            all_parts: Default::default(),
            all_parts_at: Instant::now(),
            shared_since: None,
            elsewhere: 0,
            miskeyed_logged: None,
            mispartitioned_logged: None,
            shared_logged: None,
            revoked_grace: cfg.kafka.revoked_grace,
            group_id: cfg.kafka.group_id.clone(),
            status,
        }
    }

    /// Runs until `stop` is set, then commits the batch in hand.
    pub fn run(mut self, stop: Arc<AtomicBool>) -> Result<(), RunError> {
        self.engine.on_write_failure(super::supervise::write_failure_policy(&self.health, &self.metrics, &stop, self.engine.store().path()));
        let mut last_commit = Instant::now();
        let mut last_check = Instant::now();
        let mut dirty = false;
        let mut in_batch = 0usize;
        let mut ready = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            // 1. Read: the common queue first (callbacks, and messages fetched
            // before a partition got its own queue), then the partitions'
            // own queues that may be read now; wait a little when idle.
            let mut read = self.read_common();
            loop {
                let events = self.source.rebalanced();
                if events.is_empty() {
                    break;
                }
                for ev in events {
                    self.rebalanced(ev)?;
                }
                dirty = true;
                read += self.read_common();
            }
            let readable = self.reorder.readable();
            for p in self.reorder.assigned().filter(|p| !readable.contains(p)).collect::<Vec<_>>() {
                self.last_seen.insert(p, Instant::now());
            }
            let hold = self.elsewhere > 0 && self.reorder.half_full();
            let readable: Vec<Part> = readable.into_iter().filter(|p| !hold && !self.is_stopped(*p)).collect();
            for p in readable {
                let mut n = 0;
                while n < READ_ROUND {
                    let Some(m) = self.source.poll_part(p) else { break };
                    self.read(m);
                    n += 1;
                }
                read += n;
            }
            if read == 0 {
                if let Some(m) = self.source.poll(Duration::from_millis(10)) {
                    self.read(m);
                    read += 1;
                }
            }
            dirty |= read > 0 || std::mem::take(&mut self.must_commit);
            if read == 0 || last_check.elapsed() >= CHECK_EVERY {
                self.check_caught_up();
                self.check_alone();
                last_check = Instant::now();
            }
            // 2. Apply what the watermark releases, in event-time order (and,
            // beyond the buffer's bound, the oldest out of order) — only
            // while this instance holds every input partition.
            let forced = if self.elsewhere == 0 {
                self.reorder.release(self.clock.now(), &mut ready);
                self.reorder.overflow(&mut ready)
            } else {
                0
            };
            if forced > 0 {
                self.metrics.reorder_overflow.inc_by(forced as u64);
                tracing::debug!(forced, "reorder buffer full: oldest records applied before the watermark passed them");
            }
            if !ready.is_empty() {
                // Released together: with several lanes, runs of them are
                // applied on every core (`engine::parallel`).
                let records: Vec<(&Record, Option<&crate::engine::Opened>)> = ready.iter().map(|h| (&h.record, None)).collect();
                let in_runs = self.engine.records_in_runs();
                let outcomes = self.engine.apply_many(&records)?;
                drop(records);
                let ran = self.engine.records_in_runs() - in_runs;
                self.metrics.records_in_runs.inc_by(ran);
                self.status.records_in_runs += ran;
                for (h, outcome) in ready.drain(..).zip(outcomes) {
                    self.settle(h, outcome);
                    in_batch += 1;
                    dirty = true;
                }
            }
            // 3. Commit state, offsets and outbox together.
            let (min, max) = self.batch_records;
            if dirty && (self.engine.batch_full(in_batch, min, max)? || last_commit.elapsed() >= self.commit_interval) {
                self.commit()?;
                dirty = false;
                in_batch = 0;
                last_commit = Instant::now();
            }
            if read == 0 && !dirty {
                self.report();
            }
        }
        self.commit()?;
        tracing::info!(held = self.reorder.len(), "stopped reading; batch in hand committed (held records are read again at the next start)");
        Ok(())
    }

    /// Everything waiting on the common queue (which also serves the
    /// rebalance callback).
    fn read_common(&mut self) -> usize {
        let mut n = 0;
        while let Some(m) = self.source.poll(Duration::ZERO) {
            self.read(m);
            n += 1;
        }
        n
    }

    /// One message: skip it if applied before, else decode and hold it, or
    /// dead-letter it.
    fn read(&mut self, m: Incoming) {
        if self.is_stopped(m.part) {
            // Left unread (the offset book is untouched): read again once
            // an operator has reset the topic.
            return;
        }
        let stored = self.book.lock().unwrap_or_else(|e| e.into_inner()).position(m.part);
        match self.positions.on_message(m.part, m.offset, stored) {
            OnMessage::Rewind => {
                tracing::warn!(
                    topic = self.source.topic(m.part.kind()),
                    partition = m.part.partition,
                    got = m.offset,
                    "the broker skipped records after a seek; reading the partition again from its beginning (applied records are skipped)"
                );
                self.rewind(m.part);
                return;
            }
            OnMessage::Stop(mismatch) => {
                self.stop_topic(mismatch);
                return;
            }
            OnMessage::Read { give_up_below } => {
                if let Some(below) = give_up_below {
                    self.give_up(m.part, below);
                }
            }
        }
        self.last_seen.insert(m.part, Instant::now());
        self.source.brokers_up();
        let admit = self.book.lock().unwrap_or_else(|e| e.into_inner()).admit(m.part, m.offset);
        if admit == Admit::Seen {
            return;
        }
        match self.decode(m.part, m.value.as_deref()) {
            Ok(record) => {
                self.check_key(m.part, m.key.as_deref(), &record);
                self.reorder.push(Held {
                    record,
                    part: m.part,
                    offset: m.offset,
                    raw: m.value.unwrap_or_default(),
                    key: m.key,
                    read_at: Instant::now(),
                })
            }
            Err(r) => {
                self.dead_letter(m.part, m.offset, m.key.as_deref(), m.value.as_deref().unwrap_or_default(), &r);
                self.book.lock().unwrap_or_else(|e| e.into_inner()).done(m.part, m.offset);
            }
        }
    }

    fn decode(&self, part: Part, value: Option<&[u8]>) -> Result<Record, Rejection> {
        let bytes = value.ok_or_else(|| Rejection::new(Reason::BadJson, "message has no value (a tombstone)"))?;
        let limits = self.limits.read_at(self.clock.now(), self.max_future_ms);
        decode_json_bytes(part.kind(), bytes, limits)
    }

    /// What became of an applied record: counted, dead-lettered, and done
    /// in the offset book.
    fn settle(&mut self, h: Held, outcome: Outcome) {
        let topic = h.part.kind().code();
        match outcome {
            Outcome::Applied => self.metrics.records.with_label_values(&[topic, "ok"]).inc(),
            Outcome::Redelivered => self.metrics.records.with_label_values(&[topic, "redelivered"]).inc(),
            Outcome::Rejected(r) => self.dead_letter(h.part, h.offset, h.key.as_deref(), &h.raw, &r),
        }
        self.book.lock().unwrap_or_else(|e| e.into_inner()).done(h.part, h.offset);
        self.read_at.push(h.read_at);
        self.status.applied += 1;
    }

    fn dead_letter(&mut self, part: Part, offset: i64, key: Option<&[u8]>, value: &[u8], r: &Rejection) {
        let topic = self.source.topic(part.kind()).to_owned();
        tracing::debug!(topic, partition = part.partition, offset, reason = r.reason.code(), "record dead-lettered");
        let src = Source { topic: &topic, partition: part.partition, offset, key, value };
        self.staged.push(OutMessage::dead_letter(&src, &r.to_string(), self.clock.now().0, self.max_message_bytes));
        self.metrics.records.with_label_values(&[part.kind().code(), "dead_letter"]).inc();
        self.metrics.dead_letters.with_label_values(&[r.reason.code()]).inc();
        self.status.dead_letters += 1;
    }

    fn rebalanced(&mut self, ev: Rebalanced) -> Result<(), RunError> {
        match ev {
            Rebalanced::Assigned(parts) => {
                let book = self.book.lock().unwrap_or_else(|e| e.into_inner());
                for p in &parts {
                    self.positions.assigned(*p, book.seek_to(*p));
                    self.last_seen.insert(*p, Instant::now());
                }
                drop(book);
                self.source.split(&parts);
                self.reorder.assign(&parts);
                self.hold_stopped();
                let all = self.source.all_partitions(Duration::from_secs(2));
                // Before anything assigned is read: a partitioned engine
                // needs a person's records on one partition number.
                crate::source::copartition::check(&self.source.topics(), &all)?;
                self.reorder.know(&all, self.clock.now());
                if !all.is_empty() {
                    self.all_parts = all.into_iter().collect();
                    self.all_parts_at = Instant::now();
                }
            }
            Rebalanced::Revoked(parts) => {
                let dropped = self.reorder.revoke(&parts, self.clock.now());
                self.source.unsplit(&parts);
                let mut book = self.book.lock().unwrap_or_else(|e| e.into_inner());
                for p in &parts {
                    book.release(*p);
                }
                drop(book);
                for p in &parts {
                    self.positions.revoked(*p);
                    let _ = self.metrics.lag.remove_label_values(&[self.source.topic(p.kind()), &p.partition.to_string()]);
                }
                if dropped > 0 {
                    tracing::info!(dropped, "held records of revoked partitions dropped; they are read again when reassigned");
                }
            }
        }
        Ok(())
    }

    /// A partition whose end (as last fetched) has been read counts as
    /// caught up: it holds the watermark back no more.
    fn check_caught_up(&mut self) {
        let parts: Vec<Part> = self.reorder.assigned().collect();
        let mut lag = Some(0i64);
        for p in parts {
            if self.is_stopped(p) {
                lag = None;
                continue;
            }
            let at = self.positions.next(p).unwrap_or(0);
            // The end as fetch responses report it: the only figure compared
            // with the stored position (a broker's ListOffsets answer may
            // lag behind a batch, tansu's does).
            let fetched = self.source.high_watermark(p);
            let mut high = fetched;
            if high.is_none() && self.asked_end.get(&p).is_none_or(|t| t.elapsed() >= ASK_END_EVERY) {
                // Nothing fetched from it yet (e.g. resumed at its end).
                self.asked_end.insert(p, Instant::now());
                high = self.source.fetch_high_watermark(p, Duration::from_millis(500));
            }
            let caught_up = high.is_some_and(|h| at >= h);
            let seen = *self.last_seen.entry(p).or_insert_with(Instant::now);
            let (stored, unread) = {
                let book = self.book.lock().unwrap_or_else(|e| e.into_inner());
                (book.position(p), book.unread_pending(p))
            };
            // Behind its end yet silent, or at its end with records read in
            // an earlier run and never delivered again: the broker skipped
            // them (a fetch starting inside a record batch), or they are
            // gone (given up after one pass from the log's start).
            let mut stuck = !caught_up && high.is_some();
            match self.positions.check(p, fetched, stored, unread) {
                AtCheck::Stop(m) => {
                    self.stop_topic(m);
                    lag = None;
                    continue;
                }
                AtCheck::GiveUpBelow(below) => self.give_up(p, below),
                AtCheck::Rewind => stuck = true,
                AtCheck::Fine => {}
            }
            if stuck && seen.elapsed() >= STUCK_AFTER {
                tracing::warn!(topic = self.source.topic(p.kind()), partition = p.partition, at, ?high, "partition does not deliver what it holds; reading it again from the beginning (applied records are skipped)");
                self.rewind(p);
            }
            tracing::trace!(source = p.source, partition = p.partition, at, ?high, caught_up, "partition position");
            self.reorder.set_caught_up(p, caught_up);
            let behind = high.map(|h| (h - at).max(0));
            // The gauge is measured from the stored position (what a restart
            // would read again), `/status` from what has been read.
            if let Some(h) = high {
                let stored = self.book.lock().unwrap_or_else(|e| e.into_inner()).seek_to(p).unwrap_or(0);
                self.metrics.lag.with_label_values(&[self.source.topic(p.kind()), &p.partition.to_string()]).set((h - stored).max(0));
            }
            lag = lag.zip(behind).map(|(a, b)| a + b);
        }
        self.status.lag = lag;
    }

    /// One atomic write: the engine's state and alerts, the outbox entries
    /// for them and for the dead letters, and the offsets.
    fn commit(&mut self) -> Result<(), RunError> {
        let started = Instant::now();
        let now_ms = self.clock.now().0;
        let staged = std::mem::take(&mut self.staged);
        let dead = staged.len();
        self.meta.offsets = self.book.lock().unwrap_or_else(|e| e.into_inner()).to_stored();
        let meta = &mut self.meta;
        let (routes, cases_cfg, tz) = (&self.routes, &self.cases_cfg, self.tz);
        let away = &mut self.away;
        let committed = self.engine.commit_with(None, |batch, staged_now| {
            if let Some(a) = away.as_mut() {
                a.outbox.stage(batch, staged_now.leaving)?;
            }
            let quiet = staged_now.quiet;
            for a in staged_now.alerts {
                outbox::stage(batch, &mut meta.outbox_seq, &OutMessage::alert(a, now_ms)?)?;
                // An alert of a case closed as false_positive is published
                // but not sent to supervisors again (§11.4).
                if !quiet.contains(&a.alert_id) {
                    webhook::stage(batch, &mut meta.outbox_seq, routes, a, now_ms)?;
                }
            }
            case_events::stage_relapsed(batch, &mut meta.outbox_seq, routes, staged_now.reopened, cases_cfg, tz, now_ms)?;
            for m in &staged {
                outbox::stage(batch, &mut meta.outbox_seq, m)?;
            }
            batch.put(Cf::Meta, keys::META_STREAM, &*meta)?;
            Ok(())
        })?;
        if committed.failed_attempts > 0 {
            *self.health.store_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
            tracing::warn!(
                failed_attempts = committed.failed_attempts,
                "the state directory can be written again; the batch in hand is committed and consuming resumes"
            );
        }
        let elapsed = started.elapsed();
        self.metrics.commit_seconds.observe(elapsed.as_secs_f64());
        for t in self.read_at.drain(..) {
            self.metrics.latency_seconds.observe(t.elapsed().as_secs_f64());
        }
        for a in &committed.alerts {
            let township = self.metrics.township_label(&a.township);
            self.metrics.alerts.with_label_values(&[a.rule.code(), a.severity.code(), &township]).inc();
        }
        self.status.alerts += committed.alerts.len() as u64;
        self.metrics.outbox_depth.add((committed.alerts.len() + dead) as i64);
        if let Some(a) = &self.away {
            a.wake.notify_one();
        }
        if !committed.alerts.is_empty() || dead > 0 {
            self.wake.notify_one();
            self.wake_webhooks.notify_waiters();
        }
        let positions: Vec<(Part, i64)> = {
            let book = self.book.lock().unwrap_or_else(|e| e.into_inner());
            self.reorder.assigned().filter_map(|p| book.seek_to(p).map(|o| (p, o))).collect()
        };
        self.source.commit_for_lag(positions.into_iter());
        self.report();
        Ok(())
    }

    /// Publishes the loop's state for `/readyz`, `/status` and the gauges.
    fn report(&mut self) {
        if self.store_observed.elapsed() >= Duration::from_secs(1) {
            self.metrics.observe_store(self.engine.store().stats());
            self.metrics.observe_repartition(self.engine.repartition_volume());
            self.store_observed = Instant::now();
        }
        let assigned = self.reorder.assigned().count();
        let down = self.source.brokers_down();
        let writable = self.health.store_error.lock().unwrap_or_else(|e| e.into_inner()).is_none();
        let alone = self.check_alone();
        let inputs_ok = self.report_stopped();
        let ready = assigned > 0 && !down && writable && alone && inputs_ok;
        self.health.ready.store(ready, Ordering::Relaxed);
        self.metrics.ready.set(i64::from(ready));
        self.metrics.reorder.set(self.reorder.len() as i64);
        let wm = self.engine.progress().watermark;
        if let Some(w) = wm {
            self.metrics.watermark.set(w.0 / 1000);
            self.metrics.watermark_delay.set((self.clock.now().0 - w.0) / 1000);
        }
        let s = &mut self.status;
        s.assigned_partitions = assigned;
        s.owned.clear();
        for p in self.reorder.assigned() {
            s.owned.entry(self.source.topic(p.kind()).to_owned()).or_default().push(p.partition);
        }
        s.held_elsewhere = usize::try_from(self.metrics.partitions_elsewhere.get()).unwrap_or(0);
        s.buffered = self.reorder.len();
        s.outbox = self.metrics.outbox_depth.get();
        s.watermark = wm.map(|w| crate::model::Tz::default().format(w));
        s.brokers_down = down;
        s.counts = self.engine.progress().counts.clone();
        s.idle = self.reorder.idle() && s.lag == Some(0) && s.outbox == 0 && assigned > 0;
        s.stopped_topics = self.meta.stopped.iter().map(|(t, m)| (t.clone(), m.describe(t))).collect();
        *self.health.status.lock().unwrap_or_else(|e| e.into_inner()) = s.clone();
    }
}
