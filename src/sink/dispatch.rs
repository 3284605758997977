//! The webhook dispatcher: one worker per route, each reading only its
//! route's key range of the outbox, with its own queue and its own bound on
//! requests in flight. A receiver that hangs until the timeout holds back
//! its own deliveries and nobody else's; a request that finishes frees its
//! slot for the next due delivery at once, without waiting for the others
//! of a round.
//!
//! Outcomes are written back (delete, reschedule, dead list) as soon as
//! they arrive. While that bookkeeping cannot be written, the worker sends
//! nothing more: it retries the write with backoff, so an unwritable state
//! directory does not turn into the same requests sent every second.

use super::webhook::{self, backoff, jitter, signature, Attempt, DeadDelivery, Delivery, WebhookError};
use crate::clock::Clock;
use crate::config::{RouteConfig, WebhooksConfig};
use crate::metrics::Metrics;
use crate::store::{keys, Cf, Store, StoreError};
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Entries a worker reads per scan of its range, at most: a backlog of
/// millions costs a bounded read, and the due ones among them are queued.
const SCAN: usize = 2_000;

pub struct Dispatcher {
    client: reqwest::Client,
    store: Store,
    cfg: WebhooksConfig,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    /// Woken (all workers) after every commit that queued deliveries, and
    /// at shutdown.
    wake: Arc<Notify>,
    /// Set at shutdown: deliveries wait in the outbox for the next start.
    stop: Arc<AtomicBool>,
}

/// What becomes of a delivery after an attempt.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Deleted from the outbox.
    Delivered,
    /// Kept, with its new schedule.
    Retry,
    /// Moved to the dead list.
    Dead,
}

impl Next {
    /// The `outcome` label of `paywatch_webhook_deliveries_total`.
    fn label(self) -> &'static str {
        match self {
            Next::Delivered => "delivered",
            Next::Retry => "retry",
            Next::Dead => "dead",
        }
    }
}

/// What an attempt came to, to be written back.
struct Settled {
    key: Vec<u8>,
    delivery: Delivery,
    outcome: Attempt,
}

impl Dispatcher {
    pub fn new(
        cfg: &WebhooksConfig,
        store: Store,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        wake: Arc<Notify>,
        stop: Arc<AtomicBool>,
    ) -> Result<Dispatcher, WebhookError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(cfg.timeout)
            .user_agent(concat!("paywatch/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(WebhookError::Client)?;
        Ok(Dispatcher { client, store, cfg: cfg.clone(), clock, metrics, wake, stop })
    }

    /// Parks the deliveries of routes no longer configured, then runs one
    /// worker per route until `stop` is set.
    pub async fn run(self: Arc<Self>) -> Result<(), WebhookError> {
        self.park_unrouted()?;
        let this = self;
        let mut workers = tokio::task::JoinSet::new();
        for route in this.cfg.routes.clone() {
            workers.spawn(Arc::clone(&this).route_worker(route));
        }
        while let Some(done) = workers.join_next().await {
            match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(e) => tracing::error!(error = %e, "a webhook route worker panicked"),
            }
        }
        Ok(())
    }

    /// Deliveries queued for a route that the config no longer has go to
    /// the dead list (they can be retried after the route is back).
    fn park_unrouted(&self) -> Result<(), WebhookError> {
        let now = self.clock.now().0;
        let mut from = vec![keys::DELIVERY];
        loop {
            let Some((k, _)) = self.store.entries_between(Cf::Outbox, &from, &[keys::DELIVERY + 1], 1)?.pop() else { return Ok(()) };
            let route = k[1..].split(|b| *b == 0).next().unwrap_or_default();
            let route = String::from_utf8_lossy(route).into_owned();
            let end = keys::delivery_end(&route);
            if !self.cfg.routes.iter().any(|r| r.name == route) {
                let (lo, mut n) = (keys::delivery_prefix(&route), 0);
                loop {
                    let chunk = self.store.entries_between(Cf::Outbox, &lo, &end, 10_000)?;
                    if chunk.is_empty() {
                        break;
                    }
                    let mut b = self.store.batch();
                    for (k, v) in chunk {
                        let mut d = webhook::decode(&k, &v)?;
                        d.last_error = Some(format!("route {route:?} is no longer configured"));
                        b.delete(Cf::Outbox, &k);
                        b.put(Cf::WebhookDead, &k, &DeadDelivery { delivery: d, failed_at_ms: now })?;
                        n += 1;
                    }
                    self.store.commit(b)?;
                }
                self.metrics.webhook_dead.add(n);
                tracing::warn!(%route, deliveries = n, "deliveries of a route no longer configured are on the webhook dead-letter list");
            }
            from = end;
        }
    }

