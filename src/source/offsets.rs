//! Kafka offsets as state: for every input partition, where to resume and
//! which offsets below that were read but not yet applied (held in the
//! reorder buffer when the batch was committed).
//!
//! The book is committed in the same `WriteBatch` as the state the applied
//! records produced, so after a crash the consumer seeks to
//! [`OffsetBook::seek_to`], applies again only what was still pending, and
//! skips what was already applied: nothing lost, nothing counted twice.
//! This module never talks to Kafka and never touches RocksDB.

use crate::decode::Kind;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// One partition of one of the three input topics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Part {
    /// Which feed: roster 0, deaths 1, payments 2, decisions 3 (the file
    /// audit's order).
    pub source: u8,
    pub partition: i32,
}

impl Part {
    pub fn new(kind: Kind, partition: i32) -> Part {
        Part { source: source_of(kind), partition }
    }

    pub fn kind(self) -> Kind {
        match self.source {
            0 => Kind::Roster,
            1 => Kind::Death,
            3 => Kind::Decision,
            4 => Kind::Vulnerable,
            _ => Kind::Payment,
        }
    }
}

/// The source index of a feed, as in the file audit's sort key.
pub fn source_of(kind: Kind) -> u8 {
    match kind {
        Kind::Roster => 0,
        Kind::Death => 1,
        Kind::Payment => 2,
        Kind::Decision => 3,
        Kind::Vulnerable => 4,
    }
}

/// Pending offsets a stored partition may hold: far more than any reorder
/// buffer keeps, far less than would exhaust memory.
const MAX_PENDING: i64 = 10_000_000;

/// One partition's position.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PartOffsets {
    /// The offset after the last message read.
    pub resume: i64,
    /// Offsets below `resume` read but not applied, as `[start, end)` runs
    /// (held records are mostly a partition's tail, so runs stay few).
    pending: Vec<(i64, i64)>,
}

/// What to do with a message just read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Not applied yet: decode and hold it.
    New,
    /// Applied already, or held right now (read twice): skip it.
    Seen,
}

/// Every partition's position, in memory with the pending offsets as a set.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OffsetBook {
    /// Per partition: the resume offset and the pending offsets.
    parts: BTreeMap<Part, (i64, BTreeSet<i64>)>,
    /// Pending offsets held by this process (not committed: after a restart
    /// nothing is held and every pending offset is read again).
    held: BTreeSet<(Part, i64)>,
}

impl OffsetBook {
    /// Rebuilds the book from its committed form.
    /// The book as committed. Damaged runs (out of order, overlapping, past
    /// the resume offset, or more pending offsets than a reorder buffer
    /// ever holds) are refused with the partition named, rather than
    /// expanded without bound.
    pub fn from_stored(stored: &BTreeMap<Part, PartOffsets>) -> Result<OffsetBook, String> {
        let mut parts = BTreeMap::new();
        for (p, o) in stored {
            let mut pending = BTreeSet::new();
            let mut last_end = i64::MIN;
            for &(s, e) in &o.pending {
                if s < last_end.max(0) || e <= s || e > o.resume {
                    return Err(format!(
                        "stored offsets of source {} partition {} are damaged: pending run {s}..{e} (resume {})",
                        p.source, p.partition, o.resume
                    ));
                }
                if pending.len() as i64 + (e - s) > MAX_PENDING {
                    return Err(format!(
                        "stored offsets of source {} partition {} are damaged: more than {MAX_PENDING} pending",
                        p.source, p.partition
                    ));
                }
                pending.extend(s..e);
                last_end = e;
            }
            parts.insert(*p, (o.resume, pending));
        }
        Ok(OffsetBook { parts, held: BTreeSet::new() })
    }

