//! `paywatch run`: the streaming service. Wiring only: open the store and
//! the engine, check the state directory belongs to this feed, start the
//! HTTP port and the outbox publisher, run the consumer loop (`consume.rs`)
//! on its own thread until the shutdown signal, then drain in order:
//! stop reading and commit the batch in hand → publish the outbox up to
//! `kafka.drain_timeout` → stop the webhook dispatcher → publish the
//! changelog to its end (when enabled) → close the HTTP port.

mod accounts;
mod consume;
mod consume_only;
pub mod offsets;
mod standby;
mod supervise;

pub use consume_only::{consume_only, Baseline};

use crate::changelog::publish::ChangelogPublisher;
use crate::clock::Clock;
use crate::config::Config;
use crate::engine::{Engine, EngineError};
use crate::http::{self, Health};
use crate::metrics::Metrics;
use crate::sink::kafka::{PublishError, Publisher};
use crate::sink::outbox;
use crate::sink::webhook::{self, WebhookError};
use crate::source::kafka::{KafkaSource, KafkaSourceError};
use crate::source::offsets::{OffsetBook, Part, PartOffsets};
use crate::store::{keys, Cf, Store, StoreError};
use consume::{Consume, Shared};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("no state directory: set [state] dir in the config")]
    NoStateDir,
    #[error("state directory {dir}: {reason}")]
    WrongState { dir: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Source(#[from] KafkaSourceError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Webhook(#[from] WebhookError),
    #[error("{0}")]
    Tls(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
    #[error("the consumer thread failed: {0}")]
    Thread(String),
    #[error("cannot create the Kafka producer for decisions: {0}")]
    DecisionProducer(rdkafka::error::KafkaError),
    #[error(transparent)]
    Changelog(#[from] crate::changelog::ChangelogError),
    #[error(transparent)]
    NotCoPartitioned(#[from] crate::source::copartition::NotCoPartitioned),
    #[error(transparent)]
    Exchange(#[from] crate::exchange::ExchangeError),
    #[error("standby election: {0}")]
    Election(String),
    #[error("this instance lost the active role to another instance of its group and stopped; start it again and it stands by")]
    LostActive,
}

impl RunError {
    /// 2 for what the operator must fix in config or state, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::NoStateDir | RunError::WrongState { .. } | RunError::Store(StoreError::Refused { .. }) => 2,
            RunError::Listen { .. } | RunError::Tls(_) | RunError::NotCoPartitioned(_) => 2,
            RunError::Exchange(crate::exchange::ExchangeError::PartitionCount { .. } | crate::exchange::ExchangeError::ChangelogPartitions { .. }) => 2,
            RunError::LostActive => 3,
            _ => 1,
        }
    }
}

/// What `paywatch run` commits beside the engine's state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamMeta {
    /// Input topic names (roster, deaths, payments) the offsets belong to.
    pub topics: Vec<String>,
    /// Every input partition's position.
    pub offsets: BTreeMap<Part, PartOffsets>,
    /// The last outbox sequence number used.
    pub outbox_seq: u64,
    /// Input topics whose log no longer matched the stored offsets, by
    /// topic name: not read until `paywatch offsets reset` clears them.
    /// Stored, so that a restart does not resume past records a recreated
    /// topic has grown meanwhile.
    #[serde(default)]
    pub stopped: BTreeMap<String, crate::source::positions::Mismatch>,
}

/// Runs the service until `shutdown` completes. With `[kafka.standby]`,
/// it first stands by until this instance is elected the group's active
/// one (`standby.rs`). With `[kafka.accounts] person_side = false`, it
/// runs account tasks only (`accounts.rs`).
pub async fn run(cfg: Config, clock: Arc<dyn Clock>, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    if cfg.kafka.accounts.away() && !cfg.kafka.accounts.person_side {
        return accounts::run_only(cfg, clock, shutdown).await;
    }
    if !cfg.kafka.standby.enabled {
        return run_active(cfg, clock, shutdown, None).await;
    }
    let election = standby::Election::start(&cfg.kafka)?;
    let mut shutdown = std::pin::pin!(shutdown);
    let copy = match standby::stand_by(&cfg, &election, &mut shutdown).await? {
        standby::StoodBy::Stopped => {
            election.leave();
            return Ok(());
        }
        standby::StoodBy::Elected(copy) => copy,
    };
    let dir = cfg.state.dir.clone().ok_or(RunError::NoStateDir)?;
    let kafka = cfg.kafka.clone();
    tokio::task::spawn_blocking(move || standby::take_over(&kafka, &dir, copy))
        .await
        .map_err(|e| RunError::Thread(e.to_string()))??;
    let fence = election.fence();
    let r = run_active(cfg, clock, shutdown, Some(fence)).await;
    let lost = election.fence().is_lost();
    election.leave();
    if lost {
        return Err(RunError::LostActive);
    }
    r
}

/// The service on its state directory: this instance applies the inputs.
/// `fence`: set when it was elected among standbys; losing the role stops
/// it, with its changelog halted first.
async fn run_active(cfg: Config, clock: Arc<dyn Clock>, shutdown: impl Future<Output = ()>, mut fence: Option<standby::Fence>) -> Result<(), RunError> {
    let dir = cfg.state.dir.clone().ok_or(RunError::NoStateDir)?;
    let wrong = |reason: String| RunError::WrongState { dir: dir.display().to_string(), reason };
    let changelog = &cfg.kafka.changelog;
    if changelog.enabled && changelog.restore_empty_state {
        restore_if_empty(&cfg, &dir).await?;
    }
    let store = Store::open_keeping_wal(&dir, cfg.store_options(true), if changelog.enabled { changelog.wal_keep_mb } else { 0 })?;
    let mut engine = Engine::open_with_lanes(store.clone(), cfg.rules.clone(), cfg.tz(), cfg.engine.cache_entries, Arc::clone(&clock), cfg.engine.lanes())?;
    if cfg.engine.repartition_records {
        engine.route_through_repartition_records();
    }
    engine.restrict_townships(&cfg.district.townships);
    if engine.progress().position.is_some() || !engine.progress().inputs.is_empty() {
        return Err(wrong("was built by `paywatch audit` from files; `paywatch run` needs its own state directory".into()));
    }
    let t = &cfg.kafka.topics;
    let topics = vec![t.roster.clone(), t.deaths.clone(), t.payments.clone()];
    let meta = match store.get::<StreamMeta>(Cf::Meta, keys::META_STREAM)? {
        Some(m) if m.topics != topics => {
            return Err(wrong(format!(
                "holds offsets of the topics {:?}, the config names {:?}; use a new state directory for other topics",
                m.topics, topics
            )))
        }
        Some(m) => m,
        None => StreamMeta { topics, ..StreamMeta::default() },
    };
    let book = Arc::new(Mutex::new(OffsetBook::from_stored(&meta.offsets).map_err(wrong)?));
    let away = match cfg.kafka.accounts.away() {
        true => Some(accounts::prepare(&cfg, &mut engine).await?),
        false => None,
    };
    tracing::info!(state = %dir.display(), partitions = meta.offsets.len(), "state directory open; resuming from its offsets");

    let metrics = Arc::new(Metrics::new());
    metrics.active.set(1);
    metrics.standby_behind.set(-1);
    metrics.set_townships(&cfg.district.townships);
    let health = Arc::new(Health::default());
    let (depth, _) = outbox::depth(&store)?;
    metrics.outbox_depth.set(depth as i64);
    metrics.outbox_parked.set(outbox::parked(&store)?.len() as i64);

    // The HTTP port first, so operators see the service come up.
    let (listener, tls) = listen(&cfg).await?;
    let http_stop = Arc::new(Notify::new());
    // Decisions posted through the API go to the decisions topic; so do the
    // ones a state upgrade made of stored reviews.
    let decisions = Arc::new(http::cases::DecisionSink::new(
        crate::sink::kafka::producer(&cfg.kafka).map_err(RunError::DecisionProducer)?,
        cfg.kafka.topics.decisions.clone(),
        cfg.limits(clock.now()),
        cfg.max_future_ms(),
    ));
    tokio::spawn(http::cases::publish_migrated(Arc::clone(&decisions), store.clone()));
    let http = {
        let stop = Arc::clone(&http_stop);
        let api = http::api::Api {
            store: store.clone(),
            tokens: Arc::new(cfg.api.tokens.clone()),
            clock: Arc::clone(&clock),
            tz: cfg.tz(),
            rules: Arc::new(cfg.rules.clone()),
            cases: cfg.cases.clone(),
            decisions: Some(Arc::clone(&decisions)),
        };
        tokio::spawn(http::serve(listener, Arc::clone(&metrics), Arc::clone(&health), api, tls, async move { stop.notified().await }))
    };

    let wake = Arc::new(Notify::new());
    let draining = Arc::new(AtomicBool::new(false));
    let publisher = Arc::new(Publisher::new(&cfg.kafka, store.clone(), Arc::clone(&metrics), Arc::clone(&wake), Arc::clone(&draining))?);
    let publishing = tokio::spawn(supervise::supervise("outbox publisher", Arc::clone(&health), Arc::clone(&metrics), Arc::clone(&draining), move || {
        Arc::clone(&publisher).run()
    }));

    // The changelog publisher: a thread of its own, stopped after the
    // consumer so that it sends the last commit too.
    let changelog_stop = Arc::new(AtomicBool::new(false));
    let changelog_halt = Arc::new(AtomicBool::new(false));
    let changelog = match cfg.kafka.changelog.enabled {
        true => {
            let p = ChangelogPublisher::new(&cfg.kafka, store.clone(), Arc::clone(&metrics), Arc::clone(&changelog_stop))?
                .halting_on(Arc::clone(&changelog_halt));
            Some(tokio::task::spawn_blocking(move || p.run()))
        }
        false => None,
    };

    let source = KafkaSource::open(&cfg.kafka, Arc::clone(&book))?;
    // The webhook dispatcher: stops with the service; what it has not
    // delivered waits in the outbox, its schedule with it.
    let wake_webhooks = Arc::new(Notify::new());
    let webhooks_stop = Arc::new(AtomicBool::new(false));
    metrics.webhook_dead.set(webhook::list_dead(&store)?.len() as i64);
    let dispatcher = Arc::new(crate::sink::dispatch::Dispatcher::new(
        &cfg.webhooks,
        store.clone(),
        Arc::clone(&clock),
        Arc::clone(&metrics),
        Arc::clone(&wake_webhooks),
        Arc::clone(&webhooks_stop),
    )?);
    let dispatching = tokio::spawn(supervise::supervise("webhook dispatcher", Arc::clone(&health), Arc::clone(&metrics), Arc::clone(&webhooks_stop), move || {
        Arc::clone(&dispatcher).run()
    }));
    // Counts the cases and queues their deadline events.
    let deadlines = crate::sink::case_events::Deadlines {
        store: store.clone(),
        routes: cfg.webhooks.routes.clone(),
        cfg: cfg.cases.clone(),
        clock: Arc::clone(&clock),
        metrics: Arc::clone(&metrics),
        tz: cfg.tz(),
        wake: Arc::clone(&wake_webhooks),
        seq: 0,
    };
    tokio::spawn(deadlines.run(cfg.cases.check_every));

    // [kafka.accounts]: the sender of the accounts' records, and this
    // instance's account tasks on a thread of their own.
    let worker_stop = Arc::new(AtomicBool::new(false));
    let sender_draining = Arc::new(AtomicBool::new(false));
    let (away, sending, working) = match away {
        Some((layout, away)) => {
            let sender = Arc::new(tokio::sync::Mutex::new(crate::exchange::publish::Sender::new(&cfg.kafka, store.clone(), &cfg.kafka.group_id)?));
            let (s, wake, draining) = (store.clone(), Arc::clone(&away.wake), Arc::clone(&sender_draining));
            let sending = tokio::spawn(supervise::supervise("repartition sender", Arc::clone(&health), Arc::clone(&metrics), Arc::clone(&sender_draining), move || {
                accounts::send(Arc::clone(&sender), s.clone(), Arc::clone(&wake), Arc::clone(&draining))
            }));
            let work = accounts::Work {
                cfg: cfg.clone(),
                root: accounts::tasks_root(&dir),
                layout,
                clock: Arc::clone(&clock),
                health: Arc::clone(&health),
                metrics: Arc::clone(&metrics),
                stop: Arc::clone(&worker_stop),
                rt: tokio::runtime::Handle::current(),
            };
            let working = tokio::task::spawn_blocking(move || accounts::work_on(work));
            (Some(away), Some(sending), Some(working))
        }
        None => (None, None, None),
    };
    let shared = Shared {
        away,
        clock,
        metrics: Arc::clone(&metrics),
        health: Arc::clone(&health),
        wake: Arc::clone(&wake),
        wake_webhooks: Arc::clone(&wake_webhooks),
    };
    let consume = Consume::new(&cfg, engine, source, book, meta, shared);
    let stop = Arc::new(AtomicBool::new(false));
    let mut consuming = {
        let stop = Arc::clone(&stop);
        tokio::task::spawn_blocking(move || consume.run(stop))
    };
    tracing::info!(brokers = %cfg.kafka.brokers, http = %cfg.http.listen, "paywatch run started");

    // Until the shutdown signal, or the loop failing on its own.
    let early = tokio::select! {
        _ = shutdown => None,
        _ = async { match fence.as_mut() { Some(f) => f.lost().await, None => std::future::pending().await } } => None,
        r = &mut consuming => Some(r),
    };
    // 0. A fenced instance adds nothing to the changelog after the new
    // active one's frames: halted before the loop's last commit.
    if fence.as_ref().is_some_and(standby::Fence::is_lost) {
        changelog_halt.store(true, Ordering::Relaxed);
    }
    // 1. Stop reading; the loop commits the batch in hand.
    stop.store(true, Ordering::Relaxed);
    let consumed = match early {
        Some(r) => r,
        None => consuming.await,
    };
    health.ready.store(false, Ordering::Relaxed);
    let consumed = consumed.map_err(|e| RunError::Thread(e.to_string())).and_then(|r| r);
    // 1b. [kafka.accounts]: send the accounts' records of the last commit,
    // up to the deadline, then stop the account tasks (published to their
    // ends for their next owners).
    sender_draining.store(true, Ordering::Relaxed);
    if let Some(s) = sending {
        if tokio::time::timeout(cfg.kafka.drain_timeout, s).await.is_err() {
            tracing::warn!("the accounts' records were not all sent before kafka.drain_timeout; the rest is sent at the next start");
        }
    }
    worker_stop.store(true, Ordering::Relaxed);
    if let Some(w) = working {
        if tokio::time::timeout(cfg.kafka.drain_timeout, w).await.is_err() {
            tracing::warn!("the account tasks' directories were not all published before kafka.drain_timeout; their next owner restores what was");
        }
    }
    // 2. Drain the outbox, up to the deadline.
    draining.store(true, Ordering::Relaxed);
    wake.notify_one();
    match tokio::time::timeout(cfg.kafka.drain_timeout, publishing).await {
        Ok(Ok(())) if health.tasks_down().is_empty() => tracing::info!("outbox drained"),
        Ok(Ok(())) => tracing::error!("outbox publisher failed; entries stay for the next start"),
        Ok(Err(e)) => tracing::error!(error = %e, "outbox publisher panicked; entries stay for the next start"),
        Err(_) => tracing::warn!(
            left = metrics.outbox_depth.get(),
            "outbox not drained before kafka.drain_timeout; the rest is sent at the next start"
        ),
    }
    // 3. Stop the webhook dispatcher (its requests in flight finish or time
    // out; undelivered entries stay in the outbox).
    webhooks_stop.store(true, Ordering::Relaxed);
    wake_webhooks.notify_waiters();
    match tokio::time::timeout(cfg.webhooks.timeout + std::time::Duration::from_secs(1), dispatching).await {
        Ok(Err(e)) => tracing::error!(error = %e, "webhook dispatcher panicked; deliveries stay for the next start"),
        Err(_) => tracing::warn!("webhook requests still in flight at shutdown; they are sent again at the next start"),
        _ => {}
    }
    // 4. Publish the changelog to its end, with the outbox's
    // acknowledgements and the webhooks' marks, up to the deadline.
    changelog_stop.store(true, Ordering::Relaxed);
    if let Some(c) = changelog {
        if tokio::time::timeout(cfg.kafka.drain_timeout, c).await.is_err() {
            tracing::warn!("changelog not published to its end before kafka.drain_timeout; the rest is sent at the next start");
        }
    }
    // 5. Close the HTTP port.
    http_stop.notify_one();
    let _ = http.await;
    consumed
}

/// The HTTP port, bound, and its TLS when `[http.tls]` is set.
async fn listen(cfg: &Config) -> Result<(tokio::net::TcpListener, Option<http::Tls>), RunError> {
    let tls = match &cfg.http.tls {
        Some(t) => Some(http::Tls::load(t).await.map_err(RunError::Tls)?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(&cfg.http.listen)
        .await
        .map_err(|source| RunError::Listen { addr: cfg.http.listen.clone(), source })?;
    Ok((listener, tls))
}

/// An empty (or missing) state directory is restored from the changelog
/// when the topic holds a snapshot; without one, the inputs are replayed.
async fn restore_if_empty(cfg: &Config, dir: &std::path::Path) -> Result<(), RunError> {
    if !crate::changelog::restore::is_empty_dir(dir) {
        return Ok(());
    }
    let (kafka, target, opts) = (cfg.kafka.clone(), dir.to_owned(), cfg.store_options(false));
    let started = std::time::Instant::now();
    let done = tokio::task::spawn_blocking(move || crate::changelog::restore::restore(&kafka, &crate::changelog::Place::of(&kafka), &target, opts))
        .await
        .map_err(|e| RunError::Thread(e.to_string()))?;
    match done {
        Ok(r) => {
            tracing::info!(
                snapshot_entries = r.snapshot_entries,
                commits = r.commits,
                bytes = r.bytes,
                gap = r.gap.as_deref().unwrap_or("none"),
                restore_ms = started.elapsed().as_millis() as u64,
                "empty state directory restored from the changelog"
            );
            Ok(())
        }
        Err(crate::changelog::ChangelogError::NoSnapshot { .. }) => {
            tracing::info!("the changelog holds no snapshot yet: replaying the inputs from their first offsets");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}
