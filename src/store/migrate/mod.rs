//! Upgrades a state directory written by an earlier paywatch in place, so
//! an upgrade keeps everything it holds (alerts, supervisors' reviews, the
//! outbox, Kafka offsets) instead of asking for a replay.
//!
//! v1 → v2: `months` held one entry per beneficiary and month
//! (`beneficiary_id | month` → that month's payments); v2 holds one segment
//! per beneficiary and commit (see `engine::months`). Every v1 month of a
//! beneficiary goes into its segment 0, older than any segment a v2 commit
//! writes (those are numbered from 1). The engine's progress gained
//! `commits` as its last field.

use super::{keys, Cf, Store, StoreError, SCHEMA};

/// The layout this module upgrades from.
pub(super) const V1: &str = "paywatch-state-v1";

/// Beneficiaries converted per write. Each beneficiary's months move in
/// one atomic write, so an upgrade interrupted and run again finds every
/// beneficiary either converted or untouched, never half.
const PER_WRITE: usize = 10_000;

/// Converts a v1 directory to the current layout; the schema marker moves
/// last, with the progress, so until then the directory still reads as v1.
pub(super) fn v1_to_v2(store: &Store) -> Result<(), StoreError> {
    let v1_key = keys::MONTH_PREFIX + keys::MONTH_SUFFIX;
    let mut batch = store.batch();
    let mut in_batch = 0;
    let mut segment: Option<(Vec<u8>, Vec<u8>)> = None;
    let mut it = store.db.raw_iterator_cf(store.cf(Cf::Months));
    it.seek_to_first();
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        if k.len() == v1_key {
            let (bid, month) = k.split_at(keys::MONTH_PREFIX);
            if segment.as_ref().is_none_or(|(b, _)| b != bid) {
                if let Some((b, value)) = segment.take() {
                    batch.put_raw(Cf::Months, &keys::month_segment(&b, 0), &value);
                    in_batch += 1;
                    if in_batch >= PER_WRITE {
                        store.commit(std::mem::replace(&mut batch, store.batch()))?;
                        in_batch = 0;
                    }
                }
                segment = Some((bid.to_vec(), Vec::new()));
            }
            if let Some((_, value)) = segment.as_mut() {
                keys::push_segment_month(value, month, v);
            }
            batch.delete(Cf::Months, k);
        }
        it.next();
    }
    it.status()?;
    if let Some((b, value)) = segment {
        batch.put_raw(Cf::Months, &keys::month_segment(&b, 0), &value);
    }
    // Postcard writes a struct's fields in order, so the v1 progress
    // followed by a zero varint is the v2 progress with `commits` = 0.
    if let Some(mut progress) = store.get_raw(Cf::Meta, keys::META_PROGRESS)? {
        progress.push(0);
        batch.put_raw(Cf::Meta, keys::META_PROGRESS, &progress);
    }
    batch.put_raw(Cf::Meta, keys::META_SCHEMA, V2.as_bytes());
    store.commit(batch)?;
    tracing::info!(from = V1, to = V2, "state directory upgraded");
    Ok(())
}

/// The layout [`v2_to_v3`] upgrades from.
pub(super) const V2: &str = "paywatch-state-v2";

/// Alerts rewritten per write while upgrading to v3.
const ALERTS_PER_WRITE: usize = 20_000;

