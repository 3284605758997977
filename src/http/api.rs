//! `/api/v1/`: the alerts, newest first, filtered and paged; one alert with
//! its case's decisions; posting a review (复核, a decision of the alert's
//! case). Every call needs a bearer token (401 without one), and a
//! township's token sees only its own township: an alert or case of another
//! answers 404, as an unknown one does. Bad parameters get 400 with a JSON
//! error.

use super::auth::{authenticate, Principal, Role};
use crate::clock::Clock;
use crate::config::TokenConfig;
use crate::model::{Alert, Rule, Severity, Tz};
use crate::store::{Cf, Store, StoreError};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// What the API reads and writes.
#[derive(Clone)]
pub struct Api {
    pub store: Store,
    pub tokens: Arc<Vec<TokenConfig>>,
    /// Review times.
    pub clock: Arc<dyn Clock>,
    pub tz: Tz,
    /// The running rules, for `GET /api/v1/rules` (which are on).
    pub rules: Arc<crate::detect::RulesConfig>,
    /// The case deadlines.
    pub cases: crate::config::CasesConfig,
    /// Where posted decisions go (the decisions topic).
    pub decisions: Option<Arc<super::cases::DecisionSink>>,
}

/// Largest page.
pub const MAX_PAGE: usize = 500;
/// Longest review note, in characters.
pub const MAX_NOTE: usize = 2000;

pub fn routes(api: Api) -> Router {
    Router::new()
        .route("/api/v1/rules", get(rules))
        .route("/api/v1/cases", get(super::cases::list))
        .route("/api/v1/cases/{id}", get(super::cases::one))
        .route("/api/v1/cases/{id}/decisions", post(super::cases::decide))
        .route("/api/v1/alerts", get(list))
        .route("/api/v1/alerts/{id}", get(one))
        .route("/api/v1/alerts/{id}/reviews", post(add_review))
        .route("/api/v1/reports/ledger", get(ledger))
        .route("/api/v1/webhooks/dead", get(dead_list))
        .route("/api/v1/webhooks/dead/retry", post(dead_retry))
        .with_state(api)
}

/// An error as `{"error": "..."}` with its status.
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

pub(super) fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

/// A failure of the state directory: 500 with the reason (it names the
/// column family and the key, numbers masked), logged, and counted in
/// `paywatch_api_errors_total`.
pub(super) fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "API: the state directory cannot be read");
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("the state directory cannot be read: {e}"))
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        internal(e)
    }
}

/// The caller of `/api/v1/`: 401 without a valid token, 403 for an
/// operator's (it reads `/status` only: the API carries personal data).
pub(super) fn who(api: &Api, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let auth = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let p = authenticate(&api.tokens, auth).ok_or_else(|| ApiError(StatusCode::UNAUTHORIZED, "a valid bearer token is required".into()))?;
    if p.role == Role::Operator {
        return Err(ApiError(StatusCode::FORBIDDEN, "an operator token reads /status only".into()));
    }
    Ok(p)
}

/// An alert this caller may see. One of another township answers exactly
/// as an unknown id (404, same body): alert ids are computable from an
/// identity number, and a 403 would tell a township user that a person in
/// another township is, say, a filed cadre's relative.
fn visible(api: &Api, role: &Role, id: &str) -> Result<Alert, ApiError> {
    match load(api, id)? {
        Some(a) if role.sees(&a.township) => Ok(a),
        _ => Err(ApiError(StatusCode::NOT_FOUND, format!("no alert {id:?}"))),
    }
}

fn load(api: &Api, id: &str) -> Result<Option<Alert>, ApiError> {
    api.store.get_json(Cf::Alerts, id.as_bytes()).map_err(internal)
}

