//! A Kafka record's position in the merged input, in the form the
//! repartition records carry (#16, docs/partitioning.md "The position's
//! Kafka form").
//!
//! The file audit orders records by event time, kind, file and line; the
//! service's reorder buffer by event time, kind, topic, partition and
//! offset. Between instances a fact travels with the position of the
//! record that produced it, and the task reading it releases facts in that
//! order. The two orders are one when the partition and the offset share
//! the line: `line = partition << 40 | offset`. That holds while offsets
//! stay below 2^40 (a trillion records in one partition) and partitions
//! below 2^24; a record outside those bounds is refused by name rather
//! than given a position that would sort it wrongly. `SortKey`'s stored
//! form does not change.

use super::{SortKey, Timestamp};

/// Bits of the line that hold the offset.
const OFFSET_BITS: u32 = 40;
/// The first offset that does not fit.
pub const OFFSET_LIMIT: i64 = 1 << OFFSET_BITS;
/// The first partition that does not fit (64 − 40 = 24 bits).
pub const PARTITION_LIMIT: i32 = 1 << (64 - OFFSET_BITS);

/// A record that has no position in the Kafka form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PositionError {
    #[error("offset {offset} of partition {partition} is outside the positions a repartition record can carry (0 to 2^40 − 1)")]
    Offset { partition: i32, offset: i64 },
    #[error("partition {partition} is outside the positions a repartition record can carry (0 to 2^24 − 1)")]
    Partition { partition: i32 },
}

impl SortKey {
    /// The position of the record at `offset` of `partition` of input
    /// `source`, with event time `time` and kind rank `rank`: ordered as the
    /// service's reorder buffer orders its records.
    pub fn from_kafka(time: Timestamp, rank: u8, source: u8, partition: i32, offset: i64) -> Result<SortKey, PositionError> {
        if !(0..PARTITION_LIMIT).contains(&partition) {
            return Err(PositionError::Partition { partition });
        }
        if !(0..OFFSET_LIMIT).contains(&offset) {
            return Err(PositionError::Offset { partition, offset });
        }
        Ok(SortKey { time, rank, source, line: (partition as u64) << OFFSET_BITS | offset as u64 })
    }

    /// The partition and offset of a position made by [`SortKey::from_kafka`]:
    /// what an error about the fact names, so an operator finds its record.
    pub fn kafka_place(&self) -> (i32, i64) {
        ((self.line >> OFFSET_BITS) as i32, (self.line & (OFFSET_LIMIT as u64 - 1)) as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_bounds_are_refused_by_name() {
        let t = Timestamp(7);
        let last = SortKey::from_kafka(t, 4, 2, PARTITION_LIMIT - 1, OFFSET_LIMIT - 1).unwrap();
        assert_eq!(last.kafka_place(), (PARTITION_LIMIT - 1, OFFSET_LIMIT - 1));
        assert_eq!(last.line, u64::MAX);
        assert_eq!(SortKey::from_kafka(t, 4, 2, 0, 0).unwrap().line, 0);
        let e = SortKey::from_kafka(t, 4, 2, 3, OFFSET_LIMIT).unwrap_err();
        assert_eq!(e, PositionError::Offset { partition: 3, offset: OFFSET_LIMIT });
        assert!(e.to_string().contains("offset 1099511627776 of partition 3"), "{e}");
        assert_eq!(SortKey::from_kafka(t, 4, 2, 3, -1).unwrap_err(), PositionError::Offset { partition: 3, offset: -1 });
        assert_eq!(SortKey::from_kafka(t, 4, 2, PARTITION_LIMIT, 0).unwrap_err(), PositionError::Partition { partition: PARTITION_LIMIT });
        assert_eq!(SortKey::from_kafka(t, 4, 2, -1, 0).unwrap_err(), PositionError::Partition { partition: -1 });
    }

    fn place() -> impl Strategy<Value = (i64, u8, u8, i32, i64)> {
        // Small values collide often (the ties that matter); large ones
        // reach the bounds.
        (
            prop_oneof![0i64..3, any::<i64>()],
            0u8..6,
            0u8..5,
            prop_oneof![0i32..3, 0..PARTITION_LIMIT],
            prop_oneof![0i64..3, 0..OFFSET_LIMIT],
        )
    }

    proptest! {
        /// Two records compare by their positions exactly as the reorder
        /// buffer compares them (event time, rank, source, partition,
        /// offset), and the position gives its partition and offset back.
        #[test]
        fn positions_keep_the_reorder_buffers_order(a in place(), b in place()) {
            let key = |(t, r, s, p, o): (i64, u8, u8, i32, i64)| SortKey::from_kafka(Timestamp(t), r, s, p, o).unwrap();
            let (ka, kb) = (key(a), key(b));
            prop_assert_eq!(ka.cmp(&kb), a.cmp(&b));
            prop_assert_eq!(ka.kafka_place(), (a.3, a.4));
        }
    }
}