/// v2 → v3 (contract v1.1): every stored alert gains its `case_id`, the
/// cases are built from the alerts in the order they were raised, each
/// stored review becomes a decision of its alert's case
/// (`review-<alert_id>-<n>`; `corrected` is `rectified` with action
/// `other`), and the merge ranks move (decisions now sort before payments:
/// payment 2 → 4, reversal 3 → 5) in the stored input position. The
/// progress also gained `counts.decisions` after `counts.reversals`. The
/// migrated decisions are listed under `meta/migrated_decisions` for the
/// service to publish to the decisions topic at its next start. The alerts
/// are rewritten in chunks (idempotent); cases, progress and the schema
/// marker move in the last write, so an interrupted upgrade runs again.
pub(super) fn v2_to_v3(store: &Store) -> Result<(), StoreError> {
    use super::cases::{self, Case};
    use crate::model::decision::{case_id, Action, Decision, Outcome};
    use crate::model::{Alert, Timestamp};
    use std::collections::{BTreeMap, HashMap};

    let json_err = |e: serde_json::Error| StoreError::Refused { path: store.path().display().to_string(), reason: format!("upgrading to v3: {e}") };
    let time = |s: &str| Timestamp::parse_rfc3339(s).unwrap_or(Timestamp(0));
    let mut case_of: HashMap<String, String> = HashMap::new();
    let mut all: BTreeMap<String, Case> = BTreeMap::new();
    let mut batch = store.batch();
    let mut in_batch = 0;
    for id in store.values(Cf::AlertLog) {
        let id = id?;
        let Some(json) = store.get_raw(Cf::Alerts, &id)? else { continue };
        let mut a: Alert = serde_json::from_slice(&json).map_err(json_err)?;
        let subject = a.rule.info().subject.of(&a).unwrap_or_default().to_owned();
        a.case_id = case_id(a.rule, &subject);
        let at = time(&a.event_time);
        let case = all
            .entry(a.case_id.clone())
            .or_insert_with(|| Case::new(a.case_id.clone(), a.rule, subject, time(&a.detected_at), at));
        case.add_alert(&a.alert_id, &a, at, true);
        case_of.insert(a.alert_id.clone(), a.case_id.clone());
        batch.put_raw(Cf::Alerts, a.alert_id.as_bytes(), &serde_json::to_vec(&a).map_err(json_err)?);
        in_batch += 1;
        if in_batch >= ALERTS_PER_WRITE {
            store.commit(std::mem::replace(&mut batch, store.batch()))?;
            in_batch = 0;
        }
    }
    store.commit(std::mem::replace(&mut batch, store.batch()))?;

    // Reviews: `alert_id | 0 | seq` → {outcome, note, reviewer, at}.
    let mut migrated = Vec::new();
    for (k, v) in store.entries_between(Cf::Reviews, &[], &[0xff], usize::MAX)? {
        let Some(split) = k.len().checked_sub(9).filter(|i| k[*i] == 0) else { continue };
        let alert_id = String::from_utf8_lossy(&k[..split]).into_owned();
        let seq = u64::from_be_bytes(k[split + 1..].try_into().unwrap_or_default());
        let r: serde_json::Value = serde_json::from_slice(&v).map_err(json_err)?;
        let Some(case) = case_of.get(&alert_id).and_then(|c| all.get_mut(c)) else { continue };
        let (outcome, action) = match r["outcome"].as_str().unwrap_or("") {
            "confirmed" => (Outcome::Confirmed, None),
            "false_positive" => (Outcome::FalsePositive, None),
            "corrected" => (Outcome::Rectified, Some(Action::Other)),
            _ => (Outcome::InProgress, None),
        };
        let d = Decision {
            decision_id: format!("review-{alert_id}-{seq}"),
            case_id: case.case_id.clone(),
            rule: case.rule,
            subject: case.subject.clone(),
            outcome,
            action,
            amount_recovered: None,
            document_no: None,
            clue_no: None,
            note: r["note"].as_str().filter(|n| !n.is_empty()).map(str::to_owned),
            decided_by: r["reviewer"].as_str().unwrap_or("").to_owned(),
            decided_at: time(r["at"].as_str().unwrap_or("")),
        };
        case.apply(&d);
        batch.put_raw(Cf::Cases, &cases::decision_key(&d.decision_id), &postcard::to_stdvec(&d.case_id).map_err(StoreError::Encode)?);
        migrated.push(d);
    }
    for (id, c) in &all {
        batch.put(Cf::Cases, &cases::key(id), c)?;
    }
    if !migrated.is_empty() {
        batch.put_raw(Cf::Meta, keys::META_MIGRATED_DECISIONS, &serde_json::to_vec(&migrated).map_err(json_err)?);
    }
    if let Some(progress) = store.get_raw(Cf::Meta, keys::META_PROGRESS)? {
        batch.put_raw(Cf::Meta, keys::META_PROGRESS, &progress_v2_to_v3(&progress)?);
    }
    batch.put_raw(Cf::Meta, keys::META_SCHEMA, V3.as_bytes());
    store.commit(batch)?;
    tracing::info!(from = V2, to = V3, cases = all.len(), decisions = migrated.len(), "state directory upgraded");
    Ok(())
}

