//! `[kafka]`: the brokers, the consumer group, the topics and the
//! librdkafka settings passed through, with their checks.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// The Kafka side of `paywatch run` and `paywatch produce`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap brokers, comma-separated (librdkafka `bootstrap.servers`).
    pub brokers: String,
    /// Consumer group. Offsets live in the state directory; the group's
    /// committed offsets only show lag to Kafka tooling.
    pub group_id: String,
    /// How far (in event time) records may arrive out of order across the
    /// three input topics and still be applied in order. A record is held
    /// until every partition still catching up has passed its event time by
    /// this much; the payment for an id not yet on the roster waits that
    /// long before `INACTIVE_BENEFICIARY` is decided.
    #[serde(with = "humantime_serde")]
    pub max_out_of_order: Duration,
    /// Records held for reordering at most, so memory stays bounded; beyond
    /// it the oldest are applied before the watermark passes them (counted
    /// in `paywatch_reorder_overflow_total`).
    pub reorder_buffer_records: usize,
    /// A partition taken away by a rebalance keeps holding the watermark
    /// this long (wall time), so that records of other partitions do not
    /// overtake its unapplied ones; the group normally gives it back
    /// sooner. After that the others go on without it.
    #[serde(with = "humantime_serde")]
    pub revoked_grace: Duration,
    /// Longest wait between atomic commits while records flow (alert
    /// latency against write amplification). A full batch
    /// (`engine.batch_records`, `batch_records_max`) also ends one.
    #[serde(with = "humantime_serde")]
    pub commit_interval: Duration,
    /// On shutdown, how long to keep draining the outbox to the alerts and
    /// dead-letter topics before exiting; what is left is sent at the next
    /// start.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    pub topics: TopicsConfig,
    /// Passed through to librdkafka for both the consumer and the producer
    /// (`security.protocol`, `sasl.*`, `ssl.*`, …). The settings paywatch's
    /// guarantees rest on cannot be overridden here.
    pub client: BTreeMap<String, String>,
    /// Passed through to the consumer only (`session.timeout.ms`,
    /// `queued.min.messages`, …).
    pub consumer: BTreeMap<String, String>,
    /// Passed through to the producer only (`linger.ms`, `compression.type`, …).
    pub producer: BTreeMap<String, String>,
    /// The changelog: every commit of the state directory published to a
    /// topic, so that `paywatch restore` rebuilds it on another machine.
    pub changelog: ChangelogConfig,
    /// Several instances in one group: one active, the others standing by
    /// to take over from the changelog (`docs/changelog.md`, "Standby").
    pub standby: StandbyConfig,
    /// The accounts as tasks of the group (`accounts.rs`).
    pub accounts: super::AccountsConfig,
}

/// `[kafka.standby]`: until the partitioned engine (#16) lets instances
/// share a group's work, they can share its availability.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StandbyConfig {
    /// Instances of the group elect one active among them (the member of
    /// consumer group `<group_id>.active` that holds the changelog topic's
    /// partition); the others wait, answer `/readyz` with 503, and the
    /// first to be elected after the active one is gone restores the state
    /// from the changelog and goes on. Needs `[kafka.changelog]`.
    pub enabled: bool,
    /// A standby left without the partition this long leaves the election
    /// group and joins it again: a broker that does not end a dead
    /// member's session by itself (tansu) hands the partition on at that
    /// rejoin. A live active one keeps it (cooperative-sticky assignment).
    #[serde(with = "humantime_serde")]
    pub rejoin_after: Duration,
    /// A standby keeps its state directory a warm copy of the active
    /// instance's, following the changelog as it is published, so taking
    /// over reads only the frames since, not the whole state. Off, it
    /// restores the whole state once elected. The copy costs the standby
    /// the state's disk and a reader of the changelog topic.
    pub follow: bool,
}

impl Default for StandbyConfig {
    fn default() -> StandbyConfig {
        StandbyConfig { enabled: false, rejoin_after: Duration::from_secs(30), follow: true }
    }
}

/// `[kafka.changelog]`: see `docs/changelog.md`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChangelogConfig {
    /// Publish the changelog (off by default: it roughly doubles what the
    /// service writes to the brokers).
    pub enabled: bool,
    /// The topic; empty means `paywatch.<group_id>.changelog`. One
    /// partition is used (partition 0).
    pub topic: String,
    /// A new snapshot of the whole state after this many MiB of commits,
    /// so a restore reads a bounded amount and the topic's retention may
    /// delete what is older than the last two snapshots.
    pub snapshot_every_mb: u64,
    /// MiB of RocksDB's write-ahead log kept after it is flushed, so the
    /// publisher can send what it has not sent yet after a restart or a
    /// broker outage. Beyond it, a new snapshot is published instead.
    pub wal_keep_mb: u64,
    /// `paywatch run` on an empty state directory restores it from the
    /// changelog first (as `paywatch restore` does), and replays the
    /// inputs only when the topic holds no snapshot yet: a replacement
    /// machine goes on where the lost one's changelog ends.
    pub restore_empty_state: bool,
}

impl Default for ChangelogConfig {
    fn default() -> ChangelogConfig {
        ChangelogConfig { enabled: false, topic: String::new(), snapshot_every_mb: 4096, wal_keep_mb: 2048, restore_empty_state: true }
    }
}