/// An alert with its case's status (`open` before any decision) and, with
/// `history`, the case's decisions as reviews (outcome, note, reviewer,
/// time) and in full.
fn with_status(api: &Api, a: &Alert, history: bool) -> Result<Value, ApiError> {
    let case = super::cases::case_of(api, &a.case_id)?;
    let mut v = serde_json::to_value(a).map_err(internal)?;
    v["status"] = json!(case.as_ref().map_or("open", |c| c.status.code()));
    if history {
        let decisions = case.as_ref().map_or(&[][..], |c| &c.decisions[..]);
        let reviews: Vec<Value> = decisions
            .iter()
            .map(|d| json!({ "outcome": d.outcome, "note": d.note.clone().unwrap_or_default(), "reviewer": d.decided_by, "at": api.tz.format(d.decided_at) }))
            .collect();
        v["reviews"] = json!(reviews);
        v["decisions"] = json!(decisions.iter().map(|d| crate::report::decision_json(d, api.tz)).collect::<Vec<_>>());
    }
    Ok(v)
}

/// A request body that must be one JSON object.
pub(super) fn body_object(body: &[u8]) -> Result<serde_json::Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body).map_err(|e| bad(format!("body is not JSON: {e}")))? {
        Value::Object(m) => Ok(m),
        _ => Err(bad("body must be a JSON object")),
    }
}

/// `limit`: 50 when absent, else 1 to [`MAX_PAGE`].
pub(super) fn page_limit(q: &HashMap<String, String>) -> Result<usize, ApiError> {
    match q.get("limit") {
        None => Ok(50),
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
            _ => Err(bad(format!("limit: {l:?} is not 1 to {MAX_PAGE}"))),
        },
    }
}

/// The filters of the list, checked.
struct Filter {
    township: Option<String>,
    rule: Option<Rule>,
    severity: Option<Severity>,
    status: Option<String>,
    from: Option<String>,
    to: Option<String>,
    cursor: Option<crate::store::alert_index::Cursor>,
    limit: usize,
}

fn filter(q: &HashMap<String, String>, p: &Principal) -> Result<Filter, ApiError> {
    for k in q.keys() {
        if !["township", "rule", "severity", "status", "from", "to", "cursor", "limit"].contains(&k.as_str()) {
            return Err(bad(format!("unknown parameter {k:?}")));
        }
    }
    let date = |k: &str| -> Result<Option<String>, ApiError> {
        match q.get(k) {
            Some(d) if crate::model::time::Date::parse(d).is_none() => Err(bad(format!("{k}: {d:?} is not a date YYYY-MM-DD"))),
            d => Ok(d.cloned()),
        }
    };
    let mut township = q.get("township").cloned();
    if let Role::Township(t) = &p.role {
        match &township {
            Some(asked) if asked != t => return Err(ApiError(StatusCode::FORBIDDEN, format!("this token sees only {t}"))),
            _ => township = Some(t.clone()),
        }
    }
    Ok(Filter {
        township,
        rule: q.get("rule").map(|r| Rule::from_code(r).ok_or_else(|| bad(format!("rule: {r:?} is not a rule code")))).transpose()?,
        severity: q
            .get("severity")
            .map(|s| serde_json::from_value(json!(s)).map_err(|_| bad(format!("severity: {s:?} is not high, medium or low"))))
            .transpose()?,
        status: q
            .get("status")
            .map(|s| match s.as_str() {
                // The review vocabulary of earlier releases.
                "corrected" => Ok("rectified".to_owned()),
                s if crate::store::cases::Status::from_code(s).is_some() => Ok(s.to_owned()),
                _ => Err(bad(format!("status: {s:?} is not open, in_progress, confirmed, false_positive or rectified"))),
            })
            .transpose()?,
        from: date("from")?,
        to: date("to")?,
        cursor: q
            .get("cursor")
            .map(|c| crate::store::alert_index::Cursor::decode(c).ok_or_else(|| bad(format!("cursor: {c:?} is not a cursor"))))
            .transpose()?,
        limit: page_limit(q)?,
    })
}

