//! `paywatch audit`: the same engine over exported files, on an embedded
//! RocksDB. Wiring only: stage the files (decode, dead-letter, sort), open
//! the engine on the state directory, apply the merged records from where the
//! state left off, commit every batch, and write what each commit made
//! durable.
//!
//! The output files are projections of the committed state: each run
//! rewrites them from the store and then appends, so a run killed at any
//! point and started again with the same `--state` ends with the same alert
//! set and no line twice.

mod summary;

pub use summary::{print_summary, Summary};

use crate::clock::Clock;
use crate::config::Config;
use crate::decode::DeadLetter;
use crate::engine::{prepare, Engine, EngineError, Opened, Outcome};
use crate::model::{Alert, Record};
use crate::sink::JsonlSink;
use crate::source::{stage, Inputs, RawLookup, SourceError, Staged};
use crate::store::{keys, Cf, Store, StoreError};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write {path}: {source}")]
    Output { path: String, source: std::io::Error },
    #[error("the state directory was built from other input files ({0}); use a new --state directory")]
    InputsChanged(String),
    #[error("the state directory belongs to `paywatch run` (it holds Kafka offsets); use a new --state directory")]
    StreamState,
    #[error("cannot make a temporary directory: {0}")]
    Temp(std::io::Error),
    #[error("interrupted after committing the batch in hand; run the same command (same --state) to resume")]
    Interrupted,
}

impl AuditError {
    /// 2 for what the caller asked wrongly, 1 for failures of I/O.
    pub fn exit_code(&self) -> i32 {
        match self {
            AuditError::InputsChanged(_) | AuditError::StreamState | AuditError::Source(SourceError::UnknownFormat { .. }) => 2,
            AuditError::Store(StoreError::Refused { .. }) => 2,
            AuditError::Interrupted => 130,
            _ => 1,
        }
    }
}

/// Records handed from the merge thread to the engine at a time.
const MERGE_CHUNK: usize = 1024;

/// What to audit and where to write.
#[derive(Clone, Debug)]
pub struct AuditOptions {
    pub inputs: Inputs,
    /// Alerts file; stdout when `None`.
    pub out: Option<PathBuf>,
    /// Dead letters file.
    pub deadletter: PathBuf,
    /// Cases file (JSON Lines, one per case), written at the end.
    pub cases: Option<PathBuf>,
    /// State directory; a temporary one when `None`.
    pub state: Option<PathBuf>,
    /// Draw a progress bar on stderr (only drawn when it is a terminal).
    pub progress: bool,
    /// Set (by a signal handler) to stop: the batch in hand is committed
    /// and the audit ends with [`AuditError::Interrupted`].
    pub stop: Arc<AtomicBool>,
}

impl AuditOptions {
    /// `deadletter.jsonl` beside `--out` when no dead-letter path is given.
    pub fn default_deadletter(out: Option<&PathBuf>) -> PathBuf {
        match out.and_then(|o| o.parent()) {
            Some(dir) if !dir.as_os_str().is_empty() => dir.join("deadletter.jsonl"),
            _ => PathBuf::from("deadletter.jsonl"),
        }
    }
}

fn out_err(path: &str) -> impl Fn(std::io::Error) -> AuditError + '_ {
    move |source| AuditError::Output { path: path.to_owned(), source }
}