    /// Delivers one route's queue until `stop` is set.
    async fn route_worker(self: Arc<Self>, route: RouteConfig) -> Result<(), WebhookError> {
        let route = Arc::new(route);
        let (lo, hi) = (keys::delivery_prefix(&route.name), keys::delivery_end(&route.name));
        let due_gauge = self.metrics.webhook_pending.with_label_values(&[&route.name]);
        let mut queue: VecDeque<(Vec<u8>, Delivery)> = VecDeque::new();
        let mut busy: HashSet<Vec<u8>> = HashSet::new();
        let mut inflight = tokio::task::JoinSet::new();
        let mut next_due = 0;
        // Read the range again (new deliveries were committed): the queue
        // is rebuilt, so that its length, and the gauge, are up to date.
        let mut rescan = true;
        while !self.stop.load(Ordering::Relaxed) {
            let now = self.clock.now().0;
            if rescan || (queue.is_empty() && inflight.len() < self.cfg.concurrency && now >= next_due) {
                rescan = false;
                queue.clear();
                next_due = now + 1000;
                for (k, v) in self.store.entries_between(Cf::Outbox, &lo, &hi, SCAN)? {
                    if busy.contains(&k) {
                        continue;
                    }
                    let d = webhook::decode(&k, &v)?;
                    if d.next_at_ms <= now {
                        queue.push_back((k, d));
                    } else {
                        next_due = next_due.min(d.next_at_ms);
                    }
                }
                due_gauge.set((queue.len() + inflight.len()) as i64);
            }
            while inflight.len() < self.cfg.concurrency {
                let Some((k, d)) = queue.pop_front() else { break };
                busy.insert(k.clone());
                let (me, route) = (Arc::clone(&self), Arc::clone(&route));
                inflight.spawn(async move {
                    let outcome = me.attempt(&route, &d).await;
                    Settled { key: k, delivery: d, outcome }
                });
            }
            let idle = inflight.len() < self.cfg.concurrency && queue.is_empty();
            let wait = Duration::from_millis(u64::try_from((next_due - now).clamp(10, 1000)).unwrap_or(1000));
            tokio::select! {
                Some(done) = inflight.join_next(), if !inflight.is_empty() => {
                    let mut settled: Vec<Settled> = done.into_iter().collect();
                    while let Some(more) = inflight.try_join_next() {
                        settled.extend(more);
                    }
                    let keys: Vec<Vec<u8>> = settled.iter().map(|s| s.key.clone()).collect();
                    if !self.record(settled).await {
                        return Ok(());
                    }
                    for k in keys {
                        busy.remove(&k);
                    }
                    if queue.is_empty() {
                        next_due = 0;
                    }
                }
                // Also how shutdown reaches a worker whose requests hang.
                _ = self.wake.notified() => rescan = true,
                _ = tokio::time::sleep(wait), if idle => {}
            }
        }
        Ok(())
    }

