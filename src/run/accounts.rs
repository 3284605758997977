//! `[kafka.accounts]` in `paywatch run` (#16 step 2): the person side
//! sends its accounts' facts to `paywatch.<group>.by-account` from its
//! commits, and this instance runs the account tasks the group gives it.
//!
//! ```text
//! consume loop: commit → Staged::leaving → exchange outbox (same write)
//!   → sender (this file; publish::Sender, deleted once acknowledged)
//!   → by-account partitions → account worker (exchange::account_worker,
//!     a thread of its own) → alerts and dead-letter topics
//! ```
//!
//! Shutdown: the consume loop's last commit, then the sender drains (up
//! to `kafka.drain_timeout`), then the worker leaves the group, its tasks'
//! directories published to their ends for their next owners.

use super::RunError;
use crate::clock::Clock;
use crate::config::Config;
use crate::engine::repartition::Layout;
use crate::engine::Engine;
use crate::exchange::account_worker::{AccountWorker, TaskEngines};
use crate::exchange::member::Setup;
use crate::exchange::publish::Sender;
use crate::exchange::{ensure_changelog, ensure_topics, outbox, ExchangeError};
use crate::http::{AccountTasksStatus, Health};
use crate::metrics::Metrics;
use crate::store::Store;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// What the consume loop needs to send the accounts away.
pub(super) struct Away {
    /// The exchange's outbox in the person side's store: `Staged::leaving`
    /// is staged here in each commit.
    pub outbox: outbox::Outbox,
    /// Wakes the sender after a commit.
    pub wake: Arc<Notify>,
}

/// Where an instance keeps its tasks' directories: beside the state
/// directory, never inside it (`<dir>-tasks/tasks/account-0`, …).
pub(super) fn tasks_root(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push("-tasks");
    dir.with_file_name(name)
}

/// Turns the person side's accounts away (refused when its state was
/// sent with another lane or partition count) and makes sure the group's
/// topics exist with the layout's partition counts.
pub(super) async fn prepare(cfg: &Config, engine: &mut Engine) -> Result<(Layout, Away), RunError> {
    let a = &cfg.kafka.accounts;
    engine.send_accounts_away(a.partitions)?;
    let layout = engine.away_layout().ok_or_else(|| RunError::Thread("the accounts were sent away, but the engine has no layout".into()))?;
    ensure_topics(&cfg.kafka, &cfg.kafka.group_id, layout, a.replication).await?;
    ensure_changelog(&cfg.kafka, layout, a.replication).await?;
    let outbox = outbox::Outbox::open(engine.store())?;
    tracing::info!(partitions = a.partitions, lanes = layout.persons, "the accounts run as tasks of the group (by-account)");
    Ok((layout, Away { outbox, wake: Arc::new(Notify::new()) }))
}

/// `paywatch run` with `[kafka.accounts] person_side = false`: no input
/// read, no state directory of its own; the account tasks the group gives
/// this instance, on a thread, and the standby's port (health, metrics,
/// `/status` with role `accounts`; the API answers 503 naming the person
/// side). Stops at `shutdown`, leaving the group (its tasks published to
/// their ends for their next owners).
pub(super) async fn run_only(cfg: Config, clock: Arc<dyn Clock>, shutdown: impl std::future::Future<Output = ()>) -> Result<(), RunError> {
    let dir = cfg.state.dir.clone().ok_or(RunError::NoStateDir)?;
    let a = &cfg.kafka.accounts;
    let layout = Layout::accounts_away(cfg.engine.lanes(), a.partitions);
    ensure_topics(&cfg.kafka, &cfg.kafka.group_id, layout, a.replication).await?;
    ensure_changelog(&cfg.kafka, layout, a.replication).await?;
    let metrics = Arc::new(Metrics::new());
    metrics.active.set(0);
    metrics.standby_behind.set(-1);
    let health = Arc::new(Health::default());
    health.accounts_only.store(true, Ordering::Relaxed);
    health.status.lock().unwrap_or_else(|e| e.into_inner()).role = "accounts";
    health.ready.store(true, Ordering::Relaxed);
    let (listener, tls) = super::listen(&cfg).await?;
    let http_stop = Arc::new(Notify::new());
    let server = {
        let stop = Arc::clone(&http_stop);
        let app = crate::http::standby_router(Arc::clone(&metrics), Arc::clone(&health), Arc::new(cfg.api.tokens.clone()));
        tokio::spawn(crate::http::serve_router(listener, app, tls, async move { stop.notified().await }))
    };
    let stop = Arc::new(AtomicBool::new(false));
    let work = Work {
        cfg: cfg.clone(),
        root: tasks_root(&dir),
        layout,
        clock,
        health: Arc::clone(&health),
        metrics,
        stop: Arc::clone(&stop),
        rt: tokio::runtime::Handle::current(),
    };
    let working = tokio::task::spawn_blocking(move || work_on(work));
    tracing::info!(brokers = %cfg.kafka.brokers, http = %cfg.http.listen, partitions = a.partitions, lanes = layout.persons, "paywatch run started: account tasks only");
    shutdown.await;
    stop.store(true, Ordering::Relaxed);
    let worked = match tokio::time::timeout(cfg.kafka.drain_timeout, working).await {
        Ok(done) => done.map_err(|e| RunError::Thread(e.to_string())),
        Err(_) => {
            tracing::warn!("the account tasks' directories were not all published before kafka.drain_timeout; their next owner restores what was");
            Ok(())
        }
    };
    health.ready.store(false, Ordering::Relaxed);
    http_stop.notify_one();
    let _ = server.await;
    worked
}

