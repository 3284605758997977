//! The service's HTTP port (axum): `/healthz`, `/readyz`, `/metrics`,
//! `/status`, the supervisors' API under `/api/v1/` (`api.rs`, with
//! tokens in `auth.rs`) and the review page `/ui/` (`ui/index.html`). The health handlers only read what the loop
//! publishes; the API reads alerts and writes reviews through the store,
//! never through the engine.

pub mod api;
pub mod auth;
pub mod cases;

use crate::metrics::Metrics;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// What the consumer loop reports, for `/readyz` and `/status`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Status {
    /// `active` while this instance applies the inputs; `standby` while it
    /// waits to take over (`[kafka.standby]`); `accounts` when it runs
    /// account tasks only (`[kafka.accounts] person_side = false`).
    pub role: &'static str,
    /// Input partitions assigned to this consumer.
    pub assigned_partitions: usize,
    /// Which: topic name → partition numbers this instance owns.
    pub owned: std::collections::BTreeMap<String, Vec<i32>>,
    /// Input partitions another member of the consumer group holds.
    pub held_elsewhere: usize,
    /// Lanes of the engine's person side (`[engine] lanes`, resolved).
    pub lanes: u32,
    /// Records the lanes applied at once since this process started.
    pub records_in_runs: u64,
    /// Records held in the reorder buffer.
    pub buffered: usize,
    /// Messages on the input topics not read yet (from the high watermarks
    /// last seen); `None` until every assigned partition's end is known.
    pub lag: Option<i64>,
    /// Outbox messages waiting for the broker.
    pub outbox: i64,
    /// The engine's event-time watermark (RFC 3339), once there is one.
    pub watermark: Option<String>,
    /// Records applied since this process started.
    pub applied: u64,
    /// The engine's committed totals since the state directory was made.
    pub counts: crate::engine::Counts,
    /// Dead letters raised since this process started.
    pub dead_letters: u64,
    /// Alerts committed since this process started.
    pub alerts: u64,
    /// Set while no broker can be reached.
    pub brokers_down: bool,
    /// Set while the state directory cannot be written.
    pub store_error: Option<String>,
    /// Caught up: every partition read to its end, nothing held, the outbox
    /// empty.
    pub idle: bool,
    /// Input topics not read because their log no longer matches the
    /// stored offsets, with why (hardening item 8).
    pub stopped_topics: std::collections::BTreeMap<String, String>,
    /// The changelog (`[kafka.changelog]`): commits and snapshots
    /// published since this process started, and changes committed but
    /// not yet sent (0 when it is off).
    pub changelog: ChangelogStatus,
    /// A standby's warm copy of the active instance's state
    /// (`[kafka.standby] follow`): what it has applied of the changelog.
    pub following: Option<crate::changelog::follow::Following>,
    /// This instance's account tasks (`[kafka.accounts]`), when the
    /// accounts run as tasks of the group.
    pub account_tasks: Option<AccountTasksStatus>,
}

/// `/status`'s account tasks, as this instance's worker last reported.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AccountTasksStatus {
    /// Partitions of `by-account`: the group's account tasks.
    pub partitions: u32,
    /// The tasks this instance owns (`account-0`, …) and where each
    /// stands: `waiting`, `restoring` or `open`.
    pub holding: std::collections::BTreeMap<String, crate::exchange::member::Holding>,
    /// Alerts the tasks here committed since this process started.
    pub alerts: u64,
    /// Their outbox entries the broker acknowledged since this process
    /// started, and those waiting for it now.
    pub published: u64,
    pub unsent: u64,
    /// Facts read and held back: a writer has not marked past them yet.
    pub held: usize,
    /// Why the worker stopped, while it waits to start again.
    pub error: Option<String>,
}

/// `/status`'s changelog figures, read from the metrics.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ChangelogStatus {
    pub commits: u64,
    pub snapshots: u64,
    pub behind: i64,
}

/// Shared between the loop (writer) and the handlers (readers).
#[derive(Default)]
pub struct Health {
    /// Store open and writable, partitions assigned, a broker reachable.
    pub ready: AtomicBool,
    /// Why the state directory cannot be written, while it cannot: the
    /// loop has stopped consuming until its batch goes through.
    pub store_error: Mutex<Option<String>>,
    /// The loop's last report.
    pub status: Mutex<Status>,
    /// Why this instance is not alone in its consumer group, while it is
    /// not (past `kafka.revoked_grace`).
    pub shared: Mutex<Option<String>>,
    /// Why input topics are stopped (their logs no longer match the stored
    /// offsets), while some are.
    pub stopped_inputs: Mutex<Option<String>>,
    /// Why this instance does not apply the inputs, while it stands by
    /// (`[kafka.standby]`): another instance of the group is active.
    pub standby: Mutex<Option<String>>,
    /// Supervised tasks that failed and wait to be restarted, with why.
    pub down: Mutex<std::collections::BTreeMap<&'static str, String>>,
    /// What the account worker last reported (`[kafka.accounts]`).
    pub accounts: Mutex<Option<AccountTasksStatus>>,
    /// This instance runs account tasks only (`[kafka.accounts]
    /// person_side = false`): its port is the standby's, role `accounts`.
    pub accounts_only: AtomicBool,
}

