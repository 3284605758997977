//! The webhook receiver (`tests/webhook/receiver.py`) as a child process on
//! 127.0.0.1: it checks the signatures itself and logs every request.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One request as the receiver logged it.
#[derive(Debug, serde::Deserialize)]
pub struct Hit {
    pub path: String,
    pub status: u16,
    pub key: Option<String>,
    pub alert_id: Option<String>,
    pub content_type: Option<String>,
    pub sig_ok: bool,
    /// `X-Paywatch-Event`.
    pub event: Option<String>,
    /// The case of a case event's body (or of an alert).
    pub case_id: Option<String>,
    /// The body's own `event` field (case events).
    pub body_event: Option<String>,
}

/// A running receiver; stopped on drop.
pub struct Receiver {
    child: Child,
    /// Where it logs the requests (JSON Lines).
    pub out: PathBuf,
}

impl Receiver {
    /// Listens on `port`, checks signatures against `secrets`, answers the
    /// first `fail_first` requests with 503.
    pub fn start(port: u16, out: &Path, secrets: &[&str], fail_first: usize) -> Receiver {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/webhook/receiver.py");
        let child = Command::new("python3")
            .arg(script)
            .args([&port.to_string(), out.to_str().unwrap(), &secrets.join(","), &fail_first.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .expect("start the webhook receiver");
        let end = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < end, "the receiver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Receiver { child, out: out.to_owned() }
    }

    pub fn hits(&self) -> Vec<Hit> {
        hits(&self.out)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn hits(out: &Path) -> Vec<Hit> {
    super::read_jsonl(out)
}
