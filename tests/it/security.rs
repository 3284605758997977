//! HTTPS on the service's port (`[http.tls]`, rustls), checked with curl
//! against a certificate made here; and Kafka SASL/SSL settings reaching
//! librdkafka as given, secrets kept out of the logs.

use super::common::kafka::{free_port, http_get, service_config, Broker, Service};
use sha2::Digest;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const TOKEN: &str = "district-token-over-tls";

/// A self-signed certificate for 127.0.0.1 (openssl).
fn certificate(dir: &Path) -> (String, String) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let o = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=paywatch-test"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (cert.display().to_string(), key.display().to_string())
}

fn curl(args: &[&str]) -> (bool, String) {
    let o = Command::new("curl").args(["-sS", "--max-time", "10"]).args(args).output().expect("curl");
    (o.status.success(), String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr))
}

#[test]
fn the_http_port_serves_tls_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let http = free_port();
    let broker = Broker::placeholder(free_port());
    let cfg = service_config(dir.path(), &broker, http, "");
    let text = std::fs::read_to_string(&cfg).unwrap()
        + &format!(
            "[http.tls]\ncert = \"{cert}\"\nkey = \"{key}\"\n[[api.tokens]]\ntoken_sha256 = \"{}\"\nrole = \"district\"\n",
            hex::encode(sha2::Sha256::digest(TOKEN))
        );
    std::fs::write(&cfg, text).unwrap();
    let mut svc = Service::start(&cfg, http, dir.path());
    let base = format!("https://127.0.0.1:{http}");
    let (ok, body) = curl(&["--cacert", &cert, &format!("{base}/healthz")]);
    assert!(ok && body == "ok\n", "{body}");
    let (ok, body) = curl(&["--cacert", &cert, "-H", &format!("Authorization: Bearer {TOKEN}"), &format!("{base}/api/v1/alerts")]);
    assert!(ok && body.contains("\"items\""), "{body}");
    let (ok, body) = curl(&["--cacert", &cert, "-o", "/dev/null", "-w", "%{http_code}", &format!("{base}/api/v1/alerts")]);
    assert!(ok && body == "401", "no token over TLS is still 401: {body}");
    // An unknown certificate is refused by the client, and plain HTTP on
    // the TLS port gets no answer.
    let (ok, _) = curl(&[&format!("{base}/healthz")]);
    assert!(!ok, "curl trusted a self-signed certificate it was not given");
    assert!(http_get(http, "/healthz").is_none_or(|(code, _)| code != 200), "plain HTTP answered on the TLS port");
    assert!(svc.terminate().success());

    // A key that is not there: refused at start, naming the file.
    let bad = std::fs::read_to_string(&cfg).unwrap().replace(&key, "/nonexistent/key.pem");
    std::fs::write(&cfg, bad).unwrap();
    let o = Command::new(super::common::bin()).args(["run", "--config", cfg.to_str().unwrap()]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("http.tls") && err.contains("/nonexistent/key.pem"), "{err}");
}

#[test]
fn kafka_sasl_and_ssl_settings_reach_librdkafka_and_secrets_stay_out_of_logs() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _) = certificate(dir.path());
    let http = free_port();
    // Nothing speaks TLS there: the client is built with the settings,
    // tries, and reports the broker unreachable.
    let broker = Broker::placeholder(free_port());
    let password = "sasl-password-kept-secret";
    let cfg = service_config(
        dir.path(),
        &broker,
        http,
        &format!(
            "[kafka.client]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.mechanisms\" = \"SCRAM-SHA-512\"\n\
             \"sasl.username\" = \"paywatch\"\n\"sasl.password\" = \"{password}\"\n\"ssl.ca.location\" = \"{cert}\"\n"
        ),
    );
    let mut svc = Service::start(&cfg, http, dir.path());
    let end = Instant::now() + Duration::from_secs(20);
    while !svc.log_text().contains("sasl_ssl://127.0.0.1") {
        assert!(Instant::now() < end, "librdkafka never tried SASL_SSL: {}", svc.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(svc.get("/readyz").map(|r| r.0), Some(503));
    assert!(svc.terminate().success());
    let log = svc.log_text();
    assert!(!log.contains(password), "the SASL password is in the log");
    assert!(!log.contains("No such configuration property"), "{log}");

    // A mechanism this build cannot do is refused at start, by name.
    let text = std::fs::read_to_string(&cfg).unwrap().replace("SCRAM-SHA-512", "GSSAPI");
    std::fs::write(&cfg, text).unwrap();
    let o = Command::new(super::common::bin()).args(["run", "--config", cfg.to_str().unwrap()]).output().unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("GSSAPI"), "{err}");
    assert!(!err.contains(password), "the SASL password is in the error");
}