/// The v2 progress as v3 reads it: the position's rank moved, and a zero
/// `counts.decisions` after `counts.reversals` (postcard writes fields in
/// order: position, watermark, alert_seq, dead_seq, then the counts).
fn progress_v2_to_v3(v2: &[u8]) -> Result<Vec<u8>, StoreError> {
    use crate::model::{SortKey, Timestamp};
    let bad = |source| StoreError::Decode { cf: Cf::Meta.name(), key: "progress".into(), source };
    let (mut position, rest) = postcard::take_from_bytes::<Option<SortKey>>(v2).map_err(bad)?;
    if let Some(p) = position.as_mut() {
        p.rank = match p.rank {
            2 => crate::model::records::RANK_PAYMENT,
            3 => crate::model::records::RANK_PAYMENT + 1,
            r => r,
        };
    }
    let (watermark, rest) = postcard::take_from_bytes::<Option<Timestamp>>(rest).map_err(bad)?;
    let (seqs, rest) = postcard::take_from_bytes::<(u64, u64)>(rest).map_err(bad)?;
    let (counts, rest) = postcard::take_from_bytes::<(u64, u64, u64, u64)>(rest).map_err(bad)?;
    let mut out = postcard::to_stdvec(&(position, watermark, seqs, counts, 0u64)).map_err(StoreError::Encode)?;
    out.extend_from_slice(rest);
    Ok(out)
}

/// The layout [`v3_to_v4`] upgrades from.
pub(super) const V3: &str = "paywatch-state-v3";

/// A webhook delivery as v3 stored it (`w | seq` in the outbox), read only
/// to move it.
#[derive(serde::Deserialize)]
struct DeliveryV3 {
    route: String,
    _id: String,
    _body: Vec<u8>,
    _attempts: u32,
    _next_at_ms: i64,
    queued_ms: i64,
    _last_error: Option<String>,
}

/// A custodian registration as v3 stored it (no `id_no`).
#[derive(serde::Deserialize)]
struct CustodianV3 {
    name: String,
    account_no: String,
    registered_at: crate::model::time::Date,
    revoked_at: Option<crate::model::time::Date>,
}

/// A roster version as v3 stored it.
#[derive(serde::Deserialize)]
struct RosterV3 {
    beneficiary_id: crate::model::PersonId,
    name: String,
    household_id: String,
    township: String,
    program: crate::model::Program,
    status: crate::model::Status,
    enrolled_at: crate::model::time::Date,
    status_since: crate::model::time::Date,
    monthly_amount: crate::model::Money,
    filed_relative: bool,
    custodians: Vec<CustodianV3>,
    updated_at: crate::model::Timestamp,
}

impl From<RosterV3> for crate::model::RosterRecord {
    fn from(r: RosterV3) -> Self {
        crate::model::RosterRecord {
            beneficiary_id: r.beneficiary_id,
            name: r.name,
            household_id: r.household_id,
            township: r.township,
            program: r.program,
            status: r.status,
            enrolled_at: r.enrolled_at,
            status_since: r.status_since,
            monthly_amount: r.monthly_amount,
            filed_relative: r.filed_relative,
            custodians: r
                .custodians
                .into_iter()
                .map(|c| crate::model::Custodian {
                    name: c.name,
                    account_no: c.account_no,
                    registered_at: c.registered_at,
                    revoked_at: c.revoked_at,
                    id_no: None,
                })
                .collect(),
            updated_at: r.updated_at,
        }
    }
}

/// Beneficiaries rewritten per write while upgrading to v4.
const BENEFICIARIES_PER_WRITE: usize = 20_000;

