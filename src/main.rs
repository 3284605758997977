//! The `paywatch` command line. `anyhow` lives here and nowhere else.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use paywatch::audit::{self, AuditOptions};
use paywatch::clock::SystemClock;
use paywatch::config::{Config, LogFormat};
use paywatch::decode::Kind;
use paywatch::produce::{self, ProduceOptions};
use paywatch::generate::{self, GenerateOptions, OutFormat};
use paywatch::model::Period;
use paywatch::source::Inputs;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

mod demo;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "paywatch", version, about = "Audits social-assistance payments against the roster and death records")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Audit exported files (JSON Lines or CSV, by extension) on an embedded RocksDB.
    Audit(AuditArgs),
    /// Write a synthetic district ledger with planted cases and truth.json.
    Generate(GenerateArgs),
    /// Generate ~2,000 households, audit them, and show what was found.
    Demo(DemoArgs),
    /// The streaming service: follow the Kafka topics (replaying from 2018
    /// on a fresh state directory), alert to the alerts topic.
    Run(RunArgs),
    /// Load a JSON Lines / CSV ledger file into an input topic (sorted by
    /// event time, keyed as the contract says).
    Produce(ProduceArgs),
    /// The webhook dead-letter list of a state directory, with the service
    /// stopped (RocksDB admits one process; while it runs, use
    /// `/api/v1/webhooks/dead` and `/api/v1/webhooks/dead/retry`).
    #[command(subcommand)]
    Webhooks(WebhooksCmd),
    /// The stored input positions of a state directory, with the service
    /// stopped; `reset` reads a stopped (recreated, truncated) topic again
    /// from its first offset.
    #[command(subcommand)]
    Offsets(OffsetsCmd),
    /// Rebuild the state directory of `--config` (which must not exist
    /// yet) from the changelog topic that a `paywatch run` with
    /// `[kafka.changelog] enabled` publishes: a lost machine's state,
    /// without replaying the inputs.
    Restore(RestoreArgs),
    /// Benchmark baseline: read and decode the input topics with the
    /// service's consumer settings, nothing else (`make bench-stream`).
    #[command(hide = true)]
    ConsumeOnly(ConsumeOnlyArgs),
}

#[derive(Subcommand)]
enum WebhooksCmd {
    /// Print the deliveries that failed for good, one JSON object per line.
    ListDead {
        #[arg(long)]
        config: PathBuf,
    },
    /// Queue them again (all, or one alert's) with a fresh retry schedule;
    /// the service sends them at its next start.
    RetryDead {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        alert_id: Option<String>,
    },
}

#[derive(Subcommand)]
enum OffsetsCmd {
    /// Print every stored partition position, one JSON object per line.
    Show {
        #[arg(long)]
        config: PathBuf,
    },
    /// Forget one input topic's stored positions and its stop: the next
    /// `paywatch run` reads it from its first offset (records applied
    /// before count as redelivered).
    Reset {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        topic: String,
    },
}

#[derive(Args)]
struct RestoreArgs {
    #[arg(long)]
    config: PathBuf,
}

#[derive(Args)]
struct ConsumeOnlyArgs {
    #[arg(long)]
    config: PathBuf,
    /// Stop after this many messages.
    #[arg(long)]
    expect: u64,
}

#[derive(Args)]
struct RunArgs {
    /// Configuration file (see config/paywatch.toml).
    #[arg(long)]
    config: PathBuf,
}

