//! Signed webhooks from `paywatch run` to a real HTTP receiver on
//! 127.0.0.1 (`tests/webhook/receiver.py`, which checks the signatures
//! itself): waiting in the outbox while the receiver is down across a
//! restart, retried through failures, delivered once per alert and route,
//! routed by township and severity, a 410 on the dead-letter list.

use super::common::kafka::{api_call as api, fed, free_port, service_config, Fed, Service};
use super::common::webhook::{Hit, Receiver};
use super::common::{bin, run_ok};
use paywatch::model::{Rule, Severity};
use sha2::Digest;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

const TOKEN: &str = "district-token-webhooks";
const S1: &str = "first-secret-0123456789";
const S2: &str = "second-secret-9876543210";

#[test]
fn webhooks_are_signed_retried_routed_and_delivered_once() {
    let dir = tempfile::tempdir().unwrap();
    let Fed { want, quiet, broker } = fed(dir.path(), 300, 31);
    assert!(!quiet.is_empty(), "the ledger has alerts of false-positive cases");
    // Supervisors are not sent those again (§11.4).
    let want: Vec<_> = want.into_iter().filter(|a| !quiet.contains(&a.alert_id)).collect();
    let township = want.iter().find(|a| a.severity == Severity::High).map(|a| a.township.clone()).unwrap();
    let want_township: BTreeSet<String> =
        want.iter().filter(|a| a.township == township && a.severity == Severity::High).map(|a| a.alert_id.clone()).collect();
    let want_refused: BTreeSet<String> =
        want.iter().filter(|a| a.rule == Rule::NameMismatch).map(|a| a.alert_id.clone()).collect();
    assert!(!want_refused.is_empty());

    let port = free_port();
    let got = dir.path().join("received.jsonl");
    let http = free_port();
    let routes = format!(
        "[webhooks]\nfirst_retry = \"200ms\"\nmax_retry = \"1s\"\nmax_attempts = 1000\n\
         [[webhooks.routes]]\nname = \"district\"\nurl = \"http://127.0.0.1:{port}/district\"\nsecrets = [\"{S1}\", \"{S2}\"]\n\
         [[webhooks.routes]]\nname = \"township\"\nurl = \"http://127.0.0.1:{port}/township\"\nsecrets = [\"{S1}\", \"{S2}\"]\n\
         townships = [\"{township}\"]\nmin_severity = \"high\"\n\
         [[webhooks.routes]]\nname = \"refusing\"\nurl = \"http://127.0.0.1:{port}/refuse\"\nsecrets = [\"{S1}\", \"{S2}\"]\nrules = [\"NAME_MISMATCH\"]\n\
         [[webhooks.routes]]\nname = \"cases\"\nurl = \"http://127.0.0.1:{port}/cases\"\nsecrets = [\"{S1}\", \"{S2}\"]\n\
         events = [\"case.relapsed\", \"case.due_soon\", \"case.overdue\"]\n"
    );
    let cfg = service_config(dir.path(), &broker, http, &routes);
    let text = std::fs::read_to_string(&cfg).unwrap()
        + &format!("[[api.tokens]]\ntoken_sha256 = \"{}\"\nrole = \"district\"\n", hex::encode(sha2::Sha256::digest(TOKEN)));
    std::fs::write(&cfg, text).unwrap();
    // The receiver is down for the whole first run: deliveries wait in the
    // outbox through a restart.
    let mut svc = Service::start(&cfg, http, dir.path());
    svc.wait_idle();
    std::thread::sleep(Duration::from_secs(2));
    assert!(svc.terminate().success());
    assert!(!got.exists(), "nothing can have been received yet");
    let rx = Receiver::start(port, &got, &[S1, S2], 7);
    svc.restart();

    // Wait until every alert reached the district route with a 200.
    let end = Instant::now() + Duration::from_secs(90);
    loop {
        let ok: BTreeSet<String> =
            rx.hits().into_iter().filter(|h| h.path == "/district" && h.status == 200).filter_map(|h| h.key).collect();
        if ok.len() >= want.len() {
            break;
        }
        assert!(Instant::now() < end, "{} of {} alerts delivered to /district", ok.len(), want.len());
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    let hs = rx.hits();
    assert!(hs.iter().filter(|h| h.status == 503).count() == 7, "the first 7 requests failed and were retried");
    assert!(hs.iter().all(|h| h.sig_ok), "every request carries a valid v1 signature for both secrets");
    assert!(hs.iter().all(|h| h.content_type.as_deref() == Some("application/json")));
    assert!(hs.iter().filter(|h| h.path != "/cases").all(|h| h.key == h.alert_id), "Idempotency-Key is the alert id");
    let mut delivered: BTreeMap<(String, String), usize> = BTreeMap::new();
    for h in hs.iter().filter(|h| h.status == 200 && h.path != "/cases") {
        *delivered.entry((h.path.clone(), h.key.clone().unwrap())).or_default() += 1;
    }
    assert!(delivered.values().all(|n| *n == 1), "no alert delivered twice to a route");
    let ids = |path: &str| -> BTreeSet<String> { delivered.keys().filter(|(p, _)| p == path).map(|(_, k)| k.clone()).collect() };
    assert_eq!(ids("/district"), want.iter().map(|a| a.alert_id.clone()).collect::<BTreeSet<_>>());
    assert!(hs.iter().filter(|h| h.path != "/cases").all(|h| h.event.as_deref() == Some("alert")), "routes without `events` get alerts only");

    // The route that lists case events gets one `case.relapsed` per case
    // reopened after `rectified` (the replay is minutes old: no deadline
    // has passed), and no alerts.
    let (code, relapsed) = api(http, "GET", "/api/v1/cases?relapsed=true&limit=500", Some(TOKEN), None);
    assert_eq!(code, 200, "{relapsed}");
    let relapsed: BTreeSet<String> = relapsed["items"].as_array().unwrap().iter().map(|c| c["case_id"].as_str().unwrap().to_owned()).collect();
    assert!(!relapsed.is_empty() && want.iter().any(|a| a.rule == Rule::RectificationRelapse), "the ledger has relapses");
    let end = Instant::now() + Duration::from_secs(30);
    let case_hits = loop {
        let got: Vec<Hit> = rx.hits().into_iter().filter(|h| h.path == "/cases" && h.status == 200).collect();
        if got.len() >= relapsed.len() {
            break got;
        }
        assert!(Instant::now() < end, "{} case events for {} relapsed cases", got.len(), relapsed.len());
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(case_hits.iter().all(|h| h.event.as_deref() == Some("case.relapsed") && h.body_event == h.event && h.sig_ok), "{case_hits:?}");
    assert!(case_hits.iter().all(|h| h.key.as_deref().is_some_and(|k| k.starts_with(&format!("case.relapsed-{}-", h.case_id.as_deref().unwrap())))));
    assert_eq!(case_hits.iter().filter_map(|h| h.case_id.clone()).collect::<BTreeSet<_>>(), relapsed);
    assert_eq!(case_hits.len(), case_hits.iter().filter_map(|h| h.key.clone()).collect::<BTreeSet<_>>().len(), "once per case and reopening");
    assert_eq!(ids("/township"), want_township, "only {township}'s high alerts");
    let refused: Vec<&Hit> = hs.iter().filter(|h| h.path == "/refuse" && h.status == 410).collect();
    assert_eq!(refused.len(), want_refused.len(), "a 410 is not retried");

    // While the service runs: the dead list through the API (district
    // only), and one delivery queued again and sent (refused again).
    let (code, _) = api(http, "GET", "/api/v1/webhooks/dead", None, None);
    assert_eq!(code, 401);
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, listed) = api(http, "GET", "/api/v1/webhooks/dead", Some(TOKEN), None);
        assert_eq!(code, 200, "{listed}");
        let listed: BTreeSet<String> =
            listed["items"].as_array().unwrap().iter().map(|d| d["alert_id"].as_str().unwrap().to_owned()).collect();
        if listed == want_refused {
            break;
        }
        assert!(Instant::now() < end, "dead list {listed:?}, want {want_refused:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The list a page at a time (hardening item 11): one per page here.
    let mut paged = BTreeSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = cursor.as_ref().map_or("limit=1".to_owned(), |c| format!("limit=1&cursor={c}"));
        let (code, page) = api(http, "GET", &format!("/api/v1/webhooks/dead?{q}"), Some(TOKEN), None);
        assert_eq!(code, 200, "{page}");
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 1);
        paged.extend(items.iter().map(|d| d["alert_id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(paged, want_refused, "every dead delivery once across the pages");
    let (code, _) = api(http, "GET", "/api/v1/webhooks/dead?cursor=zz", Some(TOKEN), None);
    assert_eq!(code, 400);
    let one = want_refused.iter().next().unwrap().clone();
    let (code, r) = api(http, "POST", "/api/v1/webhooks/dead/retry", Some(TOKEN), Some(&format!(r#"{{"alert_id":"{one}"}}"#)));
    assert_eq!((code, r["queued"].as_u64()), (200, Some(1)));
    let end = Instant::now() + Duration::from_secs(20);
    while rx.hits().iter().filter(|h| h.path == "/refuse" && h.key.as_deref() == Some(one.as_str())).count() < 2 {
        assert!(Instant::now() < end, "the re-queued delivery was not sent");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The receiver has answered; wait until paywatch has recorded it (a
    // delivery still in flight at shutdown would stay in the outbox and be
    // sent again at the next start).
    loop {
        let (_, now_dead) = api(http, "GET", "/api/v1/webhooks/dead", Some(TOKEN), None);
        if now_dead["items"].as_array().is_some_and(|a| a.len() == want_refused.len()) {
            break;
        }
        assert!(Instant::now() < end, "the re-sent delivery did not return to the dead list");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(svc.terminate().success());

    // The refused deliveries are on the dead-letter list; retry-dead
    // queues them again and the next start sends them (and they are
    // refused again).
    let o = run_ok(Command::new(bin()).args(["webhooks", "list-dead", "--config", cfg.to_str().unwrap()]));
    let dead: Vec<serde_json::Value> =
        String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(dead.iter().map(|d| d["alert_id"].as_str().unwrap().to_owned()).collect::<BTreeSet<_>>(), want_refused);
    assert!(dead.iter().all(|d| d["route"] == "refusing" && d["last_error"] == "HTTP 410"), "{dead:?}");
    let o = run_ok(Command::new(bin()).args(["webhooks", "retry-dead", "--config", cfg.to_str().unwrap()]));
    assert!(String::from_utf8_lossy(&o.stderr).contains(&format!("{} deliveries queued again", want_refused.len())));
    svc.restart();
    let end = Instant::now() + Duration::from_secs(30);
    while rx.hits().iter().filter(|h| h.path == "/refuse").count() < 2 * want_refused.len() + 1 {
        assert!(Instant::now() < end, "the re-queued deliveries were not sent after the restart");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, metrics) = svc.get("/metrics").unwrap();
    assert!(metrics.contains(&format!("paywatch_webhook_deliveries_total{{outcome=\"dead\",route=\"refusing\"}} {}", want_refused.len())), "{metrics}");
    assert!(svc.terminate().success());
}

/// Routes are independent (hardening item 5): a receiver that never
/// answers holds back its own deliveries only. With the old dispatcher,
/// which waited for every request of a round, the healthy route got at
/// most `concurrency` alerts per `timeout` (here a minute).
#[test]
fn a_hung_receiver_holds_back_only_its_own_route() {
    let dir = tempfile::tempdir().unwrap();
    let Fed { want, quiet, broker } = fed(dir.path(), 200, 32);
    let want: BTreeSet<String> = want.into_iter().filter(|a| !quiet.contains(&a.alert_id)).map(|a| a.alert_id).collect();
    assert!(want.len() > 20, "enough alerts to need many rounds: {}", want.len());
    let port = free_port();
    let got = dir.path().join("received.jsonl");
    let rx = Receiver::start(port, &got, &[S1], 0);
    let http = free_port();
    let routes = format!(
        "[webhooks]\ntimeout = \"60s\"\nconcurrency = 2\n\
         [[webhooks.routes]]\nname = \"stuck\"\nurl = \"http://127.0.0.1:{port}/hang\"\nsecrets = [\"{S1}\"]\n\
         [[webhooks.routes]]\nname = \"healthy\"\nurl = \"http://127.0.0.1:{port}/ok\"\nsecrets = [\"{S1}\"]\n"
    );
    let cfg = service_config(dir.path(), &broker, http, &routes);
    let started = Instant::now();
    let mut svc = Service::start(&cfg, http, dir.path());
    svc.wait_idle();
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let ok: BTreeSet<String> = rx.hits().into_iter().filter(|h| h.path == "/ok").filter_map(|h| h.key).collect();
        if ok == want {
            break;
        }
        assert!(Instant::now() < end, "{} of {} alerts reached the healthy route", ok.len(), want.len());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(started.elapsed() < Duration::from_secs(60), "all within the stuck route's first timeout");
    let stuck = rx.hits().into_iter().filter(|h| h.path == "/hang").count();
    assert!((1..=2).contains(&stuck), "the stuck route holds at most its concurrency in flight: {stuck}");
    let (_, metrics) = svc.get("/metrics").unwrap();
    assert!(metrics.contains(&format!("paywatch_webhook_due_deliveries{{route=\"stuck\"}} {}", want.len())), "{metrics}");
    // Shutdown does not wait for the hung requests' timeout.
    let stopping = Instant::now();
    assert!(svc.terminate().success());
    assert!(stopping.elapsed() < Duration::from_secs(30), "{:?}", stopping.elapsed());
}

/// `case.due_soon` and `case.overdue` reach a real receiver through the
/// dispatcher, signed, with their header, once (the wall clock is a test
/// clock: thirty days do not pass in a test).
#[test]
fn deadline_events_reach_the_receiver_once() {
    use paywatch::clock::{Clock, FixedClock};
    use paywatch::config::{CasesConfig, Event, WebhooksConfig};
    use paywatch::model::{Timestamp, Tz};
    use paywatch::sink::{case_events::Deadlines, dispatch::Dispatcher};
    use paywatch::store::{cases, Cf, Store, StoreOptions};
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let got = dir.path().join("received.jsonl");
    let rx = Receiver::start(port, &got, &[S1], 1);
    let store = Store::open(&dir.path().join("state"), StoreOptions { block_cache_mb: 8, write_buffer_mb: 4, sync: false, statistics: false }).unwrap();
    let opened = Timestamp::parse_rfc3339("2026-10-01T09:00:00+08:00").unwrap();
    let case = cases::Case::new(paywatch::model::decision::case_id(Rule::PaidAfterDeath, "341802193806232054"), Rule::PaidAfterDeath, "341802193806232054".into(), opened, opened);
    let mut b = store.batch();
    b.put(Cf::Cases, &cases::key(&case.case_id), &case).unwrap();
    cases::stage_index(&mut b, &case.case_id, None, &cases::Summary::of(&case)).unwrap();
    store.commit(b).unwrap();
    let clock = Arc::new(FixedClock::new(opened.plus_days(26)));
    let route: paywatch::config::RouteConfig = toml::from_str(&format!(
        "name = \"district\"\nurl = \"http://127.0.0.1:{port}/cases\"\nsecrets = [\"{S1}\"]\nevents = [\"case.due_soon\", \"case.overdue\"]\n"
    ))
    .unwrap();
    let webhooks = WebhooksConfig { first_retry: Duration::from_millis(100), max_retry: Duration::from_millis(200), routes: vec![route.clone()], ..WebhooksConfig::default() };
    let metrics = Arc::new(paywatch::metrics::Metrics::new());
    let wake = Arc::new(tokio::sync::Notify::new());
    let mut w = Deadlines { store: store.clone(), routes: vec![route], cfg: CasesConfig::default(), clock: clock.clone(), metrics: metrics.clone(), tz: Tz::default(), wake: wake.clone(), seq: 0 };
    assert_eq!(w.pass().unwrap().queued, 1);
    clock.set(opened.plus_days(31));
    assert_eq!(w.pass().unwrap().queued, 1);
    assert_eq!(w.pass().unwrap().queued, 0, "once per case and deadline");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let d = Dispatcher::new(&webhooks, store.clone(), clock.clone(), metrics, wake.clone(), stop.clone()).unwrap();
    let running = rt.spawn(Arc::new(d).run());
    let end = Instant::now() + Duration::from_secs(20);
    while rx.hits().iter().filter(|h| h.status == 200).count() < 2 {
        assert!(Instant::now() < end, "{:?}", rx.hits());
        std::thread::sleep(Duration::from_millis(50));
        // The retry of the refused one comes due on the test clock.
        clock.set(Timestamp(clock.now().0 + 1000));
        wake.notify_waiters();
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    wake.notify_waiters();
    rt.block_on(running).unwrap().unwrap();
    let hs = rx.hits();
    assert_eq!(hs.iter().filter(|h| h.status == 503).count(), 1, "the first was refused and retried");
    let ok: Vec<&Hit> = hs.iter().filter(|h| h.status == 200).collect();
    assert_eq!(ok.len(), 2, "{hs:?}");
    assert!(ok.iter().all(|h| h.sig_ok && h.case_id.as_deref() == Some(case.case_id.as_str()) && h.event == h.body_event));
    let events: BTreeSet<&str> = ok.iter().filter_map(|h| h.event.as_deref()).collect();
    assert_eq!(events, BTreeSet::from([Event::CaseDueSoon.name(), Event::CaseOverdue.name()]));
    assert_eq!(ok.iter().filter(|h| h.key.as_deref() == Some(&format!("case.overdue-{}-{}", case.case_id, opened.0))).count(), 1);
}
