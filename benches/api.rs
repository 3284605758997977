//! The supervisors' API on a state directory holding 1,000,000 alerts
//! (hardening item 11): filtered pages of `GET /api/v1/alerts` and
//! `/api/v1/cases`, over real HTTP on 127.0.0.1, through the service's own
//! router. Target: a filtered page's p99 under 50 ms.
//!
//! The state is written once (alerts, alert log, their index, and a case
//! per twenty alerts with its index entries, as the engine writes them) to
//! `$CARGO_TARGET_DIR/bench-api-<n>` and reused. `BENCH_API_ALERTS` sets
//! another size. Each query's p50/p99/max over `BENCH_API_REQUESTS` (300)
//! requests is printed, then criterion measures the same requests;
//! `BENCH_API_ONLY` keeps the queries whose name contains it.

use criterion::{criterion_group, criterion_main, Criterion};
use paywatch::clock::SystemClock;
use paywatch::config::TokenConfig;
use paywatch::http::{self, api::Api, Health};
use paywatch::metrics::Metrics;
use paywatch::model::{Alert, Evidence, Money, Rule, Severity, Timestamp, Tz};
use paywatch::store::{alert_index, cases, keys, Cf, Store, StoreOptions};
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-district-token";
const PER_CASE: u64 = 20;
const TOWNSHIPS: [&str; 12] = ["水阳镇", "狸桥镇", "新田镇", "金坝街道", "周王镇", "黄渡乡", "杨柳镇", "寒亭镇", "文昌镇", "孙埠镇", "向阳镇", "洪林镇"];
/// Rules by share of cases: common ones first, CUSTODIAN_DECEASED rare
/// (one case in two hundred).
const RULES: [(Rule, u64); 6] = [
    (Rule::MissedPayment, 60),
    (Rule::NameMismatch, 60),
    (Rule::LargeAmount, 40),
    (Rule::DisbursementDelay, 30),
    (Rule::PaidAfterDeath, 9),
    (Rule::CustodianDeceased, 1),
];