    /// The committed form: pending offsets compressed to runs.
    pub fn to_stored(&self) -> BTreeMap<Part, PartOffsets> {
        self.parts
            .iter()
            .map(|(p, (resume, pending))| {
                let mut runs: Vec<(i64, i64)> = Vec::new();
                for &o in pending {
                    match runs.last_mut() {
                        Some(r) if r.1 == o => r.1 = o + 1,
                        _ => runs.push((o, o + 1)),
                    }
                }
                (*p, PartOffsets { resume: *resume, pending: runs })
            })
            .collect()
    }

    /// Where to start reading a partition: its oldest pending offset, else
    /// its resume offset; `None` for a partition never read (start at the
    /// beginning: a fresh state replays everything).
    pub fn seek_to(&self, p: Part) -> Option<i64> {
        let (resume, pending) = self.parts.get(&p)?;
        Some(pending.first().copied().unwrap_or(*resume))
    }

    /// Records that the message at `offset` was read.
    pub fn admit(&mut self, p: Part, offset: i64) -> Admit {
        let (resume, pending) = self.parts.entry(p).or_insert((0, BTreeSet::new()));
        if offset < *resume && (!pending.contains(&offset) || self.held.contains(&(p, offset))) {
            return Admit::Seen;
        }
        *resume = (*resume).max(offset + 1);
        pending.insert(offset);
        self.held.insert((p, offset));
        Admit::New
    }

    /// Marks a read message as done (applied or dead-lettered).
    pub fn done(&mut self, p: Part, offset: i64) {
        if let Some((_, pending)) = self.parts.get_mut(&p) {
            pending.remove(&offset);
        }
        self.held.remove(&(p, offset));
    }

    /// The partition's held records were dropped (revoked): its pending
    /// offsets are to be read again.
    pub fn release(&mut self, p: Part) {
        self.held.retain(|(q, _)| *q != p);
    }

    /// Whether some pending offset of the partition is not held: read
    /// before, not applied, and not read again yet.
    pub fn unread_pending(&self, p: Part) -> bool {
        self.parts.get(&p).is_some_and(|(_, pending)| pending.iter().any(|o| !self.held.contains(&(p, *o))))
    }

    /// Gives up the pending offsets of `p` below `below` that are not held:
    /// the broker no longer has them (retention, compaction). Returns how
    /// many.
    pub fn give_up_below(&mut self, p: Part, below: i64) -> usize {
        let Some((_, pending)) = self.parts.get_mut(&p) else { return 0 };
        let gone: Vec<i64> = pending.range(..below).copied().filter(|o| !self.held.contains(&(p, *o))).collect();
        for o in &gone {
            pending.remove(o);
        }
        gone.len()
    }

    /// The resume offset of a partition read before; `None` when never read.
    pub fn position(&self, p: Part) -> Option<i64> {
        self.parts.get(&p).map(|(r, _)| *r)
    }

    /// Forgets every partition of feed `source`: it is read again from the
    /// log's start (`paywatch offsets reset`). Returns how many partitions.
    pub fn forget_source(&mut self, source: u8) -> usize {
        let before = self.parts.len();
        self.parts.retain(|p, _| p.source != source);
        self.held.retain(|(p, _)| p.source != source);
        before - self.parts.len()
    }

    /// The resume offset of a partition (0 when never read).
    pub fn resume(&self, p: Part) -> i64 {
        self.parts.get(&p).map_or(0, |(r, _)| *r)
    }

    /// Offsets of one partition read but not yet applied.
    pub fn pending_in(&self, p: Part) -> usize {
        self.parts.get(&p).map_or(0, |(_, pending)| pending.len())
    }

