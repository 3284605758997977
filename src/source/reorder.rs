//! The bounded reorder buffer of `paywatch run`: records from the three
//! input topics are held and released in event-time order, as far as
//! `kafka.max_out_of_order` allows.
//!
//! The release bound is a watermark over the assigned partitions: the
//! lowest of each partition's newest event time, where a partition that has
//! read everything there is (caught up) counts as "now" instead — it can
//! only bring newer records. A record is released once its event time plus
//! `max_out_of_order` is below that bound. Partitions of the input topics
//! that another member of the group holds, or that were just revoked, keep
//! the bound where they were for a grace period.
//!
//! Memory stays bounded two ways: from half full only the partitions that
//! hold the watermark back are read ([`Reorder::readable`]; the others wait
//! in their own librdkafka queues), and beyond its size the buffer lets its
//! oldest records go early. (Pausing partitions was tried first: librdkafka
//! 2.12 with this broker resumed past messages it had fetched but not
//! handed out.) Time comes in as an argument; nothing here reads a clock,
//! Kafka or the store.

use super::offsets::Part;
use crate::model::{PositionError, Record, SortKey, Timestamp};
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::time::Duration;

/// A record read from Kafka, waiting for its turn.
#[derive(Debug)]
pub struct Held {
    pub record: Record,
    pub part: Part,
    pub offset: i64,
    /// The original message value, for a dead letter if the engine refuses
    /// the record.
    pub raw: Vec<u8>,
    /// The original message key, likewise.
    pub key: Option<Vec<u8>>,
    /// When it was read, for the processing-latency histogram.
    pub read_at: std::time::Instant,
}

impl Held {
    /// Event time, then kind, then source, partition and offset: total and
    /// deterministic, the file audit's order wherever the topics agree.
    fn order(&self) -> (Timestamp, u8, u8, i32, i64) {
        (self.record.event_time(), self.record.rank(), self.part.source, self.part.partition, self.offset)
    }

    /// The record's position as a repartition record carries it (#16): the
    /// same order as [`Held::order`], in one `SortKey`.
    pub fn position(&self) -> Result<SortKey, PositionError> {
        SortKey::from_kafka(self.record.event_time(), self.record.rank(), self.part.source, self.part.partition, self.offset)
    }
}

struct Entry(Held);

impl PartialEq for Entry {
    fn eq(&self, o: &Entry) -> bool {
        self.0.order() == o.0.order()
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Entry) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Entry) -> Ordering {
        self.0.order().cmp(&o.0.order())
    }
}

/// What the reorder buffer knows of one partition.
#[derive(Clone, Copy, Debug, Default)]
struct PartClock {
    /// The newest event time read from it.
    high: Option<Timestamp>,
    /// It has nothing more to read right now.
    caught_up: bool,
    /// Revoked at this wall time: it still holds the watermark back (the
    /// group usually gives it back within seconds) until the grace ends.
    revoked_at: Option<Timestamp>,
}

pub struct Reorder {
    /// Held records, earliest first.
    heap: BinaryHeap<Reverse<Entry>>,
    /// `max_out_of_order` in milliseconds.
    lateness_ms: i64,
    /// Records held at most; beyond it the oldest go out of order.
    cap: usize,
    /// How long a revoked partition keeps holding the watermark, in ms.
    grace_ms: i64,
    /// Assigned (and recently revoked) partitions, their event-time progress.
    parts: BTreeMap<Part, PartClock>,
}

