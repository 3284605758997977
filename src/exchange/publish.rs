//! Sends the repartition outbox to the group's topics, in order, and
//! deletes what the broker acknowledged.
//!
//! Order is what matters here: a reader refuses a record whose stream
//! (writer to topic partition) is missing an earlier one. So the producer
//! is idempotent with `enable.gapless.guarantee` (a failure that would
//! leave a gap stops the producer instead) and records never time out in
//! its queue (a timeout is the one failure that guarantee does not cover).
//! After any failure the producer is made again and the outbox is sent
//! from its first entry left: a record the broker had but did not confirm
//! goes twice, and its reader skips the second.

use super::outbox::{self, Pending};
use super::ExchangeError;
use crate::config::KafkaConfig;
use crate::engine::repartition::Outgoing;
use crate::source::kafka::client_config;
use crate::store::Store;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::collections::HashSet;

/// Records enqueued per round before waiting for their acknowledgements.
pub const ROUND: usize = 50_000;

/// The producer of one state directory's repartition outbox.
pub struct Sender {
    /// Idempotent, gapless, without a queue timeout (module doc): the
    /// broker gets each stream in order or the producer stops.
    producer: FutureProducer,
    /// Where the outbox lives.
    store: Store,
    /// The consumer group whose topics the records go to.
    group: String,
    /// Kept to make the producer again after a failure.
    cfg: KafkaConfig,
}

impl Sender {
    pub fn new(cfg: &KafkaConfig, store: Store, group: &str) -> Result<Sender, ExchangeError> {
        Ok(Sender { producer: producer(cfg)?, store, group: group.to_owned(), cfg: cfg.clone() })
    }

    /// Sends up to `limit` of the outbox's records and deletes those the
    /// broker acknowledged. Returns how many it deleted; an error says
    /// which stream failed, and everything from that record on in its
    /// stream stays in the outbox for the next round (with a new producer).
    pub async fn round(&mut self, limit: usize) -> Result<usize, ExchangeError> {
        let entries = outbox::pending(&self.store, limit)?;
        let (acked, failed) = self.send(&entries).await;
        outbox::acknowledge(&self.store, &acked)?;
        match failed {
            None => Ok(acked.len()),
            Some(e) => {
                self.producer = producer(&self.cfg)?;
                Err(e)
            }
        }
    }

    /// Sends until the outbox is empty; returns how many records went.
    pub async fn drain(&mut self) -> Result<usize, ExchangeError> {
        let mut sent = 0;
        while outbox::depth(&self.store)? > 0 {
            let n = self.round(ROUND).await?;
            if n == 0 {
                // The producer's queue is full: let it empty.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            sent += n;
        }
        Ok(sent)
    }

    /// Sends `entries` in order without deleting them: the keys the broker
    /// acknowledged with every earlier record of their stream, and the
    /// first failure. (A crash between this and `outbox::acknowledge` is
    /// what sends records twice.)
    pub async fn send(&self, entries: &[Pending]) -> (Vec<Vec<u8>>, Option<ExchangeError>) {
        let mut inflight = Vec::with_capacity(entries.len());
        let mut failed = None;
        for (k, o) in entries {
            let topic = o.topic.name(&self.group);
            let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&topic).partition(o.partition as i32).payload(o.value.as_slice());
            if let Some(key) = &o.key {
                rec = rec.key(key.as_slice());
            }
            match self.producer.send_result(rec) {
                Ok(f) => inflight.push((k, o, f)),
                Err((e, _)) => {
                    // Queue full: the rest waits for the next round. Any
                    // other refusal is reported after what went out.
                    if e.rdkafka_error_code() != Some(rdkafka::types::RDKafkaErrorCode::QueueFull) {
                        failed = Some(delivery(o, e.to_string()));
                    }
                    break;
                }
            }
        }
        let mut acked = Vec::with_capacity(inflight.len());
        // Streams with a failed record: nothing after it counts as sent.
        let mut broken: HashSet<(String, u32)> = HashSet::new();
        for (k, o, f) in inflight {
            let stream = (o.topic.name(&self.group), o.partition);
            let ok = match f.await {
                Ok(Ok(_)) => true,
                Ok(Err((e, _))) => {
                    failed.get_or_insert_with(|| delivery(o, e.to_string()));
                    false
                }
                Err(_) => {
                    failed.get_or_insert_with(|| delivery(o, "the producer went away".into()));
                    false
                }
            };
            if ok && !broken.contains(&stream) {
                acked.push(k.clone());
            } else {
                broken.insert(stream);
            }
        }
        (acked, failed)
    }
}

fn delivery(o: &Outgoing, reason: String) -> ExchangeError {
    ExchangeError::Delivery { topic: o.topic.suffix().to_owned(), partition: o.partition, reason }
}

/// The ordered producer: idempotent, gapless, no queue timeout.
fn producer(cfg: &KafkaConfig) -> Result<FutureProducer, ExchangeError> {
    let mut c = client_config(cfg);
    c.set("linger.ms", "5");
    for (k, v) in &cfg.producer {
        c.set(k, v);
    }
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("enable.gapless.guarantee", "true")
        .set("message.timeout.ms", "0");
    Ok(c.create()?)
}
