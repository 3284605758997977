//! Supervisors' webhooks: every alert matching a route is written to the
//! outbox as a delivery in the same atomic commit as the state that raised
//! it (and every case event in the commit that announces it); the
//! dispatcher (`dispatch.rs`) POSTs it, signed, and deletes it only on a
//! 2xx. Timeouts, connection errors, 5xx and 429 are retried with
//! exponential backoff and jitter (honouring `Retry-After`); any other
//! answer, or too many attempts, moves the delivery to the webhook
//! dead-letter list. The retry schedule is stored with the delivery, so a
//! restart resumes it.
//!
//! This module owns the deliveries' layout in the outbox column family
//! ([`keys::delivery`]: one key range per route) and the dead list.

use crate::config::{Event, RouteConfig, WebhooksConfig};
use crate::model::Alert;
use crate::store::{keys, Batch, Cf, Store, StoreError};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("cannot build the HTTP client: {0}")]
    Client(reqwest::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Who queued a delivery: the second-to-last part of its key, so that two
/// writers with their own sequences never make the same key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The engine's commit (sequence: the stream's `outbox_seq`).
    Engine,
    /// The case deadline watcher (sequence: its own, per process; the
    /// queueing time in the key keeps restarts apart).
    Deadlines,
}

impl Origin {
    fn byte(self) -> u8 {
        match self {
            Origin::Engine => keys::FROM_ENGINE,
            Origin::Deadlines => keys::FROM_DEADLINES,
        }
    }
}

/// One alert or case event for one route, waiting to be delivered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub route: String,
    /// The alert's id, or the case event's id: the `Idempotency-Key`, the
    /// same on every attempt, so a receiver can drop a repeat.
    pub id: String,
    /// The JSON as POSTed.
    pub body: Vec<u8>,
    /// Attempts made so far.
    pub attempts: u32,
    /// Not before this time (ms since the epoch).
    pub next_at_ms: i64,
    /// When it was committed.
    pub queued_ms: i64,
    /// What the last attempt got.
    pub last_error: Option<String>,
    /// What it is (`X-Paywatch-Event`). Last, because state v3 stored
    /// deliveries without it (the v3 → v4 upgrade appends it).
    pub event: Event,
}

impl Delivery {
    fn new(route: &RouteConfig, id: String, body: Vec<u8>, event: Event, now_ms: i64) -> Delivery {
        Delivery { route: route.name.clone(), id, body, attempts: 0, next_at_ms: now_ms, queued_ms: now_ms, last_error: None, event }
    }
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
        let d = Delivery::new(r, a.alert_id.clone(), body.clone(), Event::Alert, now_ms);
        batch.put(Cf::Outbox, &keys::delivery(&r.name, now_ms, Origin::Engine.byte(), *seq), &d)?;
    }
    Ok(())
}

/// Queues case event `id` (body `body`) to each of `routes`; returns how
/// many deliveries it queued.
pub fn stage_event(
    batch: &mut Batch<'_>,
    (origin, seq): (Origin, &mut u64),
    routes: &[&RouteConfig],
    event: Event,
    id: &str,
    body: &[u8],
    now_ms: i64,
) -> Result<usize, StoreError> {
    for r in routes {
        *seq += 1;
        let d = Delivery::new(r, id.to_owned(), body.to_vec(), event, now_ms);
        batch.put(Cf::Outbox, &keys::delivery(&r.name, now_ms, origin.byte(), *seq), &d)?;
    }
    Ok(routes.len())
}

