//! `/api/v1/cases`: the problems supervisors work on (contract §8). The
//! list, filtered and paged; one case with its alerts and decisions; and
//! recording a decision.
//!
//! A decision is the supervisors' work and must never be lost: it is
//! produced to the decisions topic (idempotent producer, acks from all
//! in-sync replicas), recorded as pending in the state directory, and only
//! then answered 201. The service applies it when it reads it back, like
//! any decision (live records wait up to `kafka.max_out_of_order` to be
//! merged in event time); until then reads show it from the pending entry,
//! across restarts too. A case of another township answers exactly as an
//! unknown one (404), so a township token cannot probe for cases.

use super::api::{bad, internal, who, Api, ApiError};
use super::auth::Role;
use crate::decode::{decode_json_str, Kind};
use crate::model::decision::Decision;
use crate::model::{Record, Rule, Timestamp};
use crate::store::cases::{self, Case, Deadline, Status};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long a decision may take to be acknowledged by the broker.
const PRODUCE_TIMEOUT: Duration = Duration::from_secs(30);

/// Where decisions posted through the API go.
pub struct DecisionSink {
    pub producer: FutureProducer,
    /// `kafka.topics.decisions`.
    pub topic: String,
    /// Makes generated decision ids unique within this process.
    counter: AtomicU64,
    /// `input.max_future` (ms): decided_at is checked like any record's.
    max_future_ms: i64,
    /// The input limits (field lengths).
    limits: crate::decode::Limits,
}

impl DecisionSink {
    pub fn new(producer: FutureProducer, topic: String, limits: crate::decode::Limits, max_future_ms: i64) -> DecisionSink {
        DecisionSink { producer, topic, counter: AtomicU64::new(0), max_future_ms, limits }
    }

    /// A decision id for a decision posted without one.
    fn new_id(&self, case_id: &str, who: &str, now: Timestamp) -> String {
        use sha2::{Digest, Sha256};
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let h = Sha256::digest(format!("{case_id}\x1f{who}\x1f{}\x1f{}\x1f{n}\x1f{nanos}", now.0, std::process::id()));
        format!("API-{}", &hex::encode(h)[..24])
    }
}

/// The case as stored, with its posted decisions not yet applied.
fn with_pending(api: &Api, c: Case) -> Result<Case, ApiError> {
    cases::with_pending(&api.store, c).map_err(internal)
}

/// The case's status at `now` against the deadlines: overdue, due soon
/// (or overdue).
fn deadline_state(api: &Api, c: &Case, now: Timestamp) -> (bool, bool) {
    match c.deadline(&api.cases, now) {
        Deadline::Overdue => (true, true),
        Deadline::DueSoon => (false, true),
        Deadline::Closed | Deadline::Running => (false, false),
    }
}

fn case_value(api: &Api, c: &Case, now: Timestamp) -> Value {
    let mut v = crate::report::case_json(c, api.tz);
    let (overdue, due_soon) = deadline_state(api, c, now);
    v["overdue"] = json!(overdue);
    v["due_soon"] = json!(due_soon);
    v["deadline"] = json!(api.tz.format(c.due_at(&api.cases)));
    v
}

/// A case this caller may see, else the same 404 as for an unknown one.
fn visible(api: &Api, role: &Role, id: &str) -> Result<Case, ApiError> {
    let not_found = || ApiError(StatusCode::NOT_FOUND, format!("no case {id:?}"));
    if id.len() != 32 {
        return Err(not_found());
    }
    match cases::get(&api.store, id).map_err(internal)? {
        Some(c) if role.sees(&c.township) => Ok(c),
        _ => Err(not_found()),
    }
}

fn flag(q: &HashMap<String, String>, k: &str) -> Result<Option<bool>, ApiError> {
    match q.get(k).map(String::as_str) {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(v) => Err(bad(format!("{k}: {v:?} is not true or false"))),
    }
}

