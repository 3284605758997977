//! The configuration file (`config/paywatch.toml`): every section, its
//! defaults (the contract's), and validation. Unknown keys are errors.

use crate::decode::Limits;
use crate::detect::RulesConfig;
use crate::model::{Timestamp, Tz};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

mod district;
mod accounts;
mod kafka;
mod secrets;
mod webhooks;
pub use district::{CasesConfig, DistrictConfig};
pub use accounts::AccountsConfig;
pub use kafka::{KafkaConfig, TopicsConfig, RESERVED_CLIENT_KEYS};
pub use webhooks::{redact_url, Event, RouteConfig, WebhooksConfig, MAX_ROUTES};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("config {path}: {message}")]
    Parse { path: String, message: String },
    #[error("config {path}: {message}")]
    Invalid { path: String, message: String },
}

/// The whole configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub engine: EngineConfig,
    pub input: InputConfig,
    pub state: StateConfig,
    pub kafka: KafkaConfig,
    pub http: HttpConfig,
    pub api: ApiConfig,
    pub log: LogConfig,
    pub webhooks: WebhooksConfig,
    pub cases: CasesConfig,
    pub district: DistrictConfig,
    pub rules: RulesConfig,
    /// Set when loading: the file itself holds a secret rather than a
    /// `${env:…}`/`${file:…}` reference (the permission warning).
    #[serde(skip)]
    pub inline_secrets: bool,
}

/// How `paywatch run` logs (to stderr; the level comes from `PAYWATCH_LOG`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` for people, `json` (one object per line) for log collectors.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig { format: LogFormat::Text }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

/// How the engine runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// The district's UTC offset: days, months and years of event times are
    /// taken in it (`+08:00`, China Standard Time).
    pub timezone: String,
    /// Records applied per atomic commit, at least. Larger batches write
    /// less; a crash redoes at most one batch. A batch goes on past this
    /// while it has changed more than a quarter as many cached entries as it
    /// holds records (see `Engine::batch_full`): each changed entry is
    /// rewritten whole at every commit, so a district with many households
    /// would otherwise rewrite its whole state every `batch_records`.
    pub batch_records: usize,
    /// Records per atomic commit at most: bounds the memory a batch holds
    /// (its new payments, encoded, twice while the previous batch is
    /// written) however large the district.
    pub batch_records_max: usize,
    /// fsync every commit, so a power cut (not only a crash) loses nothing.
    pub sync_commits: bool,
    /// Entries kept decoded in memory per table; bounds memory whatever the
    /// size of the ledger.
    pub cache_entries: usize,
    /// Lanes of the person side (#16, docs/partitioning.md): persons are
    /// split among them as Kafka's default partitioner splits them among
    /// partitions, each lane with its own caches (a share of
    /// `cache_entries`), deadline buckets and cases. The alerts are the
    /// same for any count; changing it moves the stored deadline buckets
    /// once, when the engine opens. 1 to 64, or 0 for the cores this
    /// machine has beyond the two that decoding and the account stage
    /// keep busy ([`EngineConfig::lanes`]).
    pub lanes: u32,
    /// #16 step 2: the facts between the lanes and the account, custodian
    /// and household stages travel as repartition records (encoded, routed
    /// by key, read back and merged in order), one partition per lane, as
    /// they will between instances; the same alerts. For checking that, and
    /// for sizing the repartition topics: the audit logs what each carried.
    pub repartition_records: bool,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            timezone: "+08:00".into(),
            batch_records: 200_000,
            batch_records_max: 1_000_000,
            sync_commits: true,
            cache_entries: 100_000,
            lanes: 1,
            repartition_records: false,
        }
    }
}

impl EngineConfig {
    /// The lane count to run with: as configured, or for 0 the cores
    /// beyond two (at least one, at most 64). On a 2-core machine more
    /// lanes are slower: both cores are busy already (docs/partitioning.md).
    pub fn lanes(&self) -> u32 {
        match self.lanes {
            0 => {
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                cores.saturating_sub(2).clamp(1, 64) as u32
            }
            n => n,
        }
    }
}