/// Index entries one list request examines at most, and alerts it reads
/// at most beyond its page: however narrow the filters, a request costs
/// about a page. A page cut short by them is shorter than `limit` and
/// carries a `next_cursor` to go on from.
pub const SCAN_BUDGET: usize = 20_000;
pub const READ_BUDGET: usize = 2_000;

/// `GET /api/v1/alerts`: newest first by event day (then the order
/// raised), from the alert index: township and dates choose the index
/// range, rule and severity are decided on the index entries, and only a
/// status filter reads the alerts it passes over.
async fn list(State(api): State<Api>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Result<Json<Value>, ApiError> {
    use crate::store::alert_index::{self, Range, Step};
    let p = who(&api, &headers)?;
    let f = filter(&q, &p)?;
    let range = Range { township: f.township.as_deref(), from: f.from.as_deref(), to: f.to.as_deref() };
    let (rule, severity) = (f.rule.map(Rule::code), f.severity.map(Severity::code));
    let mut items = Vec::new();
    let mut reads = 0usize;
    let next = alert_index::walk::<ApiError>(&api.store, range, f.cursor.as_ref(), SCAN_BUDGET, |e| {
        if rule.is_some_and(|r| r != e.rule) || severity.is_some_and(|s| s != e.severity) {
            return Ok(Step::More);
        }
        let Some(a) = load(&api, e.alert_id)? else { return Ok(Step::More) };
        reads += 1;
        let item = with_status(&api, &a, false)?;
        if f.status.as_ref().is_none_or(|s| item["status"] == s.as_str()) {
            items.push(item);
        }
        Ok(if items.len() == f.limit || reads >= f.limit + READ_BUDGET { Step::Done } else { Step::More })
    })?;
    Ok(Json(json!({ "items": items, "next_cursor": next.map(|c| c.encode()) })))
}

/// The rules, read off the registry: code, Chinese name, subject, config
/// section, hook, whether on. The review page names rules from this.
async fn rules(State(api): State<Api>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    who(&api, &headers)?;
    Ok(Json(json!({ "rules": crate::detect::registry::describe(&api.rules) })))
}

async fn one(State(api): State<Api>, headers: HeaderMap, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let p = who(&api, &headers)?;
    let a = visible(&api, &p.role, &id)?;
    Ok(Json(with_status(&api, &a, true)?))
}

/// Webhook dead letters are the district's to handle.
fn district_only(p: &Principal) -> Result<(), ApiError> {
    match p.role {
        Role::District => Ok(()),
        _ => Err(ApiError(StatusCode::FORBIDDEN, "only a district token handles webhook dead letters".into())),
    }
}

/// `GET /api/v1/webhooks/dead?cursor=&limit=`: the webhook dead-letter
/// list, a page at a time (by route, oldest first); a page costs a page,
/// however long the list.
async fn dead_list(State(api): State<Api>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Result<Json<Value>, ApiError> {
    district_only(&who(&api, &headers)?)?;
    if let Some(k) = q.keys().find(|k| !["cursor", "limit"].contains(&k.as_str())) {
        return Err(bad(format!("unknown parameter {k:?}")));
    }
    let limit = page_limit(&q)?;
    let after = match q.get("cursor") {
        None => None,
        Some(c) => Some(hex::decode(c).map_err(|_| bad(format!("cursor: {c:?} is not a cursor")))?),
    };
    let (page, next) = crate::sink::webhook::dead_page(&api.store, after.as_deref(), limit).map_err(internal)?;
    let items: Vec<Value> = page.iter().map(|(_, d)| d.json(api.tz)).collect();
    Ok(Json(json!({ "items": items, "next_cursor": next.map(hex::encode) })))
}

/// `POST /api/v1/webhooks/dead/retry` (optionally `{"id": "…"}`, an alert
/// or event id; `alert_id` is read as well):
/// queues dead deliveries again; the running dispatcher sends them.
async fn dead_retry(State(api): State<Api>, headers: HeaderMap, body: axum::body::Bytes) -> Result<Json<Value>, ApiError> {
    district_only(&who(&api, &headers)?)?;
    let alert_id = if body.is_empty() {
        None
    } else {
        let v: Value = serde_json::from_slice(&body).map_err(|e| bad(format!("body is not JSON: {e}")))?;
        match v.get("id").or_else(|| v.get("alert_id")) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(bad("id: a string")),
        }
    };
    let n = crate::sink::webhook::retry_dead(&api.store, alert_id.as_deref(), api.clock.now().0).map_err(internal)?;
    Ok(Json(json!({ "queued": n })))
}

/// `GET /api/v1/reports/ledger?quarter=2021Q3&township=…&format=csv|xlsx`.
async fn ledger(State(api): State<Api>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Result<Response, ApiError> {
    let p = who(&api, &headers)?;
    if let Some(k) = q.keys().find(|k| !["quarter", "township", "format"].contains(&k.as_str())) {
        return Err(bad(format!("unknown parameter {k:?}")));
    }
    let quarter = q
        .get("quarter")
        .and_then(|s| crate::report::Quarter::parse(s))
        .ok_or_else(|| bad("quarter: required, like 2021Q3"))?;
    let mut township = q.get("township").cloned();
    if let Role::Township(t) = &p.role {
        match &township {
            Some(asked) if asked != t => return Err(ApiError(StatusCode::FORBIDDEN, format!("this token sees only {t}"))),
            _ => township = Some(t.clone()),
        }
    }
    let format = q.get("format").map_or("csv", String::as_str);
    let l = crate::report::ledger(&api.store, quarter, township.as_deref(), api.clock.now(), api.cases.deadline_days, api.tz).map_err(internal)?;
    let (bytes, ctype, ext) = match format {
        "csv" => (l.to_csv().map_err(internal)?, "text/csv; charset=utf-8", "csv"),
        "xlsx" => (l.to_xlsx().map_err(internal)?, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx"),
        other => return Err(bad(format!("format: {other:?} is not csv or xlsx"))),
    };
    let disposition = format!("attachment; filename=\"{}\"", l.file_name(ext));
    Ok(([(axum::http::header::CONTENT_TYPE, ctype.to_owned()), (axum::http::header::CONTENT_DISPOSITION, disposition)], bytes).into_response())
}

/// `POST /api/v1/alerts/{id}/reviews` (`{"outcome", "note"}`), kept for
/// earlier clients: a decision on the alert's case (`corrected` is
/// `rectified` with action `other`), made durable like any decision.
async fn add_review(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let p = who(&api, &headers)?;
    if p.role == Role::ReadOnly {
        return Err(ApiError(StatusCode::FORBIDDEN, "a read-only token cannot review".into()));
    }
    let a = visible(&api, &p.role, &id)?;
    let obj = &body_object(&body)?;
    if let Some(k) = obj.keys().find(|k| !["outcome", "note"].contains(&k.as_str())) {
        return Err(bad(format!("unknown field {k:?}")));
    }
    let mut decision = serde_json::Map::new();
    match obj.get("outcome").and_then(Value::as_str) {
        Some("corrected") => {
            decision.insert("outcome".into(), json!("rectified"));
            decision.insert("action".into(), json!("other"));
        }
        Some(o @ ("confirmed" | "false_positive" | "in_progress")) => {
            decision.insert("outcome".into(), json!(o));
        }
        _ => return Err(bad("outcome: one of confirmed, false_positive, corrected, in_progress")),
    }
    match obj.get("note") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s.chars().count() <= MAX_NOTE => {
            decision.insert("note".into(), json!(s));
        }
        Some(_) => return Err(bad(format!("note: a string of at most {MAX_NOTE} characters"))),
    }
    let case = crate::store::cases::get(&api.store, &a.case_id)
        .map_err(internal)?
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no alert {id:?}")))?;
    super::cases::record(&api, &case, &p.name, &decision).await?;
    Ok((StatusCode::CREATED, Json(with_status(&api, &a, true)?)))
}