/// `GET /api/v1/cases?township=&rule=&status=&overdue=&relapsed=&referral=&from=&to=&cursor=&limit=`:
/// newest first (by the newest alert's event time); `from`/`to` bound the
/// day of the first alert.
pub async fn list(State(api): State<Api>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Result<Json<Value>, ApiError> {
    let p = who(&api, &headers)?;
    const KEYS: [&str; 10] = ["township", "rule", "status", "overdue", "relapsed", "referral", "from", "to", "cursor", "limit"];
    if let Some(k) = q.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(bad(format!("unknown parameter {k:?}")));
    }
    let rule = q.get("rule").map(|r| Rule::from_code(r).ok_or_else(|| bad(format!("rule: {r:?} is not a rule code")))).transpose()?;
    let status = q
        .get("status")
        .map(|s| Status::from_code(s).ok_or_else(|| bad(format!("status: {s:?} is not open, in_progress, confirmed, false_positive or rectified"))))
        .transpose()?;
    let (overdue, relapsed) = (flag(&q, "overdue")?, flag(&q, "relapsed")?);
    // Referrals (COVERAGE_GAP, 疑似漏保) are home visits, not problems found.
    let referral = flag(&q, "referral")?;
    let day = |k: &str| -> Result<Option<String>, ApiError> {
        match q.get(k) {
            Some(d) if crate::model::time::Date::parse(d).is_none() => Err(bad(format!("{k}: {d:?} is not a date YYYY-MM-DD"))),
            d => Ok(d.cloned()),
        }
    };
    let (from, to) = (day("from")?, day("to")?);
    let limit = super::api::page_limit(&q)?;
    let skip = match q.get("cursor") {
        None => 0,
        Some(c) => c.parse::<usize>().map_err(|_| bad(format!("cursor: {c:?} is not a cursor")))?,
    };
    let township = match (&p.role, q.get("township")) {
        (Role::Township(t), _) => Some(t.clone()),
        (_, t) => t.cloned(),
    };
    let now = api.clock.now();
    let keep = |c: &Case| {
        let first_day = api.tz.date(c.first_event).to_string();
        township.as_ref().is_none_or(|t| *t == c.township)
            && p.role.sees(&c.township)
            && rule.is_none_or(|r| r == c.rule)
            && status.is_none_or(|s| s == c.status)
            && relapsed.is_none_or(|r| r == c.relapsed)
            && referral.is_none_or(|r| r == (c.rule == Rule::CoverageGap))
            && overdue.is_none_or(|o| o == deadline_state(&api, c, now).0)
            && from.as_ref().is_none_or(|d| first_day >= *d)
            && to.as_ref().is_none_or(|d| first_day <= *d)
    };
    // The case index (newest activity first) decides the filters and the
    // total from its summaries; only the page's cases, and those with a
    // posted decision not yet applied, are read whole.
    let pending = cases::with_pending_ids(&api.store).map_err(internal)?;
    let mut total = 0usize;
    let mut page = Vec::with_capacity(limit);
    cases::walk_index::<ApiError>(&api.store, township.as_deref(), |id, s| {
        let c = if pending.contains(id) {
            match cases::get(&api.store, id).map_err(internal)? {
                Some(c) => with_pending(&api, c)?,
                None => return Ok(()),
            }
        } else {
            s.as_case(id)
        };
        if keep(&c) {
            if total >= skip && page.len() < limit {
                page.push(id.to_owned());
            }
            total += 1;
        }
        Ok(())
    })?;
    let mut items = Vec::with_capacity(page.len());
    for id in &page {
        if let Some(c) = cases::get(&api.store, id).map_err(internal)? {
            items.push(case_value(&api, &with_pending(&api, c)?, now));
        }
    }
    let next = (skip + limit < total).then(|| (skip + limit).to_string());
    Ok(Json(json!({ "items": items, "total": total, "next_cursor": next })))
}

/// `GET /api/v1/cases/{id}`: the case, its alerts (oldest first) and
/// decisions.
pub async fn one(State(api): State<Api>, headers: HeaderMap, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let p = who(&api, &headers)?;
    let now = api.clock.now();
    let c = with_pending(&api, visible(&api, &p.role, &id)?)?;
    let mut v = case_value(&api, &c, now);
    let mut alerts = Vec::new();
    for a in &c.alerts {
        if let Some(json) = api.store.get_raw(crate::store::Cf::Alerts, a.as_bytes()).map_err(internal)? {
            alerts.push(serde_json::from_slice::<Value>(&json).map_err(internal)?);
        }
    }
    v["alerts"] = json!(alerts);
    Ok(Json(v))
}

/// `POST /api/v1/cases/{id}/decisions` with `outcome` and, as the contract
/// has them, `action`, `amount_recovered`, `document_no`, `clue_no`,
/// `note`; optionally `decision_id`, so a retried request is one decision.
/// 201 with the case once the decision is durable on the decisions topic.
pub async fn decide(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let p = who(&api, &headers)?;
    if p.role == Role::ReadOnly {
        return Err(ApiError(StatusCode::FORBIDDEN, "a read-only token cannot decide".into()));
    }
    let c = visible(&api, &p.role, &id)?;
    let obj = super::api::body_object(&body)?;
    let d = record(&api, &c, &p.name, &obj).await?;
    let now = api.clock.now();
    let c = with_pending(&api, c)?;
    let mut out = case_value(&api, &c, now);
    out["decision"] = crate::report::decision_json(&d, api.tz);
    Ok((StatusCode::CREATED, Json(out)))
}

