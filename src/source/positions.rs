//! Whether a partition still holds what the stored offsets say was read
//! (hardening item 8). A topic deleted and recreated, or truncated, or
//! whose head retention removed, no longer matches the offset book: read
//! blindly, the records below the stored position would be skipped (they
//! look applied) and the lag would read 0.
//!
//! This module watches the offsets one partition delivers, pass by pass,
//! and says what the loop must do. It never talks to Kafka and never
//! touches RocksDB, so each case is tested exactly below.

use super::offsets::Part;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

/// How the log of a partition disagrees with its stored position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gap {
    /// The log ends before the stored position, or the broker moved the
    /// reader back below it: the topic was recreated or truncated.
    EndBefore,
    /// The log starts past the stored position: records that were never
    /// read are gone (retention, or a recreated topic).
    StartPast,
}

/// A partition whose log does not match its stored position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mismatch {
    /// The feed (`Part::source`): which topic, for the message.
    pub source: u8,
    /// The partition found out of step.
    pub partition: i32,
    /// Which way the log disagrees, for the words an operator reads.
    pub gap: Gap,
    /// The stored resume offset (the offset after the last record read).
    pub stored: i64,
    /// What the broker showed: its end offset (`EndBefore` by the end),
    /// the offset it delivered below the stored position (`EndBefore` by a
    /// reset), or its first offset (`StartPast`).
    pub found: i64,
}

impl Mismatch {
    /// One line for the log and `/readyz`.
    pub fn describe(&self, topic: &str) -> String {
        match self.gap {
            Gap::EndBefore => format!(
                "partition {} of {topic} holds offsets only below {} but paywatch had read up to {}: the topic was deleted and recreated, or truncated",
                self.partition, self.found, self.stored
            ),
            Gap::StartPast => format!(
                "partition {} of {topic} now starts at offset {} but paywatch had read only up to {}: records {}..{} are gone unread (retention, or a recreated topic)",
                self.partition, self.found, self.stored, self.stored, self.found
            ),
        }
    }
}

/// What to do with a message just read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OnMessage {
    /// Read it (admit, decode, hold). Pending offsets below `give_up_below`
    /// no longer exist (the first record of a pass from the log's start is
    /// past them): give them up.
    Read { give_up_below: Option<i64> },
    /// The broker skipped records after a seek: read the partition again
    /// from its beginning (`KafkaSource::rewind`, then [`Positions::rewound`]).
    Rewind,
    /// The log does not match the stored position: stop the topic.
    Stop(Mismatch),
}

/// What to do about a partition at a check (`check_caught_up`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AtCheck {
    Fine,
    /// A pass from the log's start has gone past pending offsets that were
    /// never delivered: they are gone; give up those below this offset.
    GiveUpBelow(i64),
    /// Pending offsets were not delivered on a pass that did not start at
    /// the log's start: read it again from there (once).
    Rewind,
    Stop(Mismatch),
}

/// One partition's current read pass.
#[derive(Clone, Copy, Debug)]
struct Pass {
    /// The offset after the last message read in this pass (where it was
    /// pointed, before any).
    next: i64,
    /// The offset the pass was pointed at, until the first message: that
    /// message must be exactly there.
    expect: Option<i64>,
    /// The pass began at the log's first offset.
    from_start: bool,
    /// No message read yet in this pass.
    fresh: bool,
}

/// Every assigned partition's pass.
#[derive(Debug, Default)]
pub struct Positions {
    passes: FxHashMap<Part, Pass>,
}

impl Positions {
    /// A partition assigned and pointed at its stored position (`None`:
    /// never read, so at the log's start).
    pub fn assigned(&mut self, p: Part, seek_to: Option<i64>) {
        let pass = Pass { next: seek_to.unwrap_or(0), expect: seek_to, from_start: seek_to.is_none(), fresh: true };
        self.passes.insert(p, pass);
    }

    /// The partition is read again from the log's start.
    pub fn rewound(&mut self, p: Part) {
        self.passes.insert(p, Pass { next: 0, expect: None, from_start: true, fresh: true });
    }

