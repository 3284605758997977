//! Every metric paywatch exports, named once here. Labels are bounded:
//! topic, outcome, reason, rule, severity, township, target, partition —
//! never an id, an account or a name.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub const RECORDS: &str = "paywatch_records_total";
pub const DEAD_LETTERS: &str = "paywatch_dead_letters_total";
pub const ALERTS: &str = "paywatch_alerts_total";
pub const PUBLISHED: &str = "paywatch_outbox_published_total";
pub const OUTBOX_DEPTH: &str = "paywatch_outbox_entries";
pub const OUTBOX_PARKED: &str = "paywatch_outbox_parked";
pub const OUTBOX_OLDEST: &str = "paywatch_outbox_oldest_queued_timestamp_seconds";
pub const WATERMARK: &str = "paywatch_watermark_timestamp_seconds";
pub const WATERMARK_DELAY: &str = "paywatch_watermark_delay_seconds";
pub const LAG: &str = "paywatch_consumer_lag_records";
pub const REORDER: &str = "paywatch_reorder_buffer_records";
pub const REORDER_OVERFLOW: &str = "paywatch_reorder_overflow_total";
pub const ENGINE_LANES: &str = "paywatch_engine_lanes";
pub const RECORDS_IN_RUNS: &str = "paywatch_records_in_runs_total";
pub const COMMIT_SECONDS: &str = "paywatch_batch_commit_duration_seconds";
pub const LATENCY_SECONDS: &str = "paywatch_processing_latency_seconds";
pub const READY: &str = "paywatch_ready";
pub const STATE_WRITE_FAILURES: &str = "paywatch_state_write_failures_total";
pub const WEBHOOK_DELIVERIES: &str = "paywatch_webhook_deliveries_total";
pub const WEBHOOK_DEAD: &str = "paywatch_webhook_dead_letters";
pub const WEBHOOK_DUE: &str = "paywatch_webhook_due_deliveries";
pub const TASK_RESTARTS: &str = "paywatch_task_restarts_total";
pub const ROCKSDB_LIVE: &str = "paywatch_rocksdb_live_data_bytes";
pub const ROCKSDB_PENDING_COMPACTION: &str = "paywatch_rocksdb_pending_compaction_bytes";
pub const ROCKSDB_CACHE_HIT_RATIO: &str = "paywatch_rocksdb_block_cache_hit_ratio";
pub const ROCKSDB_MEMORY: &str = "paywatch_rocksdb_memory_bytes";
pub const BUILD_INFO: &str = "paywatch_build_info";
pub const START_TIME: &str = "paywatch_start_time_seconds";
pub const PARTITIONS_ELSEWHERE: &str = "paywatch_partitions_held_elsewhere";
pub const API_ERRORS: &str = "paywatch_api_errors_total";
pub const CASES: &str = "paywatch_cases";
pub const CASES_OVERDUE: &str = "paywatch_cases_overdue";
pub const CASES_RELAPSED: &str = "paywatch_cases_relapsed";
pub const INPUT_STOPPED: &str = "paywatch_input_topic_stopped";
pub const PENDING_GIVEN_UP: &str = "paywatch_pending_offsets_given_up_total";
pub const MISKEYED: &str = "paywatch_records_miskeyed_total";
pub const MISPARTITIONED: &str = "paywatch_records_mispartitioned_total";
pub const CHANGELOG_COMMITS: &str = "paywatch_changelog_commits_total";
pub const CHANGELOG_BYTES: &str = "paywatch_changelog_bytes_total";
pub const CHANGELOG_SNAPSHOTS: &str = "paywatch_changelog_snapshots_total";
pub const CHANGELOG_ERRORS: &str = "paywatch_changelog_errors_total";
pub const CHANGELOG_BEHIND: &str = "paywatch_changelog_behind_changes";
pub const REPARTITION_RECORDS: &str = "paywatch_repartition_records_total";
pub const REPARTITION_BYTES: &str = "paywatch_repartition_bytes_total";
pub const ACTIVE: &str = "paywatch_active";
pub const STANDBY_BEHIND: &str = "paywatch_standby_behind_frames";

