//! The baseline of `make bench-stream`: the same consumer, with the same
//! librdkafka settings and per-partition queues, that only decodes each
//! message and counts. What the service adds on top of this is the cost of
//! auditing.

use crate::config::Config;
use crate::decode::decode_json_str;
use crate::source::kafka::{KafkaSource, Rebalanced};
use crate::source::offsets::OffsetBook;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the baseline measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Baseline {
    pub records: u64,
    pub decoded: u64,
    /// From the first message to the last.
    pub seconds: f64,
}

/// Reads until `expect` messages arrived (or `give_up` passed without one).
pub fn consume_only(cfg: &Config, expect: u64, give_up: Duration) -> Result<Baseline, super::RunError> {
    let book = Arc::new(Mutex::new(OffsetBook::default()));
    let mut source = KafkaSource::open(&cfg.kafka, book)?;
    let limits = cfg.limits(crate::clock::Clock::now(&crate::clock::SystemClock));
    let (mut records, mut decoded) = (0u64, 0u64);
    let mut first: Option<Instant> = None;
    let mut last_seen = Instant::now();
    let mut parts = Vec::new();
    while records < expect && last_seen.elapsed() < give_up {
        let mut batch = Vec::new();
        while let Some(m) = source.poll(Duration::from_millis(if batch.is_empty() && parts.is_empty() { 10 } else { 0 })) {
            batch.push(m);
        }
        for ev in source.rebalanced() {
            if let Rebalanced::Assigned(p) = ev {
                source.split(&p);
                parts.extend(p);
            }
        }
        for p in &parts {
            while let Some(m) = source.poll_part(*p) {
                batch.push(m);
                if batch.len() >= 4096 {
                    break;
                }
            }
        }
        if batch.is_empty() {
            continue;
        }
        first.get_or_insert_with(Instant::now);
        last_seen = Instant::now();
        for m in batch {
            records += 1;
            let ok = m
                .value
                .as_deref()
                .and_then(|v| std::str::from_utf8(v).ok())
                .is_some_and(|t| decode_json_str(m.part.kind(), t, limits).is_ok());
            decoded += u64::from(ok);
        }
    }
    let seconds = first.map_or(0.0, |f| last_seen.duration_since(f).as_secs_f64());
    Ok(Baseline { records, decoded, seconds })
}