    /// Offsets read but not yet applied, over all partitions.
    pub fn pending(&self) -> usize {
        self.parts.values().map(|(_, p)| p.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Part = Part { source: 2, partition: 0 };

    /// Hardening item 13: damaged stored runs are refused, naming the
    /// partition, never expanded without bound.
    #[test]
    fn damaged_stored_runs_are_refused() {
        let book = |runs: Vec<(i64, i64)>, resume: i64| {
            OffsetBook::from_stored(&BTreeMap::from([(P, PartOffsets { resume, pending: runs })]))
        };
        assert!(book(vec![(3, 5), (7, 8)], 10).is_ok());
        for (runs, resume) in [(vec![(7, 8), (3, 5)], 10), (vec![(3, 5), (4, 6)], 10), (vec![(5, 3)], 10), (vec![(3, 12)], 10), (vec![(0, i64::MAX)], i64::MAX)] {
            let err = book(runs.clone(), resume).err().unwrap_or_else(|| panic!("{runs:?} accepted"));
            assert!(err.contains("partition 0") && err.contains("damaged"), "{err}");
        }
    }

    #[test]
    fn a_fresh_partition_starts_at_the_beginning() {
        assert_eq!(OffsetBook::default().seek_to(P), None);
    }

    #[test]
    fn resumes_at_the_oldest_pending_and_skips_what_was_applied() {
        let mut b = OffsetBook::default();
        for o in 0..10 {
            assert_eq!(b.admit(P, o), Admit::New);
        }
        // 0..=6 applied except 3 (held: an earlier event time is still due).
        for o in [0, 1, 2, 4, 5, 6] {
            b.done(P, o);
        }
        let mut r = OffsetBook::from_stored(&b.to_stored()).unwrap();
        assert_eq!(r.to_stored(), b.to_stored());
        assert_eq!(r.seek_to(P), Some(3));
        let again: Vec<Admit> = (3..12).map(|o| r.admit(P, o)).collect();
        use Admit::*;
        assert_eq!(again, vec![New, Seen, Seen, Seen, New, New, New, New, New]);
        assert_eq!(r.resume(P), 12);
    }

    #[test]
    fn a_held_message_read_twice_is_held_once() {
        let mut b = OffsetBook::default();
        assert_eq!(b.admit(P, 0), Admit::New);
        assert_eq!(b.admit(P, 1), Admit::New);
        assert_eq!(b.admit(P, 0), Admit::Seen, "still held");
        b.done(P, 0);
        assert_eq!(b.admit(P, 0), Admit::Seen, "applied");
        // Revoked: what was held is read again once.
        b.release(P);
        assert!(b.unread_pending(P));
        assert_eq!(b.admit(P, 1), Admit::New);
        assert_eq!(b.admit(P, 1), Admit::Seen);
        assert!(!b.unread_pending(P));
    }

    #[test]
    fn gaps_in_offsets_do_not_stall_the_position() {
        // A compacted topic has holes: positions follow what was read.
        let mut b = OffsetBook::default();
        for o in [4, 9, 17] {
            b.admit(P, o);
            b.done(P, o);
        }
        assert_eq!(b.seek_to(P), Some(18));
        assert_eq!(b.pending(), 0);
    }

    /// Hardening item 8: pending offsets the broker no longer has are
    /// given up (held ones stay: they were read in this process).
    #[test]
    fn vanished_pending_offsets_are_given_up_and_held_ones_kept() {
        let mut b = OffsetBook::default();
        for o in 0..10 {
            b.admit(P, o);
        }
        for o in 0..3 {
            b.done(P, o);
        }
        let mut r = OffsetBook::from_stored(&b.to_stored()).unwrap();
        assert_eq!(r.seek_to(P), Some(3));
        assert_eq!(r.admit(P, 6), Admit::New);
        assert_eq!(r.give_up_below(P, 8), 4, "3, 4, 5, 7");
        assert_eq!(r.seek_to(P), Some(6));
        assert_eq!(r.pending(), 3, "6 held, 8 and 9 not read yet");
        assert_eq!(r.position(P), Some(10));
        assert_eq!(r.forget_source(2), 1);
        assert_eq!(r.position(P), None);
        assert_eq!(r.seek_to(P), None);
    }

    #[test]
    fn pending_runs_compress() {
        let mut b = OffsetBook::default();
        for o in 0..1000 {
            b.admit(P, o);
        }
        b.done(P, 500);
        let s = b.to_stored();
        assert_eq!(s[&P].pending, vec![(0, 500), (501, 1000)]);
    }
}
