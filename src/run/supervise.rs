//! Supervised background tasks (the outbox publisher, the webhook
//! dispatcher): a task that fails is logged once, counted in
//! `paywatch_task_restarts_total{task}`, marked down for `/readyz` (503
//! with the reason), and started again after a backoff (1 s doubling to
//! 60 s). A task that returns `Ok` has finished (shutdown). And what the
//! engine does while its state directory cannot be written.

use crate::http::Health;
use crate::metrics::Metrics;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a restarted task must run before its backoff starts again
/// from one second.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);

/// Runs `start()` until it returns `Ok`, or until `stop` is set after a
/// failure.
pub async fn supervise<F, Fut, E>(task: &'static str, health: Arc<Health>, metrics: Arc<Metrics>, stop: Arc<AtomicBool>, mut start: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut backoff = Duration::from_secs(1);
    loop {
        let started = Instant::now();
        // Up while it runs; down from a failure until it runs again.
        health.task_up(task);
        let Err(e) = start().await else { return };
        metrics.task_restarts.with_label_values(&[task]).inc();
        if started.elapsed() >= HEALTHY_AFTER {
            backoff = Duration::from_secs(1);
        }
        let why = format!("the {task} stopped ({e}); restarting in {}s", backoff.as_secs());
        // Once per failure streak at warn level; repeats are debug.
        if backoff == Duration::from_secs(1) {
            tracing::error!("{why}");
        } else {
            tracing::debug!("{why}");
        }
        health.task_down(task, why);
        if stop.load(Ordering::Relaxed) {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}

/// While a commit cannot be written, the loop stops where it is: nothing
/// more is read or applied, `/readyz` says why, and the same batch is
/// written again every second until it goes through (RocksDB leaves its
/// read-only state by itself once the disk has room). No offset is ever
/// committed past state that was not written. A shutdown meanwhile gives
/// up the batch; its records are read again at the next start.
pub(super) fn write_failure_policy(health: &Arc<Health>, metrics: &Arc<Metrics>, stop: &Arc<AtomicBool>, dir: &std::path::Path) -> crate::engine::WriteFailurePolicy {
    let (health, metrics, stop) = (Arc::clone(health), Arc::clone(metrics), Arc::clone(stop));
    let dir = dir.display().to_string();
    Box::new(move |e, attempt| {
        metrics.state_write_failures.with_label_values(&["engine"]).inc();
        health.ready.store(false, Ordering::Relaxed);
        metrics.ready.set(0);
        *health.store_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
        if stop.load(Ordering::Relaxed) {
            tracing::error!(error = %e, state = %dir, "stopping with a batch that could not be written; its records are read again at the next start");
            return crate::store::WriteFailed::GiveUp;
        }
        if attempt == 1 || attempt % 60 == 0 {
            tracing::error!(
                error = %e,
                state = %dir,
                attempt,
                "cannot write the state directory: stopped consuming; nothing is committed until this write succeeds (retrying every second)"
            );
        }
        crate::store::WriteFailed::Retry(Duration::from_secs(1))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[tokio::test(start_paused = true)]
    async fn a_failing_task_is_restarted_counted_and_marked_down_while_it_is() {
        let health = Arc::new(Health::default());
        let metrics = Arc::new(Metrics::new());
        let runs = Arc::new(AtomicU32::new(0));
        let (h, r) = (Arc::clone(&health), Arc::clone(&runs));
        let task = tokio::spawn(supervise("publisher", Arc::clone(&health), Arc::clone(&metrics), Arc::new(AtomicBool::new(false)), move || {
            let (h, r) = (Arc::clone(&h), Arc::clone(&r));
            async move {
                let n = r.fetch_add(1, Ordering::SeqCst);
                if n < 3 {
                    return Err(format!("failure {n}"));
                }
                // The fourth run is up: the supervisor cleared the mark.
                assert!(h.tasks_down().is_empty());
                Ok(())
            }
        }));
        // Failures after 0 s, then waits of 1, 2 and 4 s.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(health.tasks_down().len(), 1, "down after the first failure");
        assert!(health.tasks_down()[0].contains("failure 0"));
        task.await.unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 4);
        assert_eq!(metrics.task_restarts.with_label_values(&["publisher"]).get(), 3);
        assert!(health.tasks_down().is_empty());
    }
}