impl Health {
    /// A supervised task failed (`run::supervise`).
    pub fn task_down(&self, task: &'static str, why: String) {
        self.down.lock().unwrap_or_else(|e| e.into_inner()).insert(task, why);
    }

    /// A supervised task is running (again), or finished.
    pub fn task_up(&self, task: &'static str) {
        self.down.lock().unwrap_or_else(|e| e.into_inner()).remove(task);
    }

    /// Why supervised tasks are down, if any are.
    pub fn tasks_down(&self) -> Vec<String> {
        self.down.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }
}

#[derive(Clone)]
struct App {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    /// For `/status`, which needs a district or operator token.
    tokens: Arc<Vec<crate::config::TokenConfig>>,
}

/// Request bodies larger than this get 413.
pub const MAX_BODY: usize = 64 * 1024;

pub fn router(metrics: Arc<Metrics>, health: Arc<Health>, api: api::Api) -> Router {
    let counted = Arc::clone(&metrics);
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/status", get(status))
        .route("/ui/", get(ui))
        .route("/ui", get(|| async { axum::response::Redirect::permanent("/ui/") }))
        .with_state(App { metrics, health, tokens: Arc::clone(&api.tokens) })
        .merge(api::routes(api))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::map_response(move |r: Response| {
            let m = Arc::clone(&counted);
            async move {
                if r.status().is_server_error() {
                    m.api_errors.with_label_values(&[r.status().as_str()]).inc();
                }
                r
            }
        }))
}

/// The port of an instance standing by (`[kafka.standby]`), or running
/// account tasks only: health, metrics and `/status`; everything else is
/// 503 and says why, so a load balancer sends supervisors to the active
/// instance.
pub fn standby_router(metrics: Arc<Metrics>, health: Arc<Health>, tokens: Arc<Vec<crate::config::TokenConfig>>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/status", get(status))
        .fallback(|State(app): State<App>| async move {
            let error = match app.health.accounts_only.load(Ordering::Relaxed) {
                true => "this instance runs account tasks only ([kafka.accounts] person_side = false): the supervisors' API is on the group's person side".to_string(),
                false => format!("this instance stands by: {}", app.health.standby.lock().unwrap_or_else(|e| e.into_inner()).clone().unwrap_or_default()),
            };
            (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({ "error": error }))).into_response()
        })
        .with_state(App { metrics, health, tokens })
}

/// Serves until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    api: api::Api,
    tls: Option<Tls>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_router(listener, router(metrics, health, api), tls, shutdown).await
}

/// Serves `app` until `shutdown` completes.
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<Tls>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let Some(Tls(tls)) = tls else {
        return axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
    };
    let handle = axum_server::Handle::new();
    let stop = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stop.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
    });
    axum_server::from_tcp_rustls(listener.into_std()?, tls)?.handle(handle).serve(app.into_make_service()).await
}

/// The certificate and key of `[http.tls]`, loaded.
#[derive(Clone)]
pub struct Tls(axum_server::tls_rustls::RustlsConfig);

impl Tls {
    /// Reads the PEM files; the error names the file and what is wrong.
    pub async fn load(cfg: &crate::config::TlsConfig) -> Result<Tls, String> {
        // One process-wide provider (ring); a second install is a no-op.
        let _ = rustls::crypto::ring::default_provider().install_default();
        for p in [&cfg.cert, &cfg.key] {
            if let Err(e) = std::fs::metadata(p) {
                return Err(format!("http.tls: cannot read {}: {e}", p.display()));
            }
        }
        axum_server::tls_rustls::RustlsConfig::from_pem_file(&cfg.cert, &cfg.key)
            .await
            .map(Tls)
            .map_err(|e| format!("http.tls: {} / {}: {e}", cfg.cert.display(), cfg.key.display()))
    }
}

/// The review page: one self-contained file (no CDN); it asks for a token
/// and talks to `/api/v1/`.
async fn ui() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' blob:"),
        ],
        include_str!("ui/index.html"),
    )
        .into_response()
}

async fn readyz(State(app): State<App>) -> Response {
    if let Some(why) = app.health.standby.lock().unwrap_or_else(|e| e.into_inner()).clone() {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: standing by: {why}\n")).into_response();
    }
    let store_error = app.health.store_error.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(e) = store_error {
        let body = format!("not ready: the state directory cannot be written ({e}); consuming is stopped until it can\n");
        return (StatusCode::SERVICE_UNAVAILABLE, body).into_response();
    }
    if let Some(why) = app.health.shared.lock().unwrap_or_else(|e| e.into_inner()).clone() {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")).into_response();
    }
    if let Some(why) = app.health.stopped_inputs.lock().unwrap_or_else(|e| e.into_inner()).clone() {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")).into_response();
    }
    let down = app.health.tasks_down();
    if !down.is_empty() {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {}\n", down.join("; "))).into_response();
    }
    if app.health.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: no partitions assigned or no broker reachable\n").into_response()
    }
}

