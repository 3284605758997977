//! `paywatch produce`: loads an exported ledger file into an input topic,
//! so an operator can backfill from exports. The file is decoded and sorted
//! by event time first (exports are grouped by township or account; the
//! service expects each topic roughly in event-time order), each record is
//! keyed as the contract says, and lines that do not decode go to a
//! dead-letter file instead of the topic. The producer is idempotent with
//! acks from all replicas; the command fails unless every message was
//! acknowledged.

use crate::config::Config;
use crate::decode::{DeadLetter, Kind};
use crate::generate::{death_json, payment_json, roster_json};
use crate::model::{Record, Tz};
use crate::sink::kafka::producer;
use crate::sink::JsonlSink;
use crate::source::{stage, Format, Inputs, RawLookup, SourceError};
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureRecord;
use std::collections::VecDeque;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("cannot create the Kafka producer: {0}")]
    Create(KafkaError),
    #[error("cannot write {path}: {source}")]
    Output { path: String, source: std::io::Error },
    #[error("cannot make a temporary directory: {0}")]
    Temp(std::io::Error),
    #[error("{failed} of {sent} messages were not acknowledged by the broker (first error: {first}); produce again, the service ignores redelivered records")]
    Undelivered { failed: u64, sent: u64, first: String },
}

/// What to load where.
#[derive(Clone, Debug)]
pub struct ProduceOptions {
    pub topic: String,
    pub kind: Kind,
    pub file: PathBuf,
    /// Lines that do not decode.
    pub deadletter: PathBuf,
}

/// Counts for the operator.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Produced {
    pub sent: u64,
    pub dead_letters: u64,
}

/// Messages in flight at most before waiting for acknowledgements.
const IN_FLIGHT: usize = 20_000;

pub async fn produce(opts: &ProduceOptions, cfg: &Config) -> Result<Produced, ProduceError> {
    // The file sorter takes three inputs: the other two are empty files.
    let tmp = tempfile::Builder::new().prefix("paywatch-produce-").tempdir().map_err(ProduceError::Temp)?;
    let ext = match Format::of(&opts.file)? {
        Format::Jsonl => "jsonl",
        Format::Csv => "csv",
    };
    let empty = |name: &str| -> Result<PathBuf, ProduceError> {
        let p = tmp.path().join(format!("{name}.{ext}"));
        let header = if ext == "csv" { "x\n" } else { "" };
        std::fs::write(&p, header).map_err(|source| ProduceError::Output { path: p.display().to_string(), source })?;
        Ok(p)
    };
    let inputs = Inputs {
        roster: if opts.kind == Kind::Roster { opts.file.clone() } else { empty("roster")? },
        deaths: if opts.kind == Kind::Death { opts.file.clone() } else { empty("deaths")? },
        payments: if opts.kind == Kind::Payment { opts.file.clone() } else { empty("payments")? },
        decisions: (opts.kind == Kind::Decision).then(|| opts.file.clone()),
        vulnerable: (opts.kind == Kind::Vulnerable).then(|| opts.file.clone()),
    };
    let dl_path = opts.deadletter.display().to_string();
    let mut dead = JsonlSink::create(&opts.deadletter).map_err(|source| ProduceError::Output { path: dl_path.clone(), source })?;
    let mut out = Produced::default();
    // Checked against the wall clock as `paywatch run` would: a record it
    // would dead-letter `future_time` is dead-lettered here.
    let limits = cfg.limits(crate::clock::Clock::now(&crate::clock::SystemClock));
    let sort_dir = tmp.path().join("sort");
    std::fs::create_dir_all(&sort_dir).map_err(ProduceError::Temp)?;
    let runs = stage(
        &inputs,
        limits,
        cfg.input.sort_run_records,
        &sort_dir,
        &mut |dl: DeadLetter| {
            out.dead_letters += 1;
            dead.write(&dl)
        },
        &mut |_| true,
    )?;
    dead.flush().map_err(|source| ProduceError::Output { path: dl_path.clone(), source })?;

    let producer = producer(&cfg.kafka).map_err(ProduceError::Create)?;
    let raw = RawLookup::new(&inputs, limits);
    let tz = Tz::parse(&cfg.engine.timezone).unwrap_or_default();
    let mut inflight = VecDeque::with_capacity(IN_FLIGHT);
    let mut failed = 0u64;
    let mut first_error = String::new();
    let mut settle = |r: Result<rdkafka::producer::future_producer::OwnedDeliveryResult, _>| {
        let e = match r {
            Ok(Ok(_)) => return,
            Ok(Err((e, _))) => e.to_string(),
            Err(_) => "the producer was dropped".to_owned(),
        };
        failed += 1;
        if first_error.is_empty() {
            first_error = e;
        }
    };
    for s in runs.merge(None)? {
        let s = s?;
        let value = match ext {
            "jsonl" => raw.raw(s.key.source, s.offset, s.len).into_bytes(),
            _ => contract_json(&s.record, tz),
        };
        let key = match &s.record {
            Record::Payment(p) => p.beneficiary_id.as_str().to_owned(),
            Record::Roster(r) => r.beneficiary_id.as_str().to_owned(),
            Record::Death(d) => d.person_id.as_str().to_owned(),
            Record::Decision(d) => d.case_id.clone(),
            Record::Vulnerable(v) => v.person_id.as_str().to_owned(),
        };
        loop {
            let rec = FutureRecord::to(&opts.topic).key(key.as_bytes()).payload(&value);
            match producer.send_result(rec) {
                Ok(f) => {
                    inflight.push_back(f);
                    break;
                }
                // The local queue is full: wait for the oldest, then retry.
                Err((_, _)) => match inflight.pop_front() {
                    Some(f) => settle(f.await),
                    None => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
                },
            }
        }
        out.sent += 1;
        if inflight.len() >= IN_FLIGHT {
            if let Some(f) = inflight.pop_front() {
                settle(f.await);
            }
        }
    }
    for f in inflight {
        settle(f.await);
    }
    if failed > 0 {
        return Err(ProduceError::Undelivered { failed, sent: out.sent, first: first_error });
    }
    Ok(out)
}

/// A record as the contract's JSON object (for CSV input).
pub fn contract_json(r: &Record, tz: Tz) -> Vec<u8> {
    let m = match r {
        Record::Payment(p) => payment_json(p, tz, false),
        Record::Roster(r) => roster_json(r, tz),
        Record::Death(d) => death_json(d, tz),
        Record::Decision(d) => crate::generate::decision_json(d, tz),
        Record::Vulnerable(v) => crate::generate::vulnerable_json(v, tz),
    };
    serde_json::to_vec(&m).unwrap_or_default()
}
