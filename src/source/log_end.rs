//! Where a partition's log really ends.
//!
//! Kafka's high watermark is the offset after the partition's last record.
//! tansu, the broker the tests start, answers with the offset after the
//! *first* record of the last batch a producer sent: 4,997 for a partition
//! holding offsets 0 to 5,004 (seen 2026-12-03). Code that reads "to the
//! end" would stop inside that batch, and a reader's offset past it would
//! look like a log that ends before it. So the end is the watermark
//! checked by reading from the record before it: one record on Kafka, the
//! rest of the batch on tansu. Used by `exchange::inbox`; the changelog's
//! restore and follower still trust the watermark (issue #16 note).

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};

/// The first offset and the offset after the last record of `topic`'s
/// `partition`. `probe` is assigned to the partition for this and
/// unassigned after: give it a consumer that reads nothing else.
pub fn log_end(probe: &BaseConsumer, topic: &str, partition: i32, timeout: Duration) -> KafkaResult<(i64, i64)> {
    let (low, high) = probe.fetch_watermarks(topic, partition, timeout)?;
    if high <= low {
        return Ok((low, high));
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(high - 1))?;
    probe.assign(&tpl)?;
    let deadline = Instant::now() + timeout;
    let mut end = high;
    let mut seen = false;
    while Instant::now() < deadline {
        match probe.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                if m.topic() == topic && m.partition() == partition {
                    end = end.max(m.offset() + 1);
                    seen = true;
                }
            }
            Some(Err(e)) => {
                probe.unassign()?;
                return Err(e);
            }
            // The batch is read once a poll finds nothing more.
            None if seen => break,
            None => {}
        }
    }
    probe.unassign()?;
    Ok((low, end))
}