impl Reorder {
    pub fn new(max_out_of_order: Duration, cap: usize, revoked_grace: Duration) -> Reorder {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2);
        Reorder {
            heap: BinaryHeap::new(),
            lateness_ms: ms(max_out_of_order),
            cap: cap.max(1),
            grace_ms: ms(revoked_grace),
            parts: BTreeMap::new(),
        }
    }

    /// Partitions newly assigned to this consumer.
    pub fn assign(&mut self, parts: &[Part]) {
        for p in parts {
            let c = self.parts.entry(*p).or_default();
            c.revoked_at = None;
            c.caught_up = false;
        }
    }

    /// Every partition of the input topics: those not assigned to this
    /// consumer (another member of the group holds them) hold the watermark
    /// like revoked ones, from `now` for the grace period.
    pub fn know(&mut self, parts: &[Part], now: Timestamp) {
        for p in parts {
            self.parts.entry(*p).or_insert(PartClock { high: None, caught_up: false, revoked_at: Some(now) });
        }
    }

    /// Partitions taken away at wall time `now`: their held records are
    /// dropped (they stay pending in the offset book and are read again
    /// when reassigned), and each keeps the watermark at its earliest
    /// dropped record for the grace period, so that a brief rebalance does
    /// not let other partitions overtake it. Returns how many were dropped.
    pub fn revoke(&mut self, parts: &[Part], now: Timestamp) -> usize {
        let gone: BTreeSet<Part> = parts.iter().copied().collect();
        let mut earliest: BTreeMap<Part, Timestamp> = BTreeMap::new();
        let before = self.heap.len();
        self.heap.retain(|Reverse(e)| {
            if !gone.contains(&e.0.part) {
                return true;
            }
            let t = e.0.record.event_time();
            earliest.entry(e.0.part).and_modify(|x| *x = (*x).min(t)).or_insert(t);
            false
        });
        for p in &gone {
            if let Some(c) = self.parts.get_mut(p) {
                c.revoked_at = Some(now);
                c.caught_up = false;
                if let Some(t) = earliest.get(p) {
                    c.high = Some(*t);
                }
            }
        }
        before - self.heap.len()
    }

    /// Holds a record just read.
    pub fn push(&mut self, h: Held) {
        let clock = self.parts.entry(h.part).or_default();
        let t = h.record.event_time();
        clock.high = Some(clock.high.map_or(t, |x| x.max(t)));
        clock.caught_up = false;
        self.heap.push(Reverse(Entry(h)));
    }

    /// Whether a partition has read everything there is for now.
    pub fn set_caught_up(&mut self, p: Part, caught_up: bool) {
        if let Some(c) = self.parts.get_mut(&p).filter(|c| c.revoked_at.is_none()) {
            c.caught_up = caught_up;
        }
    }

    /// The watermark: the lowest partition progress, a caught-up partition
    /// counting as `now`. `None` while some partition has read nothing yet
    /// and is not known to be empty.
    pub fn bound(&self, now: Timestamp) -> Option<Timestamp> {
        let mut low: Option<Timestamp> = None;
        for c in self.parts.values() {
            if c.revoked_at.is_some_and(|at| now.0 >= at.0.saturating_add(self.grace_ms)) {
                continue;
            }
            let t = match (c.caught_up, c.high) {
                (true, h) => h.map_or(now, |h| h.max(now)),
                (false, Some(h)) => h,
                (false, None) => return None,
            };
            low = Some(low.map_or(t, |l| l.min(t)));
        }
        low
    }

    /// Moves every record now due into `out`, in order.
    pub fn release(&mut self, now: Timestamp, out: &mut Vec<Held>) {
        let Some(bound) = self.bound(now) else { return };
        while let Some(Reverse(e)) = self.heap.peek() {
            if e.0.record.event_time().0.saturating_add(self.lateness_ms) >= bound.0 {
                break;
            }
            if let Some(Reverse(Entry(h))) = self.heap.pop() {
                out.push(h);
            }
        }
    }

    /// The partitions worth reading now: all assigned ones while the buffer
    /// is under half full, else only those holding the watermark back (the
    /// others wait in their own queues, where librdkafka stops fetching).
    pub fn readable(&self) -> Vec<Part> {
        if self.heap.len() < self.cap / 2 {
            return self.assigned().collect();
        }
        let active = self.parts.iter().filter(|(_, c)| !c.caught_up && c.revoked_at.is_none());
        let low = active.clone().map(|(_, c)| c.high).min();
        active.filter(|(_, c)| Some(c.high) == low).map(|(p, _)| *p).collect()
    }

    /// Bounds memory: while more than the cap are held, the oldest go
    /// into `out` even though the watermark has not passed them (the rules
    /// handle late records; only the order is lost). Returns how many.
    pub fn overflow(&mut self, out: &mut Vec<Held>) -> usize {
        let mut n = 0;
        while self.heap.len() > self.cap {
            if let Some(Reverse(Entry(h))) = self.heap.pop() {
                out.push(h);
                n += 1;
            }
        }
        n
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Half the bound: past it, only what holds the watermark back is read.
    pub fn half_full(&self) -> bool {
        self.heap.len() >= self.cap / 2
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Assigned partitions.
    pub fn assigned(&self) -> impl Iterator<Item = Part> + '_ {
        self.parts.iter().filter(|(_, c)| c.revoked_at.is_none()).map(|(p, _)| *p)
    }

    /// True when every assigned partition is caught up and nothing is held.
    pub fn idle(&self) -> bool {
        self.heap.is_empty() && self.parts.values().all(|c| c.caught_up || c.revoked_at.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testkit;
    use crate::model::{Record, Status};

    const HOUR: i64 = 3_600_000;
    const GRACE: Duration = Duration::from_secs(60);
    const PAY: Part = Part { source: 2, partition: 0 };
    const ROSTER: Part = Part { source: 0, partition: 0 };

    fn held(part: Part, offset: i64, t: i64) -> Held {
        let record = match part.source {
            0 => {
                let mut r = testkit::roster(Status::Active, "2018-01-01", "2018-01-01T00:00:00+08:00");
                r.updated_at = Timestamp(t);
                Record::Roster(r)
            }
            _ => {
                let mut p = testkit::payment(&format!("E{offset}"), "2018-02", "585.00", "2018-02-10T09:00:00+08:00");
                p.paid_at = Timestamp(t);
                Record::Payment(p)
            }
        };
        Held { record, part, offset, raw: Vec::new(), key: None, read_at: std::time::Instant::now() }
    }

    fn released(r: &mut Reorder, now: i64) -> Vec<(u8, i64)> {
        let mut out = Vec::new();
        r.release(Timestamp(now), &mut out);
        out.iter().map(|h| (h.part.source, h.offset)).collect()
    }

    #[test]
    fn holds_until_every_partition_has_passed_by_the_allowed_lateness() {
        let mut r = Reorder::new(Duration::from_secs(3600), 1000, GRACE);
        r.assign(&[PAY, ROSTER]);
        r.push(held(PAY, 0, 10 * HOUR));
        r.push(held(PAY, 1, 20 * HOUR));
        // The roster partition has read nothing yet: nothing can go.
        assert_eq!(released(&mut r, 0), vec![]);
        // The roster is at 10h: the payment at 10h waits (10h + 1h >= 10h).
        r.push(held(ROSTER, 0, 10 * HOUR));
        assert_eq!(released(&mut r, 0), vec![]);
        // The roster at 11h + 1ms: the 10h records go, roster first.
        r.push(held(ROSTER, 1, 11 * HOUR + 1));
        assert_eq!(released(&mut r, 0), vec![(0, 0), (2, 0)]);
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn a_caught_up_partition_counts_as_now() {
        let mut r = Reorder::new(Duration::from_secs(3600), 1000, GRACE);
        r.assign(&[PAY, ROSTER]);
        r.set_caught_up(ROSTER, true);
        r.push(held(PAY, 0, 10 * HOUR));
        r.push(held(PAY, 1, 30 * HOUR));
        // The payment partition is at 30h, the idle roster at now = 12h.
        assert_eq!(released(&mut r, 12 * HOUR), vec![(2, 0)]);
        // A live payment waits for the wall clock to pass it by an hour.
        r.set_caught_up(PAY, true);
        assert_eq!(released(&mut r, 30 * HOUR + HOUR), vec![]);
        assert_eq!(released(&mut r, 30 * HOUR + HOUR + 1), vec![(2, 1)]);
        assert!(r.idle());
    }

    #[test]
    fn a_revoked_partition_drops_what_it_held_and_holds_the_watermark_for_the_grace() {
        let mut r = Reorder::new(Duration::from_secs(0), 1000, GRACE);
        r.assign(&[PAY, ROSTER]);
        r.push(held(PAY, 0, HOUR));
        r.push(held(PAY, 1, 5 * HOUR));
        r.push(held(ROSTER, 0, 3 * HOUR));
        r.set_caught_up(ROSTER, true);
        // Revoked at wall time 10h: the held payments go; the partition
        // stays at its earliest dropped record (1h).
        assert_eq!(r.revoke(&[PAY], Timestamp(10 * HOUR)), 2);
        assert_eq!(r.assigned().collect::<Vec<_>>(), vec![ROSTER]);
        assert_eq!(released(&mut r, 10 * HOUR), vec![], "the roster at 3h must wait for payments from 1h");
        // Given back: the payments are read again and order holds.
        r.assign(&[PAY]);
        r.push(held(PAY, 0, HOUR));
        r.push(held(PAY, 1, 5 * HOUR));
        r.set_caught_up(PAY, true);
        assert_eq!(released(&mut r, 10 * HOUR), vec![(2, 0), (0, 0), (2, 1)]);
    }

    #[test]
    fn a_partition_held_by_another_member_holds_the_watermark_for_the_grace() {
        let mut r = Reorder::new(Duration::from_secs(0), 1000, GRACE);
        r.assign(&[ROSTER]);
        r.know(&[ROSTER, PAY], Timestamp(10 * HOUR));
        r.push(held(ROSTER, 0, HOUR));
        r.set_caught_up(ROSTER, true);
        assert_eq!(r.assigned().collect::<Vec<_>>(), vec![ROSTER]);
        assert_eq!(released(&mut r, 10 * HOUR), vec![], "payments never seen: wait");
        let grace = GRACE.as_millis() as i64;
        assert_eq!(released(&mut r, 10 * HOUR + grace), vec![(0, 0)]);
    }

    #[test]
    fn a_revoked_partition_not_given_back_stops_holding_after_the_grace() {
        let mut r = Reorder::new(Duration::from_secs(0), 1000, GRACE);
        r.assign(&[PAY, ROSTER]);
        r.push(held(PAY, 0, HOUR));
        r.push(held(ROSTER, 0, 3 * HOUR));
        r.set_caught_up(ROSTER, true);
        r.revoke(&[PAY], Timestamp(10 * HOUR));
        let grace = GRACE.as_millis() as i64;
        assert_eq!(released(&mut r, 10 * HOUR + grace - 1), vec![]);
        assert_eq!(released(&mut r, 10 * HOUR + grace), vec![(0, 0)]);
        assert!(r.idle());
    }

    #[test]
    fn from_half_full_only_the_laggards_are_read() {
        let mut r = Reorder::new(Duration::from_secs(3600), 8, GRACE);
        let pay1 = Part { source: 2, partition: 1 };
        r.assign(&[PAY, pay1, ROSTER]);
        assert_eq!(r.readable(), vec![ROSTER, PAY, pay1]);
        for o in 0..4 {
            r.push(held(PAY, o, 10 * HOUR + o));
        }
        // Half full: the roster and pay1 have read nothing; they are read.
        assert_eq!(r.readable(), vec![ROSTER, pay1]);
        r.push(held(pay1, 0, 20 * HOUR));
        r.set_caught_up(ROSTER, true);
        assert_eq!(r.readable(), vec![PAY], "PAY is now the furthest behind");
    }

    #[test]
    fn beyond_the_cap_the_oldest_go_out_first() {
        let mut r = Reorder::new(Duration::from_secs(3600), 3, GRACE);
        r.assign(&[PAY, ROSTER]);
        for o in 0..5 {
            r.push(held(PAY, o, 10 * HOUR + o));
        }
        // The roster has read nothing: nothing is due, but only 3 may wait.
        assert_eq!(released(&mut r, 0), vec![]);
        let mut out = Vec::new();
        assert_eq!(r.overflow(&mut out), 2);
        assert_eq!(out.iter().map(|h| h.offset).collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(r.len(), 3);
    }

    #[test]
    fn records_leave_in_the_order_of_their_positions() {
        let mut r = Reorder::new(Duration::from_secs(0), 100, GRACE);
        let pay1 = Part { source: 2, partition: 1 };
        r.assign(&[PAY, pay1, ROSTER]);
        // Ties in event time across partitions and kinds, pushed out of order.
        for (part, offset, t) in [(pay1, 0, 5), (PAY, 7, 5), (ROSTER, 3, 5), (PAY, 2, 4), (pay1, 9, 4), (ROSTER, 1, 6)] {
            r.push(held(part, offset, HOUR + t));
        }
        for p in [PAY, pay1, ROSTER] {
            r.set_caught_up(p, true);
        }
        let mut out = Vec::new();
        r.release(Timestamp(10 * HOUR), &mut out);
        let positions: Vec<SortKey> = out.iter().map(|h| h.position().unwrap()).collect();
        assert_eq!(positions.len(), 6);
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
        let places: Vec<(i32, i64)> = positions.iter().map(SortKey::kafka_place).collect();
        assert_eq!(places, vec![(0, 2), (1, 9), (0, 3), (0, 7), (1, 0), (0, 1)]);
        let mut far = held(PAY, crate::model::position::OFFSET_LIMIT, HOUR);
        assert!(matches!(far.position(), Err(PositionError::Offset { .. })));
        far.offset = 0;
        assert!(far.position().is_ok());
    }
}
