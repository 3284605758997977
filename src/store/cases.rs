//! Cases (问题) and their decisions, contract §8: the `cases` column family,
//! `c | case_id` → [`Case`] (postcard), and `d | decision_id` → the
//! `case_id` it was filed under (a decision id is unique across cases,
//! §11.5), `n | case_id | …` → a deadline event already queued for the
//! webhooks ([`announced_key`]), and `p | case_id | 0x1f | decision_id` → a decision the API made
//! durable on the decisions topic that the engine has not applied yet
//! (shown to readers meanwhile, cleared by the engine's commit that applies
//! or refuses it), and the case index, newest activity first: `i |
//! newest_event | case_id` and `j | len | township | newest_event | case_id`
//! → a [`Summary`] (see [`stage_index`]). This module owns that layout: the engine keeps both through its
//! cached [`super::Table`]s, keyed by [`key`] and [`decision_key`], and
//! writes them with its commit; the API, the reports and the audit's
//! `--cases` output read them through the functions here.

use super::{Cf, Store, StoreError};
use crate::model::decision::{Action, Decision, Outcome};
use crate::model::{Alert, Money, Rule, Timestamp};
use serde::{Deserialize, Serialize};

/// Where a case stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// No decision yet, or reopened by an alert after `rectified`.
    #[default]
    Open,
    InProgress,
    Confirmed,
    FalsePositive,
    Rectified,
}

impl Status {
    pub const ALL: [Status; 5] = [Status::Open, Status::InProgress, Status::Confirmed, Status::FalsePositive, Status::Rectified];

    pub fn code(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::InProgress => "in_progress",
            Status::Confirmed => "confirmed",
            Status::FalsePositive => "false_positive",
            Status::Rectified => "rectified",
        }
    }

    pub fn from_code(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|x| x.code() == s)
    }

    pub fn chinese(self) -> &'static str {
        match self {
            Status::Open => "待复核",
            Status::InProgress => "核查中",
            Status::Confirmed => "核实属实",
            Status::FalsePositive => "误报",
            Status::Rectified => "已整改",
        }
    }
}

impl From<Outcome> for Status {
    fn from(o: Outcome) -> Status {
        match o {
            Outcome::InProgress => Status::InProgress,
            Outcome::Confirmed => Status::Confirmed,
            Outcome::FalsePositive => Status::FalsePositive,
            Outcome::Rectified => Status::Rectified,
        }
    }
}

/// The newest `rectified` decision of a case, which a later alert relapses
/// (§8, §11.3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rectified {
    pub decision_id: String,
    pub decided_at: Timestamp,
    pub action: Option<Action>,
    /// A relapse was raised against it: one per case and decision (§6).
    pub relapsed: bool,
}

/// One case: the alerts of one rule on one subject, and what was decided.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Case {
    pub case_id: String,
    /// The rule of its alerts (never `RECTIFICATION_RELAPSE`, whose alerts
    /// belong to the case that relapsed).
    pub rule: Rule,
    /// Beneficiary, account, custodian or person (§8), as the rule says.
    pub subject: String,
    /// Routing and role scope: the township of the newest alert.
    pub township: String,
    /// The subject fields of the newest alert, for the ledger.
    pub beneficiary_id: Option<String>,
    pub household_id: Option<String>,
    pub account_no: Option<String>,
    /// Its alerts' ids, in the order raised.
    pub alerts: Vec<String>,
    /// 涉及金额: the sum of its alerts' amounts (relapse alerts repeat
    /// their relapsed alert's amount and are not counted again).
    pub amount: Money,
    /// Event time of its first and newest alerts.
    pub first_event: Timestamp,
    pub newest_event: Timestamp,
    /// Wall clock when it was opened, or last reopened by a relapse: the
    /// deadlines (`[cases] deadline_days`) count from here.
    pub opened_at: Timestamp,
    pub status: Status,
    /// Reopened at least once by an alert after `rectified` (反弹).
    pub relapsed: bool,
    /// Its decisions, in (`decided_at`, `decision_id`) order.
    pub decisions: Vec<Decision>,
    /// The newest `rectified` decision, if any.
    pub rectified: Option<Rectified>,
}