/// The registry and its handles.
pub struct Metrics {
    registry: Registry,
    /// Input records by topic and outcome (ok, dead_letter, redelivered).
    pub records: IntCounterVec,
    /// Dead letters by reason code.
    pub dead_letters: IntCounterVec,
    /// Alerts committed by rule, severity and township.
    pub alerts: IntCounterVec,
    /// Outbox messages sent, by target topic and outcome (ok, error).
    pub published: IntCounterVec,
    /// Outbox entries not yet acknowledged.
    pub outbox_depth: IntGauge,
    /// Commits published to the changelog.
    pub changelog_commits: prometheus::IntCounter,
    /// Bytes of changes published to the changelog, by kind (delta,
    /// snapshot).
    pub changelog_bytes: IntCounterVec,
    /// Snapshots published to the changelog.
    pub changelog_snapshots: prometheus::IntCounter,
    /// Failed changelog sessions (broker refused, topic unreadable).
    pub changelog_errors: prometheus::IntCounter,
    /// Changes committed to the state but not yet sent to the changelog.
    pub changelog_behind: IntGauge,
    /// 1 while this instance applies the inputs; 0 while it stands by
    /// (`[kafka.standby]`): the group should have exactly one at 1.
    pub active: IntGauge,
    /// A standby's copy (`[kafka.standby] follow`): changelog frames
    /// published and not yet applied to it; -1 while it has no copy (no
    /// snapshot yet, or it keeps a state of its own that is the newest).
    pub standby_behind: IntGauge,
    /// Outbox messages the broker refused for good, set aside.
    pub outbox_parked: IntGauge,
    /// When the oldest unacknowledged entry was queued (0 when none).
    pub outbox_oldest: IntGauge,
    /// The engine's event-time watermark.
    pub watermark: IntGauge,
    /// Wall clock minus the watermark at the last commit.
    pub watermark_delay: IntGauge,
    /// High watermark minus the stored position, by topic and partition.
    pub lag: IntGaugeVec,
    /// Records held for reordering.
    pub reorder: IntGauge,
    /// Records applied before the watermark passed them because the
    /// reorder buffer was full.
    pub reorder_overflow: prometheus::IntCounter,
    /// The person side's lanes (`[engine] lanes`, resolved).
    pub lanes: IntGauge,
    /// Records the lanes applied at once, each on its own thread: against
    /// `paywatch_records_total`, how much of the work ran on every core.
    pub records_in_runs: prometheus::IntCounter,
    /// One atomic commit (state + offsets + outbox).
    pub commit_seconds: Histogram,
    /// From a record read to its effects committed.
    pub latency_seconds: Histogram,
    /// 1 when `/readyz` answers ready.
    pub ready: IntGauge,
    /// Writes to the state directory that failed (full disk, I/O error),
    /// by writer (engine, outbox, webhooks): consuming stops while the
    /// engine's fail.
    pub state_write_failures: IntCounterVec,
    /// Webhook attempts by route and outcome (delivered, retry, dead).
    pub webhook_deliveries: IntCounterVec,
    /// Deliveries on the webhook dead-letter list.
    pub webhook_dead: IntGauge,
    /// Deliveries due now (waiting for a request slot).
    pub webhook_pending: IntGaugeVec,
    /// Supervised tasks (publisher, webhooks) restarted after a failure.
    pub task_restarts: IntCounterVec,
    /// RocksDB's estimate of live data, all column families.
    pub rocksdb_live: IntGauge,
    /// Bytes compaction still has to rewrite (write stalls follow).
    pub rocksdb_pending_compaction: IntGauge,
    /// Block-cache hits over lookups since start.
    pub rocksdb_cache_hit_ratio: prometheus::Gauge,
    /// RocksDB's memory by part (memtables, table_readers, block_cache,
    /// block_cache_pinned): its share of the RSS.
    pub rocksdb_memory: IntGaugeVec,
    /// API answers of 5xx, by status code.
    pub api_errors: IntCounterVec,
    /// Input partitions another member of the consumer group holds (0 when
    /// this instance is alone, as it must be).
    pub partitions_elsewhere: IntGauge,
    /// 1 for an input topic whose log no longer matches the stored offsets
    /// (recreated, truncated, head removed): it is not read until an
    /// operator runs `paywatch offsets reset` (hardening item 8).
    pub input_stopped: IntGaugeVec,
    /// Pending offsets (read, not applied at the last commit) that the
    /// broker no longer holds, given up rather than waited for, by topic.
    pub pending_given_up: IntCounterVec,
    /// Input records whose Kafka key is not the one the contract gives
    /// them (their person's id, or the case id), by topic.
    pub miskeyed: IntCounterVec,
    /// Input records keyed right but on another partition than Kafka's
    /// default partitioner gives their key, by topic.
    pub mispartitioned: IntCounterVec,
    /// Cases by status (open, in_progress, confirmed, false_positive,
    /// rectified).
    pub cases: IntGaugeVec,
    /// Cases not closed past `[cases] deadline_days`.
    pub cases_overdue: IntGauge,
    /// Cases reopened by a relapse and not closed again.
    pub cases_relapsed: IntGauge,
    /// Repartition records the engine wrote, by topic suffix (`by-account`
    /// …) and kind (fact, mark; repeat: read a second time and skipped),
    /// with `[engine] repartition_records` on: what the group's topics will
    /// carry, to size them before running several instances.
    pub repartition_records: IntCounterVec,
    /// Bytes of those records as produced (values; keys aside), by topic.
    pub repartition_bytes: IntCounterVec,
    /// The township label values allowed (see [`Metrics::township_label`]).
    townships: std::sync::Mutex<TownshipLabels>,
}