async fn metrics_text(State(app): State<App>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], app.metrics.render()).into_response()
}

/// `/status`: the loop's figures, townships among them, so it needs a
/// district or operator token (401 without a valid one, 403 for others).
async fn status(State(app): State<App>, headers: axum::http::HeaderMap) -> Response {
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    match auth::authenticate(&app.tokens, auth).map(|p| p.role) {
        None => return (StatusCode::UNAUTHORIZED, Json(serde_json::json!({ "error": "a valid bearer token is required" }))).into_response(),
        Some(auth::Role::District | auth::Role::Operator) => {}
        Some(_) => {
            return (StatusCode::FORBIDDEN, Json(serde_json::json!({ "error": "/status needs a district or operator token" }))).into_response()
        }
    }
    let mut s = app.health.status.lock().unwrap_or_else(|e| e.into_inner()).clone();
    s.store_error = app.health.store_error.lock().unwrap_or_else(|e| e.into_inner()).clone();
    s.role = match (app.health.standby.lock().unwrap_or_else(|e| e.into_inner()).is_some(), app.health.accounts_only.load(Ordering::Relaxed)) {
        (true, _) => "standby",
        (false, true) => "accounts",
        (false, false) => "active",
    };
    s.changelog = ChangelogStatus {
        commits: app.metrics.changelog_commits.get(),
        snapshots: app.metrics.changelog_snapshots.get(),
        behind: app.metrics.changelog_behind.get(),
    };
    s.account_tasks = app.health.accounts.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Json(s).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{keys, Cf, Store, StoreOptions};
    use sha2::{Digest, Sha256};

    /// Hardening item 13: an alert whose stored JSON cannot be read makes
    /// the list answer 500 with the reason (the column family and the key)
    /// and counts it; nothing panics and nothing is skipped in silence (the
    /// ledger answers 500 too).
    #[tokio::test]
    async fn an_undecodable_stored_alert_is_a_500_with_its_reason() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions { block_cache_mb: 8, write_buffer_mb: 4, sync: false, statistics: false }).unwrap();
        let mut b = store.batch();
        b.put_raw(Cf::Alerts, b"0123456789abcdef0123456789abcdef", b"{not json");
        b.put_raw(Cf::AlertLog, &keys::alert_seq(1), b"0123456789abcdef0123456789abcdef");
        // Its index entry and its case, as the engine writes them.
        let index_key = [b"a2021-01-05".as_slice(), &1u64.to_be_bytes()].concat();
        b.put_raw(Cf::AlertIndex, &index_key, b"LARGE_AMOUNT\x1fhigh\x1f0123456789abcdef0123456789abcdef");
        let t = crate::model::Timestamp(1_609_804_800_000);
        let mut case = crate::store::cases::Case::new("case-1".into(), crate::model::Rule::LargeAmount, "B1".into(), t, t);
        case.township = "水阳镇".into();
        case.alerts.push("0123456789abcdef0123456789abcdef".into());
        b.put(Cf::Cases, &crate::store::cases::key("case-1"), &case).unwrap();
        crate::store::cases::stage_index(&mut b, "case-1", None, &crate::store::cases::Summary::of(&case)).unwrap();
        store.commit(b).unwrap();
        let token = "district-token-0123456789";
        let api = api::Api {
            store,
            tokens: Arc::new(vec![crate::config::TokenConfig {
                token_sha256: hex::encode(Sha256::digest(token)),
                role: "district".into(),
                name: None,
            }]),
            clock: Arc::new(crate::clock::SystemClock),
            tz: crate::model::Tz::default(),
            rules: Arc::new(Default::default()),
            cases: Default::default(),
            decisions: None,
        };
        let metrics = Arc::new(Metrics::new());
        let app = router(Arc::clone(&metrics), Arc::new(Health::default()), api);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = reqwest::Client::new();
        for path in ["/api/v1/alerts", "/api/v1/alerts/0123456789abcdef0123456789abcdef", "/api/v1/reports/ledger?quarter=2021Q1"] {
            let r = client.get(format!("http://{addr}{path}")).bearer_auth(token).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 500, "{path}");
            let body = r.text().await.unwrap();
            assert!(body.contains("alerts") && body.contains("0123456789abcdef0123456789abcdef") && body.contains("JSON"), "{path}: {body}");
        }
        assert!(metrics.render().contains("paywatch_api_errors_total{status=\"500\"} 3"), "{}", metrics.render());
    }
}