    async fn attempt(&self, route: &RouteConfig, d: &Delivery) -> Attempt {
        let ts = (self.clock.now().0 / 1000).to_string();
        let sent = self
            .client
            .post(&route.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", &d.id)
            .header("X-Paywatch-Event", d.event.name())
            .header("X-Paywatch-Timestamp", &ts)
            .header("X-Paywatch-Signature", signature(&route.secrets, &ts, &d.body))
            .body(d.body.clone())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => Attempt::Delivered,
            Ok(r) if r.status().as_u16() == 429 || r.status().is_server_error() => {
                let retry_after = r
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                Attempt::Retry { error: format!("HTTP {}", r.status().as_u16()), retry_after }
            }
            Ok(r) if r.status().is_redirection() => Attempt::Refused(format!("HTTP {}: redirects are refused", r.status().as_u16())),
            Ok(r) => Attempt::Refused(format!("HTTP {}", r.status().as_u16())),
            // reqwest's words carry the URL, whose query may hold a token.
            Err(e) => Attempt::Retry {
                error: if e.is_timeout() { "timed out".into() } else { crate::config::redact_url(&e.to_string()) },
                retry_after: None,
            },
        }
    }

    /// Writes the outcomes back (delete, reschedule or dead list). Until it
    /// can, nothing else is sent: the write is retried with backoff.
    /// Returns false when stopped before it could (the deliveries are sent
    /// again at the next start, with the same `Idempotency-Key`).
    async fn record(&self, settled: Vec<Settled>) -> bool {
        let now = self.clock.now().0;
        let mut ops = Vec::with_capacity(settled.len());
        for s in settled {
            ops.push(self.settle(s, now));
        }
        let mut pause = Duration::from_millis(500);
        let mut warned = false;
        loop {
            match self.write(&ops) {
                Ok(()) => break,
                Err(e) => {
                    self.metrics.state_write_failures.with_label_values(&["webhooks"]).inc();
                    if !warned {
                        tracing::warn!(error = %e, "cannot record webhook outcomes; sending paused until the state directory can be written");
                        warned = true;
                    }
                    if self.stop.load(Ordering::Relaxed) {
                        return false;
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(30));
                }
            }
        }
        if warned {
            tracing::info!("webhook outcomes recorded again; sending resumes");
        }
        for (_, next, d) in &ops {
            self.metrics.webhook_deliveries.with_label_values(&[d.route.as_str(), next.label()]).inc();
            if *next == Next::Dead {
                self.metrics.webhook_dead.inc();
            }
        }
        true
    }

    fn write(&self, ops: &[(Vec<u8>, Next, Delivery)]) -> Result<(), StoreError> {
        let mut b = self.store.batch();
        let now = self.clock.now().0;
        for (key, next, d) in ops {
            match next {
                Next::Delivered => b.delete(Cf::Outbox, key),
                Next::Retry => b.put(Cf::Outbox, key, d)?,
                Next::Dead => {
                    b.delete(Cf::Outbox, key);
                    b.put(Cf::WebhookDead, key, &DeadDelivery { delivery: d.clone(), failed_at_ms: now })?;
                }
            }
        }
        self.store.commit(b)
    }

    /// What an attempt leaves: the key, what becomes of the delivery, and
    /// the delivery (with its new schedule when retried).
    fn settle(&self, s: Settled, now: i64) -> (Vec<u8>, Next, Delivery) {
        let Settled { key, delivery: mut d, outcome } = s;
        match outcome {
            Attempt::Delivered => (key, Next::Delivered, d),
            Attempt::Retry { error, retry_after } if d.attempts + 1 < self.cfg.max_attempts => {
                d.attempts += 1;
                let wait = backoff(&self.cfg, d.attempts, jitter(&key, now), retry_after);
                d.next_at_ms = now + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 2);
                tracing::debug!(route = %d.route, attempts = d.attempts, %error, ?wait, "webhook delivery failed; retrying");
                d.last_error = Some(error);
                (key, Next::Retry, d)
            }
            Attempt::Retry { error, .. } | Attempt::Refused(error) => {
                d.attempts += 1;
                tracing::warn!(route = %d.route, attempts = d.attempts, %error, "webhook delivery failed for good; on the dead-letter list");
                d.last_error = Some(error);
                (key, Next::Dead, d)
            }
        }
    }
}
