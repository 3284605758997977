//! The configuration file (`config/paywatch.toml`): every section, its
//! defaults (the contract's), and validation. Unknown keys are errors.

use crate::decode::Limits;
use crate::detect::RulesConfig;
use crate::model::Tz;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

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
    pub rules: RulesConfig,
}

/// How the engine runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// The district's UTC offset: days, months and years of event times are
    /// taken in it (`+08:00`, China Standard Time).
    pub timezone: String,
    /// Records applied per atomic commit. Larger batches write less; a crash
    /// redoes at most one batch.
    pub batch_records: usize,
    /// fsync every commit, so a power cut (not only a crash) loses nothing.
    pub sync_commits: bool,
    /// Entries kept decoded in memory per table; bounds memory whatever the
    /// size of the ledger.
    pub cache_entries: usize,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig { timezone: "+08:00".into(), batch_records: 200_000, sync_commits: true, cache_entries: 100_000 }
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
}

impl Default for InputConfig {
    fn default() -> InputConfig {
        let l = Limits::default();
        InputConfig { max_record_bytes: l.max_record_bytes, max_field_chars: l.max_field_chars, sort_run_records: 250_000 }
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
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: String::new(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        cfg.validate().map_err(|message| ConfigError::Invalid { path: String::new(), message })?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), String> {
        if Tz::parse(&self.engine.timezone).is_none() {
            return Err(format!("engine.timezone: {:?} is not an offset like +08:00", self.engine.timezone));
        }
        if self.engine.batch_records == 0 {
            return Err("engine.batch_records: must be at least 1".into());
        }
        if self.engine.cache_entries < 16 {
            return Err("engine.cache_entries: must be at least 16".into());
        }
        if self.input.max_record_bytes < 256 {
            return Err("input.max_record_bytes: must be at least 256".into());
        }
        if self.input.max_field_chars < 18 {
            return Err("input.max_field_chars: must be at least 18".into());
        }
        if self.input.sort_run_records < 1000 {
            return Err("input.sort_run_records: must be at least 1000".into());
        }
        self.rules.validate()
    }

    pub fn tz(&self) -> Tz {
        Tz::parse(&self.engine.timezone).unwrap_or_default()
    }

    pub fn limits(&self) -> Limits {
        Limits { max_record_bytes: self.input.max_record_bytes, max_field_chars: self.input.max_field_chars }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_config_is_the_default() {
        let shipped = include_str!("../config/paywatch.toml");
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
    }

    #[test]
    fn thresholds_can_be_changed() {
        let c = Config::parse("[rules.large_amount]\nregular_multiple = \"2.5\"\nabsolute_cap = \"10000.00\"\n").unwrap();
        assert_eq!(c.rules.large_amount.regular_multiple.to_string(), "2.5");
        assert_eq!(c.rules.large_amount.absolute_cap.to_string(), "10000.00");
        assert!(c.rules.large_amount.enabled, "a section without `enabled` stays enabled");
    }
}