impl Case {
    /// A new case opened by its first alert.
    pub fn new(case_id: String, rule: Rule, subject: String, opened_at: Timestamp, first_event: Timestamp) -> Case {
        Case {
            case_id,
            rule,
            subject,
            township: String::new(),
            beneficiary_id: None,
            household_id: None,
            account_no: None,
            alerts: Vec::new(),
            amount: Money::ZERO,
            first_event,
            newest_event: first_event,
            opened_at,
            status: Status::Open,
            relapsed: false,
            decisions: Vec::new(),
            rectified: None,
        }
    }

    /// Adds alert `id` (raised at event time `at`, with the fields of `a`)
    /// to the case's counts; a relapse alert, filed with the fields of the
    /// alert that relapsed, repeats its amount and passes `counts_amount`
    /// false.
    pub fn add_alert(&mut self, id: &str, a: &Alert, at: Timestamp, counts_amount: bool) {
        self.alerts.push(id.to_owned());
        if counts_amount {
            if let Some(m) = a.amount {
                self.amount = self.amount.plus(m);
            }
        }
        self.first_event = self.first_event.min(at);
        if at >= self.newest_event || self.township.is_empty() {
            self.newest_event = self.newest_event.max(at);
            self.township.clone_from(&a.township);
            self.beneficiary_id.clone_from(&a.beneficiary_id);
            self.household_id.clone_from(&a.household_id);
            self.account_no.clone_from(&a.account_no);
        }
    }

    /// Applies a decision not applied before (§8): its status is the
    /// newest decision's outcome (by `decided_at`, then `decision_id`), and
    /// a `rectified` one newer than the last becomes the one a later alert
    /// relapses.
    pub fn apply(&mut self, d: &Decision) {
        let order = |x: &Decision| (x.decided_at, x.decision_id.clone());
        let at = self.decisions.partition_point(|x| order(x) <= order(d));
        if at == self.decisions.len() {
            self.status = d.outcome.into();
        }
        self.decisions.insert(at, d.clone());
        let newer = self.rectified.as_ref().is_none_or(|r| (r.decided_at, &r.decision_id) < (d.decided_at, &d.decision_id));
        if d.outcome == Outcome::Rectified && newer {
            self.rectified =
                Some(Rectified { decision_id: d.decision_id.clone(), decided_at: d.decided_at, action: d.action, relapsed: false });
        }
    }

    /// 追回金额: the sum over its decisions.
    pub fn amount_recovered(&self) -> Money {
        self.decisions.iter().filter_map(|d| d.amount_recovered).fold(Money::ZERO, |a, m| a.plus(m))
    }

    /// The newest decision.
    pub fn last_decision(&self) -> Option<&Decision> {
        self.decisions.last()
    }
}

/// Where an open case stands against its deadlines (wall clock, from
/// `opened_at`: its opening or last reopening).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deadline {
    /// Closed (`rectified` or `false_positive`): no deadline runs.
    Closed,
    Running,
    /// `[cases] warn_days` reached (临期).
    DueSoon,
    /// `[cases] deadline_days` reached (超期).
    Overdue,
}

impl Case {
    /// Closed as `rectified` or `false_positive`.
    pub fn closed(&self) -> bool {
        matches!(self.status, Status::Rectified | Status::FalsePositive)
    }

    /// When it becomes overdue.
    pub fn due_at(&self, cfg: &crate::config::CasesConfig) -> Timestamp {
        self.opened_at.plus_days(i64::from(cfg.deadline_days))
    }

    /// Its deadline state at `now`.
    pub fn deadline(&self, cfg: &crate::config::CasesConfig, now: Timestamp) -> Deadline {
        if self.closed() {
            return Deadline::Closed;
        }
        let day = crate::model::time::MS_PER_DAY;
        if now.0 - self.opened_at.0 >= i64::from(cfg.deadline_days) * day {
            Deadline::Overdue
        } else if now.0 - self.opened_at.0 >= i64::from(cfg.warn_days) * day {
            Deadline::DueSoon
        } else {
            Deadline::Running
        }
    }
}

