//! Reads the repartition topic partitions an instance's tasks own, each
//! through its `Reader` (order, repeats, gaps, routing), with offsets as
//! state: a partition's reader checkpoint and the offset after the last
//! record it read are written to `Cf::ExchangeIn` (this module's alone) in
//! the batch of the task that reads it. A task that crashes, or moves to
//! another instance, resumes from that batch, so what it released and did
//! not commit is released again, and what it committed never is. One
//! consumer serves every task of the instance.

use super::ExchangeError;
use crate::config::KafkaConfig;
use crate::engine::repartition::{Fact, Layout, Reader, ReaderState, Topic};
use crate::model::SortKey;
use crate::source::kafka::client_config;
use crate::source::log_end::{fetch_from, tail};
use crate::store::{Batch, Cf, Store, StoreError};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Records read per `poll` at most, so a task commits between them.
pub const POLL_MAX: usize = 10_000;

/// How long the broker may take to say which offsets a partition holds.
const WATERMARKS_TIMEOUT: Duration = Duration::from_secs(10);

/// The partitions one task reads.
pub struct Inbox {
    /// Assigned, never subscribed: which partitions it reads is the
    /// tasks' business, and their offsets are their state.
    consumer: BaseConsumer,
    /// Asks where a partition ends without moving `consumer`
    /// (`source::log_end`).
    probe: BaseConsumer,
    /// The consumer group whose topics are read.
    group: String,
    /// The partition counts every reader is made for.
    layout: Layout,
    /// Each topic's name in this group, to place a record.
    names: BTreeMap<String, Topic>,
    /// Per partition read: its reader and where the next record is.
    slots: BTreeMap<(Topic, u32), Slot>,
}

struct Slot {
    /// Checks the partition's records and releases their facts in order.
    reader: Reader,
    /// The offset of the next record to read: committed with the reader.
    next_offset: i64,
}

/// What `Cf::ExchangeIn` holds for one partition.
#[derive(Serialize, Deserialize)]
struct Stored {
    /// Where to read on.
    next_offset: i64,
    /// What the reader held there.
    reader: ReaderState,
}

fn key(topic: Topic, partition: u32) -> [u8; 5] {
    let mut k = [0u8; 5];
    k[0] = topic as u8;
    k[1..].copy_from_slice(&partition.to_be_bytes());
    k
}

