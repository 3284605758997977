//! Whether what the loop reads is whole: input topics whose log no longer
//! matches the stored offsets are stopped (hardening item 8), pending
//! offsets the broker lost are given up, a second member of the consumer
//! group is reported (hardening item 12), and records keyed otherwise than
//! the contract says are counted (#16: one person, one partition).

use super::Consume;
use crate::model::Record;
use crate::source::offsets::Part;
use crate::source::positions::Mismatch;
use std::time::{Duration, Instant};

/// What an operator does about a stopped topic (log, `/readyz`).
const STOP_ADVICE: &str = "this topic is not read any more (the other inputs wait for it at the watermark); \
     if the topic was recreated or refilled on purpose, stop paywatch and run `paywatch offsets reset --config <file> --topic <topic>` \
     to read it again from its first offset (records applied before are recognised and counted as redelivered); \
     if not, re-publish what is missing from the finance department's export first (README, Hardening: an input topic that no longer matches the stored offsets)";

impl Consume {
    /// Reads `p` again from the log's start.
    pub(super) fn rewind(&mut self, p: Part) {
        self.source.rewind(p);
        self.positions.rewound(p);
        self.last_seen.insert(p, Instant::now());
    }

    /// Pending offsets of `p` below `below` the broker no longer holds.
    pub(super) fn give_up(&mut self, p: Part, below: i64) {
        let n = self.book.lock().unwrap_or_else(|e| e.into_inner()).give_up_below(p, below);
        if n > 0 {
            let topic = self.source.topic(p.kind()).to_owned();
            self.metrics.pending_given_up.with_label_values(&[&topic]).inc_by(n as u64);
            self.must_commit = true;
            tracing::warn!(
                topic,
                partition = p.partition,
                given_up = n,
                below,
                "records read before but not yet applied are no longer on the broker (retention or compaction removed them); given up"
            );
        }
    }

    pub(super) fn is_stopped(&self, p: Part) -> bool {
        !self.meta.stopped.is_empty() && self.meta.stopped.contains_key(self.source.topic(p.kind()))
    }

    /// The log of a partition no longer matches its stored position: stop
    /// reading the whole topic (its partitions hold the watermark where
    /// they were), store the stop, and say so.
    pub(super) fn stop_topic(&mut self, m: Mismatch) {
        let kind = Part { source: m.source, partition: m.partition }.kind();
        let topic = self.source.topic(kind).to_owned();
        if self.meta.stopped.contains_key(&topic) {
            return;
        }
        tracing::error!("{}; {}", m.describe(&topic), STOP_ADVICE);
        self.meta.stopped.insert(topic.clone(), m);
        self.must_commit = true;
        self.stopped_logged = Some(Instant::now());
        self.hold_stopped();
    }

    /// Pauses the assigned partitions of stopped topics and keeps them
    /// from counting as caught up.
    pub(super) fn hold_stopped(&mut self) {
        let parts: Vec<Part> = self.reorder.assigned().filter(|p| self.is_stopped(*p)).collect();
        if parts.is_empty() {
            return;
        }
        self.source.pause(&parts);
        for p in parts {
            self.reorder.set_caught_up(p, false);
            self.metrics.input_stopped.with_label_values(&[self.source.topic(p.kind())]).set(1);
        }
    }

