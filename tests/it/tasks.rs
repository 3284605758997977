//! Supervised background tasks (hardening item 6), against the real
//! broker: a publisher that fails is restarted with backoff, counted in a
//! metric, logged once, and `/readyz` says why while it is down.

use super::common::kafka::{fed, free_port, http_get, service_config, Fed, Service};
use paywatch::store::{keys, Cf, Store, StoreOptions};
use std::time::{Duration, Instant};

#[test]
fn a_failing_publisher_is_restarted_counted_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let Fed { broker, .. } = fed(dir.path(), 100, 71);
    let http = free_port();
    let cfg = service_config(dir.path(), &broker, http, "");
    // An outbox entry that cannot be decoded, before the service starts:
    // the publisher fails on it each time it reads the outbox.
    {
        let store = Store::open(&dir.path().join("state"), StoreOptions { block_cache_mb: 8, write_buffer_mb: 4, sync: false, statistics: false }).unwrap();
        let mut b = store.batch();
        b.put_raw(Cf::Outbox, &keys::outbox(b'a', 0), b"\xff\xff\xff\xff");
        store.commit(b).unwrap();
    }
    let mut svc = Service::start(&cfg, http, dir.path());
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = http_get(http, "/readyz");
        let restarts = svc
            .get("/metrics")
            .and_then(|(_, m)| m.lines().find(|l| l.starts_with("paywatch_task_restarts_total{task=\"outbox publisher\"}")).map(str::to_owned));
        let count = restarts.as_deref().and_then(|l| l.rsplit(' ').next()).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
        if let Some((503, body)) = &ready {
            if body.contains("outbox publisher stopped") && count >= 2 {
                assert!(body.contains("outbox"), "{body}");
                break;
            }
        }
        assert!(Instant::now() < end, "readyz {ready:?}, restarts {restarts:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Logged once at error level, not once per restart.
    let log = svc.log_text();
    assert_eq!(log.lines().filter(|l| l.contains("ERROR") && l.contains("outbox publisher stopped")).count(), 1, "{log}");
    svc.terminate();
}
