//! Key encodings (fixed-width big-endian numbers, so keys sort by value),
//! and the layout of a `months` segment.

use super::{Cf, StoreError};
use crate::model::{Period, Timestamp};

/// A key as an error message shows it: printable text (other bytes as
/// `\xNN`), with every run of 12 or more digits (identity and account
/// numbers) masked, first 6 and last 4.
pub fn shown(key: &[u8]) -> String {
    let mut text = String::new();
    for b in key {
        match *b {
            b' '..=b'~' => text.push(*b as char),
            other => text.push_str(&format!("\\x{other:02x}")),
        }
    }
    let mut out = String::new();
    let mut run = String::new();
    for c in text.chars().chain(std::iter::once('\0')) {
        if c.is_ascii_digit() || (c == 'X' && run.len() == 17) {
            run.push(c);
            continue;
        }
        if run.len() >= 12 {
            out.push_str(&crate::model::id::mask(&run));
        } else {
            out.push_str(&run);
        }
        run.clear();
        if c != '\0' {
            out.push(c);
        }
    }
    out
}

pub const META_SCHEMA: &[u8] = b"schema";
pub const META_PROGRESS: &[u8] = b"progress";
/// How many lanes the deadline buckets are split into (`engine::timers`).
pub const META_LANES: &[u8] = b"lanes";
/// The person side's writers of `by-account` records, when account tasks
/// read them elsewhere (`engine::away`).
pub const META_ACCOUNTS_AWAY: &[u8] = b"accounts_away";
/// An account task's outbox sequence (`exchange::account_worker`): its
/// store's outbox keys go on from it after a restart or a move.
pub const META_TASK_OUTBOX: &[u8] = b"task_outbox";
/// `paywatch run`: Kafka offsets and the outbox sequence.
pub const META_STREAM: &[u8] = b"stream";
/// Decisions made of stored reviews by the v2 → v3 upgrade (JSON list),
/// until the service has put them in its outbox for the decisions topic.
pub const META_MIGRATED_DECISIONS: &[u8] = b"migrated_decisions";

/// An archived roster version's key: `beneficiary_id | 0x00 | updated_at |
/// content hash`, so a beneficiary's versions are one key range in update
/// order, written without reading, and two versions with the same
/// `updated_at` do not overwrite each other.
pub fn archived_roster(beneficiary_id: &str, updated_at: Timestamp, content: &[u8]) -> Vec<u8> {
    use std::hash::Hasher;
    let mut h = rustc_hash::FxHasher::default();
    h.write(content);
    let mut k = archived_roster_prefix(beneficiary_id);
    k.extend_from_slice(&(updated_at.0 as u64 ^ (1 << 63)).to_be_bytes());
    k.extend_from_slice(&h.finish().to_be_bytes());
    k
}

/// The key range of one beneficiary's archived roster versions.
pub fn archived_roster_prefix(beneficiary_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(beneficiary_id.len() + 17);
    k.extend_from_slice(beneficiary_id.as_bytes());
    k.push(0);
    k
}