/// Checks a decision posted on case `c` by `who`, makes it durable on the
/// decisions topic and records it as pending.
pub async fn record(api: &Api, c: &Case, who: &str, obj: &Map<String, Value>) -> Result<Decision, ApiError> {
    let d = decision_from(api, c, who, obj)?;
    let sink = api.decisions.as_ref().ok_or_else(|| ApiError(StatusCode::SERVICE_UNAVAILABLE, "decisions cannot be recorded here".into()))?;
    publish(sink, &d).await?;
    cases::put_pending(&api.store, &d).map_err(internal)?;
    Ok(d)
}

/// The case `case_id`, with its pending decisions, if it exists.
pub fn case_of(api: &Api, case_id: &str) -> Result<Option<Case>, ApiError> {
    match cases::get(&api.store, case_id).map_err(internal)? {
        Some(c) => Ok(Some(with_pending(api, c)?)),
        None => Ok(None),
    }
}

/// The contract's decision record for a request on case `c`, checked by
/// the same decoder as every decision read from a file or the topic.
pub fn decision_from(api: &Api, c: &Case, who: &str, obj: &Map<String, Value>) -> Result<Decision, ApiError> {
    const FIELDS: [&str; 7] = ["decision_id", "outcome", "action", "amount_recovered", "document_no", "clue_no", "note"];
    if let Some(k) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(bad(format!("unknown field {k:?}")));
    }
    let sink = api.decisions.as_ref();
    // After the case's newest decision, so that decisions posted one after
    // the other within a millisecond keep their order (the newest decides).
    let stored = cases::get(&api.store, &c.case_id).map_err(internal)?;
    let newest = match stored {
        Some(s) => with_pending(api, s)?.decisions.last().map(|d| d.decided_at),
        None => None,
    };
    let now = api.clock.now().max(newest.map_or(Timestamp(i64::MIN), |t| Timestamp(t.0 + 1)));
    let mut rec = obj.clone();
    if !rec.contains_key("decision_id") {
        let id = sink.map_or_else(|| format!("API-{}", now.0), |s| s.new_id(&c.case_id, who, now));
        rec.insert("decision_id".into(), json!(id));
    }
    rec.insert("case_id".into(), json!(c.case_id));
    rec.insert("rule".into(), json!(c.rule.code()));
    rec.insert("subject".into(), json!(c.subject));
    rec.insert("decided_by".into(), json!(who));
    rec.insert("decided_at".into(), json!(api.tz.format(now)));
    let limits = sink.map_or_else(crate::decode::Limits::default, |s| s.limits.read_at(now, s.max_future_ms));
    match decode_json_str(Kind::Decision, &Value::Object(rec).to_string(), limits) {
        Ok(Record::Decision(d)) => Ok(d),
        Ok(_) => Err(bad("not a decision")),
        Err(r) => Err(bad(r.to_string())),
    }
}

/// Publishes the decisions the v2 → v3 state upgrade made of stored reviews
/// (`meta/migrated_decisions`), retrying until the broker has them all,
/// then forgets the list. Read back, they are redeliveries of what the
/// upgrade already applied; a fresh state directory rebuilds them.
pub async fn publish_migrated(sink: std::sync::Arc<DecisionSink>, store: crate::store::Store) {
    use crate::store::{keys, Cf};
    let list: Vec<Decision> = match store.get_raw(Cf::Meta, keys::META_MIGRATED_DECISIONS) {
        Ok(Some(bytes)) => match serde_json::from_slice(&bytes) {
            Ok(l) => l,
            Err(e) => return tracing::error!(error = %e, "the decisions made of stored reviews cannot be read; not published"),
        },
        _ => return,
    };
    let mut pause = Duration::from_secs(1);
    loop {
        let mut failed = false;
        for d in &list {
            failed |= publish(&sink, d).await.is_err();
        }
        if !failed {
            let mut b = store.batch();
            b.delete(Cf::Meta, keys::META_MIGRATED_DECISIONS);
            match store.commit(b) {
                Ok(()) => tracing::info!(decisions = list.len(), "the decisions made of stored reviews are on the decisions topic"),
                Err(e) => tracing::warn!(error = %e, "published the decisions made of stored reviews; they are sent again at the next start"),
            }
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(60));
    }
}

/// Produces the decision and waits for the broker's acknowledgement.
async fn publish(sink: &DecisionSink, d: &Decision) -> Result<(), ApiError> {
    let value = serde_json::to_vec(&crate::generate::decision_json(d, crate::model::Tz::default())).map_err(internal)?;
    let rec = FutureRecord::to(&sink.topic).key(d.case_id.as_bytes()).payload(&value);
    match sink.producer.send(rec, PRODUCE_TIMEOUT).await {
        Ok(_) => Ok(()),
        Err((e, _)) => {
            tracing::warn!(error = %e, "a decision could not be written to the decisions topic");
            Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, "the decision could not be made durable (Kafka); nothing was recorded, try again".into()))
        }
    }
}