/// The key that records a case event as queued for the webhooks, once per
/// case, event and opening (`opened_at`): `n | case_id | 0x1f | event |
/// 0x1f | opened_at`. Written only by the deadline watcher
/// (`sink::case_events`), in the commit that queues the deliveries.
pub fn announced_key(case_id: &str, event: &str, opened_at: Timestamp) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + case_id.len() + event.len() + 8);
    k.push(b'n');
    k.extend_from_slice(case_id.as_bytes());
    k.push(0x1f);
    k.extend_from_slice(event.as_bytes());
    k.push(0x1f);
    k.extend_from_slice(&opened_at.0.to_be_bytes());
    k
}

/// Whether [`announced_key`] was recorded.
pub fn announced(store: &Store, key: &[u8]) -> Result<bool, StoreError> {
    Ok(store.get_raw(Cf::Cases, key)?.is_some())
}

/// The key of a case.
pub fn key(case_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + case_id.len());
    k.push(b'c');
    k.extend_from_slice(case_id.as_bytes());
    k
}

/// The key of a decision id's entry (its case id).
pub fn decision_key(decision_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + decision_id.len());
    k.push(b'd');
    k.extend_from_slice(decision_id.as_bytes());
    k
}

/// The key of a posted decision not yet applied.
pub fn pending_key(case_id: &str, decision_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + case_id.len() + decision_id.len());
    k.push(b'p');
    k.extend_from_slice(case_id.as_bytes());
    k.push(0x1f);
    k.extend_from_slice(decision_id.as_bytes());
    k
}

/// Records a decision acknowledged by the decisions topic and not yet
/// applied (the API, after the broker's acknowledgement).
pub fn put_pending(store: &Store, d: &Decision) -> Result<(), StoreError> {
    let mut b = store.batch();
    b.put(Cf::Cases, &pending_key(&d.case_id, &d.decision_id), d)?;
    store.commit(b)
}

/// The posted decisions of a case not yet applied; entries the case
/// already holds are dropped from the store on the way.
pub fn pending(store: &Store, c: &Case) -> Result<Vec<Decision>, StoreError> {
    let mut prefix = vec![b'p'];
    prefix.extend_from_slice(c.case_id.as_bytes());
    prefix.push(0x1f);
    let mut found = Vec::new();
    let mut stale = Vec::new();
    store.scan_prefix(Cf::Cases, &prefix, |k, v| {
        let d: Decision =
            postcard::from_bytes(v).map_err(|source| StoreError::Decode { cf: Cf::Cases.name(), key: super::keys::shown(k), source })?;
        if c.decisions.iter().any(|x| x.decision_id == d.decision_id) {
            stale.push(k.to_vec());
        } else {
            found.push(d);
        }
        Ok(())
    })?;
    if !stale.is_empty() {
        let mut b = store.batch();
        for k in &stale {
            b.delete(Cf::Cases, k);
        }
        store.commit(b)?;
    }
    Ok(found)
}

/// The case as readers see it: as stored, with the posted decisions not yet
/// applied (the newest decision decides the status). `c` must be the case
/// as stored: a posted decision it holds is applied, and its pending entry
/// is dropped.
pub fn with_pending(store: &Store, mut c: Case) -> Result<Case, StoreError> {
    for d in pending(store, &c)? {
        let order = |x: &Decision| (x.decided_at, x.decision_id.clone());
        let at = c.decisions.partition_point(|x| order(x) <= order(&d));
        if at == c.decisions.len() {
            c.status = d.outcome.into();
        }
        c.decisions.insert(at, d);
    }
    Ok(c)
}

/// What the case list filters on, kept in the case index so that a page
/// and its total are decided without reading the cases themselves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// The case's township: the `township` filter and a township's scope.
    pub township: String,
    /// Its newest alert's event time: the index order (newest activity first).
    pub newest_event: Timestamp,
    /// Its first alert's event time: the `from`/`to` filters (发现时间).
    pub first_event: Timestamp,
    /// When it was opened or reopened: the deadlines count from here.
    pub opened_at: Timestamp,
    /// The `rule` and `referral` filters.
    pub rule: Rule,
    /// The `status` filter, and closed cases for the deadlines.
    pub status: Status,
    /// The `relapsed` filter.
    pub relapsed: bool,
    /// When its newest decision was made, if any.
    pub last_decided_at: Option<Timestamp>,
}