    pub fn revoked(&mut self, p: Part) {
        self.passes.remove(&p);
    }

    /// The offset after the last message read (where the pass was pointed,
    /// before any): how far this process has read the partition.
    pub fn next(&self, p: Part) -> Option<i64> {
        self.passes.get(&p).map(|x| x.next)
    }

    /// Message `offset` of `p` arrived. `stored` is the partition's stored
    /// resume offset, `None` when it was never read.
    pub fn on_message(&mut self, p: Part, offset: i64, stored: Option<i64>) -> OnMessage {
        let Some(pass) = self.passes.get_mut(&p) else {
            return OnMessage::Read { give_up_below: None };
        };
        let fresh = std::mem::replace(&mut pass.fresh, false);
        if let Some(want) = pass.expect.take() {
            if offset > want {
                // Either a broker that returns nothing for a fetch starting
                // inside a record batch, or a log that starts past `want`:
                // a pass from the start tells them apart.
                return OnMessage::Rewind;
            }
        }
        if offset < pass.next {
            // Below where this pass was pointed or had read: the broker
            // reset the reader (the position is out of its range).
            return OnMessage::Stop(Mismatch { source: p.source, partition: p.partition, gap: Gap::EndBefore, stored: stored.unwrap_or(pass.next), found: offset });
        }
        pass.next = offset + 1;
        if fresh && pass.from_start {
            if let Some(s) = stored.filter(|s| offset > *s) {
                return OnMessage::Stop(Mismatch { source: p.source, partition: p.partition, gap: Gap::StartPast, stored: s, found: offset });
            }
            return OnMessage::Read { give_up_below: (offset > 0).then_some(offset) };
        }
        OnMessage::Read { give_up_below: None }
    }

