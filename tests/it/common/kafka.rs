//! A real Kafka-protocol broker (tansu) on 127.0.0.1, the independent
//! client (`tests/kafka/kafka_tool.py`, confluent-kafka), and `paywatch run`
//! as a child process. Everything started here is stopped on drop.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The tansu binary: `PAYWATCH_TANSU`, else where `scripts/deps.sh` puts it.
fn tansu() -> PathBuf {
    let p = std::env::var_os("PAYWATCH_TANSU")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/paywatch-tools/tansu/bin/tansu"));
    assert!(p.exists(), "no Kafka broker at {}: run `make test` (scripts/deps.sh installs tansu)", p.display());
    p
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

pub fn wait_for_port(port: u16, within: Duration) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

pub struct Broker {
    child: Option<Child>,
    pub addr: String,
    log: PathBuf,
}

impl Broker {
    /// Starts a broker with in-memory storage on a free port.
    pub fn start(dir: &Path) -> Broker {
        Broker::start_on(dir, free_port())
    }

    pub fn start_on(dir: &Path, port: u16) -> Broker {
        Broker::start_advertising(dir, port, port)
    }

    /// A broker listening on `port` that tells clients to connect to
    /// `advertised` (a proxy in front of it); `addr` is the proxy's.
    pub fn start_advertising(dir: &Path, port: u16, advertised: u16) -> Broker {
        let log = dir.join(format!("tansu-{port}.log"));
        let url = format!("tcp://127.0.0.1:{port}");
        let public = format!("tcp://127.0.0.1:{advertised}");
        let child = Command::new(tansu())
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &public, "--storage-engine", "memory://tansu/"])
            .stdout(Stdio::from(std::fs::File::create(&log).expect("log")))
            .stderr(Stdio::from(std::fs::File::options().append(true).open(&log).expect("log")))
            .spawn()
            .expect("start tansu");
        let b = Broker { child: Some(child), addr: format!("127.0.0.1:{advertised}"), log };
        assert!(wait_for_port(port, Duration::from_secs(30)), "tansu did not listen; see {}", b.log.display());
        b
    }

    /// The input, alert and dead-letter topics of the contract.
    pub fn create_contract_topics(&self) {
        self.create_topics(&["dibao.payments.v1:3", "dibao.roster.v1:3", "civil.deaths.v1:3", "dibao.decisions.v1:1", "civil.vulnerable.v1:3", "dibao.alerts.v1:1", "dibao.deadletter.v1:1"]);
    }

    /// Topics as `name:partitions`.
    pub fn create_topics(&self, topics: &[&str]) {
        let mut args = vec!["create-topics", self.addr.as_str()];
        args.extend_from_slice(topics);
        tool(&args);
    }

    /// The address of a broker that is not running (yet), for configs.
    pub fn placeholder(port: u16) -> Broker {
        Broker { child: None, addr: format!("127.0.0.1:{port}"), log: PathBuf::new() }
    }

    /// Freezes (`SIGSTOP`) or thaws (`SIGCONT`) the broker: unreachable
    /// for a while without losing its in-memory topics.
    pub fn freeze(&self, frozen: bool) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let sig = if frozen { "-STOP" } else { "-CONT" };
        assert!(Command::new("kill").args([sig, &pid]).status().expect("kill").success());
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The alerts `paywatch audit` finds in a generated ledger's files, and a
/// fresh broker whose input topics the independent client loaded with it.
pub struct Fed {
    pub want: Vec<paywatch::model::Alert>,
    /// The alerts of cases closed as false_positive when they were raised:
    /// recorded and published, never sent to supervisors (§11.4).
    pub quiet: std::collections::BTreeSet<String>,
    pub broker: Broker,
}

pub fn fed(dir: &Path, households: usize, seed: u64) -> Fed {
    let ledger = super::ledger(&dir.join("ledger"), households, paywatch::generate::OutFormat::Jsonl, seed);
    let out = dir.join("audit.jsonl");
    let cases = dir.join("audit-cases.jsonl");
    super::run_ok(super::audit(&ledger, &out, &["--cases", cases.to_str().unwrap()]));
    let want = super::alerts(&out);
    let quiet = super::quiet_alerts(&want, &super::read_jsonl(&cases));
    let broker = Broker::start(dir);
    broker.create_contract_topics();
    tool(&["produce-ledger", &broker.addr, ledger.payments.parent().unwrap().to_str().unwrap()]);
    Fed { want, quiet, broker }
}