impl Summary {
    pub fn of(c: &Case) -> Summary {
        Summary {
            township: c.township.clone(),
            newest_event: c.newest_event,
            first_event: c.first_event,
            opened_at: c.opened_at,
            rule: c.rule,
            status: c.status,
            relapsed: c.relapsed,
            last_decided_at: c.decisions.last().map(|d| d.decided_at),
        }
    }

    /// A case with these fields and nothing else (no alerts, no
    /// decisions), for the filters written against [`Case`].
    pub fn as_case(&self, case_id: &str) -> Case {
        let mut c = Case::new(case_id.to_owned(), self.rule, String::new(), self.opened_at, self.first_event);
        c.township.clone_from(&self.township);
        c.newest_event = self.newest_event;
        c.status = self.status;
        c.relapsed = self.relapsed;
        c
    }
}

/// A timestamp as a key part that sorts like the number.
fn time_key(t: Timestamp) -> [u8; 8] {
    ((t.0 as u64) ^ (1 << 63)).to_be_bytes()
}

fn index_prefix(township: Option<&str>) -> Vec<u8> {
    super::keys::index_prefix(b'i', b'j', township)
}

fn index_keys(case_id: &str, s: &Summary) -> [Vec<u8>; 2] {
    [None, Some(s.township.as_str())].map(|t| {
        let mut k = index_prefix(t);
        k.extend_from_slice(&time_key(s.newest_event));
        k.extend_from_slice(case_id.as_bytes());
        k
    })
}

/// Keeps the case index in step with a case written in the same batch:
/// `before` is its summary as stored before this batch (`None` for a new
/// case), `after` as written now.
pub fn stage_index(batch: &mut super::Batch<'_>, case_id: &str, before: Option<&Summary>, after: &Summary) -> Result<(), StoreError> {
    for (k, v) in index_changes(case_id, before, after)? {
        match v {
            Some(v) => batch.put_raw(Cf::Cases, &k, &v),
            None => batch.delete(Cf::Cases, &k),
        }
    }
    Ok(())
}

/// What [`stage_index`] writes, as `Cases` keys and encoded values
/// (`None`: deleted), for an owner that hands its changes to the commit
/// rather than writing a batch itself (the account stage).
pub fn index_changes(case_id: &str, before: Option<&Summary>, after: &Summary) -> Result<Vec<(Vec<u8>, Option<Vec<u8>>)>, StoreError> {
    let mut out = Vec::new();
    if before == Some(after) {
        return Ok(out);
    }
    let new = index_keys(case_id, after);
    if let Some(b) = before {
        for old in index_keys(case_id, b) {
            if !new.contains(&old) {
                out.push((old, None));
            }
        }
    }
    let value = postcard::to_stdvec(after).map_err(StoreError::Encode)?;
    for k in new {
        out.push((k, Some(value.clone())));
    }
    Ok(out)
}

/// Calls `f` with every indexed case (of one township, or all), newest
/// activity first, with its summary.
pub fn walk_index<E: From<StoreError>>(store: &Store, township: Option<&str>, mut f: impl FnMut(&str, Summary) -> Result<(), E>) -> Result<(), E> {
    let prefix = index_prefix(township);
    let mut end = prefix.clone();
    end.push(0xff);
    let mut it = store.raw_iterator(Cf::Cases);
    it.seek_for_prev(&end);
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        if !k.starts_with(&prefix) {
            break;
        }
        let id = k.get(prefix.len() + 8..).and_then(|b| std::str::from_utf8(b).ok());
        let bad = |why: &str| StoreError::Json { cf: Cf::Cases.name(), key: super::keys::shown(k), reason: why.into() };
        let id = id.ok_or_else(|| bad("not a case index key"))?;
        let s: Summary =
            postcard::from_bytes(v).map_err(|source| StoreError::Decode { cf: Cf::Cases.name(), key: super::keys::shown(k), source })?;
        f(id, s)?;
        it.prev();
    }
    it.status().map_err(StoreError::from)?;
    Ok(())
}

