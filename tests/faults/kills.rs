//! kill -9 at random points of a replay, with a webhook receiver that
//! fails its first requests: the alerts, the deliveries and the outbox end
//! as after a clean run.

use super::common::kafka::{free_port, Service};
use super::common::webhook::Receiver;
use super::{applied, outbox_left, same_ids, wait_applied, wait_delivered, webhook_route, Fixture, SECRET};
use rand::{Rng, SeedableRng};
use std::time::Duration;

/// The consumer's session timeout here (`session.timeout.ms`).
const SESSION: Duration = Duration::from_secs(6);

pub fn kill9_during_replay(fx: &Fixture) -> Result<String, String> {
    let name = "kill9";
    let state = fx.dir.join(name).join("state");
    let (http, rx_port) = (free_port(), free_port());
    let cfg = fx.config(
        name,
        &state,
        http,
        &format!("[kafka.consumer]\n\"session.timeout.ms\" = \"6000\"\n{}", webhook_route(rx_port)),
    );
    let rx = Receiver::start(rx_port, &fx.dir.join(name).join("received.jsonl"), &[SECRET], 5);

    // Ten random points: each a random pause (under 100 ms: a replay runs
    // at about 100,000 records/s) after the restarted process committed
    // its first records, so every kill lands mid-replay.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(fx.seed);
    let mut svc = Service::start(&cfg, http, &fx.dir.join(name));
    let mut killed_at = Vec::new();
    let mut last = 0;
    for _ in 0..10 {
        let resumed = wait_applied(&svc, last + 1);
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..100)));
        let s = svc.status().ok_or("no status")?;
        if s["idle"] == true {
            return Err(format!("the replay ended before kill {} (killed after {killed_at:?}); use a larger ledger", killed_at.len() + 1));
        }
        svc.kill9();
        last = applied(&s).max(resumed);
        killed_at.push(last);
        // Past the killed member's session, as a supervisor restarting it
        // would be: tansu gives a member that joins while a dead one still
        // holds its session an empty assignment and does not rebalance
        // when the session ends (seen here once in ten restarts).
        std::thread::sleep(SESSION + Duration::from_millis(500));
        svc.restart();
    }
    svc.wait_idle();
    let delivered = wait_delivered(fx, &svc, &rx, Duration::from_secs(120));
    if let Some((_, m)) = svc.get("/metrics") {
        std::fs::write(fx.dir.join(name).join("metrics.txt"), m).unwrap();
    }
    if !svc.terminate().success() {
        return Err("the last run did not exit cleanly on SIGTERM".into());
    }
    let hits = rx.hits();
    if let Some(h) = hits.iter().find(|h| !h.sig_ok) {
        return Err(format!("a request with a bad signature: {h:?}"));
    }
    same_ids("published alerts", &fx.published(name), &fx.want)?;
    same_ids("delivered (by Idempotency-Key)", &delivered, &fx.to_deliver)?;
    let left = outbox_left(&state);
    if left != 0 {
        return Err(format!("{left} entries left in the outbox"));
    }
    let ok_hits = hits.iter().filter(|h| h.status == 200).count();
    Ok(format!(
        "killed after {killed_at:?} of {} records applied;\n\
         {} alerts published, equal to the clean audit, {} delivered (the rest belong to cases decided \
         false_positive); {} deliveries seen for them ({} repeats after kills, removed by Idempotency-Key); outbox empty",
        fx.records,
        fx.want.len(),
        fx.to_deliver.len(),
        ok_hits,
        ok_hits - delivered.len()
    ))
}