#[derive(Args)]
struct ProduceArgs {
    /// Target topic.
    #[arg(long)]
    topic: String,
    /// What the file holds; taken from the topic when it is one of the
    /// configured input topics.
    #[arg(long, value_enum)]
    kind: Option<FeedKind>,
    /// Configuration file (brokers, [kafka.client], limits); defaults when omitted.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Lines that do not decode are written here instead of the topic.
    #[arg(long, default_value = "deadletter.jsonl")]
    deadletter: PathBuf,
    /// The ledger file (.jsonl or .csv).
    file: PathBuf,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum FeedKind {
    Payments,
    Roster,
    Deaths,
    Decisions,
    Vulnerable,
}

#[derive(Args)]
struct AuditArgs {
    /// Roster records (roster.jsonl / roster.csv).
    #[arg(long)]
    roster: PathBuf,
    /// Death records.
    #[arg(long)]
    deaths: PathBuf,
    /// Payment events.
    #[arg(long)]
    payments: PathBuf,
    /// Case decisions (contract §8): the rectification ledger, JSON Lines
    /// or CSV.
    #[arg(long)]
    decisions: Option<PathBuf>,
    /// Vulnerable persons of other departments (contract §10: disability
    /// federation, poverty monitoring, medical insurance), JSON Lines or
    /// CSV: `COVERAGE_GAP` refers those not covered.
    #[arg(long)]
    vulnerable: Option<PathBuf>,
    /// Write every case (status, counts, amounts, decisions) here as JSON
    /// Lines at the end.
    #[arg(long)]
    cases: Option<PathBuf>,
    /// Alerts as JSON Lines; stdout when omitted.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Dead letters as JSON Lines; deadletter.jsonl beside --out when omitted.
    #[arg(long)]
    deadletter: Option<PathBuf>,
    /// State directory: an interrupted audit started again with the same
    /// --state resumes where it stopped. A temporary directory when omitted.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Configuration file (see config/paywatch.toml); contract defaults when omitted.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Args)]
struct GenerateArgs {
    /// Folder to write roster, deaths, payments and truth.json into.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 2000)]
    households: usize,
    /// First benefit month.
    #[arg(long, default_value = "2018-01", value_parser = parse_period)]
    from: Period,
    /// Last benefit month.
    #[arg(long, default_value = "2021-12", value_parser = parse_period)]
    to: Period,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, value_enum, default_value_t = OutFormat::Jsonl)]
    format: OutFormat,
}

#[derive(Args)]
struct DemoArgs {
    #[arg(long, default_value_t = 2000)]
    households: usize,
}

fn parse_period(s: &str) -> Result<Period, String> {
    Period::parse(s).ok_or_else(|| format!("{s:?} is not a month YYYY-MM"))
}

fn init_logging(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("PAYWATCH_LOG").unwrap_or_else(|_| "warn,paywatch=info".into());
    let fmt = tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter);
    match format {
        LogFormat::Text => fmt.init(),
        LogFormat::Json => fmt.json().flatten_event(true).init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `run` logs as its config says; it sets up logging once it has read it.
    if !matches!(cli.cmd, Cmd::Run(_)) {
        init_logging(LogFormat::Text);
    }
    match cli.cmd {
        Cmd::Audit(a) => run_audit(a),
        Cmd::Generate(g) => report(run_generate(g)),
        Cmd::Demo(d) => report(demo::run(d.households)),
        Cmd::Run(r) => run_service(r),
        Cmd::Produce(p) => run_produce(p),
        Cmd::ConsumeOnly(c) => report(run_consume_only(c)),
        Cmd::Restore(r) => report(run_restore(r)),
        Cmd::Webhooks(w) => run_webhooks(w),
        Cmd::Offsets(o) => run_offsets(o),
    }
}

/// The config and the state directory of a stopped service, for the
/// commands that work on it offline; the exit code to give otherwise.
fn stopped_state(config: &PathBuf, api_hint: &str) -> Result<(Config, paywatch::store::Store), ExitCode> {
    use paywatch::store::{Store, StoreOptions};
    let cfg = match load_config(Some(config)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("paywatch: {e}");
            return Err(ExitCode::from(2));
        }
    };
    let Some(dir) = cfg.state.dir.clone() else {
        eprintln!("paywatch: no state directory: set [state] dir in the config");
        return Err(ExitCode::from(2));
    };
    if !dir.join("CURRENT").exists() {
        eprintln!("paywatch: {} holds no paywatch state", dir.display());
        return Err(ExitCode::from(2));
    }
    let opts = StoreOptions { block_cache_mb: 8, write_buffer_mb: 4, sync: true, statistics: false };
    match Store::open(&dir, opts) {
        Ok(s) => Ok((cfg, s)),
        Err(e) => {
            eprintln!("paywatch: {e}\n({api_hint})");
            Err(ExitCode::from(2))
        }
    }
}