/// The cases with posted decisions not yet applied: their status may
/// differ from the index's until the engine applies them.
pub fn with_pending_ids(store: &Store) -> Result<std::collections::BTreeSet<String>, StoreError> {
    let mut ids = std::collections::BTreeSet::new();
    store.scan_prefix(Cf::Cases, b"p", |k, _| {
        let rest = &k[1..];
        let end = rest.iter().position(|b| *b == 0x1f).unwrap_or(rest.len());
        ids.insert(String::from_utf8_lossy(&rest[..end]).into_owned());
        Ok(())
    })?;
    Ok(ids)
}

/// Whether the case index holds exactly one entry per stored case and
/// township, with its current summary (tests).
#[cfg(test)]
pub(crate) fn index_agrees(store: &Store) -> Result<(), String> {
    let mut want: Vec<(String, Summary)> = all(store).map(|c| c.map(|c| (c.case_id.clone(), Summary::of(&c)))).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
    want.sort_by(|a, b| (b.1.newest_event, &b.0).cmp(&(a.1.newest_event, &a.0)));
    let mut got = Vec::new();
    walk_index::<StoreError>(store, None, |id, s| {
        got.push((id.to_owned(), s));
        Ok(())
    })
    .map_err(|e| e.to_string())?;
    if got != want {
        return Err(format!("index {got:?}\ncases {want:?}"));
    }
    for (id, s) in &want {
        let mut found = 0;
        walk_index::<StoreError>(store, Some(&s.township), |i, x| {
            found += usize::from(i == id && x == *s);
            Ok(())
        })
        .map_err(|e| e.to_string())?;
        if found != 1 {
            return Err(format!("{id} is in its township's index {found} times"));
        }
    }
    let townships: std::collections::BTreeSet<&str> = want.iter().map(|(_, s)| s.township.as_str()).collect();
    let mut by_township = 0;
    for t in townships {
        walk_index::<StoreError>(store, Some(t), |_, _| {
            by_township += 1;
            Ok(())
        })
        .map_err(|e| e.to_string())?;
    }
    if by_township != want.len() {
        return Err(format!("{by_township} township entries for {} cases", want.len()));
    }
    Ok(())
}

/// Writes the index entries of every stored case (the v4 → v5 upgrade).
pub fn build_index(store: &Store) -> Result<usize, StoreError> {
    let mut after: Option<String> = None;
    let mut n = 0;
    loop {
        let page = page(store, after.as_deref(), 5000)?;
        let Some(last) = page.last() else { return Ok(n) };
        after = Some(last.case_id.clone());
        let mut b = store.batch();
        for c in &page {
            stage_index(&mut b, &c.case_id, None, &Summary::of(c))?;
        }
        n += page.len();
        store.commit(b)?;
    }
}

fn decode(k: &[u8], v: &[u8]) -> Result<Case, StoreError> {
    postcard::from_bytes(v).map_err(|source| StoreError::Decode { cf: Cf::Cases.name(), key: super::keys::shown(k), source })
}

/// One case, if it exists.
pub fn get(store: &Store, case_id: &str) -> Result<Option<Case>, StoreError> {
    store.get(Cf::Cases, &key(case_id))
}

/// Cases in `case_id` order, a page at a time: `after` is the last id of
/// the previous page.
pub fn page(store: &Store, after: Option<&str>, limit: usize) -> Result<Vec<Case>, StoreError> {
    let start = match after {
        Some(a) => {
            let mut k = key(a);
            k.push(0);
            k
        }
        None => vec![b'c'],
    };
    store.entries_between(Cf::Cases, &start, b"d", limit)?.iter().map(|(k, v)| decode(k, v)).collect()
}

/// Every case, in `case_id` order.
pub fn all(store: &Store) -> impl Iterator<Item = Result<Case, StoreError>> + '_ {
    let mut after: Option<String> = None;
    let mut buf: std::vec::IntoIter<Case> = Vec::new().into_iter();
    let mut done = false;
    std::iter::from_fn(move || loop {
        if let Some(c) = buf.next() {
            after = Some(c.case_id.clone());
            return Some(Ok(c));
        }
        if done {
            return None;
        }
        match page(store, after.as_deref(), 1000) {
            Ok(p) => {
                done = p.len() < 1000;
                buf = p.into_iter();
            }
            Err(e) => {
                done = true;
                return Some(Err(e));
            }
        }
    })
}
