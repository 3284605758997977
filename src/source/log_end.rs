//! Where a partition's log really ends.
//!
//! Kafka's high watermark is the offset after the partition's last record.
//! tansu, the broker the tests start, answers with the offset after the
//! *first* record of the last batch a producer sent: 4,997 for a partition
//! holding offsets 0 to 5,004 (seen 2026-12-03). And it answers a fetch at
//! or past that watermark with nothing, even where records are. Code that
//! reads "to the end" would stop inside that batch, a reader's offset past
//! it would look like a log that ends before it, and a read starting there
//! would wait for ever. So:
//! - the end is the watermark checked by reading from the record before
//!   it: one record on Kafka, the rest of the batch on tansu (`tail`);
//! - a read of records from an offset starts its fetch no later than that
//!   record and skips what comes before (`fetch_from`).
//!
//! Used by `exchange::inbox` and by the changelog's restore, follower and
//! publisher.

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};

/// The end of a partition, read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tail {
    /// The first offset the partition holds.
    pub low: i64,
    /// The offset after its last record.
    pub end: i64,
    /// The broker's high watermark: a fetch from below it is answered.
    pub watermark: i64,
    /// The last record's payload (and its offset is `end - 1`); `None`
    /// when the partition holds nothing.
    pub last: Option<Vec<u8>>,
}

/// Where to start fetching to read the record at `from` of a partition
/// whose watermark is `watermark` (and first offset `low`): never past the
/// record before the watermark, which tansu answers with nothing.
pub fn fetch_from(from: i64, low: i64, watermark: i64) -> i64 {
    if watermark > low && from >= watermark {
        watermark - 1
    } else {
        from
    }
}

/// The first offset and the offset after the last record of `topic`'s
/// `partition`. `probe` is assigned to the partition for this and
/// unassigned after: give it a consumer that reads nothing else.
pub fn log_end(probe: &BaseConsumer, topic: &str, partition: i32, timeout: Duration) -> KafkaResult<(i64, i64)> {
    tail(probe, topic, partition, timeout).map(|t| (t.low, t.end))
}

/// The partition's first offset, the offset after its last record, its
/// watermark and its last record, read as `log_end` says.
pub fn tail(probe: &BaseConsumer, topic: &str, partition: i32, timeout: Duration) -> KafkaResult<Tail> {
    let (low, high) = probe.fetch_watermarks(topic, partition, timeout)?;
    let mut t = Tail { low, end: high, watermark: high, last: None };
    if high <= low {
        return Ok(t);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(high - 1))?;
    probe.assign(&tpl)?;
    let deadline = Instant::now() + timeout;
    let mut seen = false;
    while Instant::now() < deadline {
        match probe.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                if m.topic() == topic && m.partition() == partition && m.offset() >= high - 1 && m.offset() + 1 >= t.end {
                    t.end = m.offset() + 1;
                    t.last = Some(m.payload().unwrap_or_default().to_vec());
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
    if !seen {
        // The record before the watermark did not come within `timeout`.
        return Err(rdkafka::error::KafkaError::MessageConsumption(rdkafka::types::RDKafkaErrorCode::OperationTimedOut));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::fetch_from;

    #[test]
    fn a_fetch_starts_no_later_than_the_record_before_the_watermark() {
        assert_eq!(fetch_from(3, 0, 10), 3, "below the watermark: where asked");
        assert_eq!(fetch_from(10, 0, 10), 9);
        assert_eq!(fetch_from(14, 0, 10), 9, "inside tansu's last batch");
        assert_eq!(fetch_from(5, 5, 5), 5, "an empty partition");
        assert_eq!(fetch_from(0, 0, 0), 0);
    }
}