impl Inbox {
    /// A reader of `group`'s topics with no partition yet (`assign`).
    pub fn open(cfg: &KafkaConfig, group: &str, layout: Layout) -> Result<Inbox, ExchangeError> {
        let mut c = client_config(cfg);
        c.set("group.id", format!("paywatch.{group}.exchange-reader"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            // A committed offset the topic no longer has means records
            // were lost to retention: an error, never a silent jump.
            .set("auto.offset.reset", "error");
        for (k, v) in &cfg.consumer {
            if k != "group.instance.id" && k != "auto.offset.reset" {
                c.set(k, v);
            }
        }
        let consumer: BaseConsumer = c.create()?;
        let probe: BaseConsumer = c.create()?;
        let names = Topic::ALL.iter().map(|t| (t.name(group), *t)).collect();
        Ok(Inbox { consumer, probe, group: group.to_owned(), layout, names, slots: BTreeMap::new() })
    }

    /// Starts reading `parts` (a task taken over or started), each from
    /// its checkpoint in `store`, the task's state (from the start where
    /// there is none). A checkpoint taken with other partition counts is
    /// refused.
    ///
    /// The partition must still hold the checkpoint's offset: one that
    /// ends before it (the topic made again) or starts after it (records
    /// never read, lost to retention) is refused, since reading on would
    /// skip records without a word. (Not every broker answers a fetch past
    /// the end with an error; tansu waits. Its watermark also stops inside
    /// the last batch: `log_end` reads to the real end.)
    pub fn assign(&mut self, store: &Store, parts: &[(Topic, u32)]) -> Result<(), ExchangeError> {
        let mut tpl = TopicPartitionList::new();
        let mut added = Vec::new();
        for &(topic, partition) in parts {
            if self.slots.contains_key(&(topic, partition)) {
                continue;
            }
            let slot = match store.get::<Stored>(Cf::ExchangeIn, &key(topic, partition))? {
                Some(s) => Slot { reader: Reader::resume(topic, partition, self.layout, s.reader)?, next_offset: s.next_offset },
                None => Slot { reader: Reader::new(topic, partition, self.layout), next_offset: 0 },
            };
            let name = topic.name(&self.group);
            let end = tail(&self.probe, &name, partition as i32, WATERMARKS_TIMEOUT)?;
            let (low, high) = (end.low, end.end);
            if slot.next_offset > high || slot.next_offset < low {
                return Err(ExchangeError::OffsetLost { topic: name, partition, offset: slot.next_offset, low, high });
            }
            // From inside tansu's last batch a fetch brings nothing until
            // another batch comes: start at its first record (`poll` skips
            // what is before the checkpoint).
            let from = fetch_from(slot.next_offset, low, end.watermark);
            tpl.add_partition_offset(&name, partition as i32, Offset::Offset(from))?;
            added.push(((topic, partition), slot));
        }
        // Only what changes: replacing the whole assignment while earlier
        // partitions are still stopping trips an assertion in librdkafka
        // (confluentinc/librdkafka#5573).
        self.consumer.incremental_assign(&tpl)?;
        self.slots.extend(added);
        Ok(())
    }

    /// Stops reading `parts` (a task handed over). What they released
    /// since their task's last commit is read again by the next owner,
    /// which resumes from that commit.
    pub fn revoke(&mut self, parts: &[(Topic, u32)]) -> Result<(), ExchangeError> {
        let mut tpl = TopicPartitionList::new();
        for p in parts {
            if self.slots.remove(p).is_some() {
                tpl.add_partition(&p.0.name(&self.group), p.1 as i32);
            }
        }
        self.consumer.incremental_unassign(&tpl)?;
        Ok(())
    }

    /// Reads what has arrived, waiting up to `timeout` for the first
    /// record, at most `POLL_MAX`. Returns how many records were read. A
    /// record its reader refuses stops the read there, with the error: it
    /// is not read past, and the offset stays before it. So does an offset
    /// the partition no longer holds; other consumer errors (a broker
    /// away) are logged and the read goes on at the next call.
    pub fn poll(&mut self, timeout: Duration) -> Result<usize, ExchangeError> {
        let mut read = 0;
        let mut wait = timeout;
        while read < POLL_MAX {
            let m = match self.consumer.poll(wait) {
                None => break,
                Some(Ok(m)) => m,
                Some(Err(e)) => match e.rdkafka_error_code() {
                    Some(RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange) => {
                        return Err(ExchangeError::OffsetReset(e))
                    }
                    // The broker away for a moment: librdkafka reconnects.
                    _ => {
                        tracing::warn!(error = %e, "Kafka consumer error reading the repartition topics; retrying");
                        break;
                    }
                },
            };
            wait = Duration::ZERO;
            let partition = m.partition() as u32;
            let Some(&topic) = self.names.get(m.topic()) else { continue };
            let Some(slot) = self.slots.get_mut(&(topic, partition)) else { continue };
            if m.offset() < slot.next_offset {
                // Fetched before a seek settled: already read.
                continue;
            }
            let bytes = m.payload().unwrap_or_default();
            slot.reader.receive(bytes).map_err(|source| ExchangeError::Refused {
                topic: m.topic().to_owned(),
                partition,
                offset: m.offset(),
                source,
            })?;
            slot.next_offset = m.offset() + 1;
            read += 1;
        }
        Ok(read)
    }

    /// The next released fact of any partition read, and where.
    pub fn pop(&mut self) -> Option<(Topic, u32, SortKey, Fact)> {
        self.slots.iter_mut().find_map(|(&(t, p), s)| s.reader.pop().map(|(at, f)| (t, p, at, f)))
    }

    /// The reader and offset of `topic`'s `partition`, into the batch of
    /// the task that reads it (nothing for a partition not read).
    pub fn checkpoint(&self, topic: Topic, partition: u32, batch: &mut Batch<'_>) -> Result<(), StoreError> {
        match self.slots.get(&(topic, partition)) {
            Some(s) => batch.put(Cf::ExchangeIn, &key(topic, partition), &Stored { next_offset: s.next_offset, reader: s.reader.checkpoint() }),
            None => Ok(()),
        }
    }

    /// Records skipped as sent twice, since open.
    pub fn repeats(&self) -> u64 {
        self.slots.values().map(|s| s.reader.repeats()).sum()
    }

    /// Facts the readers hold back, waiting for another writer's mark.
    pub fn held(&self) -> usize {
        self.slots.values().map(|s| s.reader.held()).sum()
    }

    /// The offset of the next record to read on `topic`'s `partition`.
    pub fn next_offset(&self, topic: Topic, partition: u32) -> Option<i64> {
        self.slots.get(&(topic, partition)).map(|s| s.next_offset)
    }
}