    /// A check of partition `p`: `high` its end offset as the last fetch
    /// response told it (never a separate query), `stored` its stored
    /// resume offset, `unread_pending` whether pending offsets below it
    /// were not delivered in this process.
    pub fn check(&self, p: Part, high: Option<i64>, stored: Option<i64>, unread_pending: bool) -> AtCheck {
        let Some(pass) = self.passes.get(&p) else { return AtCheck::Fine };
        if let (Some(h), Some(s)) = (high, stored) {
            if h < s {
                return AtCheck::Stop(Mismatch { source: p.source, partition: p.partition, gap: Gap::EndBefore, stored: s, found: h });
            }
        }
        let caught_up = high.is_some_and(|h| pass.next >= h);
        if caught_up && unread_pending {
            return if pass.from_start && !pass.fresh { AtCheck::GiveUpBelow(pass.next) } else { AtCheck::Rewind };
        }
        AtCheck::Fine
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Part = Part { source: 1, partition: 2 };

    fn read() -> OnMessage {
        OnMessage::Read { give_up_below: None }
    }

    #[test]
    fn a_partition_read_in_order_from_its_stored_position_is_fine() {
        let mut s = Positions::default();
        s.assigned(P, Some(100));
        for o in 100..110 {
            assert_eq!(s.on_message(P, o, Some(100)), read());
        }
        // Gaps inside a pass (compaction, transaction markers) are normal.
        assert_eq!(s.on_message(P, 120, Some(100)), read());
        assert_eq!(s.check(P, Some(121), Some(121), false), AtCheck::Fine);
        assert_eq!(s.next(P), Some(121));
    }

    #[test]
    fn a_never_read_partition_may_start_anywhere() {
        let mut s = Positions::default();
        s.assigned(P, None);
        assert_eq!(s.on_message(P, 5000, None), OnMessage::Read { give_up_below: Some(5000) });
        assert_eq!(s.check(P, Some(0), None, false), AtCheck::Fine, "nothing stored to compare");
    }

    /// A real broker resets a reader pointed past the log's end to its
    /// start: the first record is below the stored position.
    #[test]
    fn a_recreated_topic_shows_as_a_reset_below_the_stored_position() {
        let mut s = Positions::default();
        s.assigned(P, Some(1000));
        let m = match s.on_message(P, 0, Some(1000)) {
            OnMessage::Stop(m) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!((m.gap, m.stored, m.found), (Gap::EndBefore, 1000, 0));
        assert!(m.describe("civil.deaths.v1").contains("partition 2 of civil.deaths.v1"), "{}", m.describe("t"));
        // The same while following live: the position moves back by itself.
        s.assigned(P, Some(10));
        assert_eq!(s.on_message(P, 10, Some(10)), read());
        assert_eq!(s.on_message(P, 11, Some(10)), read());
        assert!(matches!(s.on_message(P, 3, Some(12)), OnMessage::Stop(Mismatch { gap: Gap::EndBefore, found: 3, .. })));
    }

    /// A broker that answers a fetch past the end with nothing (tansu)
    /// still reports the end in its fetch responses.
    #[test]
    fn an_end_before_the_stored_position_stops_the_topic() {
        let mut s = Positions::default();
        s.assigned(P, Some(1000));
        assert!(matches!(s.check(P, Some(4), Some(1000), false), AtCheck::Stop(Mismatch { gap: Gap::EndBefore, stored: 1000, found: 4, .. })));
        assert_eq!(s.check(P, Some(1000), Some(1000), false), AtCheck::Fine);
        assert_eq!(s.check(P, None, Some(1000), false), AtCheck::Fine, "end not known yet");
    }

    #[test]
    fn a_log_starting_past_the_stored_position_stops_the_topic() {
        let mut s = Positions::default();
        s.assigned(P, Some(100));
        // Pointed at 100, the broker starts at its first offset, 500.
        assert_eq!(s.on_message(P, 500, Some(100)), OnMessage::Rewind);
        s.rewound(P);
        assert!(matches!(s.on_message(P, 500, Some(100)), OnMessage::Stop(Mismatch { gap: Gap::StartPast, stored: 100, found: 500, .. })));
    }

    /// Pending offsets (read, held, not applied at the last commit) that
    /// retention or compaction removed are given up, not looped on.
    #[test]
    fn vanished_pending_offsets_are_given_up_once() {
        let mut s = Positions::default();
        // Pending 40..50 below resume 100; the log now starts at 45.
        s.assigned(P, Some(40));
        assert_eq!(s.on_message(P, 45, Some(100)), OnMessage::Rewind);
        s.rewound(P);
        assert_eq!(s.on_message(P, 45, Some(100)), OnMessage::Read { give_up_below: Some(45) });
        for o in 46..100 {
            assert_eq!(s.on_message(P, o, Some(100)), read());
        }
        // Compacted inside the log: a pass that did not start at the log's
        // start rewinds once; a pass from the start gives up.
        let mut c = Positions::default();
        c.assigned(P, Some(100));
        assert_eq!(c.on_message(P, 100, Some(100)), read());
        assert_eq!(c.check(P, Some(101), Some(101), true), AtCheck::Rewind);
        c.rewound(P);
        // Nothing read in this pass yet: behind the end, which the loop's
        // stuck clock watches, not a reason to give anything up.
        assert_eq!(c.check(P, Some(101), Some(101), true), AtCheck::Fine);
        assert_eq!(c.on_message(P, 0, Some(101)), read());
        assert_eq!(c.on_message(P, 100, Some(101)), read());
        assert_eq!(c.check(P, Some(101), Some(101), true), AtCheck::GiveUpBelow(101));
    }

    /// tansu returns nothing for a fetch that starts inside a record batch
    /// and, after a rewind, the batch from its start: not a mismatch.
    #[test]
    fn a_skip_after_a_seek_is_read_again_from_the_start() {
        let mut s = Positions::default();
        s.assigned(P, Some(7));
        assert_eq!(s.on_message(P, 10, Some(12)), OnMessage::Rewind);
        s.rewound(P);
        assert_eq!(s.on_message(P, 0, Some(12)), read());
        for o in 1..20 {
            assert_eq!(s.on_message(P, o, Some(12)), read());
        }
    }
}
