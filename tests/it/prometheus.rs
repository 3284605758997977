//! The operators' side against the real Prometheus (Debian's package):
//! `promtool` on a scrape and on the alert rules, and a Prometheus on
//! 127.0.0.1 scraping a `paywatch run` that processed a ledger, asked every
//! PromQL expression of the Grafana dashboard.

use super::common::kafka::{fed, free_port, http_get, service_config, Fed, Service};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut c = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; scripts/deps.sh installs it)");
    if let Some(text) = stdin {
        c.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    }
    let o = c.wait_with_output().unwrap();
    (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
}

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every `expr` in the dashboard, with its variables filled in.
fn dashboard_queries() -> Vec<String> {
    let d: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(repo("deploy/grafana/paywatch.json")).unwrap()).unwrap();
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            out.push(t["expr"].as_str().unwrap().replace("$job", "paywatch"));
        }
    }
    out
}

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests() {
    let (ok, out) = promtool(&["check", "rules", repo("deploy/prometheus/alerts.yml").to_str().unwrap()], None);
    assert!(ok, "{out}");
    let (ok, out) = promtool(&["test", "rules", repo("deploy/prometheus/alerts_test.yml").to_str().unwrap()], None);
    assert!(ok, "{out}");
    let (ok, out) = promtool(&["check", "config", repo("deploy/prometheus/prometheus.yml").to_str().unwrap()], None);
    assert!(ok, "{out}");
}

#[test]
fn a_real_prometheus_scrapes_paywatch_and_every_dashboard_query_returns_data() {
    let dir = tempfile::tempdir().unwrap();
    let Fed { broker, .. } = fed(dir.path(), 300, 21);
    let http = free_port();
    // Repartition records on, so the dashboard's panel of their volume
    // has data to query too.
    let cfg = service_config(dir.path(), &broker, http, "[engine]\nrepartition_records = true\n");
    let mut svc = Service::start(&cfg, http, dir.path());
    svc.wait_idle();

    // The exposition passes promtool's lint.
    let (_, scrape) = svc.get("/metrics").unwrap();
    let (ok, out) = promtool(&["check", "metrics"], Some(&scrape));
    assert!(ok, "promtool check metrics: {out}");
    assert!(scrape.contains("paywatch_build_info{git_sha=\"") && !scrape.contains("git_sha=\"unknown\""), "the build names its commit");

    // A real Prometheus on 127.0.0.1 scraping every second.
    let port = free_port();
    let conf = dir.path().join("prometheus.yml");
    std::fs::write(
        &conf,
        format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: paywatch\n    static_configs:\n      - targets: ['127.0.0.1:{http}']\n"),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let _prom = Prometheus(
        Command::new("prometheus")
            .arg(format!("--config.file={}", conf.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("prometheus (Debian's package)"),
    );
    for q in dashboard_queries() {
        let end = Instant::now() + Duration::from_secs(60);
        let mut last = String::new();
        loop {
            if let Some((200, body)) = http_get(port, &format!("/api/v1/query?query={}", encode(&q))) {
                let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                if v["status"] == "success" && v["data"]["result"].as_array().is_some_and(|r| !r.is_empty()) {
                    break;
                }
                assert_ne!(v["errorType"], "bad_data", "{q} does not parse: {body}");
                last = body;
            }
            assert!(Instant::now() < end, "no data for {q}: {last}");
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    assert!(svc.terminate().success());
}