/// v3 → v4:
/// - webhook deliveries move from one queue (`w | seq`) to one key range
///   per route ([`keys::delivery`]) and gain their event, appended last
///   (postcard: variant 0, `alert`, is one zero byte). Dead deliveries get
///   the same keys, so a retry puts them back in their route's range.
/// - an account's window keeps its rules' episodes as a list of (rule,
///   episode) (the account-level rules come from the registry), no longer
///   one field per rule.
/// - a beneficiary gained `vulnerable` (the §10 records about the person)
///   as its last field, empty; the progress counts gained `vulnerable`
///   after `decisions`.
/// - custodian registrations gained `id_no` (contract v1.1) as their last
///   field: every stored roster history is rewritten with none (a v3
///   feed carried none). The roster is a beneficiary's first field, so the
///   rest of the value is kept as it is. Both in chunks; idempotent until the
///   chunks, each recording the last key it rewrote
///   (`meta/upgrade_v4_after/<cf>`), so an interrupted upgrade resumes after it
///   and never reads a rewritten value as v3.
pub(super) fn v3_to_v4(store: &Store) -> Result<(), StoreError> {
    rewrite_v3_to_v4(store, Cf::Beneficiaries, beneficiary_v3_to_v4)?;
    rewrite_v3_to_v4(store, Cf::Accounts, account_v3_to_v4)?;
    const OLD: u8 = b'w';
    let mut batch = store.batch();
    let (mut queued, mut dead) = (0, 0);
    for cf in [Cf::Outbox, Cf::WebhookDead] {
        for (k, v) in store.entries_between(cf, &[OLD], &[OLD + 1], usize::MAX)? {
            let bad = |source| StoreError::Decode { cf: cf.name(), key: keys::shown(&k), source };
            let seq = k.get(1..9).and_then(|s| s.try_into().ok()).map(u64::from_be_bytes).unwrap_or_default();
            let (d, rest) = postcard::take_from_bytes::<DeliveryV3>(&v).map_err(bad)?;
            let mut value = v[..v.len() - rest.len()].to_vec();
            value.push(0);
            value.extend_from_slice(rest);
            batch.delete(cf, &k);
            batch.put_raw(cf, &keys::delivery(&d.route, d.queued_ms, keys::FROM_ENGINE, seq), &value);
            if cf == Cf::Outbox {
                queued += 1;
            } else {
                dead += 1;
            }
        }
    }
    if let Some(progress) = store.get_raw(Cf::Meta, keys::META_PROGRESS)? {
        batch.put_raw(Cf::Meta, keys::META_PROGRESS, &progress_v3_to_v4(&progress)?);
    }
    batch.delete(Cf::Meta, &resume_key(Cf::Beneficiaries));
    batch.delete(Cf::Meta, &resume_key(Cf::Accounts));
    batch.put_raw(Cf::Meta, keys::META_SCHEMA, V4.as_bytes());
    store.commit(batch)?;
    tracing::info!(from = V3, to = V4, queued, dead, "state directory upgraded");
    Ok(())
}

pub(super) const V4: &str = "paywatch-state-v4";

/// The last alert sequence the v4 → v5 upgrade indexed.
const V5_AFTER: &[u8] = b"upgrade_v5_after";

/// v4 → v5: the case index (in `cases`) and the alert index
/// (`alert_index`), the latter built from the alert log,
/// `ALERTS_PER_WRITE` alerts per write, each write recording the last
/// sequence it indexed, so an interrupted upgrade goes on from there.
pub(super) fn v4_to_v5(store: &Store) -> Result<(), StoreError> {
    let after = store.get_raw(Cf::Meta, V5_AFTER)?.and_then(|v| v.as_slice().try_into().ok()).map_or(0, u64::from_be_bytes);
    let last = super::alert_index::build(store, after, ALERTS_PER_WRITE, |batch, last| {
        batch.put_raw(Cf::Meta, V5_AFTER, &last.to_be_bytes());
    })?;
    // Index entries are keyed by what they index: writing them again
    // after an interruption changes nothing.
    let cases = super::cases::build_index(store)?;
    let mut batch = store.batch();
    batch.delete(Cf::Meta, V5_AFTER);
    batch.put_raw(Cf::Meta, keys::META_SCHEMA, V5.as_bytes());
    store.commit(batch)?;
    tracing::info!(from = V4, to = V5, alerts_indexed_up_to = last, cases, "state directory upgraded");
    Ok(())
}

/// The v3 progress as v4 reads it: a zero `counts.vulnerable` after
/// `counts.decisions`.
fn progress_v3_to_v4(v3: &[u8]) -> Result<Vec<u8>, StoreError> {
    use crate::model::{SortKey, Timestamp};
    let bad = |source| StoreError::Decode { cf: Cf::Meta.name(), key: "progress".into(), source };
    type Head = (Option<SortKey>, Option<Timestamp>, u64, u64, (u64, u64, u64, u64, u64));
    let (head, rest) = postcard::take_from_bytes::<Head>(v3).map_err(bad)?;
    let mut out = postcard::to_stdvec(&(head, 0u64)).map_err(StoreError::Encode)?;
    out.extend_from_slice(rest);
    Ok(out)
}

/// The last key the v3 → v4 upgrade rewrote in a column family, written
/// with each chunk: an interrupted upgrade resumes after it instead of
/// reading a rewritten value as v3.
fn resume_key(cf: Cf) -> Vec<u8> {
    format!("upgrade_v4_after/{}", cf.name()).into_bytes()
}

