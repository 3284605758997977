//! Supervisors' webhooks: every alert matching a route is written to the
//! outbox as a delivery in the same atomic commit as the state that raised
//! it; the dispatcher POSTs it, signed, and deletes it only on a 2xx.
//! Timeouts, connection errors, 5xx and 429 are retried with exponential
//! backoff and jitter (honouring `Retry-After`); any other answer, or too
//! many attempts, moves the delivery to the webhook dead-letter list. The
//! retry schedule is stored with the delivery, so a restart resumes it.
//! A slow receiver delays only its own deliveries, never detection.

use crate::clock::Clock;
use crate::config::{RouteConfig, WebhooksConfig};
use crate::metrics::Metrics;
use crate::model::Alert;
use crate::store::{keys, Batch, Cf, Store, StoreError};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("cannot build the HTTP client: {0}")]
    Client(reqwest::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The outbox key prefix of deliveries.
const PREFIX: u8 = b'w';

/// One alert for one route, waiting to be delivered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub route: String,
    pub alert_id: String,
    /// The alert's JSON, as POSTed.
    pub body: Vec<u8>,
    /// Attempts made so far.
    pub attempts: u32,
    /// Not before this time (ms since the epoch).
    pub next_at_ms: i64,
    /// When it was committed.
    pub queued_ms: i64,
    /// What the last attempt got.
    pub last_error: Option<String>,
}

/// Queues a delivery of `a` to every route it matches (inside the commit
/// that raised the alert).
pub fn stage(batch: &mut Batch<'_>, seq: &mut u64, routes: &[RouteConfig], a: &Alert, now_ms: i64) -> Result<(), crate::engine::EngineError> {
    let mut body = None;
    for r in routes.iter().filter(|r| r.matches(a)) {
        let body = match &body {
            Some(b) => b,
            None => body.insert(serde_json::to_vec(a)?),
        };
        *seq += 1;
        let d = Delivery {
            route: r.name.clone(),
            alert_id: a.alert_id.clone(),
            body: body.clone(),
            attempts: 0,
            next_at_ms: now_ms,
            queued_ms: now_ms,
            last_error: None,
        };
        batch.put(Cf::Outbox, &keys::outbox(PREFIX, *seq), &d)?;
    }
    Ok(())
}

/// `X-Paywatch-Signature`: `v1=<hex HMAC-SHA256(secret, timestamp "." body)>`
/// for each secret, comma-separated.
pub fn signature(secrets: &[String], timestamp: &str, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| {
            let mut mac = Hmac::<Sha256>::new_from_slice(s.as_bytes()).expect("HMAC takes any key length");
            mac.update(timestamp.as_bytes());
            mac.update(b".");
            mac.update(body);
            format!("v1={}", hex::encode(mac.finalize().into_bytes()))
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// What one attempt came to.
#[derive(Clone, Debug, PartialEq)]
pub enum Attempt {
    Delivered,
    /// Worth trying again, not before the receiver's `Retry-After`, if any.
    Retry { error: String, retry_after: Option<Duration> },
    /// The receiver refused it for good (a 4xx other than 429, a redirect).
    Refused(String),
}

/// The wait before the next attempt after `attempts` failed ones: the
/// first wait doubled each time, capped, with ±20 % jitter (`jitter` in
/// [0, 1)), and never shorter than the receiver asked.
pub fn backoff(cfg: &WebhooksConfig, attempts: u32, jitter: f64, retry_after: Option<Duration>) -> Duration {
    let base = cfg.first_retry.saturating_mul(1u32 << attempts.saturating_sub(1).min(20)).min(cfg.max_retry);
    let jittered = base.mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0));
    match retry_after {
        Some(r) => jittered.max(r.min(cfg.max_retry)),
        None => jittered,
    }
}