/// An outbox key: the target, then a sequence number.
pub fn outbox(target: u8, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(target);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// A webhook delivery's outbox key: `r | route | 0x00 | queued_ms | origin
/// | seq`. Each route's deliveries are one key range (its worker reads only
/// that), in the order they were queued; `origin` tells the writers apart
/// (`a` the engine's commits, `e` the case deadline watcher), each with its
/// own sequence.
pub fn delivery(route: &str, queued_ms: i64, origin: u8, seq: u64) -> Vec<u8> {
    let mut k = delivery_prefix(route);
    k.extend_from_slice(&ts_bytes(Timestamp(queued_ms)));
    k.push(origin);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The first key of a route's deliveries; its range ends before
/// `delivery_end(route)`.
pub fn delivery_prefix(route: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(route.len() + 19);
    k.push(DELIVERY);
    k.extend_from_slice(route.as_bytes());
    k.push(0);
    k
}

pub fn delivery_end(route: &str) -> Vec<u8> {
    let mut k = delivery_prefix(route);
    if let Some(last) = k.last_mut() {
        *last = 1;
    }
    k
}

/// The outbox prefix of webhook deliveries.
pub const DELIVERY: u8 = b'r';
/// A delivery's origin byte: queued by the engine's commit.
pub const FROM_ENGINE: u8 = b'a';
/// A delivery's origin byte: queued by the case deadline watcher.
pub const FROM_DEADLINES: u8 = b'e';

/// Sign-flipped big-endian: negative instants sort before positive ones.
fn ts_bytes(t: Timestamp) -> [u8; 8] {
    ((t.0 as u64) ^ (1 << 63)).to_be_bytes()
}

/// The key of a deadline bucket (`timers`, `referrals`) of lane `lane`:
/// the lane first, so each lane's buckets are a range of their own (#16),
/// then the deadline, so every key of a lane below `timer_bound(lane, w)`
/// has a deadline before `w`.
pub fn timer_bound(lane: u32, deadline: Timestamp) -> Vec<u8> {
    let mut k = Vec::with_capacity(TIMER_KEY);
    k.extend_from_slice(&lane.to_be_bytes());
    k.extend_from_slice(&ts_bytes(deadline));
    k
}

/// The first key of lane `lane`'s buckets.
pub fn timer_lane(lane: u32) -> [u8; 4] {
    lane.to_be_bytes()
}

/// Length of a [`timer_bound`] key; a bucket key of state v8 and before
/// was the deadline alone (8 bytes).
pub const TIMER_KEY: usize = 12;

/// The deadline of a timer bucket key.
pub fn timer_deadline(key: &[u8]) -> Option<Timestamp> {
    let b: [u8; 8] = key.get(4..TIMER_KEY)?.try_into().ok()?;
    Some(Timestamp((u64::from_be_bytes(b) ^ (1 << 63)) as i64))
}

/// The deadline of a bucket key of state v8 (no lane).
pub fn timer_deadline_v8(key: &[u8]) -> Option<Timestamp> {
    let b: [u8; 8] = key.try_into().ok()?;
    Some(Timestamp((u64::from_be_bytes(b) ^ (1 << 63)) as i64))
}

/// Length of the beneficiary part of a `months` key (an identity number).
pub const MONTH_PREFIX: usize = 18;

/// Length of the month part of a [`month`] key.
pub const MONTH_SUFFIX: usize = 4;

/// A [`month`] key, kept inline (an identity number and a month are 22
/// bytes): one is made for every payment.
pub type MonthKey = smallvec::SmallVec<[u8; 24]>;

/// `beneficiary_id | month`: one month of one beneficiary, as the engine
/// holds it in memory and as a segment labels it.
pub fn month(beneficiary_id: &str, p: Period) -> MonthKey {
    let mut k = MonthKey::from_slice(beneficiary_id.as_bytes());
    k.extend_from_slice(&(p.0 as u32).to_be_bytes());
    k
}

/// `beneficiary_id | segment`: the months of one beneficiary that one
/// commit wrote (the `months` column family). Segments sort in commit order.
pub fn month_segment(beneficiary_id: &[u8], segment: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(beneficiary_id.len() + 8);
    k.extend_from_slice(beneficiary_id);
    k.extend_from_slice(&segment.to_be_bytes());
    k
}

/// Adds one month to a segment value: its [`month`] suffix, a
/// little-endian `u32` length, and the encoded month.
pub fn push_segment_month(value: &mut Vec<u8>, month: &[u8], bytes: &[u8]) {
    value.extend_from_slice(month);
    value.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    value.extend_from_slice(bytes);
}

/// Calls `f` with each month of a segment value: its [`month`] suffix and
/// its encoded payments.
pub fn for_each_segment_month(mut segment: &[u8], mut f: impl FnMut(&[u8], &[u8])) -> Result<(), StoreError> {
    let malformed = StoreError::Malformed { cf: Cf::Months.name(), why: "a segment ends inside a month" };
    while !segment.is_empty() {
        let Some((month, rest)) = segment.split_at_checked(MONTH_SUFFIX) else { return Err(malformed) };
        let Some((len, rest)) = rest.split_first_chunk::<4>() else { return Err(malformed) };
        let Some((bytes, rest)) = rest.split_at_checked(u32::from_le_bytes(*len) as usize) else { return Err(malformed) };
        f(month, bytes);
        segment = rest;
    }
    Ok(())
}

pub fn alert_seq(seq: u64) -> Vec<u8> {
    seq.to_be_bytes().to_vec()
}

/// The start of an index key: `all` alone, or `by_township`, the
/// township's length (u16, big-endian) and the township, so that one
/// township's entries never run into those of a township whose name it
/// begins (the alert and case indexes).
pub fn index_prefix(all: u8, by_township: u8, township: Option<&str>) -> Vec<u8> {
    match township {
        None => vec![all],
        Some(t) => {
            let len = u16::try_from(t.len()).unwrap_or(u16::MAX);
            let mut k = Vec::with_capacity(3 + t.len() + 24);
            k.push(by_township);
            k.extend_from_slice(&len.to_be_bytes());
            k.extend_from_slice(&t.as_bytes()[..usize::from(len)]);
            k
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_truncated_segment_is_an_error() {
        let mut seen = 0;
        let whole = [0, 0, 0x5e, 0x10, 2, 0, 0, 0, 7, 7];
        assert!(for_each_segment_month(&whole, |_, b| seen += b.len()).is_ok());
        assert_eq!(seen, 2);
        for cut in 1..whole.len() {
            assert!(matches!(for_each_segment_month(&whole[..cut], |_, _| {}), Err(StoreError::Malformed { .. })), "cut at {cut}");
        }
    }

    proptest! {
        #[test]
        fn timer_keys_sort_by_lane_then_deadline_and_round_trip(a in any::<i64>(), b in any::<i64>(), la in 0u32..8, lb in 0u32..8) {
            let (ka, kb) = (timer_bound(la, Timestamp(a)), timer_bound(lb, Timestamp(b)));
            prop_assert_eq!((la, a).cmp(&(lb, b)), ka.cmp(&kb));
            prop_assert_eq!(timer_deadline(&ka), Some(Timestamp(a)));
            prop_assert!(ka.starts_with(&timer_lane(la)));
            prop_assert_eq!(timer_deadline_v8(&ka[4..]), Some(Timestamp(a)));
        }

        #[test]
        fn month_keys_sort_by_month(a in 0i32..30000, b in 0i32..30000) {
            prop_assert_eq!(a.cmp(&b), month("X", Period(a)).cmp(&month("X", Period(b))));
        }
    }
}