/// Rewrites every value of `cf` with `convert`, in chunks, resumably.
fn rewrite_v3_to_v4(store: &Store, cf: Cf, convert: fn(&[u8]) -> Result<Vec<u8>, postcard::Error>) -> Result<(), StoreError> {
    rewrite_chunks(store, cf, &resume_key(cf), |batch, k, v| {
        let value = convert(v).map_err(|source| StoreError::Decode { cf: cf.name(), key: keys::shown(k), source })?;
        batch.put_raw(cf, k, &value);
        Ok(())
    })
}

/// Hands every entry of `cf` to `convert`, which puts what replaces it
/// into the batch, `BENEFICIARIES_PER_WRITE` entries per write; each write
/// records the last key it converted under `resume` in `meta`, so an
/// interrupted upgrade resumes after it and never converts a value twice.
fn rewrite_chunks(
    store: &Store,
    cf: Cf,
    resume: &[u8],
    mut convert: impl FnMut(&mut super::Batch<'_>, &[u8], &[u8]) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut from = match store.get_raw(Cf::Meta, resume)? {
        Some(mut k) => {
            k.push(0);
            k
        }
        None => Vec::new(),
    };
    loop {
        let chunk = store.entries_between(cf, &from, &[0xff; 32], BENEFICIARIES_PER_WRITE)?;
        let Some((last, _)) = chunk.last() else { return Ok(()) };
        let mut batch = store.batch();
        for (k, v) in &chunk {
            convert(&mut batch, k, v)?;
        }
        batch.put_raw(Cf::Meta, resume, last);
        store.commit(batch)?;
        from = last.clone();
        from.push(0);
    }
}

pub(super) const V5: &str = "paywatch-state-v5";
pub(super) const V6: &str = "paywatch-state-v6";
pub(super) const V7: &str = "paywatch-state-v7";
pub(super) const V8: &str = "paywatch-state-v8";
pub(super) const V9: &str = "paywatch-state-v9";

mod v6;
mod v7;
mod v8;
mod v9;
mod v10;
use v6::v5_to_v6;
use v7::v6_to_v7;
use v8::v7_to_v8;
use v9::v8_to_v9;
use v10::v9_to_v10;

