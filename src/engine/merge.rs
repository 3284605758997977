//! The ordered merge of facts from several upstream tasks (#16,
//! docs/partitioning.md, "Same answers"): a task whose state depends on
//! the order of its facts (an account's window, a custodian's overload
//! episode) applies them in the order one process would have, whichever
//! upstream sent them and whenever they arrived.
//!
//! Every fact carries the position of the record that produced it (its
//! `SortKey`: event time, kind, source, line or offset), which is unique to
//! that record. Each upstream sends its facts in position order and says,
//! from time to time, how far it has applied its records (a *mark*). A
//! fact is released once no upstream can still send one before it: every
//! upstream has marked, or sent a fact, at or past its position. That is
//! the single-process order, so windows and episodes see the same
//! sequence. An upstream that never marks (a partition nobody owns yet)
//! holds everything back: the order must wait for the slowest upstream.
//!
//! Plain data in, plain data out: nothing here reads a clock, a channel or
//! the store, so the order is tested exactly (`tests` below).

use crate::model::SortKey;
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// An upstream sent something out of its own order: a fact or a mark
/// before one it already sent. The upstream is broken (or two tasks think
/// they own one partition); its facts cannot be placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("upstream {upstream} went back from {from:?} to {to:?}: its facts must come in the order of its records")]
pub struct OutOfOrder {
    pub upstream: usize,
    pub from: SortKey,
    pub to: SortKey,
}

/// Facts held until every upstream has passed them.
pub struct Merge<T> {
    /// Per upstream: the furthest position it has marked or sent a fact
    /// at (`None`: nothing yet, which holds everything back).
    through: Vec<Option<SortKey>>,
    /// Held facts, least position first; at one position, in the order
    /// they were pushed (`seq`).
    held: BinaryHeap<Reverse<Held<T>>>,
    /// Push counter, for the order at one position.
    seq: u64,
}

struct Held<T> {
    at: SortKey,
    seq: u64,
    fact: T,
}

impl<T> PartialEq for Held<T> {
    fn eq(&self, o: &Held<T>) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl<T> Eq for Held<T> {}
impl<T> PartialOrd for Held<T> {
    fn partial_cmp(&self, o: &Held<T>) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl<T> Ord for Held<T> {
    fn cmp(&self, o: &Held<T>) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// What a merge holds, as committed with the state of the task reading
/// (docs/partitioning.md, "Exactly once without transactions"): a task that
/// restarts from its commit resumes the merge where it was, held facts
/// included, and reads its partitions from the offsets committed with it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MergeState<T> {
    /// Per upstream: how far it has marked or sent.
    pub through: Vec<Option<SortKey>>,
    /// The held facts in release order (position, then as pushed).
    pub held: Vec<(SortKey, T)>,
}

/// The position past every record: an upstream that has finished.
pub const END: SortKey = SortKey { time: crate::model::Timestamp(i64::MAX), rank: u8::MAX, source: u8::MAX, line: u64::MAX };

impl<T> Merge<T> {
    pub fn new(upstreams: usize) -> Merge<T> {
        Merge { through: vec![None; upstreams], held: BinaryHeap::new(), seq: 0 }
    }

    /// Upstream `from` sent `fact`, produced by its record at `at`.
    pub fn push(&mut self, from: usize, at: SortKey, fact: T) -> Result<(), OutOfOrder> {
        self.advance(from, at)?;
        self.seq += 1;
        self.held.push(Reverse(Held { at, seq: self.seq, fact }));
        Ok(())
    }

    /// Upstream `from` has applied every record up to and including `done`
    /// and sent every fact they produced. [`END`] when it has finished.
    pub fn mark(&mut self, from: usize, done: SortKey) -> Result<(), OutOfOrder> {
        self.advance(from, done)
    }

    fn advance(&mut self, from: usize, to: SortKey) -> Result<(), OutOfOrder> {
        let through = &mut self.through[from];
        match *through {
            Some(t) if to < t => Err(OutOfOrder { upstream: from, from: t, to }),
            _ => {
                *through = Some(to);
                Ok(())
            }
        }
    }

    /// The next fact in order, with its position, once no upstream can
    /// still send one before it.
    pub fn pop(&mut self) -> Option<(SortKey, T)> {
        let at = self.held.peek()?.0.at;
        if self.through.iter().any(|t| t.is_none_or(|t| t < at)) {
            return None;
        }
        let Reverse(h) = self.held.pop()?;
        Some((h.at, h.fact))
    }

    /// Facts held back, for the caller's bound on memory: it stops reading
    /// from upstreams that are ahead while many wait on one behind.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// What the merge holds now, for a commit.
    // Between instances (#16): in one process a sync carries nothing over.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn checkpoint(&self) -> MergeState<T>
    where
        T: Clone,
    {
        let mut held: Vec<&Held<T>> = self.held.iter().map(|r| &r.0).collect();
        held.sort();
        MergeState { through: self.through.clone(), held: held.into_iter().map(|h| (h.at, h.fact.clone())).collect() }
    }

    /// The merge a checkpoint was taken of: it releases what that one
    /// would have, in the same order.
    // Between instances (#16): in one process a sync carries nothing over.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn resume(state: MergeState<T>) -> Merge<T> {
        let mut m = Merge { through: state.through, held: BinaryHeap::new(), seq: 0 };
        for (at, fact) in state.held {
            m.seq += 1;
            m.held.push(Reverse(Held { at, seq: m.seq, fact }));
        }
        m
    }