fn alerts_wanted() -> u64 {
    std::env::var("BENCH_API_ALERTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000)
}

fn rule_of(case_no: u64) -> Rule {
    let total: u64 = RULES.iter().map(|(_, w)| w).sum();
    let mut x = (case_no.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 33) % total;
    for (r, w) in RULES {
        if x < w {
            return r;
        }
        x -= w;
    }
    Rule::NameMismatch
}

const DAY_MS: i64 = 86_400_000;
/// 2018-01-01T00:00:00+08:00.
const START_MS: i64 = 1_514_736_000_000;

fn day_of(i: u64, n: u64) -> i64 {
    // Eight years of event days, in the order raised.
    START_MS + (i as i64 * 2922 / n as i64) * DAY_MS + 10 * 3_600_000
}

fn alert(i: u64, n: u64, tz: Tz) -> Alert {
    let case_no = i / PER_CASE;
    let rule = rule_of(case_no);
    let township = TOWNSHIPS[(case_no % TOWNSHIPS.len() as u64) as usize];
    let subject = format!("3418021950{:08}", case_no % 100_000_000);
    let mut figures = std::collections::BTreeMap::new();
    figures.insert("beneficiary_name".to_owned(), "周芳".to_owned());
    figures.insert("account_name".to_owned(), "李四".to_owned());
    figures.insert("amount".to_owned(), "585.00".to_owned());
    figures.insert("threshold".to_owned(), "5000.00".to_owned());
    let at = Timestamp(day_of(i, n));
    Alert {
        alert_id: format!("{:032x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i),
        rule,
        severity: if matches!(rule, Rule::PaidAfterDeath | Rule::CustodianDeceased) { Severity::High } else { Severity::Medium },
        township: township.to_owned(),
        beneficiary_id: Some(subject.clone()),
        household_id: Some(format!("HH{:07}", case_no % 10_000_000)),
        account_no: Some(format!("62150152160{:08}", case_no % 100_000_000)),
        period: None,
        amount: Some(Money::parse("585.00").unwrap_or(Money::ZERO)),
        evidence: Evidence { event_ids: vec![format!("PAY{i:010}")], record_ids: vec![], figures },
        reason: format!("{township}对象周芳的收款户名为李四，与对象姓名不一致（第 {i} 条）"),
        event_time: tz.format(at),
        detected_at: tz.format(at),
        case_id: format!("{case_no:032x}"),
    }
}

/// Writes the state once; later runs reuse it.
fn build(dir: &Path, n: u64) -> Store {
    let opts = StoreOptions { block_cache_mb: 64, write_buffer_mb: 32, sync: false, statistics: false };
    let done = dir.join(format!("BUILT-{n}"));
    if done.exists() {
        return Store::open(dir, opts).expect("open the bench state");
    }
    let _ = std::fs::remove_dir_all(dir);
    let store = Store::open(dir, opts).expect("create the bench state");
    let tz = Tz::default();
    let started = Instant::now();
    let mut i = 0;
    while i < n {
        let mut b = store.batch();
        let end = (i + 20_000).min(n);
        let mut case: Option<cases::Case> = None;
        for j in i..end {
            let a = alert(j, n, tz);
            b.put_raw(Cf::Alerts, a.alert_id.as_bytes(), &serde_json::to_vec(&a).expect("alert JSON"));
            b.put_raw(Cf::AlertLog, &keys::alert_seq(j + 1), a.alert_id.as_bytes());
            alert_index::stage(&mut b, j + 1, &a);
            let at = Timestamp(day_of(j, n));
            let c = case.get_or_insert_with(|| cases::Case::new(a.case_id.clone(), a.rule, a.beneficiary_id.clone().unwrap_or_default(), at, at));
            c.add_alert(&a.alert_id, &a, at, true);
            if (j + 1) % PER_CASE == 0 || j + 1 == end {
                let mut c = case.take().expect("a case");
                let no = j / PER_CASE;
                c.status = match no % 20 {
                    0 => cases::Status::Rectified,
                    1 => cases::Status::FalsePositive,
                    2..=5 => cases::Status::InProgress,
                    _ => cases::Status::Open,
                };
                b.put(Cf::Cases, &cases::key(&c.case_id), &c).expect("case");
                cases::stage_index(&mut b, &c.case_id, None, &cases::Summary::of(&c)).expect("case index");
            }
        }
        store.commit(b).expect("write the bench state");
        i = end;
    }
    std::fs::write(&done, "").expect("marker");
    eprintln!("api bench: wrote {n} alerts and {} cases in {:.1}s", n / PER_CASE, started.elapsed().as_secs_f64());
    store
}

/// The service's router on 127.0.0.1 and a client for it.
struct Server {
    /// Runs the server, and the client's requests.
    rt: tokio::runtime::Runtime,
    /// One client: connections are kept alive, as a browser keeps them.
    client: reqwest::Client,
    /// `http://127.0.0.1:<port>`.
    base: String,
}

impl Server {
    fn start(store: Store) -> Server {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        let api = Api {
            store,
            tokens: Arc::new(vec![TokenConfig { token_sha256: hex::encode(sha2::Sha256::digest(TOKEN)), role: "district".into(), name: None }]),
            clock: Arc::new(SystemClock),
            tz: Tz::default(),
            rules: Arc::new(Default::default()),
            cases: Default::default(),
            decisions: None,
        };
        let app = http::router(Arc::new(Metrics::new()), Arc::new(Health::default()), api);
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        rt.spawn(async move { axum::serve(listener, app).await });
        Server { rt, client: reqwest::Client::new(), base }
    }

    fn get(&self, path: &str) -> serde_json::Value {
        self.rt.block_on(async {
            let r = self.client.get(format!("{}{path}", self.base)).bearer_auth(TOKEN).send().await.expect("request");
            assert!(r.status().is_success(), "{path}: {}", r.status());
            serde_json::from_slice(&r.bytes().await.expect("body")).expect("JSON")
        })
    }
}

fn state_dir(n: u64) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    target.join(format!("bench-api-{n}"))
}

/// The queries: a supervisor's filtered pages.
fn queries(s: &Server) -> Vec<(String, String)> {
    let t = "%E6%B0%B4%E9%98%B3%E9%95%87"; // 水阳镇
    let mut q: Vec<(String, String)> = vec![
        ("alerts: first page".into(), "/api/v1/alerts?limit=50".into()),
        ("alerts: township".into(), format!("/api/v1/alerts?township={t}&limit=50")),
        ("alerts: township + one month".into(), format!("/api/v1/alerts?township={t}&from=2019-03-01&to=2019-03-31&limit=50")),
        ("alerts: township + rare rule".into(), format!("/api/v1/alerts?township={t}&rule=CUSTODIAN_DECEASED&limit=50")),
        ("alerts: rare rule + year".into(), "/api/v1/alerts?rule=CUSTODIAN_DECEASED&from=2020-01-01&to=2020-12-31&limit=50".into()),
        ("alerts: status rectified".into(), "/api/v1/alerts?status=rectified&limit=50".into()),
        ("cases: township".into(), format!("/api/v1/cases?township={t}&limit=50")),
        ("cases: township + overdue + open".into(), format!("/api/v1/cases?township={t}&status=open&overdue=true&limit=50")),
    ];
    // Page 101 of the district's list, through the cursors.
    let mut cursor = String::new();
    for _ in 0..100 {
        let page = s.get(&format!("/api/v1/alerts?limit=50{cursor}"));
        cursor = format!("&cursor={}", page["next_cursor"].as_str().expect("a next page"));
    }
    q.push(("alerts: page 101".into(), format!("/api/v1/alerts?limit=50{cursor}")));
    q
}

fn percentiles(s: &Server, path: &str, n: usize) -> (Duration, Duration, Duration, usize) {
    for _ in 0..10 {
        s.get(path);
    }
    let mut times = Vec::with_capacity(n);
    let mut items = 0;
    for _ in 0..n {
        let t = Instant::now();
        let v = s.get(path);
        times.push(t.elapsed());
        items = v["items"].as_array().map_or(0, Vec::len);
    }
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    (at(0.5), at(0.99), times[times.len() - 1], items)
}

fn api_pages(c: &mut Criterion) {
    let n = alerts_wanted();
    let store = build(&state_dir(n), n);
    let s = Server::start(store);
    let requests = std::env::var("BENCH_API_REQUESTS").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let mut qs = queries(&s);
    // `BENCH_API_ONLY`: only the queries whose name contains it.
    if let Ok(only) = std::env::var("BENCH_API_ONLY") {
        qs.retain(|(name, _)| name.contains(&only));
    }
    eprintln!("api bench: {n} stored alerts, {requests} requests per query (target: p99 < 50 ms)");
    eprintln!("{:<36} {:>9} {:>9} {:>9} {:>6}", "query", "p50 ms", "p99 ms", "max ms", "items");
    for (name, path) in &qs {
        let (p50, p99, max, items) = percentiles(&s, path, requests);
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        eprintln!("{name:<36} {:>9.2} {:>9.2} {:>9.2} {items:>6}{}", ms(p50), ms(p99), ms(max), if p99 > Duration::from_millis(50) { "  OVER TARGET" } else { "" });
    }
    let mut g = c.benchmark_group("api_1m_alerts");
    g.sample_size(20);
    for (name, path) in &qs {
        g.bench_function(name.as_str(), |b| b.iter(|| s.get(path)));
    }
    g.finish();
}

criterion_group!(benches, api_pages);
criterion_main!(benches);