/// One upgrade: the layout it reads, and the step to the next one.
type Step = (&'static str, fn(&Store) -> Result<(), StoreError>);

/// Every upgrade, oldest first: a directory of layout `STEPS[i].0` goes
/// through every step from `i` on, ending at `SCHEMA`.
pub(super) const STEPS: [Step; 9] = [
    (V1, v1_to_v2),
    (V2, v2_to_v3),
    (V3, v3_to_v4),
    (V4, v4_to_v5),
    (V5, v5_to_v6),
    (V6, v6_to_v7),
    (V7, v7_to_v8),
    (V8, v8_to_v9),
    (V9, v9_to_v10),
];

/// A beneficiary: the roster is its first field; the rest stays.
fn beneficiary_v3_to_v4(v: &[u8]) -> Result<Vec<u8>, postcard::Error> {
    let (roster, rest) = postcard::take_from_bytes::<Vec<RosterV3>>(v)?;
    let roster: Vec<crate::model::RosterRecord> = roster.into_iter().map(Into::into).collect();
    let mut value = postcard::to_stdvec(&roster)?;
    value.extend_from_slice(rest);
    // `vulnerable`, appended last: none.
    value.push(0);
    Ok(value)
}

/// An account: its window held one episode field per account rule
/// (`shared`, `frequent`); v4 holds a list of (rule, episode), with only
/// the episodes that ever started. `custodian_of` follows unchanged (v6
/// moves it out).
fn account_v3_to_v4(v: &[u8]) -> Result<Vec<u8>, postcard::Error> {
    use crate::detect::episode::{Episode, RuleEpisode, WindowEntry};
    use crate::model::{Rule, Timestamp};
    let (entries, rest) = postcard::take_from_bytes::<Vec<WindowEntry>>(v)?;
    let (shared, rest) = postcard::take_from_bytes::<Episode>(rest)?;
    let (frequent, rest) = postcard::take_from_bytes::<Episode>(rest)?;
    let (last_eval, rest) = postcard::take_from_bytes::<Option<Timestamp>>(rest)?;
    let episodes: Vec<RuleEpisode> = [(Rule::SharedAccount, shared), (Rule::FrequentPayments, frequent)]
        .into_iter()
        .filter(|(_, e)| *e != Episode::default())
        .map(|(rule, episode)| RuleEpisode { rule, episode })
        .collect();
    let mut value = postcard::to_stdvec(&(entries, episodes, last_eval))?;
    value.extend_from_slice(rest);
    Ok(value)
}

/// Writes every account back in the v3 layout, and every custodian in the
/// layout of v3 to v6: for tests that build a state with this engine and
/// label it as an older version.
#[cfg(test)]
pub(crate) fn accounts_as_v3(store: &Store) {
    use crate::detect::episode::Episode;
    use crate::engine::state::Account;
    use crate::model::Rule;
    use std::collections::BTreeSet;
    let mut b = store.batch();
    for (k, v) in store.entries_between(Cf::Accounts, &[], &[0xff; 32], usize::MAX).unwrap() {
        let a: Account = postcard::from_bytes(&v).unwrap();
        let named: BTreeSet<String> = store
            .get::<crate::engine::registrations::Registrations>(Cf::AccountCustodians, &k)
            .unwrap()
            .map(|r| r.persons().cloned().collect())
            .unwrap_or_default();
        let e = |r: Rule| a.window.episode(r).cloned().unwrap_or_default();
        let old: (_, Episode, Episode, _, _) = (&a.window.entries, e(Rule::SharedAccount), e(Rule::FrequentPayments), a.window.last_eval, &named);
        b.put_raw(Cf::Accounts, &k, &postcard::to_stdvec(&old).unwrap());
        b.delete(Cf::AccountCustodians, &k);
    }
    // Households held who was ever on the roster with them, until v7.
    for (k, v) in store.entries_between(Cf::Households, &[], &[0xff; 32], usize::MAX).unwrap() {
        let h: crate::engine::registrations::Versions<bool> = postcard::from_bytes(&v).unwrap();
        let persons: BTreeSet<String> = h.persons().cloned().collect();
        b.put(Cf::Households, &k, &persons).unwrap();
    }
    // Custodians held who names them, until v7.
    for (k, v) in store.entries_between(Cf::Custodians, &[], &[0xff; 32], usize::MAX).unwrap() {
        let c: crate::engine::state::CustodianState = postcard::from_bytes(&v).unwrap();
        let persons: BTreeSet<String> = c.of.persons().cloned().collect();
        b.put(Cf::Custodians, &k, &(persons, c.over)).unwrap();
    }
    store.commit(b).unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::episode::{Episode, WindowEntry};
    use crate::engine::state::Account;
    use crate::model::{Money, Rule, Timestamp};
    use crate::store::StoreOptions;
    use std::collections::BTreeSet;

    /// v3 → v4: an account's two episode fields become the list, keeping
    /// the open one; its entries and custodian beneficiaries are kept.
    #[test]
    fn a_v3_account_window_is_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions { block_cache_mb: 8, write_buffer_mb: 4, sync: false, statistics: false };
        let entry = WindowEntry {
            event_id: "E1".into(),
            paid_at: Timestamp(1_000),
            household_id: "H1".into(),
            amount: Money::parse("585.00").unwrap(),
            exempt: false,
            reversed: false,
        };
        let frequent = Episode { open: true, below_since: Some(Timestamp(2_000)) };
        let custodian_of: BTreeSet<String> = ["11010519491231002X".to_owned()].into();
        {
            let store = Store::open(dir.path(), opts).unwrap();
            let v3 = postcard::to_stdvec(&(vec![entry.clone()], Episode::default(), frequent.clone(), Some(Timestamp(3_000)), &custodian_of)).unwrap();
            let mut b = store.batch();
            b.put_raw(Cf::Accounts, b"6217001234567890", &v3);
            b.put_raw(Cf::Meta, keys::META_SCHEMA, V3.as_bytes());
            store.commit(b).unwrap();
        }
        let store = Store::open(dir.path(), opts).unwrap();
        let a: Account = store.get(Cf::Accounts, b"6217001234567890").unwrap().unwrap();
        assert_eq!(a.window.entries, [entry]);
        assert_eq!(a.window.episodes.len(), 1, "only the episode that started");
        assert_eq!(a.window.episode(Rule::FrequentPayments), Some(&frequent));
        assert_eq!(a.window.episode(Rule::SharedAccount), None);
        assert_eq!(a.window.last_eval, Some(Timestamp(3_000)));
        assert!(
            store.get_raw(Cf::AccountCustodians, b"6217001234567890").unwrap().is_none(),
            "v6 keeps them apart from the window; v7 keeps what their rosters say, and this state holds no roster"
        );
        assert!(store.get_raw(Cf::Meta, &resume_key(Cf::Accounts)).unwrap().is_none(), "the resume key goes with the upgrade");
    }
}