    /// The upstream holding the order back, if any: the one least far.
    pub fn slowest(&self) -> Option<usize> {
        (0..self.through.len()).min_by_key(|&u| self.through[u].map_or((0, None), |t| (1, Some(t))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Timestamp;
    use proptest::prelude::*;

    fn key(time: i64, line: u64) -> SortKey {
        SortKey { time: Timestamp(time), rank: 0, source: 2, line }
    }

    /// A ledger: each record has a unique position, is applied by one of
    /// `k` upstreams and produces some facts. Each upstream applies its
    /// records in order and marks after some of them; the upstreams run
    /// interleaved as `schedule` says. Whatever the interleaving, the
    /// facts come out in the single-process order: by position, then in
    /// the order each record produced them.
    fn run(k: usize, records: &[(usize, u8, bool)], schedule: &[usize]) -> (Vec<(SortKey, (usize, u8))>, Vec<(SortKey, (usize, u8))>) {
        let mut streams: Vec<Vec<(SortKey, Option<(usize, u8)>)>> = vec![Vec::new(); k];
        let mut expected = Vec::new();
        for (i, &(upstream, facts, marks)) in records.iter().enumerate() {
            let at = key(1_000 + (i as i64) / 3, i as u64);
            for f in 0..facts {
                streams[upstream % k].push((at, Some((i, f))));
                expected.push((at, (i, f)));
            }
            if marks {
                streams[upstream % k].push((at, None));
            }
        }
        let mut m = Merge::new(k);
        let mut next = vec![0usize; k];
        let mut out = Vec::new();
        let step = |m: &mut Merge<(usize, u8)>, u: usize, next: &mut Vec<usize>| {
            if let Some(&(at, fact)) = streams[u].get(next[u]) {
                next[u] += 1;
                match fact {
                    Some(f) => m.push(u, at, f).unwrap(),
                    None => m.mark(u, at).unwrap(),
                }
            }
        };
        for &u in schedule {
            step(&mut m, u % k, &mut next);
            while let Some(x) = m.pop() {
                out.push(x);
            }
        }
        for u in 0..k {
            while next[u] < streams[u].len() {
                step(&mut m, u, &mut next);
            }
            m.mark(u, END).unwrap();
            while let Some(x) = m.pop() {
                out.push(x);
            }
        }
        assert_eq!(m.held(), 0);
        (out, expected)
    }

    proptest! {
        #[test]
        fn facts_come_out_in_the_single_process_order(
            k in 1..5usize,
            records in proptest::collection::vec((0..5usize, 0..4u8, any::<bool>()), 0..80),
            schedule in proptest::collection::vec(0..5usize, 0..300),
        ) {
            let (out, expected) = run(k, &records, &schedule);
            prop_assert_eq!(out, expected);
        }
    }

    /// Nothing passes an upstream that has neither marked nor sent: an
    /// unowned partition holds the order back until it is owned.
    #[test]
    fn an_upstream_that_has_said_nothing_holds_everything_back() {
        let mut m = Merge::new(2);
        m.push(0, key(1, 1), "a").unwrap();
        m.mark(0, key(5, 5)).unwrap();
        assert_eq!(m.pop(), None);
        assert_eq!(m.slowest(), Some(1));
        m.mark(1, key(0, 0)).unwrap();
        assert_eq!(m.pop(), None, "upstream 1 may still send something at 1");
        m.push(1, key(3, 3), "b").unwrap();
        assert_eq!(m.pop(), Some((key(1, 1), "a")));
        assert_eq!(m.pop(), Some((key(3, 3), "b")), "both are at or past 3");
        m.push(0, key(7, 7), "c").unwrap();
        assert_eq!(m.pop(), None, "upstream 1 may still send something before 7");
        assert_eq!(m.slowest(), Some(1));
        m.mark(1, END).unwrap();
        assert_eq!(m.pop(), Some((key(7, 7), "c")));
        assert_eq!(m.slowest(), Some(0));
    }

    /// A merge resumed from its checkpoint releases what the original
    /// would have, in the same order, held facts at one position included.
    #[test]
    fn a_resumed_merge_releases_what_the_original_would() {
        let mut m = Merge::new(2);
        m.push(0, key(3, 3), "b").unwrap();
        m.push(0, key(3, 3), "c").unwrap();
        m.push(1, key(1, 1), "a").unwrap();
        m.push(0, key(9, 9), "d").unwrap();
        let state = m.checkpoint();
        assert_eq!(state.held.iter().map(|h| h.1).collect::<Vec<_>>(), ["a", "b", "c", "d"]);
        let bytes = postcard::to_allocvec(&state).unwrap();
        let mut r: Merge<String> = Merge::resume(postcard::from_bytes(&bytes).unwrap());
        assert_eq!(r.held(), 4);
        m.mark(1, key(5, 5)).unwrap();
        r.mark(1, key(5, 5)).unwrap();
        let a: Vec<String> = std::iter::from_fn(|| m.pop()).map(|(_, f)| f.to_string()).collect();
        let b: Vec<String> = std::iter::from_fn(|| r.pop()).map(|(_, f)| f).collect();
        assert_eq!(a, ["a", "b", "c"]);
        assert_eq!(a, b);
        let e = r.mark(1, key(4, 4)).unwrap_err();
        assert_eq!(e.from, key(5, 5), "how far each upstream went is resumed too");
    }

    /// An upstream going back is refused, not placed somewhere.
    #[test]
    fn an_upstream_going_back_is_refused() {
        let mut m = Merge::new(1);
        m.push(0, key(5, 5), 1).unwrap();
        let e = m.mark(0, key(4, 4)).unwrap_err();
        assert_eq!(e, OutOfOrder { upstream: 0, from: key(5, 5), to: key(4, 4) });
        assert!(e.to_string().contains("upstream 0 went back"), "{e}");
        m.push(0, key(5, 5), 2).unwrap();
        assert_eq!(m.pop(), Some((key(5, 5), 1)));
        assert_eq!(m.pop(), Some((key(5, 5), 2)), "one position: the order pushed");
    }
}
