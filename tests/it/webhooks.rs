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
         [[webhooks.routes]]\nname = \"refusing\"\nurl = \"http://127.0.0.1:{port}/refuse\"\nsecrets = [\"{S1}\", \"{S2}\"]\nrules = [\"NAME_MISMATCH\"]\n"
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
    assert!(hs.iter().all(|h| h.key == h.alert_id), "Idempotency-Key is the alert id");
    let mut delivered: BTreeMap<(String, String), usize> = BTreeMap::new();
    for h in hs.iter().filter(|h| h.status == 200) {
        *delivered.entry((h.path.clone(), h.key.clone().unwrap())).or_default() += 1;
    }
    assert!(delivered.values().all(|n| *n == 1), "no alert delivered twice to a route");
    let ids = |path: &str| -> BTreeSet<String> { delivered.keys().filter(|(p, _)| p == path).map(|(_, k)| k.clone()).collect() };
    assert_eq!(ids("/district"), want.iter().map(|a| a.alert_id.clone()).collect::<BTreeSet<_>>());
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