impl KafkaConfig {
    /// The changelog topic's name.
    pub fn changelog_topic(&self) -> String {
        if self.changelog.topic.trim().is_empty() {
            format!("paywatch.{}.changelog", self.group_id)
        } else {
            self.changelog.topic.clone()
        }
    }
}

impl KafkaConfig {
    /// The largest message the producer may send (`message.max.bytes` of
    /// `[kafka.producer]` or `[kafka.client]`, librdkafka's 1,000,000 by
    /// default).
    pub fn max_message_bytes(&self) -> usize {
        self.producer
            .get("message.max.bytes")
            .or_else(|| self.client.get("message.max.bytes"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(1_000_000)
    }
}

impl Default for KafkaConfig {
    fn default() -> KafkaConfig {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            group_id: "paywatch".into(),
            max_out_of_order: Duration::from_secs(3600),
            reorder_buffer_records: 200_000,
            revoked_grace: Duration::from_secs(60),
            commit_interval: Duration::from_millis(200),
            drain_timeout: Duration::from_secs(30),
            topics: TopicsConfig::default(),
            client: BTreeMap::new(),
            consumer: BTreeMap::new(),
            producer: BTreeMap::new(),
            changelog: ChangelogConfig::default(),
            standby: StandbyConfig::default(),
            accounts: super::AccountsConfig::default(),
        }
    }
}

/// librdkafka settings paywatch sets itself: offsets are state, the
/// producer is idempotent with acks from all replicas.
pub const RESERVED_CLIENT_KEYS: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "enable.idempotence",
    "acks",
    "request.required.acks",
];

/// Topic names; the defaults are the contract's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicsConfig {
    /// Payment events, keyed by `beneficiary_id`.
    pub payments: String,
    /// Roster records (compacted), keyed by `beneficiary_id`.
    pub roster: String,
    /// Death records, keyed by `person_id`.
    pub deaths: String,
    /// Case decisions (§8), keyed by `case_id`: read like the other inputs,
    /// and written by `POST /api/v1/cases/{id}/decisions`.
    pub decisions: String,
    /// Vulnerable persons of other departments (§10), keyed by
    /// `person_id`.
    pub vulnerable: String,
    /// Where alerts go, keyed by `alert_id`.
    pub alerts: String,
    /// Where bad records go, with their source position in headers.
    pub deadletter: String,
}

impl Default for TopicsConfig {
    fn default() -> TopicsConfig {
        TopicsConfig {
            payments: "dibao.payments.v1".into(),
            roster: "dibao.roster.v1".into(),
            deaths: "civil.deaths.v1".into(),
            decisions: "dibao.decisions.v1".into(),
            vulnerable: "civil.vulnerable.v1".into(),
            alerts: "dibao.alerts.v1".into(),
            deadletter: "dibao.deadletter.v1".into(),
        }
    }
}

impl KafkaConfig {
    pub(super) fn validate(&self) -> Result<(), String> {
        if self.brokers.trim().is_empty() {
            return Err("kafka.brokers: must name at least one broker".into());
        }
        if self.group_id.trim().is_empty() {
            return Err("kafka.group_id: must not be empty".into());
        }
        if self.reorder_buffer_records < 1000 {
            return Err("kafka.reorder_buffer_records: must be at least 1000".into());
        }
        if self.commit_interval.is_zero() {
            return Err("kafka.commit_interval: must be more than 0".into());
        }
        let t = &self.topics;
        let names = [
            ("payments", &t.payments),
            ("roster", &t.roster),
            ("deaths", &t.deaths),
            ("decisions", &t.decisions),
            ("vulnerable", &t.vulnerable),
            ("alerts", &t.alerts),
            ("deadletter", &t.deadletter),
        ];
        for (i, (key, name)) in names.iter().enumerate() {
            if name.trim().is_empty() {
                return Err(format!("kafka.topics.{key}: must not be empty"));
            }
            if let Some((other, _)) = names[..i].iter().find(|(_, n)| n == name) {
                return Err(format!("kafka.topics.{key}: {name:?} is also kafka.topics.{other}"));
            }
        }
        if self.changelog.snapshot_every_mb == 0 {
            return Err("kafka.changelog.snapshot_every_mb: must be more than 0".into());
        }
        let changelog = self.changelog_topic();
        if let Some((key, _)) = names.iter().find(|(_, n)| **n == changelog) {
            return Err(format!("kafka.changelog.topic: {changelog:?} is also kafka.topics.{key}"));
        }
        if self.standby.enabled && !(self.changelog.enabled && self.changelog.restore_empty_state) {
            return Err("kafka.standby.enabled: a standby takes over from the changelog; set kafka.changelog.enabled (and leave restore_empty_state on)".into());
        }
        self.accounts.validate()?;
        if self.standby.enabled && self.accounts.away() {
            return Err("kafka.standby.enabled: a standby does not run account tasks yet; set kafka.accounts.partitions = 0 with it".into());
        }
        if self.standby.enabled && self.standby.rejoin_after < Duration::from_secs(1) {
            return Err("kafka.standby.rejoin_after: must be at least 1s".into());
        }
        for (table, map) in [("client", &self.client), ("consumer", &self.consumer), ("producer", &self.producer)] {
            for k in map.keys() {
                if RESERVED_CLIENT_KEYS.contains(&k.as_str()) {
                    return Err(format!("kafka.{table}.{k:?}: paywatch sets this itself and it cannot be overridden"));
                }
            }
        }
        Ok(())
    }
}