fn run_offsets(o: OffsetsCmd) -> ExitCode {
    use paywatch::run::offsets;
    let (OffsetsCmd::Show { config } | OffsetsCmd::Reset { config, .. }) = &o;
    let (cfg, store) = match stopped_state(config, "stop `paywatch run` first: it holds the state directory") {
        Ok(x) => x,
        Err(code) => return code,
    };
    let result = match &o {
        OffsetsCmd::Show { .. } => offsets::show(&store, &cfg).map(|lines| {
            for l in lines {
                println!("{}", serde_json::to_string(&l).unwrap_or_default());
            }
        }),
        OffsetsCmd::Reset { topic, .. } => offsets::reset(&store, &cfg, topic).map(|r| {
            eprintln!(
                "{topic}: {} stored partition positions forgotten{}; the next `paywatch run` reads it from its first offset",
                r.partitions,
                if r.was_stopped { ", and the stop lifted" } else { "" }
            );
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("paywatch: {e}");
            ExitCode::from(1)
        }
    }
}

fn run_webhooks(w: WebhooksCmd) -> ExitCode {
    use paywatch::sink::webhook;
    let (WebhooksCmd::ListDead { config } | WebhooksCmd::RetryDead { config, .. }) = &w;
    let hint = "while `paywatch run` holds the state directory, use its API with a district token: \
                GET /api/v1/webhooks/dead, POST /api/v1/webhooks/dead/retry";
    let (cfg, store) = match stopped_state(config, hint) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let tz = cfg.tz();
    let result = match w {
        // A page at a time: a long list is printed in bounded memory.
        WebhooksCmd::ListDead { .. } => (|| {
            let (mut n, mut after) = (0usize, None);
            loop {
                let (page, next) = webhook::dead_page(&store, after.as_deref(), 1000)?;
                for (_, d) in &page {
                    println!("{}", d.json(tz));
                }
                n += page.len();
                match next {
                    Some(k) => after = Some(k),
                    None => break,
                }
            }
            eprintln!("{n} deliveries on the webhook dead-letter list");
            Ok(())
        })(),
        WebhooksCmd::RetryDead { alert_id, .. } => {
            webhook::retry_dead(&store, alert_id.as_deref(), chrono::Utc::now().timestamp_millis()).map(|n| {
                eprintln!("{n} deliveries queued again; `paywatch run` sends them when it starts");
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("paywatch: {e}");
            ExitCode::from(1)
        }
    }
}

fn run_consume_only(c: ConsumeOnlyArgs) -> anyhow::Result<()> {
    let cfg = Config::load(&c.config)?;
    let b = paywatch::run::consume_only(&cfg, c.expect, std::time::Duration::from_secs(30))?;
    let rate = if b.seconds > 0.0 { b.records as f64 / b.seconds } else { 0.0 };
    println!("{{\"records\":{},\"decoded\":{},\"seconds\":{:.3},\"rate\":{:.0}}}", b.records, b.decoded, b.seconds, rate);
    Ok(())
}

fn run_restore(r: RestoreArgs) -> anyhow::Result<()> {
    let cfg = Config::load(&r.config)?;
    let dir = cfg.state.dir.clone().context("no state directory: set [state] dir in the config")?;
    let started = std::time::Instant::now();
    let done = paywatch::changelog::restore::restore(&cfg.kafka, &paywatch::changelog::Place::of(&cfg.kafka), &dir, cfg.store_options(false))?;
    let seconds = started.elapsed().as_secs_f64();
    if let Some(gap) = &done.gap {
        eprintln!("paywatch: {gap}; `paywatch run` replays the inputs from the offsets the restored state holds");
    }
    eprintln!(
        "restored {} from {}: a snapshot of {} entries and {} commits after it, {:.1} MiB, in {seconds:.1} s",
        dir.display(),
        cfg.kafka.changelog_topic(),
        done.snapshot_entries,
        done.commits,
        done.bytes as f64 / (1 << 20) as f64
    );
    println!(
        "{{\"snapshot_entries\":{},\"commits\":{},\"bytes\":{},\"seconds\":{seconds:.3},\"gap\":{}}}",
        done.snapshot_entries,
        done.commits,
        done.bytes,
        done.gap.is_some()
    );
    Ok(())
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()
}

/// Resolves at the first SIGINT or SIGTERM; a second one ends the process
/// at once (the state stays consistent: it is only ever written atomically).
/// The handlers are registered when this is called (inside the runtime),
/// not when the future is first polled, so a signal during start-up is
/// not lost to the default action: the service starts, then stops cleanly.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let handlers = signal(SignalKind::terminate()).and_then(|t| Ok((t, signal(SignalKind::interrupt())?)));
    async move {
        let Ok((mut term, mut int)) = handlers else {
            eprintln!("paywatch: cannot handle signals; stop with SIGKILL");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("shutting down: committing the batch in hand, then draining the outbox");
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            eprintln!("paywatch: second signal, exiting now");
            std::process::exit(130);
        });
    }
}

fn run_service(r: RunArgs) -> ExitCode {
    let cfg = match load_config(Some(&r.config)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("paywatch: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(cfg.log.format);
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("paywatch: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let shutdown = {
        let _in_runtime = rt.enter();
        shutdown_signal()
    };
    match rt.block_on(paywatch::run::run(cfg, Arc::new(SystemClock), shutdown)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("paywatch: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

fn run_produce(p: ProduceArgs) -> ExitCode {
    let cfg = match load_config(p.config.as_ref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("paywatch: {e}");
            return ExitCode::from(2);
        }
    };
    let t = &cfg.kafka.topics;
    let kind = match p.kind {
        Some(FeedKind::Payments) => Kind::Payment,
        Some(FeedKind::Roster) => Kind::Roster,
        Some(FeedKind::Deaths) => Kind::Death,
        Some(FeedKind::Decisions) => Kind::Decision,
        Some(FeedKind::Vulnerable) => Kind::Vulnerable,
        None if p.topic == t.decisions => Kind::Decision,
        None if p.topic == t.vulnerable => Kind::Vulnerable,
        None if p.topic == t.payments => Kind::Payment,
        None if p.topic == t.roster => Kind::Roster,
        None if p.topic == t.deaths => Kind::Death,
        None => {
            eprintln!("paywatch: {:?} is not a configured input topic; say what the file holds with --kind", p.topic);
            return ExitCode::from(2);
        }
    };
    let opts = ProduceOptions { topic: p.topic, kind, file: p.file, deadletter: p.deadletter };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("paywatch: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(produce::produce(&opts, &cfg)) {
        Ok(n) => {
            eprintln!(
                "produced {} records to {} ({} lines that do not decode written to {})",
                n.sent,
                opts.topic,
                n.dead_letters,
                opts.deadletter.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("paywatch: {e}");
            ExitCode::from(match e {
                produce::ProduceError::Source(paywatch::source::SourceError::UnknownFormat { .. }) => 2,
                _ => 1,
            })
        }
    }
}

fn report(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("paywatch: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn load_config(path: Option<&PathBuf>) -> Result<Config, paywatch::config::ConfigError> {
    match path {
        Some(p) => {
            let cfg = Config::load(p)?;
            if let Some(w) = cfg.permission_warning(p) {
                eprintln!("paywatch: warning: {w}");
            }
            Ok(cfg)
        }
        None => Ok(Config::default()),
    }
}

fn run_audit(a: AuditArgs) -> ExitCode {
    let cfg = match load_config(a.config.as_ref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("paywatch: {e}");
            return ExitCode::from(2);
        }
    };
    let deadletter = a.deadletter.clone().unwrap_or_else(|| AuditOptions::default_deadletter(a.out.as_ref()));
    // One stop flag: SIGINT or SIGTERM ends the audit after committing the
    // batch in hand, so an interrupted audit resumes without redoing it. A
    // second signal ends the process at once (the state stays consistent).
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let registered = signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&stop))
            .and_then(|_| signal_hook::flag::register(sig, Arc::clone(&stop)));
        if let Err(e) = registered {
            eprintln!("paywatch: cannot handle signal {sig}: {e}");
        }
    }
    let opts = AuditOptions {
        inputs: Inputs { roster: a.roster, deaths: a.deaths, payments: a.payments, decisions: a.decisions, vulnerable: a.vulnerable },
        cases: a.cases,
        out: a.out,
        deadletter,
        state: a.state.or(cfg.state.dir.clone()),
        progress: std::io::stderr().is_terminal(),
        stop,
    };
    match audit::run(&opts, &cfg, Arc::new(SystemClock)) {
        Ok(summary) => {
            let _ = audit::print_summary(&summary, &mut std::io::stderr());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("paywatch: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

fn run_generate(g: GenerateArgs) -> anyhow::Result<()> {
    // The ledger's last events (late death reports, delayed payments) fall
    // months after --to; a record dated after the wall clock would be
    // dead-lettered `future_time` by the audit, against the truth.
    let now = paywatch::clock::Clock::now(&paywatch::clock::SystemClock);
    let this_month = Period::of(paywatch::model::Tz::default().date(now));
    if g.to.0 + 12 > this_month.0 {
        anyhow::bail!(
            "--to {} is too recent: a generated ledger's last records fall up to a year after its last month, and records dated after today are dead-lettered future_time; use --to {} or earlier",
            g.to,
            paywatch::model::Period(this_month.0 - 12)
        );
    }
    let out = generate::generate(&GenerateOptions {
        out: g.out.clone(),
        households: g.households,
        from: g.from,
        to: g.to,
        seed: g.seed,
        format: g.format,
    })
    .context("generate")?;
    let t = &out.truth;
    eprintln!(
        "wrote {} roster records, {} death records, {} payment events ({} redelivered) and {} broken lines to {}",
        t.roster_records,
        t.death_records,
        t.payment_events,
        t.redelivered,
        t.dead_letters.values().sum::<u64>(),
        g.out.display()
    );
    eprintln!("planted {} alerts and {} control cases: {}", t.expected.len(), t.controls.len(), out.truth_path.display());
    Ok(())
}
