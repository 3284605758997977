//! The broker and the webhook receiver away for a while.

use super::common::kafka::{free_port, Service};
use super::common::webhook::Receiver;
use super::{applied, same_ids, wait_applied, wait_delivered, webhook_route, Fixture, SECRET};
use std::time::{Duration, Instant};

/// The broker's port closed and every connection cut for 10 s, mid-replay.
pub fn broker_down(fx: &Fixture) -> Result<String, String> {
    let name = "broker";
    let state = fx.dir.join(name).join("state");
    let http = free_port();
    let cfg = fx.config(name, &state, http, "");
    let mut svc = Service::start(&cfg, http, &fx.dir.join(name));
    let before = wait_applied(&svc, fx.records / 3);
    fx.proxy.down();
    let down_at = Instant::now();
    let red = svc.wait_until(Duration::from_secs(30), "reporting the broker down", |s| s["brokers_down"] == true);
    let readyz = svc.get("/readyz").map(|(c, _)| c);
    let seen_down = down_at.elapsed();
    std::thread::sleep(Duration::from_secs(10).saturating_sub(seen_down));
    let during = svc.status().map(|s| applied(&s)).unwrap_or(0);
    fx.proxy.up();
    let s = svc.wait_idle();
    let after = applied(&s);
    if readyz != Some(503) {
        return Err(format!("/readyz answered {readyz:?} while the broker was down"));
    }
    if during < applied(&red) {
        return Err(format!("state went back during the outage: {during} < {}", applied(&red)));
    }
    let ready = svc.get("/readyz").map(|(c, _)| c);
    if ready != Some(200) {
        return Err(format!("/readyz answered {ready:?} after the broker came back"));
    }
    if !svc.terminate().success() {
        return Err("did not exit cleanly on SIGTERM".into());
    }
    same_ids("published alerts", &fx.published(name), &fx.want)?;
    Ok(format!(
        "down after {before} records; not ready within {seen_down:.1?} (/readyz 503), state kept ({during} records);\n\
         resumed when the port reopened, {after} records applied, {} alerts equal to the clean audit",
        fx.want.len()
    ))
}

/// Nothing listens at the webhook URL for the whole replay; the receiver
/// starts afterwards.
pub fn receiver_down(fx: &Fixture) -> Result<String, String> {
    let name = "receiver";
    let state = fx.dir.join(name).join("state");
    let (http, rx_port) = (free_port(), free_port());
    let cfg = fx.config(
        name,
        &state,
        http,
        &webhook_route(rx_port),
    );
    let mut svc = Service::start(&cfg, http, &fx.dir.join(name));
    svc.wait_idle();
    std::thread::sleep(Duration::from_secs(2));
    let (_, m) = svc.get("/metrics").ok_or("no /metrics")?;
    std::fs::write(fx.dir.join(name).join("metrics.txt"), &m).unwrap();
    let retries = m
        .lines()
        .find(|l| l.starts_with("paywatch_webhook_deliveries_total") && l.contains("outcome=\"retry\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    if retries < 1.0 {
        return Err("no failed attempt was counted while the receiver was down".into());
    }
    let rx = Receiver::start(rx_port, &fx.dir.join(name).join("received.jsonl"), &[SECRET], 0);
    let up = Instant::now();
    let delivered = wait_delivered(fx, &svc, &rx, Duration::from_secs(60));
    let took = up.elapsed();
    if !svc.terminate().success() {
        return Err("did not exit cleanly on SIGTERM".into());
    }
    same_ids("delivered (by Idempotency-Key)", &delivered, &fx.to_deliver)?;
    let left = super::outbox_left(&state);
    if left != 0 {
        return Err(format!("{left} entries left in the outbox"));
    }
    let hits = rx.hits();
    Ok(format!(
        "{retries} failed attempts while down; all {} alerts for supervisors delivered {took:.1?} after the receiver came up \
         ({} requests, {} repeats); outbox empty",
        fx.to_deliver.len(),
        hits.len(),
        hits.len() - delivered.len()
    ))
}
