//! The alert index (hardening item 11): the `alert_index` column family,
//! written by the engine in the commit that raises each alert, so that a
//! page of `GET /api/v1/alerts` or a ledger's monthly counts cost about what
//! they return, not a walk over every alert ever raised.
//!
//! Two orders, both by the alert's event day, then the order raised:
//! - `a | day | seq` → every alert;
//! - `t | len(u16) | township | day | seq` → one township's.
//!
//! `day` is the first ten characters of the alert's `event_time`
//! (`YYYY-MM-DD`, the day as the record wrote it, as the list's `from`/`to`
//! filters read it) and `seq` its place in the alert log (big-endian u64).
//! The value is `rule | 0x1f | severity | 0x1f | alert_id`: rule and
//! severity filters are decided on the index without reading the alert.
//! This module owns that layout; nothing else reads or writes the family.

use super::{Batch, Cf, Store, StoreError};
use crate::model::Alert;

const ALL: u8 = b'a';
const TOWNSHIP: u8 = b't';
const SEP: u8 = 0x1f;
/// A day that sorts before every real one, for an alert whose event time
/// does not start with a date (never written by the engine).
const NO_DAY: &[u8; 10] = b"0000-00-00";

fn day(a: &Alert) -> &[u8] {
    a.event_time.as_bytes().get(..10).unwrap_or(NO_DAY)
}

fn prefix(township: Option<&str>) -> Vec<u8> {
    super::keys::index_prefix(ALL, TOWNSHIP, township)
}

/// Adds the index entries of alert number `seq` to the commit raising it.
pub fn stage(batch: &mut Batch<'_>, seq: u64, a: &Alert) {
    let mut value = Vec::with_capacity(a.alert_id.len() + 32);
    value.extend_from_slice(a.rule.code().as_bytes());
    value.push(SEP);
    value.extend_from_slice(a.severity.code().as_bytes());
    value.push(SEP);
    value.extend_from_slice(a.alert_id.as_bytes());
    for township in [None, Some(a.township.as_str())] {
        let mut k = prefix(township);
        k.extend_from_slice(day(a));
        k.extend_from_slice(&seq.to_be_bytes());
        batch.put_raw(Cf::AlertIndex, &k, &value);
    }
}

/// Which part of the index a walk covers.
#[derive(Clone, Copy, Debug, Default)]
pub struct Range<'a> {
    /// One township's entries, or all.
    pub township: Option<&'a str>,
    /// First event day (`YYYY-MM-DD`), inclusive: where the walk stops.
    pub from: Option<&'a str>,
    /// Last event day, inclusive: where the walk starts.
    pub to: Option<&'a str>,
}

/// One index entry.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Rule code: the `rule` filter is decided without reading the alert.
    pub rule: &'a str,
    /// Severity code, likewise for `severity`.
    pub severity: &'a str,
    /// The alert to read when the entry passes.
    pub alert_id: &'a str,
    /// Its event day (`YYYY-MM-DD`), as the key orders it.
    pub day: &'a str,
}

/// Where a walk stopped: the day and sequence of the last entry it
/// examined (a walk given it goes on strictly below). Opaque to clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor(pub [u8; 18]);

impl Cursor {
    pub fn encode(&self) -> String {
        hex::encode(self.0)
    }

    pub fn decode(s: &str) -> Option<Cursor> {
        let bytes = hex::decode(s).ok()?;
        let c: [u8; 18] = bytes.try_into().ok()?;
        c[..10].iter().all(|b| b.is_ascii_digit() || *b == b'-').then_some(Cursor(c))
    }
}

/// What [`walk`]'s visitor says after an entry.
pub enum Step {
    More,
    /// The page is full: the walk stops, and the cursor points at this
    /// entry (the next page starts below it).
    Done,
}