/// Township label values: the district's townships when configured,
/// otherwise the first [`TOWNSHIP_LABELS`] seen; anything else is `other`.
/// A township is free text from the feed, so it must not make a label
/// value of its own.
#[derive(Default)]
struct TownshipLabels {
    /// `[district] townships`, when given.
    fixed: Option<std::collections::HashSet<String>>,
    /// Townships seen so far, without a fixed list.
    seen: std::collections::HashSet<String>,
}

/// Township label values kept without a configured list.
pub const TOWNSHIP_LABELS: usize = 64;

impl Metrics {
    /// Labels only these townships (and `other`); empty: the first
    /// [`TOWNSHIP_LABELS`] seen.
    pub fn set_townships(&self, townships: &[String]) {
        let mut l = self.townships.lock().unwrap_or_else(|e| e.into_inner());
        l.fixed = (!townships.is_empty()).then(|| townships.iter().cloned().collect());
    }

    /// The label value for a township: itself when allowed, else `other`.
    pub fn township_label(&self, township: &str) -> String {
        let mut l = self.townships.lock().unwrap_or_else(|e| e.into_inner());
        let allowed = match &l.fixed {
            Some(f) => f.contains(township),
            None if l.seen.contains(township) => true,
            None if l.seen.len() < TOWNSHIP_LABELS => {
                l.seen.insert(township.to_owned());
                true
            }
            None => false,
        };
        if allowed { township.to_owned() } else { "other".to_owned() }
    }

    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry.register(Box::new(c.clone())).expect("registered once");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry.register(Box::new(g.clone())).expect("registered once");
            g
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).expect("valid metric");
            registry.register(Box::new(h.clone())).expect("registered once");
            h
        };
        let lag = IntGaugeVec::new(Opts::new(LAG, "Records not yet read, by input topic and partition"), &["topic", "partition"])
            .expect("valid metric");
        registry.register(Box::new(lag.clone())).expect("registered once");
        let build = IntGaugeVec::new(Opts::new(BUILD_INFO, "Build information"), &["version", "git_sha"]).expect("valid metric");
        registry.register(Box::new(build.clone())).expect("registered once");
        build.with_label_values(&[env!("CARGO_PKG_VERSION"), option_env!("PAYWATCH_GIT_SHA").unwrap_or("unknown")]).set(1);
        let cases = IntGaugeVec::new(Opts::new(CASES, "Cases by status"), &["status"]).expect("valid metric");
        registry.register(Box::new(cases.clone())).expect("registered once");
        let start = gauge(START_TIME, "When this process started (unix seconds)");
        start.set(chrono::Utc::now().timestamp());
        #[cfg(target_os = "linux")]
        {
            let _ = registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()));
        }
        let plain = |name: &str, help: &str| {
            let c = prometheus::IntCounter::new(name, help).expect("valid metric");
            registry.register(Box::new(c.clone())).expect("registered once");
            c
        };
        let secs = vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
        let m = Metrics {
            records: counter(RECORDS, "Input records read, by topic and outcome", &["topic", "outcome"]),
            dead_letters: counter(DEAD_LETTERS, "Records sent to the dead-letter output, by reason", &["reason"]),
            alerts: counter(ALERTS, "Alerts raised and committed", &["rule", "severity", "township"]),
            published: counter(PUBLISHED, "Outbox messages sent to Kafka, by target and outcome", &["target", "outcome"]),
            outbox_depth: gauge(OUTBOX_DEPTH, "Outbox messages waiting for the broker's acknowledgement"),
            changelog_commits: plain(CHANGELOG_COMMITS, "Commits of the state published to the changelog"),
            changelog_bytes: counter(CHANGELOG_BYTES, "Bytes of state changes published to the changelog, by kind", &["kind"]),
            changelog_snapshots: plain(CHANGELOG_SNAPSHOTS, "Snapshots of the whole state published to the changelog"),
            changelog_errors: plain(CHANGELOG_ERRORS, "Changelog publishing sessions that failed and were started again"),
            changelog_behind: gauge(CHANGELOG_BEHIND, "Changes committed to the state and not yet sent to the changelog"),
            active: gauge(ACTIVE, "1 while this instance applies the inputs, 0 while it stands by ([kafka.standby])"),
            standby_behind: gauge(STANDBY_BEHIND, "A standby's copy of the state: changelog frames published and not yet applied (-1: no copy)"),
            outbox_parked: gauge(OUTBOX_PARKED, "Outbox messages the broker refused for good (too large, invalid), parked"),
            outbox_oldest: gauge(OUTBOX_OLDEST, "When the oldest waiting outbox message was queued (unix seconds; 0 when none)"),
            watermark: gauge(WATERMARK, "The event-time watermark (unix seconds)"),
            watermark_delay: gauge(WATERMARK_DELAY, "Wall clock minus the event-time watermark at the last commit"),
            lag,
            reorder: gauge(REORDER, "Records held in the reorder buffer"),
            reorder_overflow: {
                let c = prometheus::IntCounter::new(REORDER_OVERFLOW, "Records applied out of order because the reorder buffer was full")
                    .expect("valid metric");
                registry.register(Box::new(c.clone())).expect("registered once");
                c
            },
            lanes: gauge(ENGINE_LANES, "Lanes of the engine's person side, each able to run on a core of its own"),
            records_in_runs: {
                let c = prometheus::IntCounter::new(RECORDS_IN_RUNS, "Records the engine's lanes applied at once, each lane on a thread of its own")
                    .expect("valid metric");
                registry.register(Box::new(c.clone())).expect("registered once");
                c
            },
            commit_seconds: histogram(COMMIT_SECONDS, "Duration of one atomic commit", secs.clone()),
            latency_seconds: histogram(LATENCY_SECONDS, "From a record read to its effects committed", secs),
            ready: gauge(READY, "1 when ready (store open and writable, partitions assigned)"),
            state_write_failures: counter(
                STATE_WRITE_FAILURES,
                "Writes to the state directory that failed, by writer",
                &["writer"],
            ),
            webhook_deliveries: counter(WEBHOOK_DELIVERIES, "Webhook attempts by route and outcome", &["route", "outcome"]),
            webhook_dead: gauge(WEBHOOK_DEAD, "Webhook deliveries on the dead-letter list"),
            task_restarts: counter(TASK_RESTARTS, "Supervised background tasks restarted after a failure, by task", &["task"]),
            webhook_pending: {
                let g = IntGaugeVec::new(Opts::new(WEBHOOK_DUE, "Webhook deliveries due now or in flight, by route"), &["route"])
                    .expect("valid metric");
                registry.register(Box::new(g.clone())).expect("registered once");
                g
            },
            rocksdb_live: gauge(ROCKSDB_LIVE, "RocksDB estimate of live data"),
            rocksdb_pending_compaction: gauge(ROCKSDB_PENDING_COMPACTION, "RocksDB bytes compaction still has to rewrite"),
            rocksdb_cache_hit_ratio: {
                let g = prometheus::Gauge::new(ROCKSDB_CACHE_HIT_RATIO, "RocksDB block-cache hits over lookups since start")
                    .expect("valid metric");
                registry.register(Box::new(g.clone())).expect("registered once");
                g
            },
            rocksdb_memory: {
                let g = IntGaugeVec::new(Opts::new(ROCKSDB_MEMORY, "RocksDB memory by part"), &["part"]).expect("valid metric");
                registry.register(Box::new(g.clone())).expect("registered once");
                g
            },
            cases,
            api_errors: counter(API_ERRORS, "API answers with a server error, by status", &["status"]),
            partitions_elsewhere: gauge(PARTITIONS_ELSEWHERE, "Input partitions another member of the consumer group holds"),
            input_stopped: {
                let g = IntGaugeVec::new(
                    Opts::new(INPUT_STOPPED, "1 for an input topic not read because its log no longer matches the stored offsets"),
                    &["topic"],
                )
                .expect("valid metric");
                registry.register(Box::new(g.clone())).expect("registered once");
                g
            },
            pending_given_up: counter(PENDING_GIVEN_UP, "Pending input offsets the broker no longer holds, given up, by topic", &["topic"]),
            miskeyed: counter(MISKEYED, "Input records not keyed as the contract says (by person id, decisions by case id), by topic", &["topic"]),
            mispartitioned: counter(MISPARTITIONED, "Input records keyed as the contract says but not on the partition Kafka's default partitioner (murmur2) gives the key, by topic", &["topic"]),
            cases_overdue: gauge(CASES_OVERDUE, "Cases not closed past [cases] deadline_days"),
            cases_relapsed: gauge(CASES_RELAPSED, "Cases reopened by a relapse and not closed again"),
            repartition_records: counter(REPARTITION_RECORDS, "Repartition records written with [engine] repartition_records on, by topic (by-account, by-custodian, by-household, by-person) and kind (fact, mark; repeat: read again and skipped)", &["topic", "kind"]),
            repartition_bytes: counter(REPARTITION_BYTES, "Bytes of the repartition records written, values as produced, by topic", &["topic"]),
            townships: Default::default(),
            registry,
        };
        // Every writer's series exists from the start (at 0), so the
        // dashboard and the alert see it before the first failure.
        for writer in ["engine", "outbox", "webhooks"] {
            m.state_write_failures.with_label_values(&[writer]);
        }
        m
    }

    /// Copies RocksDB's figures into the gauges.
    pub fn observe_store(&self, s: crate::store::StoreStats) {
        self.rocksdb_live.set(i64::try_from(s.live_data_bytes).unwrap_or(i64::MAX));
        self.rocksdb_pending_compaction.set(i64::try_from(s.pending_compaction_bytes).unwrap_or(i64::MAX));
        let lookups = s.block_cache_hits + s.block_cache_misses;
        if lookups > 0 {
            self.rocksdb_cache_hit_ratio.set(s.block_cache_hits as f64 / lookups as f64);
        }
        for (part, bytes) in s.memory.parts() {
            self.rocksdb_memory.with_label_values(&[part]).set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
    }

    /// Advances the repartition counters to the engine's totals since it
    /// was opened (`None` with the setting off: nothing to show).
    pub fn observe_repartition(&self, volume: Option<Vec<crate::engine::TopicVolume>>) {
        let to = |c: prometheus::IntCounter, total: u64| c.inc_by(total.saturating_sub(c.get()));
        for t in volume.unwrap_or_default() {
            to(self.repartition_records.with_label_values(&[t.topic, "fact"]), t.facts);
            to(self.repartition_records.with_label_values(&[t.topic, "mark"]), t.marks);
            to(self.repartition_records.with_label_values(&[t.topic, "repeat"]), t.repeats);
            to(self.repartition_bytes.with_label_values(&[t.topic]), t.bytes);
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_bounded_labels() {
        let m = Metrics::new();
        m.records.with_label_values(&["payments", "ok"]).inc();
        m.alerts.with_label_values(&["NAME_MISMATCH", "high", "水阳镇"]).inc();
        let text = m.render();
        for name in [RECORDS, ALERTS, OUTBOX_DEPTH, WATERMARK, COMMIT_SECONDS, BUILD_INFO, START_TIME] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
        assert!(text.contains("paywatch_records_total{outcome=\"ok\",topic=\"payments\"} 1"), "{text}");
    }

    #[test]
    fn repartition_counters_follow_the_engines_totals() {
        let m = Metrics::new();
        m.observe_repartition(None);
        assert!(!m.render().contains(REPARTITION_RECORDS), "no series with the setting off");
        let v = |facts, marks, bytes| Some(vec![crate::engine::TopicVolume { topic: "by-account", facts, marks, bytes, repeats: facts / 5 }]);
        m.observe_repartition(v(10, 2, 900));
        m.observe_repartition(v(10, 2, 900));
        m.observe_repartition(v(15, 3, 1_400));
        let text = m.render();
        assert!(text.contains("paywatch_repartition_records_total{kind=\"fact\",topic=\"by-account\"} 15"), "{text}");
        assert!(text.contains("paywatch_repartition_records_total{kind=\"mark\",topic=\"by-account\"} 3"), "{text}");
        assert!(text.contains("paywatch_repartition_bytes_total{topic=\"by-account\"} 1400"), "{text}");
        assert!(text.contains("paywatch_repartition_records_total{kind=\"repeat\",topic=\"by-account\"} 3"), "{text}");
    }

    /// Hardening item 9: any 256-character string from the feed must not
    /// become a label value.
    #[test]
    fn township_labels_are_bounded() {
        let m = Metrics::new();
        for i in 0..TOWNSHIP_LABELS {
            assert_eq!(m.township_label(&format!("镇{i}")), format!("镇{i}"));
        }
        assert_eq!(m.township_label("镇0"), "镇0", "one already seen stays");
        assert_eq!(m.township_label(&"x".repeat(256)), "other");
        m.set_townships(&["水阳镇".into()]);
        assert_eq!(m.township_label("水阳镇"), "水阳镇");
        assert_eq!(m.township_label("镇0"), "other", "with a district list, only its townships");
    }
}
