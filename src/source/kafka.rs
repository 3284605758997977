//! The Kafka source of `paywatch run`: one consumer in a group on the four
//! input topics (payments, roster, deaths, decisions), auto-commit and auto offset store off.
//!
//! Offsets are state (`offsets.rs`): on every assignment the consumer is
//! pointed at the offsets stored in RocksDB (the beginning for a partition
//! never read), never at the group's committed offsets, which are written
//! only so that Kafka tooling shows the lag. This module reads messages and
//! reports assignments; it never decodes, applies or commits state.

use super::offsets::{OffsetBook, Part};
use crate::config::KafkaConfig;
use crate::decode::Kind;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum KafkaSourceError {
    #[error("cannot create the Kafka consumer: {0}")]
    Create(KafkaError),
    #[error("cannot subscribe to {topics}: {source}")]
    Subscribe { topics: String, source: KafkaError },
}

/// The librdkafka settings shared by the consumer and the producers:
/// brokers, then the pass-through `[kafka.client]` table.
pub fn client_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers);
    for (k, v) in &cfg.client {
        c.set(k, v);
    }
    c
}

/// The input topics of a config, by feed (the order of `Part::source`).
pub fn input_topics(t: &crate::config::TopicsConfig) -> [(Kind, &str); 5] {
    [
        (Kind::Roster, t.roster.as_str()),
        (Kind::Death, t.deaths.as_str()),
        (Kind::Payment, t.payments.as_str()),
        (Kind::Decision, t.decisions.as_str()),
        (Kind::Vulnerable, t.vulnerable.as_str()),
    ]
}

/// An assignment change, reported to the main loop after a poll.
#[derive(Clone, Debug, PartialEq)]
pub enum Rebalanced {
    Assigned(Vec<Part>),
    Revoked(Vec<Part>),
}

/// One message read.
#[derive(Debug)]
pub struct Incoming {
    pub part: Part,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    /// `None` for a tombstone.
    pub value: Option<Vec<u8>>,
}

/// What the rebalance callback (run inside `poll`) shares with the loop.
pub struct SeekContext {
    /// Input topic names, by feed.
    topics: [(Kind, String); 5],
    /// Where each partition resumes; read on assignment.
    book: Arc<Mutex<OffsetBook>>,
    /// Changes not yet taken by the loop.
    events: Mutex<Vec<Rebalanced>>,
    /// Set while the client cannot reach any broker.
    brokers_down: AtomicBool,
}

impl SeekContext {
    fn part(&self, topic: &str, partition: i32) -> Option<Part> {
        self.topics.iter().find(|(_, t)| t == topic).map(|(k, _)| Part::new(*k, partition))
    }

    fn topic(&self, kind: Kind) -> &str {
        self.topics.iter().find(|(k, _)| *k == kind).map_or("", |(_, t)| t.as_str())
    }

    fn parts(&self, tpl: &TopicPartitionList) -> Vec<Part> {
        tpl.elements().iter().filter_map(|e| self.part(e.topic(), e.partition())).collect()
    }
}

impl ClientContext for SeekContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::AllBrokersDown) {
            self.brokers_down.store(true, Ordering::Relaxed);
        }
        tracing::warn!(%error, "Kafka: {reason}; retrying");
    }
}

impl ConsumerContext for SeekContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let parts = self.parts(tpl);
                let mut seek = TopicPartitionList::new();
                {
                    let book = self.book.lock().unwrap_or_else(|e| e.into_inner());
                    for p in &parts {
                        let at = book.seek_to(*p).map_or(Offset::Beginning, Offset::Offset);
                        if let Err(e) = seek.add_partition_offset(self.topic(p.kind()), p.partition, at) {
                            tracing::error!(error = %e, "cannot set a start offset");
                        }
                    }
                }
                if let Err(e) = consumer.assign(&seek) {
                    tracing::error!(error = %e, "cannot take the assigned partitions");
                }
                self.brokers_down.store(false, Ordering::Relaxed);
                tracing::info!(partitions = parts.len(), "partitions assigned; reading from the offsets in the state directory");
                self.push(Rebalanced::Assigned(parts));
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let parts = self.parts(tpl);
                if let Err(e) = consumer.unassign() {
                    tracing::error!(error = %e, "cannot give up revoked partitions");
                }
                tracing::info!(partitions = parts.len(), "partitions revoked");
                self.push(Rebalanced::Revoked(parts));
            }
            other => {
                tracing::warn!(error = ?other, "rebalance failed; giving up the assignment until the next one");
                let parts = consumer.assignment().map(|a| self.parts(&a)).unwrap_or_default();
                let _ = consumer.unassign();
                self.push(Rebalanced::Revoked(parts));
            }
        }
    }
}

impl SeekContext {
    fn push(&self, e: Rebalanced) {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).push(e);
    }
}

