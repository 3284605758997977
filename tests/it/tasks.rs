//! Hardening items 6 and 7, against the real broker: supervised background
//! tasks (a publisher that fails is restarted with backoff, counted in a
//! metric, logged once, and `/readyz` says why while it is down), and an
//! outbox that no single message can block.

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

/// Hardening item 7, against the real broker: an input message close to
/// the limit is dead-lettered cut to fit (and says so), and messages the
/// producer refuses for good (here alerts above a 1,000-byte
/// `message.max.bytes`) are parked instead of blocking every later entry.
#[test]
fn an_oversized_dead_letter_is_cut_and_refused_messages_are_parked() {
    use super::common::kafka::{consume, tool};
    let dir = tempfile::tempdir().unwrap();
    let Fed { want, broker, .. } = fed(dir.path(), 100, 72);
    let big = dir.path().join("big.jsonl");
    std::fs::write(&big, format!("{}\n", "x".repeat(999_900))).unwrap();
    assert_eq!(tool(&["produce-raw", &broker.addr, "dibao.payments.v1", big.to_str().unwrap()]), "1");

    // First at librdkafka's default limit: the dead letter arrives cut.
    let http = free_port();
    let cfg = service_config(dir.path(), &broker, http, "");
    let mut svc = Service::start(&cfg, http, dir.path());
    svc.wait_idle();
    let dead = consume(&broker, "dibao.deadletter.v1", &dir.path().join("dead.jsonl"), None);
    let cut: Vec<_> = dead.iter().filter(|m| m.headers.contains_key("truncated")).collect();
    assert_eq!(cut.len(), 1, "{:?}", dead.iter().map(|m| &m.headers).collect::<Vec<_>>());
    let t = &cut[0].headers["truncated"];
    assert!(t.ends_with(" of 999900 bytes"), "{t}");
    assert_eq!(cut[0].headers["source_topic"], "dibao.payments.v1");
    assert!(cut[0].headers["reason"].starts_with("record_too_large"), "{:?}", cut[0].headers);
    let (_, m) = svc.get("/metrics").unwrap();
    assert!(m.contains("paywatch_outbox_entries 0") && m.contains("paywatch_outbox_parked 0"), "{m}");
    assert!(svc.terminate().success());

    // Then with a producer limit below the larger alerts: those are
    // parked, the rest published, the outbox empties.
    let dir2 = dir.path().join("small");
    std::fs::create_dir_all(&dir2).unwrap();
    let http = free_port();
    let cfg = service_config(&dir2, &broker, http, "group_id = \"small\"\n[kafka.producer]\n\"message.max.bytes\" = \"1000\"");
    let mut svc = Service::start(&cfg, http, &dir2);
    svc.wait_idle();
    let large = want.iter().filter(|a| serde_json::to_vec(a).unwrap().len() + a.alert_id.len() > 900).count();
    assert!(large > 0 && large < want.len(), "some alerts above the limit: {large} of {}", want.len());
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, m) = svc.get("/metrics").unwrap();
        let parked = m.lines().find(|l| l.starts_with("paywatch_outbox_parked ")).and_then(|l| l.rsplit(' ').next()?.parse::<usize>().ok());
        if m.contains("paywatch_outbox_entries 0") && parked.is_some_and(|p| p > 0) {
            break;
        }
        assert!(Instant::now() < end, "outbox not drained: {m}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(svc.log_text().contains("parked (it no longer blocks the others)"));
    assert!(svc.terminate().success());
}