/// Runs the independent client; returns its stdout.
pub fn tool(args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kafka/kafka_tool.py");
    let o = Command::new("python3").arg(script).args(args).output().expect("python3");
    assert!(o.status.success(), "kafka_tool {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

/// One message as the tool writes it.
#[derive(Debug, serde::Deserialize)]
pub struct Msg {
    #[serde(default)]
    pub value: String,
    pub key: String,
    pub headers: std::collections::BTreeMap<String, String>,
}

/// Every message on a topic (from the beginning). With `expect`, reads
/// until that many distinct keys arrived (and a little longer).
pub fn consume(broker: &Broker, topic: &str, out: &Path, expect: Option<usize>) -> Vec<Msg> {
    let out_s = out.display().to_string();
    let mut args = vec!["consume", &broker.addr, topic, &out_s, "--idle", "3", "--timeout", "180"];
    let n;
    if let Some(e) = expect {
        n = e.to_string();
        args.extend(["--expect", &n]);
    }
    tool(&args);
    super::read_jsonl(out)
}

/// The operators' token every test config carries: `/status` needs it.
pub const OPERATOR_TOKEN: &str = "paywatch-tests-operator-token";

/// A `paywatch run` config for a test (with an `operator` token for
/// `/status`; tests add their own `[[api.tokens]]` after it).
pub fn service_config(dir: &Path, broker: &Broker, http_port: u16, extra: &str) -> PathBuf {
    use sha2::Digest;
    let state = dir.join("state");
    let text = format!(
        "[kafka]\nbrokers = \"{}\"\ncommit_interval = \"50ms\"\ndrain_timeout = \"10s\"\n{extra}\n\
         [state]\ndir = \"{}\"\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n\
         [[api.tokens]]\nname = \"ops\"\ntoken_sha256 = \"{}\"\nrole = \"operator\"\n",
        broker.addr,
        state.display(),
        hex::encode(sha2::Sha256::digest(OPERATOR_TOKEN))
    );
    let p = dir.join("run.toml");
    std::fs::write(&p, text).expect("config");
    p
}

/// `paywatch run` as a child process.
pub struct Service {
    child: Option<Child>,
    pub http_port: u16,
    config: PathBuf,
    log: PathBuf,
    starts: u32,
}

impl Service {
    pub fn start(config: &Path, http_port: u16, log_dir: &Path) -> Service {
        let mut s = Service { child: None, http_port, config: config.to_owned(), log: log_dir.join("run"), starts: 0 };
        s.restart();
        s
    }

    /// Starts the process again (after a kill) with the same config.
    pub fn restart(&mut self) {
        self.starts += 1;
        let log = self.log.with_extension(format!("{}.log", self.starts));
        let child = Command::new(super::bin())
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .env("PAYWATCH_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).expect("log")))
            .spawn()
            .expect("start paywatch run");
        self.child = Some(child);
        assert!(wait_for_port(self.http_port, Duration::from_secs(30)), "paywatch run did not listen; see {}", log.display());
    }

    /// Everything the process logged, over all its starts.
    pub fn log_text(&self) -> String {
        (1..=self.starts)
            .map(|n| std::fs::read_to_string(self.log.with_extension(format!("{n}.log"))).unwrap_or_default())
            .collect()
    }

    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.http_port, path)
    }

    /// `/status`, with the operators' token.
    pub fn status(&self) -> Option<serde_json::Value> {
        let (code, body) = http_get_with(self.http_port, "/status", Some(OPERATOR_TOKEN))?;
        (code == 200).then(|| serde_json::from_str(&body).ok()).flatten()
    }

    /// Waits until `pred` holds for `/status`; panics with the last status
    /// on timeout.
    pub fn wait_until(&self, within: Duration, what: &str, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let end = Instant::now() + within;
        let mut last = None;
        while Instant::now() < end {
            if let Some(s) = self.status() {
                if pred(&s) {
                    return s;
                }
                last = Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("paywatch run: not {what} within {within:?}; last status {last:?}; logs {}", self.log.display());
    }

    /// Caught up: everything read, applied, committed and published.
    pub fn wait_idle(&self) -> serde_json::Value {
        self.wait_until(Duration::from_secs(180), "idle", |s| s["idle"] == true)
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // The port is free again before the next start.
        let end = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.http_port)).is_ok() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`): a stalled machine, without
    /// losing the process.
    pub fn freeze(&self, frozen: bool) {
        let c = self.child.as_ref().expect("running");
        let sig = if frozen { "-STOP" } else { "-CONT" };
        assert!(Command::new("kill").arg(sig).arg(c.id().to_string()).status().expect("kill").success());
    }

    /// The exit status, once the process ends by itself within `within`
    /// (killed, `None`, when it does not).
    pub fn exit_within(&mut self, within: Duration) -> Option<ExitStatus> {
        let mut c = self.child.take().expect("running");
        super::exit_within(&mut c, within)
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        let ok = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status().expect("kill");
        assert!(ok.success());
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = c.try_wait().expect("wait") {
                return st;
            }
            assert!(Instant::now() < end, "paywatch run did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One API request on 127.0.0.1 (HTTP/1.0, optional bearer token and
/// JSON body): (status, body as JSON or Null).
pub fn api_call(port: u16, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> (u16, serde_json::Value) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n");
    if let Some(t) = token {
        req += &format!("Authorization: Bearer {t}\r\n");
    }
    let body = body.unwrap_or("");
    req += &format!("Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    let code = buf.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let text = buf.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    (code, serde_json::from_str(text).unwrap_or(serde_json::Value::Null))
}

/// A plain HTTP/1.0 GET on 127.0.0.1: (status, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http_get_with(port, path, None)
}

/// The same with an optional bearer token.
pub fn http_get_with(port: u16, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{auth}\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let code = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Some((code, body))
}

/// Loads a generated ledger's files into the contract's topics (`kinds`:
/// comma-separated feeds); returns how many records were produced.
pub fn produce_ledger(b: &Broker, g: &paywatch::generate::Generated, kinds: &str) -> u64 {
    let folder = g.payments.parent().unwrap().display().to_string();
    tool(&["produce-ledger", &b.addr, &folder, "--topics", kinds]).parse().unwrap()
}

/// Every record the engine's committed totals in `/status` count.
pub fn applied_total(s: &serde_json::Value) -> u64 {
    ["roster", "deaths", "payments", "reversals", "decisions", "redelivered", "rejected"].iter().map(|k| s["counts"][k].as_u64().unwrap()).sum()
}