/// Publishes the exchange's outbox until `draining` is set and it is
/// empty. Run under `supervise`: an error (the broker did not acknowledge)
/// restarts it; what was not acknowledged stays and is sent again, and
/// readers skip what they already read.
pub(super) async fn send(sender: Arc<tokio::sync::Mutex<Sender>>, store: Store, wake: Arc<Notify>, draining: Arc<AtomicBool>) -> Result<(), ExchangeError> {
    let mut sender = sender.lock().await;
    loop {
        sender.drain().await?;
        if draining.load(Ordering::Relaxed) && outbox::depth(&store)? == 0 {
            return Ok(());
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

/// What the account worker's thread runs with.
pub(super) struct Work {
    pub cfg: Config,
    /// Where the tasks' directories live (`tasks_root`).
    pub root: PathBuf,
    /// The group's tasks, as the person side sends to them.
    pub layout: Layout,
    pub clock: Arc<dyn Clock>,
    /// `/status` and `/readyz`: the worker's report, and why it is down.
    pub health: Arc<Health>,
    pub metrics: Arc<Metrics>,
    /// Set at shutdown: the worker leaves the group.
    pub stop: Arc<AtomicBool>,
    /// Where the tasks' outboxes are published from.
    pub rt: tokio::runtime::Handle,
}

/// The account worker's thread: joins, steps until `stop`, then leaves.
/// A worker that fails is left (its tasks published) and joins again
/// after a backoff, its reason in `/status` and `/readyz` meanwhile.
pub(super) fn work_on(w: Work) {
    const TASK: &str = "account worker";
    let Work { cfg, root, layout, clock, health, metrics, stop, rt } = w;
    let setup = Setup {
        kafka: cfg.kafka.clone(),
        layout,
        root,
        opts: task_store(&cfg),
        wal_keep_mb: cfg.kafka.changelog.wal_keep_mb,
        metrics: Arc::clone(&metrics),
        parallel_restores: cfg.kafka.accounts.parallel_restores,
    };
    let engines = TaskEngines { rules: cfg.rules.clone(), tz: cfg.tz(), cache_entries: cfg.engine.cache_entries, clock };
    let mut status = AccountTasksStatus { partitions: layout.accounts, ..AccountTasksStatus::default() };
    let mut backoff = Duration::from_secs(1);
    while !stop.load(Ordering::Relaxed) {
        let failed = match AccountWorker::join(setup.clone(), engines.clone(), rt.clone()) {
            Ok(mut w) => {
                let mut failed = None;
                while failed.is_none() && !stop.load(Ordering::Relaxed) {
                    match w.step(Duration::from_millis(100)) {
                        Ok(s) => {
                            status.alerts += s.committed.iter().map(|(_, c)| c.alerts.len() as u64).sum::<u64>();
                            status.published += s.published as u64;
                            status.unsent = s.unsent as u64;
                            status.held = w.tasks().held();
                            status.holding = w.holding().into_iter().map(|(t, h)| (t.to_string(), h)).collect();
                            status.error = None;
                            health.task_up(TASK);
                            backoff = Duration::from_secs(1);
                            *health.accounts.lock().unwrap_or_else(|e| e.into_inner()) = Some(status.clone());
                        }
                        Err(e) => failed = Some(e),
                    }
                }
                if let Err(e) = w.leave() {
                    tracing::warn!(error = %e, "the account worker could not stop its tasks cleanly; their next owner restores what they published");
                }
                failed
            }
            Err(e) => Some(e),
        };
        let Some(e) = failed else { break };
        metrics.task_restarts.with_label_values(&[TASK]).inc();
        let why = format!("the {TASK} stopped ({e}); joining again in {}s", backoff.as_secs());
        tracing::error!("{why}");
        health.task_down(TASK, why.clone());
        status.error = Some(why);
        status.holding.clear();
        *health.accounts.lock().unwrap_or_else(|e| e.into_inner()) = Some(status.clone());
        let until = std::time::Instant::now() + backoff;
        while std::time::Instant::now() < until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
        }
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
    health.task_up(TASK);
}

/// Each account task's RocksDB options: a share of the state
/// directory's block cache and memtables, so that an instance holding
/// every task uses about what one store would.
fn task_store(cfg: &Config) -> crate::store::StoreOptions {
    let mut o = cfg.store_options(true);
    let n = cfg.kafka.accounts.partitions.max(1) as usize;
    o.block_cache_mb = (o.block_cache_mb / n).max(8);
    o.write_buffer_mb = (o.write_buffer_mb / n).max(4);
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_live_beside_the_state_directory() {
        assert_eq!(tasks_root(Path::new("/var/lib/paywatch/state")), Path::new("/var/lib/paywatch/state-tasks"));
        assert_eq!(tasks_root(Path::new("state/")), Path::new("state-tasks"));
    }
}
