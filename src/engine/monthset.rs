//! A set of benefit months as a bitmap: a beneficiary's paid months fit in a
//! few words instead of a tree, whatever the length of the history. Up to
//! four words (21 years and more) are kept inline, so asking about a month
//! reads the beneficiary itself rather than a separate allocation: every
//! payment asks, and that read was one of the engine's costliest.

use crate::model::Period;
use serde::{Deserialize, Serialize};

/// Months from `base` on, one bit each.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Stored")]
pub struct MonthSet {
    base: i32,
    /// Encoded as a sequence, like a `Vec`.
    words: smallvec::SmallVec<[u64; 4]>,
}

/// A month set as stored, checked before use: a base outside the months
/// paywatch reads, or not on a word boundary, or more words than those
/// months fill, would index out of bounds or allocate without bound.
#[derive(Deserialize)]
struct Stored {
    base: i32,
    words: smallvec::SmallVec<[u64; 4]>,
}

impl TryFrom<Stored> for MonthSet {
    type Error = String;

    fn try_from(s: Stored) -> Result<MonthSet, String> {
        let (first, last) = (Period::new(1900, 1).0, Period::new(2199, 12).0);
        let first_base = first - first.rem_euclid(64);
        if s.words.is_empty() {
            return Ok(MonthSet::default());
        }
        if s.base.rem_euclid(64) != 0 || s.base < first_base || s.base > last {
            return Err(format!("month set base {} is not a stored month-set base", s.base));
        }
        if s.words.len() > ((last - s.base) / 64 + 1) as usize {
            return Err(format!("month set of {} words runs past 2199-12", s.words.len()));
        }
        Ok(MonthSet { base: s.base, words: s.words })
    }
}

impl MonthSet {
    pub fn contains(&self, p: Period) -> bool {
        let i = p.0 - self.base;
        i >= 0 && self.words.get(i as usize / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// Adds a month; true when it was not there.
    pub fn insert(&mut self, p: Period) -> bool {
        if self.words.is_empty() {
            self.base = p.0 - p.0.rem_euclid(64);
        }
        if p.0 < self.base {
            let shift = ((self.base - p.0 + 63) / 64) as usize;
            self.words.insert_many(0, std::iter::repeat_n(0, shift));
            self.base -= shift as i32 * 64;
        }
        let i = (p.0 - self.base) as usize;
        if self.words.len() <= i / 64 {
            self.words.resize(i / 64 + 1, 0);
        }
        let had = self.words[i / 64] & (1 << (i % 64)) != 0;
        self.words[i / 64] |= 1 << (i % 64);
        !had
    }

    pub fn remove(&mut self, p: Period) {
        let i = p.0 - self.base;
        if i >= 0 {
            if let Some(w) = self.words.get_mut(i as usize / 64) {
                *w &= !(1 << (i % 64));
            }
        }
    }

    /// The months in the set, ascending.
    pub fn iter(&self) -> impl Iterator<Item = Period> + '_ {
        self.words.iter().enumerate().flat_map(move |(wi, w)| {
            (0..64).filter(move |b| w & (1 << b) != 0).map(move |b| Period(self.base + (wi * 64 + b) as i32))
        })
    }

    /// The months after `p`, ascending.
    pub fn after(&self, p: Period) -> impl Iterator<Item = Period> + '_ {
        self.iter().filter(move |m| *m > p)
    }
}

#[cfg(test)]
mod stored {
    use super::*;

    /// Hardening item 13: a damaged month set is an error, not a panic.
    #[test]
    fn damaged_month_sets_and_months_are_refused() {
        let mut ok = MonthSet::default();
        ok.insert(Period::new(2019, 3));
        let bytes = postcard::to_stdvec(&ok).unwrap();
        assert_eq!(postcard::from_bytes::<MonthSet>(&bytes).unwrap(), ok);
        for (base, words) in [(i32::MIN, 1usize), (7, 1), (Period::new(2300, 1).0, 1), (ok.base, 500)] {
            let bad = postcard::to_stdvec(&(base, vec![1u64; words])).unwrap();
            assert!(postcard::from_bytes::<MonthSet>(&bad).is_err(), "base {base}, {words} words");
        }
        let month = postcard::to_stdvec(&-5i32).unwrap();
        assert!(postcard::from_bytes::<Period>(&month).is_err());
        let month = postcard::to_stdvec(&Period::new(2019, 3).0).unwrap();
        assert_eq!(postcard::from_bytes::<Period>(&month).unwrap(), Period::new(2019, 3));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    proptest! {
        #[test]
        fn behaves_like_a_set(ops in proptest::collection::vec((any::<bool>(), 20000i32..26000), 0..200)) {
            let mut m = MonthSet::default();
            let mut b = BTreeSet::new();
            for (add, p) in ops {
                if add {
                    prop_assert_eq!(m.insert(Period(p)), b.insert(p));
                } else {
                    m.remove(Period(p));
                    b.remove(&p);
                }
                prop_assert!(m.contains(Period(p)) == b.contains(&p));
            }
            prop_assert_eq!(m.iter().map(|p| p.0).collect::<Vec<_>>(), b.iter().copied().collect::<Vec<_>>());
            prop_assert_eq!(m.after(Period(23000)).count(), b.range(23001..).count());
        }
    }
}