/// Decodes a stored delivery; the error names the key.
pub fn decode(key: &[u8], value: &[u8]) -> Result<Delivery, StoreError> {
    postcard::from_bytes(value).map_err(|source| StoreError::Decode { cf: Cf::Outbox.name(), key: keys::shown(key), source })
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
pub(super) fn jitter(key: &[u8], now_ms: i64) -> f64 {
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

impl DeadDelivery {
    /// As the API's dead list and `paywatch webhooks list-dead` show it.
    pub fn json(&self, tz: crate::model::Tz) -> serde_json::Value {
        let d = &self.delivery;
        serde_json::json!({
            "id": d.id,
            "event": d.event.name(),
            "alert_id": (d.event == Event::Alert).then_some(&d.id),
            "route": d.route,
            "attempts": d.attempts,
            "last_error": d.last_error,
            "failed_at": tz.format(crate::model::Timestamp(self.failed_at_ms)),
        })
    }
}

/// The webhook dead-letter list, by route, oldest first.
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

/// Dead deliveries with their keys, and the key to continue after.
pub type DeadPage = (Vec<(Vec<u8>, DeadDelivery)>, Option<Vec<u8>>);

/// A page of the dead list: at most `limit` entries after key `after`, and
/// the key to continue after when there are more.
pub fn dead_page(store: &Store, after: Option<&[u8]>, limit: usize) -> Result<DeadPage, StoreError> {
    let from = match after {
        Some(k) => [k, &[0u8][..]].concat(),
        None => Vec::new(),
    };
    let mut page: Vec<(Vec<u8>, DeadDelivery)> = store
        .entries_between(Cf::WebhookDead, &from, &[0xff], limit + 1)?
        .into_iter()
        .map(|(k, v)| {
            postcard::from_bytes(&v)
                .map_err(|source| StoreError::Decode { cf: Cf::WebhookDead.name(), key: keys::shown(&k), source })
                .map(|d| (k, d))
        })
        .collect::<Result<_, _>>()?;
    let more = page.len() > limit;
    page.truncate(limit);
    let next = if more { page.last().map(|(k, _)| k.clone()) } else { None };
    Ok((page, next))
}

/// Puts dead deliveries (all, or those of one alert or event id) back in
/// the outbox, with a fresh schedule. Returns how many.
pub fn retry_dead(store: &Store, id: Option<&str>, now_ms: i64) -> Result<usize, StoreError> {
    let mut b = store.batch();
    let mut n = 0;
    for (k, mut dead) in list_dead(store)? {
        if id.is_some_and(|id| id != dead.delivery.id) {
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

    /// v3 → v4: a queued and a dead delivery of v3 (`w | seq`, no event)
    /// move to their route's range and read as alerts.
    #[test]
    fn v3_deliveries_are_moved_to_their_route_and_read_as_alerts() {
        use crate::store::StoreOptions;
        #[derive(Serialize)]
        struct V3<'a>(&'a str, &'a str, &'a [u8], u32, i64, i64, Option<&'a str>);
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions { block_cache_mb: 8, write_buffer_mb: 4, sync: false, statistics: false };
        {
            let store = Store::open(dir.path(), opts).unwrap();
            let mut b = store.batch();
            let queued = postcard::to_stdvec(&V3("district", "A-1", b"{}", 2, 5_000, 1_000, Some("HTTP 503"))).unwrap();
            b.put_raw(Cf::Outbox, &[&b"w"[..], &7u64.to_be_bytes()].concat(), &queued);
            let mut dead = postcard::to_stdvec(&V3("refusing", "A-2", b"{}", 1, 0, 2_000, Some("HTTP 410"))).unwrap();
            dead.extend(postcard::to_stdvec(&9_000i64).unwrap());
            b.put_raw(Cf::WebhookDead, &[&b"w"[..], &8u64.to_be_bytes()].concat(), &dead);
            b.put_raw(Cf::Meta, keys::META_SCHEMA, b"paywatch-state-v3");
            store.commit(b).unwrap();
        }
        let store = Store::open(dir.path(), opts).unwrap();
        assert_eq!(store.get_raw(Cf::Meta, keys::META_SCHEMA).unwrap().as_deref(), Some(b"paywatch-state-v10".as_slice()));
        let q = store.entries_between(Cf::Outbox, &keys::delivery_prefix("district"), &keys::delivery_end("district"), 10).unwrap();
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].0, keys::delivery("district", 1_000, keys::FROM_ENGINE, 7));
        let d = decode(&q[0].0, &q[0].1).unwrap();
        assert_eq!((d.id.as_str(), d.attempts, d.next_at_ms, d.event), ("A-1", 2, 5_000, Event::Alert));
        assert!(store.entries_between(Cf::Outbox, b"w", b"x", 10).unwrap().is_empty());
        let dead = list_dead(&store).unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!((dead[0].1.delivery.id.as_str(), dead[0].1.failed_at_ms, dead[0].1.delivery.event), ("A-2", 9_000, Event::Alert));
        // Retried, it lands in its route's range.
        assert_eq!(retry_dead(&store, Some("A-2"), 10_000).unwrap(), 1);
        assert_eq!(store.entries_between(Cf::Outbox, &keys::delivery_prefix("refusing"), &keys::delivery_end("refusing"), 10).unwrap().len(), 1);
    }

    /// The dead list a page at a time: pages follow each other without a
    /// gap or a repeat, and the last says there is no more.
    #[test]
    fn the_dead_list_is_paged() {
        use crate::store::StoreOptions;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions { block_cache_mb: 8, write_buffer_mb: 4, sync: false, statistics: false }).unwrap();
        let mut b = store.batch();
        for i in 0..5u64 {
            let d = Delivery { route: "r".into(), id: format!("A-{i}"), body: vec![], attempts: 1, next_at_ms: 0, queued_ms: 0, last_error: None, event: Event::Alert };
            b.put(Cf::WebhookDead, &keys::delivery("r", 1000 + i as i64, keys::FROM_ENGINE, i), &DeadDelivery { delivery: d, failed_at_ms: 0 }).unwrap();
        }
        store.commit(b).unwrap();
        let (mut seen, mut after) = (Vec::new(), None);
        loop {
            let (page, next) = dead_page(&store, after.as_deref(), 2).unwrap();
            assert!(page.len() <= 2);
            seen.extend(page.into_iter().map(|(_, d)| d.delivery.id));
            match next {
                Some(k) => after = Some(k),
                None => break,
            }
        }
        assert_eq!(seen, ["A-0", "A-1", "A-2", "A-3", "A-4"]);
        assert_eq!(dead_page(&store, None, 5).unwrap().1, None, "exactly a page: no next");
    }
}
