//! The outbox publisher: sends committed outbox entries to the alerts and
//! dead-letter topics with an idempotent producer (acks from all in-sync
//! replicas) and deletes each entry only after the broker acknowledged it.
//! A slow or absent broker delays publishing, never detection: the engine
//! keeps committing and the outbox keeps the messages.

use super::outbox::{self, OutMessage, Target};
use crate::config::KafkaConfig;
use crate::metrics::Metrics;
use crate::source::kafka::client_config;
use crate::store::{Store, StoreError};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot create the Kafka producer: {0}")]
    Create(KafkaError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Entries sent per round before waiting for their acknowledgements.
const ROUND: usize = 1000;
/// Longest pause between retries while the broker refuses.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The idempotent producer used for alerts, dead letters and `produce`.
pub fn producer(cfg: &KafkaConfig) -> Result<FutureProducer, KafkaError> {
    let mut c = client_config(cfg);
    c.set("linger.ms", "5");
    // Kafka's default partitioner for keyed records, as the Java clients
    // use: a person's records land where a partitioned engine looks for
    // them (`partition.rs`; docs/contract.md reading 37).
    c.set("partitioner", "murmur2_random");
    for (k, v) in &cfg.producer {
        c.set(k, v);
    }
    c.set("enable.idempotence", "true").set("acks", "all").create()
}

pub struct Publisher {
    producer: FutureProducer,
    /// Where the outbox lives.
    store: Store,
    alerts_topic: String,
    deadletter_topic: String,
    metrics: Arc<Metrics>,
    /// Woken after every commit that added entries.
    wake: Arc<Notify>,
    /// Set at shutdown: stop once the outbox is empty.
    draining: Arc<AtomicBool>,
}

impl Publisher {
    pub fn new(
        cfg: &KafkaConfig,
        store: Store,
        metrics: Arc<Metrics>,
        wake: Arc<Notify>,
        draining: Arc<AtomicBool>,
    ) -> Result<Publisher, PublishError> {
        Ok(Publisher {
            producer: producer(cfg).map_err(PublishError::Create)?,
            store,
            alerts_topic: cfg.topics.alerts.clone(),
            deadletter_topic: cfg.topics.deadletter.clone(),
            metrics,
            wake,
            draining,
        })
    }

    /// A publisher of `store`'s outbox on a producer shared with others:
    /// an instance's account tasks each have an outbox in their own store.
    pub fn with_producer(producer: FutureProducer, cfg: &KafkaConfig, store: Store, metrics: Arc<Metrics>) -> Publisher {
        Publisher {
            producer,
            store,
            alerts_topic: cfg.topics.alerts.clone(),
            deadletter_topic: cfg.topics.deadletter.clone(),
            metrics,
            wake: Arc::new(Notify::new()),
            draining: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Sends what the outbox holds, round after round, and returns how
    /// many entries were acknowledged (and deleted) and how many wait for
    /// a later call (the broker did not acknowledge them yet). Refused for
    /// good, an entry is parked, as `run` does. The caller calls it again
    /// later while some wait; the depth gauges are `run`'s (the service's
    /// own outbox).
    pub async fn publish_pending(&self) -> Result<(usize, usize), PublishError> {
        let mut sent = 0;
        loop {
            let entries = outbox::pending(&self.store, ROUND)?;
            if entries.is_empty() {
                return Ok((sent, 0));
            }
            let (acked, failed, refused) = self.send_round(&entries).await;
            for (k, m, why) in refused {
                tracing::error!(target_topic = m.target.label(), reason = %why, "the broker refused an outbox message for good; parked (it no longer blocks the others)");
                outbox::park(&self.store, &k, &m, &why, chrono::Utc::now().timestamp_millis())?;
                self.metrics.outbox_parked.inc();
            }
            outbox::acknowledge(&self.store, &acked)?;
            sent += acked.len();
            if failed > 0 {
                return Ok((sent, entries.len() - acked.len()));
            }
        }
    }

    /// Publishes until draining is asked for and the outbox is empty.
    pub async fn run(self: Arc<Self>) -> Result<(), PublishError> {
        let mut backoff = Duration::from_millis(100);
        loop {
            let entries = outbox::pending(&self.store, ROUND)?;
            self.metrics.outbox_oldest.set(entries.iter().map(|(_, m)| m.queued_ms).min().map_or(0, |ms| ms / 1000));
            if entries.is_empty() {
                self.metrics.outbox_depth.set(0);
                if self.draining.load(Ordering::Relaxed) {
                    return Ok(());
                }
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
                continue;
            }
            let (acked, failed, refused) = self.send_round(&entries).await;
            for (k, m, why) in refused {
                tracing::error!(target_topic = m.target.label(), reason = %why, "the broker refused an outbox message for good; parked (it no longer blocks the others)");
                outbox::park(&self.store, &k, &m, &why, chrono::Utc::now().timestamp_millis())?;
                self.metrics.outbox_parked.inc();
            }
            if let Err(e) = outbox::acknowledge(&self.store, &acked) {
                // The messages went out but stay in the outbox: they are
                // sent again (same key) once the state can be written.
                self.metrics.state_write_failures.with_label_values(&["outbox"]).inc();
                tracing::warn!(error = %e, "cannot record outbox acknowledgements; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            if entries.len() < ROUND {
                // The whole outbox was in this round: its depth is exact.
                self.metrics.outbox_depth.set((entries.len() - acked.len()) as i64);
            } else {
                self.metrics.outbox_depth.sub(acked.len() as i64);
            }
            if failed > 0 {
                tracing::warn!(failed, retry_in = ?backoff, "the broker did not acknowledge some outbox messages; they stay in the outbox");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            } else {
                backoff = Duration::from_millis(100);
            }
        }
    }

    /// Sends one round; returns the acknowledged keys and how many failed.
    /// Sends a round; returns the acknowledged keys, how many failed for
    /// now, and those the broker or producer refused for good.
    async fn send_round(&self, entries: &[(Vec<u8>, OutMessage)]) -> (Vec<Vec<u8>>, usize, Vec<(Vec<u8>, OutMessage, String)>) {
        let mut inflight = Vec::with_capacity(entries.len());
        let mut failed = 0;
        let mut refused = Vec::new();
        for (k, m) in entries {
            let topic = match m.target {
                Target::Alerts => &self.alerts_topic,
                Target::DeadLetters => &self.deadletter_topic,
            };
            let mut headers = OwnedHeaders::new_with_capacity(m.headers.len());
            for (name, v) in &m.headers {
                headers = headers.insert(Header { key: name, value: Some(v) });
            }
            let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).payload(m.value.as_slice()).headers(headers);
            if let Some(key) = &m.key {
                rec = rec.key(key.as_slice());
            }
            match self.producer.send_result(rec) {
                Ok(f) => inflight.push((k, m, f)),
                Err((e, _)) if permanent(&e) => refused.push((k.clone(), m.clone(), e.to_string())),
                Err((e, _)) => {
                    // Queue full or refused at once: the rest waits for the
                    // next round.
                    tracing::debug!(error = %e, "producer queue refused a message");
                    failed += 1;
                    break;
                }
            }
        }
        let mut acked = Vec::with_capacity(inflight.len());
        for (k, m, f) in inflight {
            let target = m.target;
            match f.await {
                Ok(Ok(_)) => {
                    self.metrics.published.with_label_values(&[target.label(), "ok"]).inc();
                    acked.push(k.clone());
                }
                Ok(Err((e, _))) if permanent(&e) => {
                    self.metrics.published.with_label_values(&[target.label(), "error"]).inc();
                    refused.push((k.clone(), m.clone(), e.to_string()));
                }
                Ok(Err((e, _))) => {
                    tracing::debug!(error = %e, "delivery failed");
                    self.metrics.published.with_label_values(&[target.label(), "error"]).inc();
                    failed += 1;
                }
                Err(_) => failed += 1,
            }
        }
        (acked, failed, refused)
    }
}

/// Whether the broker or the producer will refuse this message however
/// often it is sent: it is too large, or invalid.
fn permanent(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::MessageBatchTooLarge
                | RDKafkaErrorCode::InvalidArgument
        )
    )
}
