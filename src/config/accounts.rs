//! `[kafka.accounts]`: the account windows (`SHARED_ACCOUNT`,
//! `FREQUENT_PAYMENTS`) and the accounts' cases as tasks of the consumer
//! group (#16 step 2, docs/exchange.md "Account tasks"), instead of a
//! thread of the one engine.

use serde::{Deserialize, Serialize};

/// `[kafka.accounts]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountsConfig {
    /// Partitions of `paywatch.<group>.by-account`, one account task each.
    /// 0 (the default): the accounts stay in this process's engine. More:
    /// the person side sends each account's facts to its partition, and
    /// the group's instances run the account tasks, each on a state
    /// directory of its own under `<state dir>/tasks/`, moved between
    /// instances through the changelog topic (which then needs a
    /// partition per task of the group). Fixed once chosen: a state
    /// opened with another count is refused.
    pub partitions: u32,
    /// Replication of the repartition topics this instance creates when
    /// they do not exist yet (3 on a production cluster; 1 on a single
    /// broker).
    pub replication: i32,
    /// Account tasks an instance restores at once, beside its work.
    pub parallel_restores: usize,
    /// This instance is the group's person side: it reads the inputs and
    /// sends the accounts away (one per group, as without account tasks).
    /// false: it runs account tasks only, taking its share of them off the
    /// others; it reads no input, keeps its tasks beside `[state] dir`, and
    /// its supervisors' API answers 503 (the person side's instance serves
    /// it). Every instance of the group must agree on `partitions` and on
    /// `[engine] lanes` (set it; 0 depends on each machine's cores).
    pub person_side: bool,
}

impl Default for AccountsConfig {
    fn default() -> AccountsConfig {
        AccountsConfig { partitions: 0, replication: 1, parallel_restores: 2, person_side: true }
    }
}

impl AccountsConfig {
    /// Whether the accounts run as tasks of the group.
    pub fn away(&self) -> bool {
        self.partitions > 0
    }

    pub(super) fn validate(&self) -> Result<(), String> {
        if self.partitions > 256 {
            return Err(format!("kafka.accounts.partitions: 0 to 256, is {}", self.partitions));
        }
        if self.replication < 1 {
            return Err("kafka.accounts.replication: must be at least 1".into());
        }
        if !self.person_side && !self.away() {
            return Err("kafka.accounts.person_side = false runs account tasks only: set kafka.accounts.partitions".into());
        }
        if self.parallel_restores == 0 {
            return Err("kafka.accounts.parallel_restores: must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn off_by_default_and_checked() {
        let c = Config::parse("").unwrap();
        assert!(!c.kafka.accounts.away());
        let c = Config::parse("[kafka.accounts]\npartitions = 4\n").unwrap();
        assert!(c.kafka.accounts.away() && c.kafka.accounts.replication == 1);
        for (bad, says) in [
            ("partitions = 300", "kafka.accounts.partitions"),
            ("partitions = 2\nreplication = 0", "kafka.accounts.replication"),
            ("partitions = 2\nparallel_restores = 0", "kafka.accounts.parallel_restores"),
            ("partitions = 2\nlanes = 2", "lanes"),
            ("person_side = false", "kafka.accounts.partitions"),
        ] {
            let e = Config::parse(&format!("[kafka.accounts]\n{bad}\n")).expect_err(bad).to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
        let e = Config::parse("[engine]\nrepartition_records = true\n[kafka.accounts]\npartitions = 2\n").expect_err("refused").to_string();
        assert!(e.contains("repartition_records"), "{e}");
        let e = Config::parse("[kafka.accounts]\npartitions = 2\n[kafka.standby]\nenabled = true\n[kafka.changelog]\nenabled = true\n").expect_err("refused").to_string();
        assert!(e.contains("kafka.standby") && e.contains("kafka.accounts"), "{e}");
    }
}