/// Walks `range` newest first (by event day, then by the order raised),
/// strictly below `after` when given, calling `visit` with each entry, at
/// most `budget` entries. Returns the cursor to go on from, or `None` when
/// the range is exhausted.
pub fn walk<E: From<StoreError>>(
    store: &Store,
    range: Range<'_>,
    after: Option<&Cursor>,
    budget: usize,
    mut visit: impl FnMut(Entry<'_>) -> Result<Step, E>,
) -> Result<Option<Cursor>, E> {
    let prefix = prefix(range.township);
    let mut upper = prefix.clone();
    match (after, range.to) {
        (Some(c), _) => upper.extend_from_slice(&c.0),
        (None, Some(to)) => {
            upper.extend_from_slice(to.as_bytes());
            upper.extend_from_slice(&[0xff; 8]);
        }
        (None, None) => upper.push(0xff),
    }
    let mut lower = prefix.clone();
    if let Some(from) = range.from {
        lower.extend_from_slice(from.as_bytes());
    }
    let mut it = store.raw_iterator(Cf::AlertIndex);
    it.seek_for_prev(&upper);
    if after.is_some() && it.key() == Some(upper.as_slice()) {
        it.prev();
    }
    let mut examined = 0usize;
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        if !k.starts_with(&prefix) || k < lower.as_slice() {
            break;
        }
        let bad = || StoreError::Json { cf: Cf::AlertIndex.name(), key: super::keys::shown(k), reason: "not an alert index entry".into() };
        let suffix: [u8; 18] = k[prefix.len()..].try_into().map_err(|_| bad())?;
        let here = Cursor(suffix);
        if examined == budget {
            // Out of budget: go on from the entry before this one.
            it.next();
            return Ok(it.key().and_then(|k| k.get(prefix.len()..)?.try_into().ok()).map(Cursor));
        }
        examined += 1;
        let mut parts = v.splitn(3, |b| *b == SEP);
        let (Some(rule), Some(severity), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad().into());
        };
        let text = |b| std::str::from_utf8(b).map_err(|_| bad());
        let entry = Entry { rule: text(rule)?, severity: text(severity)?, alert_id: text(id)?, day: text(&suffix[..10])? };
        if let Step::Done = visit(entry)? {
            return Ok(Some(here));
        }
        it.prev();
    }
    it.status().map_err(StoreError::from)?;
    Ok(None)
}

/// How many alerts (of one township, or all) have an event day that
/// starts with each of `months` (`YYYY-MM`): a range count per month.
pub fn count_by_month(store: &Store, township: Option<&str>, months: &[String]) -> Result<Vec<u64>, StoreError> {
    let prefix = prefix(township);
    let mut out = Vec::with_capacity(months.len());
    for m in months {
        let mut start = prefix.clone();
        start.extend_from_slice(m.as_bytes());
        let mut end = start.clone();
        end.push(0xff);
        out.push(store.count_between(Cf::AlertIndex, &start, &end)?);
    }
    Ok(out)
}