    /// Says which input topics are stopped (`/readyz`, the log once a
    /// minute); true when none is.
    pub(super) fn report_stopped(&mut self) -> bool {
        let mut health = self.health.stopped_inputs.lock().unwrap_or_else(|e| e.into_inner());
        if self.meta.stopped.is_empty() {
            *health = None;
            return true;
        }
        let why: Vec<String> = self.meta.stopped.iter().map(|(t, m)| m.describe(t)).collect();
        let why = why.join("; ");
        if self.stopped_logged.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
            tracing::error!("{why}; {STOP_ADVICE}");
            self.stopped_logged = Some(Instant::now());
        }
        *health = Some(format!("input stopped: {why}; {STOP_ADVICE}"));
        false
    }

    /// Whether this instance holds every input partition, or another
    /// member of the group has held some for no longer than
    /// `kafka.revoked_grace` (a rebalance). paywatch keeps its state in one
    /// state directory, so a second instance in the group would split it
    /// silently. Meanwhile the loop applies nothing (see `elsewhere`);
    /// past the grace this says so on `/readyz` (503), in the log once a
    /// minute and in `paywatch_partitions_held_elsewhere`.
    pub(super) fn check_alone(&mut self) -> bool {
        if self.all_parts_at.elapsed() >= Duration::from_secs(60) {
            let all = self.source.all_partitions(Duration::from_millis(500));
            if !all.is_empty() {
                self.all_parts = all.into_iter().collect();
            }
            self.all_parts_at = Instant::now();
        }
        let mine: std::collections::BTreeSet<Part> = self.reorder.assigned().collect();
        let elsewhere = self.all_parts.iter().filter(|p| !mine.contains(p)).count();
        self.metrics.partitions_elsewhere.set(elsewhere as i64);
        if elsewhere > 0 && self.elsewhere == 0 {
            tracing::info!(elsewhere, "another member holds input partitions: nothing is applied until this instance holds them all");
        }
        self.elsewhere = elsewhere;
        // A member that holds nothing while the partitions exist is not
        // alone either (a second instance; or a broker that handed a
        // restarted member nothing while a dead one was still in the group).
        if elsewhere == 0 {
            self.shared_since = None;
            self.shared_logged = None;
            *self.health.shared.lock().unwrap_or_else(|e| e.into_inner()) = None;
            return true;
        }
        let since = *self.shared_since.get_or_insert_with(Instant::now);
        if mine.is_empty() {
            self.source.rejoin_when_left_out(since);
        }
        if since.elapsed() < self.revoked_grace {
            return true;
        }
        let why = format!(
            "another member of consumer group {:?} has held {elsewhere} of the {} input partitions for {}s: paywatch keeps its state in one state directory and must be the only member of its group (until the partitioned engine); stop the other instance, or give it its own group_id and state directory",
            self.group_id,
            self.all_parts.len(),
            since.elapsed().as_secs()
        );
        if self.shared_logged.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
            tracing::warn!("{why}");
            self.shared_logged = Some(Instant::now());
        }
        *self.health.shared.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
        false
    }

    /// Counts (and logs once a minute) a record whose Kafka key is not the
    /// one the contract gives it: harmless while one instance reads every
    /// partition, but it may put one person's records on several
    /// partitions, which a partitioned engine cannot allow.
    pub(super) fn check_key(&mut self, part: Part, key: Option<&[u8]>, record: &Record) {
        let (field, want) = record.contract_key();
        if key == Some(want.as_bytes()) {
            self.check_partition(part, want.as_bytes());
            return;
        }
        let topic = self.source.topic(part.kind());
        self.metrics.miskeyed.with_label_values(&[topic]).inc();
        if self.miskeyed_logged.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
            let shown = key.map(crate::store::keys::shown).unwrap_or_else(|| "(none)".into());
            tracing::warn!(
                topic = %topic,
                partition = part.partition,
                key = %shown,
                "a record is not keyed by its {field} (contract §1–§3, §8, §10): one person's records may land on several partitions; ask the producer to key every record by it"
            );
            self.miskeyed_logged = Some(Instant::now());
        }
    }

    /// Counts (and logs once a minute) a record keyed as the contract says
    /// but on another partition than Kafka's default partitioner gives that
    /// key (`partition.rs`, docs/contract.md reading 37): a partitioned
    /// engine keeps a person's state with the partition of their key.
    fn check_partition(&mut self, part: Part, key: &[u8]) {
        let n = self.all_parts.iter().filter(|p| p.source == part.source).count() as u32;
        let want = crate::partition::of(key, n);
        if n == 0 || i64::from(want) == i64::from(part.partition) {
            return;
        }
        let topic = self.source.topic(part.kind());
        self.metrics.mispartitioned.with_label_values(&[topic]).inc();
        if self.mispartitioned_logged.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
            tracing::warn!(
                topic = %topic,
                partition = part.partition,
                expected = want,
                partitions = n,
                "a record is not on the partition Kafka's default partitioner (murmur2) gives its key: set the producer's partitioner to murmur2 (librdkafka: partitioner=murmur2_random)"
            );
            self.mispartitioned_logged = Some(Instant::now());
        }
    }
}