/// A number in [0, 1) that differs per delivery and moment, so that
/// retries of many deliveries do not arrive together.
fn jitter(key: &[u8], now_ms: i64) -> f64 {
    let mut h = (now_ms as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for b in key {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01B3);
    }
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// A delivery that failed for good.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadDelivery {
    pub delivery: Delivery,
    pub failed_at_ms: i64,
}

pub struct Dispatcher {
    client: reqwest::Client,
    store: Store,
    cfg: WebhooksConfig,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    /// Woken after every commit that queued deliveries.
    wake: Arc<Notify>,
    /// Set at shutdown: deliveries wait in the outbox for the next start.
    stop: Arc<AtomicBool>,
    /// Bounds requests in flight per route.
    limits: HashMap<String, Arc<Semaphore>>,
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
        let limits = cfg.routes.iter().map(|r| (r.name.clone(), Arc::new(Semaphore::new(cfg.concurrency)))).collect();
        Ok(Dispatcher { client, store, cfg: cfg.clone(), clock, metrics, wake, stop, limits })
    }

    /// Delivers until `stop` is set.
    pub async fn run(self) -> Result<(), WebhookError> {
        let this = Arc::new(self);
        while !this.stop.load(Ordering::Relaxed) {
            let now = this.clock.now().0;
            let entries = this.store.entries_between(Cf::Outbox, &[PREFIX], &[PREFIX + 1], 10_000)?;
            let mut due = Vec::new();
            let mut next = now + 1000;
            for (k, v) in entries {
                let d: Delivery = postcard::from_bytes(&v)
                    .map_err(|source| StoreError::Decode { cf: Cf::Outbox.name(), key: crate::store::keys::shown(&k), source })?;
                if d.next_at_ms <= now {
                    due.push((k, d));
                } else {
                    next = next.min(d.next_at_ms);
                }
            }
            this.metrics.webhook_pending.set(due.len() as i64);
            if due.is_empty() {
                let wait = Duration::from_millis(u64::try_from((next - now).clamp(10, 1000)).unwrap_or(1000));
                tokio::select! {
                    _ = this.wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
                continue;
            }
            let mut tasks = tokio::task::JoinSet::new();
            for (k, d) in due {
                let me = Arc::clone(&this);
                tasks.spawn(async move {
                    let outcome = me.attempt(&d).await;
                    (k, d, outcome)
                });
            }
            let mut batch = this.store.batch();
            while let Some(done) = tasks.join_next().await {
                let Ok((k, d, outcome)) = done else { continue };
                this.settle(&mut batch, k, d, outcome)?;
            }
            if let Err(e) = this.store.commit(batch) {
                // Delivered or not, these entries keep their old schedule
                // and are sent again (same Idempotency-Key) once the state
                // can be written.
                this.metrics.state_write_failures.with_label_values(&["webhooks"]).inc();
                tracing::warn!(error = %e, "cannot record webhook outcomes; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        Ok(())
    }

    async fn attempt(&self, d: &Delivery) -> Attempt {
        let Some(route) = self.cfg.routes.iter().find(|r| r.name == d.route) else {
            return Attempt::Refused(format!("route {:?} is no longer configured", d.route));
        };
        let _permit = match self.limits.get(&d.route) {
            Some(s) => Some(s.clone().acquire_owned().await),
            None => None,
        };
        let ts = (self.clock.now().0 / 1000).to_string();
        let sent = self
            .client
            .post(&route.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", &d.alert_id)
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

    /// Records an attempt: delete, reschedule or move to the dead list.
    fn settle(&self, batch: &mut Batch<'_>, key: Vec<u8>, mut d: Delivery, outcome: Attempt) -> Result<(), StoreError> {
        let now = self.clock.now().0;
        let label = |o: &str| [d.route.clone(), o.to_owned()];
        match outcome {
            Attempt::Delivered => {
                self.metrics.webhook_deliveries.with_label_values(&label("delivered")).inc();
                batch.delete(Cf::Outbox, &key);
            }
            Attempt::Retry { error, retry_after } if d.attempts + 1 < self.cfg.max_attempts => {
                d.attempts += 1;
                let wait = backoff(&self.cfg, d.attempts, jitter(&key, now), retry_after);
                d.next_at_ms = now + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 2);
                tracing::debug!(route = %d.route, attempts = d.attempts, %error, ?wait, "webhook delivery failed; retrying");
                d.last_error = Some(error);
                self.metrics.webhook_deliveries.with_label_values(&label("retry")).inc();
                batch.put(Cf::Outbox, &key, &d)?;
            }
            Attempt::Retry { error, .. } | Attempt::Refused(error) => {
                d.attempts += 1;
                tracing::warn!(route = %d.route, attempts = d.attempts, %error, "webhook delivery failed for good; on the dead-letter list");
                d.last_error = Some(error);
                self.metrics.webhook_deliveries.with_label_values(&label("dead")).inc();
                self.metrics.webhook_dead.inc();
                batch.delete(Cf::Outbox, &key);
                batch.put(Cf::WebhookDead, &key, &DeadDelivery { delivery: d, failed_at_ms: now })?;
            }
        }
        Ok(())
    }
}

/// The webhook dead-letter list, oldest first.
pub fn list_dead(store: &Store) -> Result<Vec<(Vec<u8>, DeadDelivery)>, StoreError> {
    store
        .entries_between(Cf::WebhookDead, &[], &[0xff], usize::MAX)?
        .into_iter()
        .map(|(k, v)| {
            postcard::from_bytes(&v)
                .map_err(|source| StoreError::Decode { cf: Cf::WebhookDead.name(), key: crate::store::keys::shown(&k), source })
                .map(|d| (k, d))
        })
        .collect()
}

/// Puts dead deliveries (all, or those of one alert) back in the outbox,
/// with a fresh schedule. Returns how many.
pub fn retry_dead(store: &Store, alert_id: Option<&str>, now_ms: i64) -> Result<usize, StoreError> {
    let mut b = store.batch();
    let mut n = 0;
    for (k, mut dead) in list_dead(store)? {
        if alert_id.is_some_and(|id| id != dead.delivery.alert_id) {
            continue;
        }
        dead.delivery.attempts = 0;
        dead.delivery.next_at_ms = now_ms;
        b.delete(Cf::WebhookDead, &k);
        b.put(Cf::Outbox, &k, &dead.delivery)?;
        n += 1;
    }
    store.commit(b)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body_per_secret() {
        // Independent value: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac 0123456789abcdef
        let s = signature(&["0123456789abcdef".into()], "1700000000", br#"{"a":1}"#);
        assert_eq!(s, "v1=9eb18f493f8ec135d9eb2dad817c369bb4e9cbfa818657897a7437c1cd8c3a23");
        let two = signature(&["0123456789abcdef".into(), "fedcba9876543210".into()], "1700000000", br#"{"a":1}"#);
        assert!(two.starts_with(&s) && two.matches("v1=").count() == 2, "{two}");
    }

    #[test]
    fn backoff_doubles_with_jitter_caps_and_honours_retry_after() {
        let cfg = WebhooksConfig::default();
        assert_eq!(backoff(&cfg, 1, 0.5, None), Duration::from_secs(45));
        assert_eq!(backoff(&cfg, 2, 0.5, None), Duration::from_secs(90));
        assert_eq!(backoff(&cfg, 1, 0.0, None), Duration::from_secs(36));
        assert_eq!(backoff(&cfg, 30, 0.5, None), Duration::from_secs(3 * 3600));
        assert_eq!(backoff(&cfg, 1, 0.5, Some(Duration::from_secs(600))), Duration::from_secs(600));
        // Ten attempts: nine waits, about six hours in all.
        let total: Duration = (1..10).map(|a| backoff(&cfg, a, 0.5, None)).sum();
        assert!(total > Duration::from_secs(11 * 1800) && total < Duration::from_secs(13 * 1800), "{total:?}");
    }
}