/// Writes the entries of every alert in the alert log from sequence
/// `after` on, `chunk` alerts per write (the v4 → v5 upgrade); returns the
/// last sequence written.
pub fn build(store: &Store, after: u64, chunk: usize, mut done: impl FnMut(&mut Batch<'_>, u64)) -> Result<u64, StoreError> {
    let mut from = after;
    loop {
        let start = super::keys::alert_seq(from + 1);
        let rows = store.entries_between(Cf::AlertLog, &start, &[0xff; 9], chunk)?;
        if rows.is_empty() {
            return Ok(from);
        }
        let mut batch = store.batch();
        for (k, id) in &rows {
            let seq = k.as_slice().try_into().map(u64::from_be_bytes).map_err(|_| StoreError::Json {
                cf: Cf::AlertLog.name(),
                key: super::keys::shown(k),
                reason: "not an alert log key".into(),
            })?;
            let a: Alert = store.get_json(Cf::Alerts, id)?.ok_or_else(|| StoreError::Json {
                cf: Cf::Alerts.name(),
                key: String::from_utf8_lossy(id).into_owned(),
                reason: "the alert log names an alert that is not stored".into(),
            })?;
            stage(&mut batch, seq, &a);
            from = seq;
        }
        done(&mut batch, from);
        store.commit(batch)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Evidence, Rule, Severity};
    use crate::store::StoreOptions;

    fn alert(n: u64, township: &str, day: &str, rule: Rule) -> Alert {
        Alert {
            alert_id: format!("{n:032x}"),
            rule,
            severity: Severity::High,
            township: township.into(),
            beneficiary_id: None,
            household_id: None,
            account_no: None,
            period: None,
            amount: None,
            evidence: Evidence::default(),
            reason: String::new(),
            event_time: format!("{day}T10:00:00+08:00"),
            detected_at: String::new(),
            case_id: String::new(),
        }
    }

    fn ids(store: &Store, range: Range<'_>, after: Option<&Cursor>, budget: usize, limit: usize) -> (Vec<u64>, Option<Cursor>) {
        let mut got = Vec::new();
        let next = walk::<StoreError>(store, range, after, budget, |e| {
            got.push(u64::from_str_radix(e.alert_id, 16).unwrap());
            Ok(if got.len() == limit { Step::Done } else { Step::More })
        })
        .unwrap();
        (got, next)
    }

    #[test]
    fn pages_walk_newest_first_by_day_within_township_and_dates() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions { block_cache_mb: 8, write_buffer_mb: 4, sync: false, statistics: false }).unwrap();
        let mut b = store.batch();
        // Raised out of event order (a late record): seq 3 is the oldest day.
        let rows = [(1, "水阳镇", "2019-03-01"), (2, "狸桥镇", "2019-03-01"), (3, "水阳镇", "2018-12-31"), (4, "水阳镇", "2019-04-02"), (5, "水阳", "2019-04-02")];
        for (n, t, d) in rows {
            stage(&mut b, n, &alert(n, t, d, Rule::LargeAmount));
        }
        store.commit(b).unwrap();
        let all = Range::default();
        assert_eq!(ids(&store, all, None, 100, 100), (vec![5, 4, 2, 1, 3], None));
        let sy = Range { township: Some("水阳镇"), ..Range::default() };
        assert_eq!(ids(&store, sy, None, 100, 100).0, vec![4, 1, 3], "a township whose name is a prefix of another's is not mixed in");
        let march = Range { township: None, from: Some("2019-03-01"), to: Some("2019-03-31") };
        assert_eq!(ids(&store, march, None, 100, 100).0, vec![2, 1]);
        // Pages of two follow the cursor, nothing twice.
        let (p1, c1) = ids(&store, all, None, 100, 2);
        assert_eq!(p1, vec![5, 4]);
        let c1 = Cursor::decode(&c1.unwrap().encode()).unwrap();
        let (p2, c2) = ids(&store, all, Some(&c1), 100, 2);
        assert_eq!(p2, vec![2, 1]);
        let (p3, c3) = ids(&store, all, c2.as_ref(), 100, 2);
        assert_eq!((p3, c3), (vec![3], None));
        // A budget of one entry: a short page and a cursor past it.
        let (b1, bc) = ids(&store, sy, None, 1, 50);
        assert_eq!(b1, vec![4]);
        let (b2, _) = ids(&store, sy, bc.as_ref(), 1, 50);
        assert_eq!(b2, vec![1]);
        assert_eq!(count_by_month(&store, Some("水阳镇"), &["2019-03".into(), "2019-04".into(), "2018-12".into(), "2020-01".into()]).unwrap(), vec![1, 1, 1, 0]);
        assert_eq!(count_by_month(&store, None, &["2019-04".into()]).unwrap(), vec![2]);
        assert!(Cursor::decode("x").is_none() && Cursor::decode("00").is_none());
    }

    #[test]
    fn the_index_is_built_from_the_alert_log_in_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions { block_cache_mb: 8, write_buffer_mb: 4, sync: false, statistics: false }).unwrap();
        let mut b = store.batch();
        for n in 1..=5u64 {
            let a = alert(n, "水阳镇", &format!("2019-0{n}-01"), Rule::LargeAmount);
            b.put_raw(Cf::Alerts, a.alert_id.as_bytes(), &serde_json::to_vec(&a).unwrap());
            b.put_raw(Cf::AlertLog, &crate::store::keys::alert_seq(n), a.alert_id.as_bytes());
        }
        store.commit(b).unwrap();
        let mut marks = Vec::new();
        assert_eq!(build(&store, 1, 2, |_, last| marks.push(last)).unwrap(), 5);
        assert_eq!(marks, vec![3, 5]);
        assert_eq!(ids(&store, Range::default(), None, 100, 100).0, vec![5, 4, 3, 2], "alert 1 was before the resume point");
    }
}