/// Input limits and the file sorter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputConfig {
    /// A record (line) larger than this is dead-lettered as record_too_large.
    pub max_record_bytes: usize,
    /// A string field longer than this (in characters) is dead-lettered.
    pub max_field_chars: usize,
    /// Records sorted in memory at a time before spilling a sorted run to
    /// disk; bounds the sorter's memory.
    pub sort_run_records: usize,
    /// A record whose event time is more than this after the wall clock
    /// when it is read is dead-lettered `future_time` (contract §7 v1.1):
    /// one mistyped year would otherwise move the watermark years ahead
    /// and raise a `MISSED_PAYMENT` for every beneficiary and month between.
    #[serde(with = "humantime_serde")]
    pub max_future: Duration,
}

impl Default for InputConfig {
    fn default() -> InputConfig {
        let l = Limits::default();
        InputConfig {
            max_record_bytes: l.max_record_bytes,
            max_field_chars: l.max_field_chars,
            sort_run_records: 250_000,
            max_future: Duration::from_secs(24 * 3600),
        }
    }
}

/// Where state lives and how much memory RocksDB may use.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// State directory; `paywatch audit` uses a temporary one unless
    /// `--state` is given.
    pub dir: Option<PathBuf>,
    /// RocksDB block cache, shared by all column families.
    pub block_cache_mb: usize,
    /// RocksDB memtable size per column family.
    pub write_buffer_mb: usize,
}

impl Default for StateConfig {
    fn default() -> StateConfig {
        StateConfig { dir: None, block_cache_mb: 64, write_buffer_mb: 32 }
    }
}


/// The service's HTTP port.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address for `/healthz`, `/readyz`, `/metrics`, `/status`, the API
    /// and the review page.
    pub listen: String,
    /// Serve HTTPS instead of plain HTTP: the API carries bearer tokens and
    /// names of beneficiaries, so anything beyond loopback should be TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig { listen: "127.0.0.1:9464".into(), tls: None }
    }
}

/// `[http.tls]`: the certificate and key the HTTP port serves (PEM).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain, leaf first.
    pub cert: std::path::PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: std::path::PathBuf,
}

/// The supervisors' API (`/api/v1/`) and review page.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Who may use it: bearer tokens, stored as hashes.
    pub tokens: Vec<TokenConfig>,
}

/// One API token. Only its SHA-256 is stored: `printf %s "$TOKEN" | sha256sum`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Hex SHA-256 of the token.
    pub token_sha256: String,
    /// `district` (everything), `township:<name>` (that township's alerts
    /// only), `readonly` (read everything, review nothing) or `operator`
    /// (`/status` only, nothing under `/api/v1/`).
    pub role: String,
    /// Who holds it, recorded as the reviewer of the reviews it posts; the
    /// role when not given.
    #[serde(default)]
    pub name: Option<String>,
}

impl TokenConfig {
    /// The reviewer name recorded for this token.
    pub fn holder(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.role.clone())
    }
}


impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: p.clone(), source })?;
        Config::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse { path: p.clone(), message },
            ConfigError::Invalid { message, .. } => ConfigError::Invalid { path: p.clone(), message },
            other => other,
        })
    }

    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let mut cfg: Config =
            toml::from_str(text).map_err(|e| ConfigError::Parse { path: String::new(), message: secrets::parse_error(text, &e) })?;
        cfg.normalize_townships();
        cfg.resolve_secrets().map_err(|message| ConfigError::Invalid { path: String::new(), message })?;
        cfg.validate().map_err(|message| ConfigError::Invalid { path: String::new(), message })?;
        Ok(cfg)
    }

    /// Townships are compared after name normalisation (contract §7 v1.1),
    /// in the district list, the webhook routes and the tokens alike.
    fn normalize_townships(&mut self) {
        use crate::model::name::township;
        for t in &mut self.district.townships {
            *t = township(t).to_string();
        }
        for r in &mut self.webhooks.routes {
            for t in &mut r.townships {
                *t = township(t).to_string();
            }
        }
        for tok in &mut self.api.tokens {
            if let Some(t) = tok.role.strip_prefix("township:") {
                tok.role = format!("township:{}", township(t));
            }
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if Tz::parse(&self.engine.timezone).is_none() {
            return Err(format!("engine.timezone: {:?} is not an offset like +08:00", self.engine.timezone));
        }
        if self.engine.batch_records == 0 {
            return Err("engine.batch_records: must be at least 1".into());
        }
        if self.engine.batch_records_max < self.engine.batch_records {
            return Err(format!(
                "engine.batch_records_max ({}) must be at least engine.batch_records ({})",
                self.engine.batch_records_max, self.engine.batch_records
            ));
        }
        if self.engine.cache_entries < 16 {
            return Err("engine.cache_entries: must be at least 16".into());
        }
        if self.engine.lanes > 64 {
            return Err(format!("engine.lanes: must be 1 to 64 (0: one per core beyond two), is {}", self.engine.lanes));
        }
        if self.input.max_record_bytes < 256 {
            return Err("input.max_record_bytes: must be at least 256".into());
        }
        if self.input.max_field_chars < 18 {
            return Err("input.max_field_chars: must be at least 18".into());
        }
        self.cases.validate()?;
        if self.input.sort_run_records < 1000 {
            return Err("input.sort_run_records: must be at least 1000".into());
        }
        self.kafka.validate()?;
        if self.kafka.accounts.away() && self.engine.repartition_records {
            return Err("kafka.accounts.partitions: the accounts' records leave through the group's topics; [engine] repartition_records (records kept in memory) cannot be set with it".into());
        }
        self.webhooks.validate()?;
        if self.http.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(format!("http.listen: {:?} is not an address like 127.0.0.1:9464", self.http.listen));
        }
        for (i, t) in self.api.tokens.iter().enumerate() {
            let at = format!("api.tokens[{i}]");
            if t.token_sha256.len() != 64 || hex::decode(&t.token_sha256).is_err() {
                return Err(format!("{at}.token_sha256: the hex SHA-256 of the token (64 characters)"));
            }
            if self.api.tokens[..i].iter().any(|o| o.token_sha256.eq_ignore_ascii_case(&t.token_sha256)) {
                return Err(format!("{at}.token_sha256: the same token twice"));
            }
            if crate::http::auth::Role::parse(&t.role).is_none() {
                return Err(format!("{at}.role: {:?} is not district, readonly, operator or township:<name>", t.role));
            }
        }
        self.rules.validate()
    }

    pub fn tz(&self) -> Tz {
        Tz::parse(&self.engine.timezone).unwrap_or_default()
    }

    /// The RocksDB settings of `[state]` and `[engine]`; `statistics` for
    /// the service's metrics.
    pub fn store_options(&self, statistics: bool) -> crate::store::StoreOptions {
        crate::store::StoreOptions {
            block_cache_mb: self.state.block_cache_mb,
            write_buffer_mb: self.state.write_buffer_mb,
            sync: self.engine.sync_commits,
            statistics,
        }
    }

    /// The decoding limits for records read at `now` (wall clock).
    pub fn limits(&self, now: Timestamp) -> Limits {
        let l = Limits { max_record_bytes: self.input.max_record_bytes, max_field_chars: self.input.max_field_chars, ..Limits::default() };
        l.read_at(now, self.max_future_ms())
    }

    /// `input.max_future` in milliseconds.
    pub fn max_future_ms(&self) -> i64 {
        i64::try_from(self.input.max_future.as_millis()).unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_config_is_the_default() {
        let shipped = include_str!("../../config/paywatch.toml");
        assert_eq!(Config::parse(shipped).unwrap(), Config::default());
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = Config::parse("[rules.large_amount]\nregular_multipel = 4\n").unwrap_err().to_string();
        assert!(e.contains("regular_multipel"), "{e}");
        let e = Config::parse("[rulez]\n").unwrap_err().to_string();
        assert!(e.contains("rulez"), "{e}");
    }

    #[test]
    fn invalid_values_are_named() {
        let e = Config::parse("[rules.shared_account]\nmin_households = 1\n").unwrap_err().to_string();
        assert!(e.contains("rules.shared_account.min_households"), "{e}");
        let e = Config::parse("[engine]\ntimezone = \"CST\"\n").unwrap_err().to_string();
        assert!(e.contains("engine.timezone"), "{e}");
        let e = Config::parse("[engine]\nbatch_records = 2000000\n").unwrap_err().to_string();
        assert!(e.contains("engine.batch_records_max (1000000) must be at least engine.batch_records (2000000)"), "{e}");
        let e = Config::parse("[engine]\nlanes = 65\n").unwrap_err().to_string();
        assert!(e.contains("engine.lanes: must be 1 to 64 (0: one per core beyond two), is 65"), "{e}");
        assert_eq!(Config::parse("[engine]\nlanes = 4\n").unwrap().engine.lanes(), 4);
        let auto = Config::parse("[engine]\nlanes = 0\n").unwrap().engine.lanes();
        let cores = std::thread::available_parallelism().unwrap().get() as u32;
        assert_eq!(auto, cores.saturating_sub(2).clamp(1, 64));
    }

    #[test]
    fn kafka_keys_from_the_issue_parse() {
        let c = Config::parse(
            "[kafka]\nbrokers = \"127.0.0.1:9092\"\ngroup_id = \"g\"\nmax_out_of_order = \"90m\"\n\
             [kafka.topics]\npayments = \"p\"\n[kafka.client]\n\"security.protocol\" = \"plaintext\"\n\
             [state]\ndir = \"/var/lib/paywatch\"\n[http]\nlisten = \"127.0.0.1:9999\"\n",
        )
        .unwrap();
        assert_eq!(c.kafka.group_id, "g");
        assert_eq!(c.kafka.max_out_of_order, Duration::from_secs(5400));
        assert_eq!(c.kafka.topics.payments, "p");
        assert_eq!(c.kafka.topics.roster, "dibao.roster.v1");
        assert_eq!(c.kafka.client["security.protocol"], "plaintext");
        assert_eq!(c.http.listen, "127.0.0.1:9999");
    }

    #[test]
    fn reserved_kafka_settings_and_clashing_topics_are_refused() {
        let e = Config::parse("[kafka.client]\n\"enable.auto.commit\" = \"true\"\n").unwrap_err().to_string();
        assert!(e.contains("enable.auto.commit"), "{e}");
        let e = Config::parse("[kafka.producer]\n\"acks\" = \"1\"\n").unwrap_err().to_string();
        assert!(e.contains("kafka.producer") && e.contains("acks"), "{e}");
        let e = Config::parse("[kafka.topics]\nalerts = \"dibao.payments.v1\"\n").unwrap_err().to_string();
        assert!(e.contains("kafka.topics.alerts"), "{e}");
        let e = Config::parse("[http]\nlisten = \"localhost\"\n").unwrap_err().to_string();
        assert!(e.contains("http.listen"), "{e}");
        let e = Config::parse("[kafka.standby]\nenabled = true\n").unwrap_err().to_string();
        assert!(e.contains("kafka.standby.enabled") && e.contains("kafka.changelog.enabled"), "{e}");
        let ok = Config::parse("[kafka.changelog]\nenabled = true\n[kafka.standby]\nenabled = true\nrejoin_after = \"8s\"\n").unwrap();
        assert_eq!(ok.kafka.standby.rejoin_after, std::time::Duration::from_secs(8));
    }

    #[test]
    fn webhook_routes_parse_match_and_are_checked() {
        let c = Config::parse(
            "[webhooks]\nfirst_retry = \"1s\"\n[[webhooks.routes]]\nname = \"shuiyang\"\nurl = \"https://x.example/hook\"\n\
             secrets = [\"0123456789abcdef\"]\ntownships = [\"水阳镇\"]\nrules = [\"NAME_MISMATCH\"]\nmin_severity = \"medium\"\n",
        )
        .unwrap();
        let r = &c.webhooks.routes[0];
        assert_eq!(r.rules, vec![crate::model::Rule::NameMismatch]);
        assert_eq!(c.webhooks.first_retry, Duration::from_secs(1));
        let e = Config::parse("[[webhooks.routes]]\nname = \"a\"\nurl = \"ftp://x\"\nsecrets = [\"0123456789abcdef\"]\n").unwrap_err().to_string();
        assert!(e.contains("url"), "{e}");
        let e = Config::parse("[[webhooks.routes]]\nname = \"a\"\nurl = \"https://x\"\nsecrets = []\n").unwrap_err().to_string();
        assert!(e.contains("secrets"), "{e}");
        // The acceptance checks' own keys.
        let c = Config::parse(
            &"[[webhooks.routes]]\nname = \"district-office\"\nurl = \"http://127.0.0.1:8080/hook\"\nsecrets = [\"s3cret\"]\n\
             townships = []\nrules = []\nmin_severity = \"low\"\n\
             [[api.tokens]]\ntoken_sha256 = \"{}\"\nrole = \"township:水阳镇\"\n"
                .replace("{}", &"ab".repeat(32)),
        )
        .unwrap();
        assert_eq!(c.api.tokens[0].holder(), "township:水阳镇");
        // Townships are normalised wherever the config names one.
        let text = format!(
            "[district]\ntownships = [\"水阳镇 \", \"金坝街道\"]\n\
             [[webhooks.routes]]\nname = \"r\"\nurl = \"https://127.0.0.1/x\"\nsecrets = [\"0123456789abcdef\"]\ntownships = [\"水阳\u{3000}镇\"]\n\
             [[api.tokens]]\ntoken_sha256 = \"{}\"\nrole = \"township: 水阳镇\"\n",
            "ab".repeat(32)
        );
        let n = Config::parse(&text).unwrap();
        assert_eq!(n.district.townships, ["水阳镇", "金坝街道"]);
        assert_eq!(n.webhooks.routes[0].townships, ["水阳镇"]);
        assert_eq!(n.api.tokens[0].role, "township:水阳镇");
        assert_eq!(c.webhooks.routes[0].secrets, vec!["s3cret".to_string()]);
        let e = Config::parse("[[webhooks.routes]]\nname = \"a\"\nurl = \"http://x\"\nsecrets = [\"0123456789abcdef\"]\ncolour = 1\n").unwrap_err().to_string();
        assert!(e.contains("colour"), "{e}");
    }

    /// Hardening item 10: plain http:// to another host is refused unless
    /// the route allows it; URL queries (robot tokens) never reach an error;
    /// Hardening item 10: secrets by reference (`${env:NAME}`,
    /// `${file:PATH}`) for webhook secrets, token hashes and Kafka
    /// passwords; errors name the variable or file, never a value; a config
    /// of references only holds no secret for the permission warning.
    #[test]
    fn secrets_can_come_from_the_environment_or_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("webhook-secret");
        std::fs::write(&file, "from-a-file-0123456789\n").unwrap();
        let hash = "cd".repeat(32);
        std::env::set_var("PAYWATCH_TEST_TOKEN_HASH", &hash);
        std::env::set_var("PAYWATCH_TEST_SASL", "sasl-password-from-env");
        let text = format!(
            "[kafka.client]\n\"sasl.password\" = \"${{env:PAYWATCH_TEST_SASL}}\"\n\
             [[webhooks.routes]]\nname = \"d\"\nurl = \"http://127.0.0.1:9/x\"\nsecrets = [\"${{file:{}}}\"]\n\
             [[api.tokens]]\ntoken_sha256 = \"${{env:PAYWATCH_TEST_TOKEN_HASH}}\"\nrole = \"district\"\n",
            file.display()
        );
        let cfg = Config::parse(&text).unwrap();
        assert_eq!(cfg.webhooks.routes[0].secrets, ["from-a-file-0123456789"]);
        assert_eq!(cfg.api.tokens[0].token_sha256, hash);
        assert_eq!(cfg.kafka.client["sasl.password"], "sasl-password-from-env");
        assert!(!cfg.holds_secrets(), "only references: nothing to warn about");
        let inline = Config::parse("[kafka.client]\n\"sasl.password\" = \"written-here\"\n").unwrap();
        assert!(inline.holds_secrets());
        let missing = Config::parse("[kafka.client]\n\"sasl.password\" = \"${env:PAYWATCH_TEST_NOT_SET}\"\n").unwrap_err().to_string();
        assert!(missing.contains("PAYWATCH_TEST_NOT_SET") && missing.contains("sasl.password"), "{missing}");
        let unreadable = Config::parse("[kafka.client]\n\"sasl.password\" = \"${file:/nonexistent/secret}\"\n").unwrap_err().to_string();
        assert!(unreadable.contains("/nonexistent/secret"), "{unreadable}");
        let unknown = Config::parse("[kafka.client]\n\"sasl.password\" = \"${vault:x}\"\n").unwrap_err().to_string();
        assert!(unknown.contains("neither"), "{unknown}");
    }

    /// The k8s ConfigMap is a valid config once its Secret is there, and
    /// holds no secret itself.
    #[test]
    fn the_k8s_config_map_reads_its_secrets_by_reference() {
        let yaml = include_str!("../../deploy/k8s/configmap.yaml");
        let body = yaml.split_once("paywatch.toml: |\n").unwrap().1;
        let toml: String = body.lines().map(|l| l.strip_prefix("    ").unwrap_or(l)).collect::<Vec<_>>().join("\n");
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("webhook-secret-district");
        std::fs::write(&secret, "a-long-random-secret-0123456789").unwrap();
        let toml = toml.replace("/run/secrets/paywatch/webhook-secret-district", secret.to_str().unwrap());
        std::env::set_var("PAYWATCH_KAFKA_SASL_PASSWORD", "sasl");
        std::env::set_var("PAYWATCH_API_TOKEN_DISTRICT_SHA256", "ef".repeat(32));
        std::env::set_var("PAYWATCH_API_TOKEN_OPERATOR_SHA256", "ab".repeat(32));
        std::env::set_var("PAYWATCH_POD_NAME", "paywatch-1");
        let cfg = Config::parse(&toml).unwrap();
        assert!(!cfg.holds_secrets());
        assert_eq!(cfg.kafka.consumer["group.instance.id"], "paywatch-1", "static membership, per pod");
        let roles: Vec<&str> = cfg.api.tokens.iter().map(|t| t.role.as_str()).collect();
        assert_eq!(roles, ["district", "operator"]);
        // Every variable the config names is set by the StatefulSet.
        let sts = include_str!("../../deploy/k8s/statefulset.yaml");
        for var in ["PAYWATCH_KAFKA_SASL_PASSWORD", "PAYWATCH_API_TOKEN_DISTRICT_SHA256", "PAYWATCH_API_TOKEN_OPERATOR_SHA256", "PAYWATCH_POD_NAME"] {
            assert!(toml.contains(var) && sts.contains(&format!("name: {var}")), "{var}");
        }
        assert_eq!(cfg.webhooks.routes[0].secrets, ["a-long-random-secret-0123456789"]);
        assert!(!yaml.contains("REPLACE") && include_str!("../../deploy/k8s/secret.yaml").contains("kind: Secret"));
    }

    /// a parse error names the line and key, never the value.
    #[test]
    fn secrets_stay_out_of_errors_and_plain_http_needs_a_word() {
        let route = |url: &str, extra: &str| {
            format!("[[webhooks.routes]]\nname = \"r\"\nurl = \"{url}\"\nsecrets = [\"0123456789abcdef\"]\n{extra}")
        };
        let e = Config::parse(&route("http://hooks.example.cn/robot/send?access_token=SECRET-TOKEN", "")).unwrap_err().to_string();
        assert!(e.contains("allow_insecure_http") && e.contains("?<redacted>") && !e.contains("SECRET-TOKEN"), "{e}");
        assert!(Config::parse(&route("http://hooks.example.cn/robot", "allow_insecure_http = true\n")).is_ok());
        for local in ["http://127.0.0.1:8080/hook", "http://localhost/h", "http://[::1]:9/h", "https://hooks.example.cn/h?access_token=x"] {
            assert!(Config::parse(&route(local, "")).is_ok(), "{local}");
        }
        assert!(Config::parse(&route("http://127.0.0.1.evil.example/h", "")).is_err(), "not loopback");
        assert_eq!(
            redact_url("error sending request for url (https://oapi.example.cn/robot/send?access_token=abc123): timed out"),
            "error sending request for url (https://oapi.example.cn/robot/send?<redacted>): timed out"
        );
        let e = Config::parse("[kafka.client]\n\"sasl.password\" = 12345678\n[[webhooks.routes]]\nname = \"r\"\nurl = \"https://x/h\"\nsecrets = \"hunter2-very-secret\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line ") && !e.contains("hunter2") && !e.contains("12345678"), "{e}");
    }

    #[test]
    fn webhook_routes_are_limited_in_number() {
        let route = |i: usize| format!("[[webhooks.routes]]\nname = \"r{i}\"\nurl = \"http://127.0.0.1:1/{i}\"\nsecrets = [\"0123456789abcdef\"]\n");
        let at_most: String = (0..MAX_ROUTES).map(route).collect();
        assert!(Config::parse(&at_most).is_ok());
        let one_more = at_most + &route(MAX_ROUTES);
        let e = Config::parse(&one_more).unwrap_err().to_string();
        assert!(e.contains(&format!("{} routes, at most {MAX_ROUTES}", MAX_ROUTES + 1)), "{e}");
    }

    #[test]
    fn thresholds_can_be_changed() {
        let c = Config::parse("[rules.large_amount]\nregular_multiple = \"2.5\"\nabsolute_cap = \"10000.00\"\n").unwrap();
        assert_eq!(c.rules.large_amount.regular_multiple.to_string(), "2.5");
        assert_eq!(c.rules.large_amount.absolute_cap.to_string(), "10000.00");
        assert!(c.rules.large_amount.enabled, "a section without `enabled` stays enabled");
    }
}