/// The consumer and what it shares with its rebalance callback.
///
/// Each assigned partition gets its own queue, so the loop can stop reading
/// a partition that runs ahead while librdkafka stops fetching it once its
/// queue holds `queued.min.messages`: flow control without pausing.
pub struct KafkaSource {
    consumer: Arc<BaseConsumer<SeekContext>>,
    /// The assigned partitions' own queues.
    queues: BTreeMap<Part, PartitionQueue<SeekContext>>,
    /// Topic names as C strings, for the watermark lookups.
    c_topics: [(Kind, CString); 5],
    /// When this member last left the group and joined again
    /// (`rejoin_when_left_out`).
    rejoined: Option<Instant>,
}

/// How long a member may be given no partition at all, while others hold
/// them, before it leaves the group and joins again.
const REJOIN_AFTER: Duration = Duration::from_secs(30);

impl KafkaSource {
    /// Creates the consumer and subscribes to the three input topics.
    pub fn open(cfg: &KafkaConfig, book: Arc<Mutex<OffsetBook>>) -> Result<KafkaSource, KafkaSourceError> {
        let topics = input_topics(&cfg.topics).map(|(k, n)| (k, n.to_owned()));
        let ctx = SeekContext { topics: topics.clone(), book, events: Mutex::new(Vec::new()), brokers_down: AtomicBool::new(false) };
        let mut c = client_config(cfg);
        for (k, v) in &cfg.consumer {
            c.set(k, v);
        }
        let consumer: BaseConsumer<SeekContext> = c
            .set("group.id", &cfg.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("queued.min.messages", cfg.consumer.get("queued.min.messages").or(cfg.client.get("queued.min.messages")).map_or("20000", String::as_str))
            .create_with_context(ctx)
            .map_err(KafkaSourceError::Create)?;
        let names: Vec<&str> = topics.iter().map(|(_, n)| n.as_str()).collect();
        consumer
            .subscribe(&names)
            .map_err(|source| KafkaSourceError::Subscribe { topics: names.join(", "), source })?;
        let c_topics = topics.map(|(k, n)| (k, CString::new(n).unwrap_or_default()));
        Ok(KafkaSource { consumer: Arc::new(consumer), queues: BTreeMap::new(), c_topics, rejoined: None })
    }

    /// Leaves the group and joins it again when this member has held no
    /// partition since `left_out_since`, for `REJOIN_AFTER` (and as long
    /// again after each try). A member that joins while a killed one is
    /// still in the group can be handed nothing, and some brokers (tansu)
    /// do not rebalance when the dead member's session ends: it would wait
    /// for ever. Joining again makes the coordinator rebalance without the
    /// dead member. Returns whether it did.
    pub fn rejoin_when_left_out(&mut self, left_out_since: Instant) -> bool {
        let since = self.rejoined.map_or(left_out_since, |r| r.max(left_out_since));
        if since.elapsed() < REJOIN_AFTER {
            return false;
        }
        let names: Vec<&str> = self.c_topics.iter().filter_map(|(_, n)| n.to_str().ok()).collect();
        self.consumer.unsubscribe();
        if let Err(e) = self.consumer.subscribe(&names) {
            tracing::error!(error = %e, "cannot join the consumer group again");
        }
        tracing::warn!(seconds = left_out_since.elapsed().as_secs(), "given no input partition while another member holds them all: left the consumer group and joined it again");
        self.rejoined = Some(Instant::now());
        true
    }

    /// Serves callbacks (rebalances, errors) and returns a message that
    /// arrived on the common queue (fetched before its partition's queue
    /// was split off), waiting up to `timeout`.
    pub fn poll(&self, timeout: Duration) -> Option<Incoming> {
        self.incoming(self.consumer.poll(timeout)?)
    }

    /// One message from a partition's own queue, without waiting.
    pub fn poll_part(&self, p: Part) -> Option<Incoming> {
        self.incoming(self.queues.get(&p)?.poll(Duration::ZERO)?)
    }

    /// Gives newly assigned partitions their own queues. Messages fetched
    /// before are still on the common queue: the caller reads that empty
    /// first, so each partition is read in offset order.
    pub fn split(&mut self, parts: &[Part]) {
        for p in parts {
            match self.consumer.split_partition_queue(self.topic(p.kind()), p.partition) {
                Some(q) => {
                    self.queues.insert(*p, q);
                }
                None => tracing::warn!(partition = p.partition, "cannot give a partition its own queue; it is read from the common one"),
            }
        }
    }

    /// Reads a partition again from its first offset (what was applied is
    /// skipped by the offset book). For brokers that return nothing for a
    /// fetch that starts inside a record batch (tansu 0.6 does, after a
    /// restart resumes mid-batch); a real Kafka broker never needs it.
    pub fn rewind(&self, p: Part) {
        if let Err(e) = self.consumer.seek(self.topic(p.kind()), p.partition, Offset::Beginning, Duration::from_secs(2)) {
            tracing::warn!(error = %e, partition = p.partition, "cannot rewind a stuck partition; trying again later");
        }
    }

    /// Stops fetching these partitions (a stopped topic, hardening item 8):
    /// librdkafka fetches nothing more for them until they are assigned
    /// again.
    pub fn pause(&self, parts: &[Part]) {
        let tpl = self.tpl(parts.iter().map(|p| (*p, Offset::Invalid)));
        if let Err(e) = self.consumer.pause(&tpl) {
            tracing::warn!(error = %e, "cannot pause the partitions of a stopped topic; what they deliver is ignored");
        }
    }

    /// Forgets the queues of revoked partitions.
    pub fn unsplit(&mut self, parts: &[Part]) {
        for p in parts {
            self.queues.remove(p);
        }
    }

    fn incoming(&self, r: rdkafka::error::KafkaResult<rdkafka::message::BorrowedMessage<'_>>) -> Option<Incoming> {
        match r {
            Ok(m) => {
                let part = self.consumer.context().part(m.topic(), m.partition())?;
                Some(Incoming { part, offset: m.offset(), key: m.key().map(<[u8]>::to_vec), value: m.payload().map(<[u8]>::to_vec) })
            }
            Err(e) => {
                tracing::warn!(error = %e, "Kafka consumer error; retrying");
                None
            }
        }
    }

    /// Assignment changes since the last call.
    pub fn rebalanced(&self) -> Vec<Rebalanced> {
        std::mem::take(&mut *self.consumer.context().events.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The partition's end offset as last seen in a fetch response (no
    /// broker round trip); `None` when not known yet.
    pub fn high_watermark(&self, p: Part) -> Option<i64> {
        let topic = &self.c_topics.iter().find(|(k, _)| *k == p.kind())?.1;
        let (mut low, mut high) = (0i64, 0i64);
        // SAFETY: the client pointer is valid for the consumer's lifetime,
        // the topic is a NUL-terminated string that outlives the call, and
        // librdkafka only writes the two out-parameters.
        let err = unsafe {
            rdkafka::bindings::rd_kafka_get_watermark_offsets(
                self.consumer.client().native_ptr(),
                topic.as_ptr(),
                p.partition,
                &mut low,
                &mut high,
            )
        };
        (err == RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some(high)
    }

    /// The partition's end offset asked of the broker (a round trip of at
    /// most `timeout`): for partitions with nothing to fetch, whose end the
    /// fetch responses may never report.
    pub fn fetch_high_watermark(&self, p: Part, timeout: Duration) -> Option<i64> {
        match self.consumer.fetch_watermarks(self.topic(p.kind()), p.partition, timeout) {
            Ok((_, high)) if high >= 0 => Some(high),
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(error = %e, "cannot ask the broker for a partition's end");
                None
            }
        }
    }

    /// Every partition of the three input topics, from the broker's
    /// metadata (empty when it cannot be had within `timeout`).
    pub fn all_partitions(&self, timeout: Duration) -> Vec<Part> {
        let mut out = Vec::new();
        for (kind, _) in &self.c_topics {
            match self.consumer.fetch_metadata(Some(self.topic(*kind)), timeout) {
                Ok(md) => {
                    for t in md.topics() {
                        out.extend(t.partitions().iter().map(|p| Part::new(*kind, p.id())));
                    }
                }
                Err(e) => tracing::debug!(error = %e, "cannot read topic metadata"),
            }
        }
        out
    }

    /// Commits the stored positions to the group, for lag monitoring only.
    pub fn commit_for_lag(&self, positions: impl Iterator<Item = (Part, i64)>) {
        let tpl = self.tpl(positions.map(|(p, o)| (p, Offset::Offset(o))));
        if tpl.count() > 0 {
            if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
                tracing::debug!(error = %e, "lag commit to Kafka failed (state is unaffected)");
            }
        }
    }

    /// True after librdkafka reported that no broker can be reached, until
    /// a message arrives again.
    pub fn brokers_down(&self) -> bool {
        self.consumer.context().brokers_down.load(Ordering::Relaxed)
    }

    pub fn brokers_up(&self) {
        self.consumer.context().brokers_down.store(false, Ordering::Relaxed);
    }

    pub fn topic(&self, kind: Kind) -> &str {
        self.consumer.context().topic(kind)
    }

    /// The input topics, by feed (as [`input_topics`] gave them).
    pub fn topics(&self) -> [(Kind, &str); 5] {
        let t = &self.consumer.context().topics;
        std::array::from_fn(|i| (t[i].0, t[i].1.as_str()))
    }

    fn tpl(&self, parts: impl Iterator<Item = (Part, Offset)>) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for (p, o) in parts {
            let _ = tpl.add_partition_offset(self.topic(p.kind()), p.partition, o);
        }
        tpl
    }
}