/// Runs an audit to the end of the inputs.
pub fn run(opts: &AuditOptions, cfg: &Config, clock: Arc<dyn Clock>) -> Result<Summary, AuditError> {
    let started = Instant::now();
    let temp_state;
    let state_dir = match &opts.state {
        Some(d) => d.clone(),
        None => {
            temp_state = tempfile::Builder::new().prefix("paywatch-state-").tempdir().map_err(AuditError::Temp)?;
            temp_state.path().to_owned()
        }
    };
    let store = Store::open(&state_dir, cfg.store_options(false))?;
    let mut engine = Engine::open_with_lanes(store, cfg.rules.clone(), cfg.tz(), cfg.engine.cache_entries, Arc::clone(&clock), cfg.engine.lanes())?;
    if cfg.engine.repartition_records {
        engine.route_through_repartition_records();
    }
    engine.restrict_townships(&cfg.district.townships);
    if engine.store().get_raw(Cf::Meta, keys::META_STREAM)?.is_some() {
        return Err(AuditError::StreamState);
    }
    let fingerprint = opts.inputs.fingerprint()?;
    let resumed = engine.progress().position;
    if resumed.is_some() && engine.progress().inputs != fingerprint {
        let was: Vec<String> = engine.progress().inputs.iter().map(|(n, s)| format!("{n} {s} bytes")).collect();
        return Err(AuditError::InputsChanged(format!("it was built from {}", was.join(", "))));
    }
    engine.set_inputs(fingerprint);
    if let Some(p) = resumed {
        tracing::info!(state = %state_dir.display(), line = p.line, "resuming an interrupted audit");
    }

    let mut alerts = JsonlSink::open(opts.out.as_ref()).map_err(out_err(&opts.out.as_ref().map_or("stdout".into(), |p| p.display().to_string())))?;
    let dl_path = opts.deadletter.display().to_string();
    let mut dead = JsonlSink::create(&opts.deadletter).map_err(out_err(&dl_path))?;
    let mut summary = Summary::default();

    // 1. Stage: decode, dead-letter, sort.
    let bar = progress_bar(opts.progress, opts.inputs.total_bytes(), "reading");
    let sort_dir = tempfile::Builder::new().prefix("paywatch-sort-").tempdir().map_err(AuditError::Temp)?;
    // Event times are bounded by the wall clock when the files are read.
    let limits = cfg.limits(clock.now());
    let runs = stage(
        &opts.inputs,
        limits,
        cfg.input.sort_run_records,
        sort_dir.path(),
        &mut |dl: DeadLetter| {
            summary.count_dead(&dl);
            dead.write(&dl)
        },
        &mut |bytes| {
            bar.set_position(bytes);
            !opts.stop.load(Ordering::Relaxed)
        },
    )
    .map_err(|e| match e {
        SourceError::Stopped => AuditError::Interrupted,
        e => AuditError::Source(e),
    })?;
    bar.finish_and_clear();
    tracing::info!(records = runs.total, seconds = started.elapsed().as_secs_f64(), "inputs decoded and sorted");
    let applying = Instant::now();

    // 2. What earlier runs committed, written again.
    for dl in engine.committed_dead_letters() {
        let dl = dl?;
        summary.count_dead(&dl);
        dead.write(&dl).map_err(out_err(&dl_path))?;
    }
    for a in engine.committed_alerts() {
        alerts.write(&a?).map_err(out_err(&alerts.target.clone()))?;
    }

    // 3. Apply from where the state left off.
    let bar = progress_bar(opts.progress, runs.total, "auditing");
    let raw = RawLookup::new(&opts.inputs, limits);
    let mut last = None;
    let mut in_batch = 0usize;
    let mut applied = 0u64;
    let mut payments = 0u64;
    let merge = runs.merge(resumed)?;
    // The merge (reading and decoding the sorted runs, and preparing each
    // record for the engine) runs on its own thread, a chunk ahead of it.
    std::thread::scope(|scope| -> Result<(), AuditError> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<(Staged, Option<Opened>)>, SourceError>>(8);
        // Applied chunks go back to be emptied by the thread that allocated
        // their records, which the allocator frees faster than a free from
        // elsewhere, and to be filled again.
        let (done_tx, done_rx) = std::sync::mpsc::channel::<Vec<(Staged, Option<Opened>)>>();
        scope.spawn(move || {
            let mut chunk = Vec::with_capacity(MERGE_CHUNK);
            for s in merge {
                match s {
                    Ok(s) => {
                        let opened = prepare(&s.record);
                        chunk.push((s, opened));
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
                if chunk.len() == MERGE_CHUNK {
                    // The next chunk reuses an applied one, emptied here.
                    let next = match done_rx.try_recv() {
                        Ok(mut done) => {
                            done.clear();
                            done
                        }
                        Err(_) => Vec::with_capacity(MERGE_CHUNK),
                    };
                    if tx.send(Ok(std::mem::replace(&mut chunk, next))).is_err() {
                        return;
                    }
                    done_rx.try_iter().for_each(drop);
                }
            }
            let _ = tx.send(Ok(chunk));
        });
        for chunk in rx {
            if opts.stop.load(Ordering::Relaxed) {
                break;
            }
            let chunk = chunk?;
            // A chunk at a time: with several lanes, runs of it are applied
            // on every core (`engine::parallel`).
            let records: Vec<(&Record, Option<&Opened>)> = chunk.iter().map(|(s, o)| (&s.record, o.as_ref())).collect();
            let outcomes = engine.apply_many(&records)?;
            drop(records);
            for ((s, _), outcome) in chunk.iter().zip(outcomes) {
                if let Record::Payment(_) = s.record {
                    payments += 1;
                }
                if let Outcome::Rejected(r) = outcome {
                    let raw_text = raw.raw(s.key.source, s.offset, s.len);
                    engine.stage_dead_letter(DeadLetter::new(&raw.name(s.key.source), s.key.line, &r, raw_text));
                }
                last = Some(s.key);
                applied += 1;
                in_batch += 1;
            }
            if engine.batch_full(in_batch, cfg.engine.batch_records, cfg.engine.batch_records_max)? {
                // Written while the next records are applied; `c` is what
                // the previous batch made durable.
                let c = engine.commit_in_background(last)?;
                write_committed(&c.alerts, &c.dead_letters, &mut alerts, &mut dead, &mut summary)?;
                in_batch = 0;
                bar.set_position(applied);
            }
            let _ = done_tx.send(chunk);
        }
        Ok(())
    })?;
    let c = engine.commit(last)?;
    write_committed(&c.alerts, &c.dead_letters, &mut alerts, &mut dead, &mut summary)?;
    bar.finish_and_clear();
    tracing::info!(records = applied, in_runs = engine.records_in_runs(), lanes = cfg.engine.lanes(), seconds = applying.elapsed().as_secs_f64(), "records applied and committed");
    for t in engine.repartition_volume().unwrap_or_default() {
        // A ratio for sizing, not money: one decimal is enough.
        let per_payment = if payments > 0 { t.bytes as f64 / payments as f64 } else { 0.0 };
        let per_payment = format!("{per_payment:.1}");
        tracing::info!(topic = t.topic, facts = t.facts, marks = t.marks, repeats = t.repeats, bytes = t.bytes, bytes_per_payment = %per_payment, "repartition records");
    }
    let m = engine.store().memory();
    tracing::info!(
        memtables_mib = m.memtables >> 20,
        table_readers_mib = m.table_readers >> 20,
        block_cache_mib = m.block_cache >> 20,
        pinned_mib = m.block_cache_pinned >> 20,
        "RocksDB memory at the end"
    );
    alerts.flush().map_err(out_err(&alerts.target.clone()))?;
    dead.flush().map_err(out_err(&dl_path))?;
    if opts.stop.load(Ordering::Relaxed) && applied < runs.total {
        return Err(AuditError::Interrupted);
    }

    for a in engine.committed_alerts() {
        summary.count_alert(&a?);
    }
    if let Some(path) = &opts.cases {
        let shown = path.display().to_string();
        let mut out = JsonlSink::create(path).map_err(out_err(&shown))?;
        for c in crate::store::cases::all(engine.store()) {
            let c = c?;
            summary.count_case(&c);
            out.write(&crate::report::case_json(&c, cfg.tz())).map_err(out_err(&shown))?;
        }
        out.flush().map_err(out_err(&shown))?;
        summary.cases_path = Some(shown);
    }
    summary.records_this_run = applied;
    summary.payments_this_run = payments;
    summary.counts = engine.progress().counts.clone();
    summary.elapsed = started.elapsed();
    summary.resumed = resumed.is_some();
    summary.alerts_path = alerts.target.clone();
    summary.deadletter_path = dl_path;
    summary.state_dir = opts.state.as_ref().map(|p| p.display().to_string());
    Ok(summary)
}

fn write_committed(
    new_alerts: &[Alert],
    new_dead: &[DeadLetter],
    alerts: &mut JsonlSink,
    dead: &mut JsonlSink,
    summary: &mut Summary,
) -> Result<(), AuditError> {
    for a in new_alerts {
        alerts.write(a).map_err(out_err(&alerts.target.clone()))?;
    }
    for d in new_dead {
        summary.count_dead(d);
        dead.write(d).map_err(out_err(&dead.target.clone()))?;
    }
    alerts.flush().map_err(out_err(&alerts.target.clone()))?;
    dead.flush().map_err(out_err(&dead.target.clone()))?;
    Ok(())
}

fn progress_bar(enabled: bool, total: u64, what: &'static str) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{msg:>9} [{bar:40}] {percent:>3}% {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what);
    bar
}
