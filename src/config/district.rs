//! `[district]` and `[cases]`: the district's townships, and the deadlines
//! of the rectification loop.

use serde::{Deserialize, Serialize};

/// `[district]`: what paywatch knows of the district itself.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DistrictConfig {
    /// The district's townships (乡镇/街道). When given, a payment or roster
    /// record of any other township is dead-lettered `unknown_township`,
    /// and the township label of the metrics takes only these (and
    /// `other`). Empty: every township is accepted, and the metrics label
    /// the first 64 seen, then `other`. Compared after name normalisation.
    pub townships: Vec<String>,
}

/// `[cases]`: the deadlines of the rectification loop (wall clock, from a
/// case's opening or reopening, never from event time).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CasesConfig {
    /// A case not closed (`rectified` or `false_positive`) this many days
    /// after it was opened is overdue (超期).
    pub deadline_days: u32,
    /// From this many days it is due soon (临期).
    pub warn_days: u32,
    /// How often `paywatch run` checks the cases against their deadlines
    /// (and counts them for the metrics).
    #[serde(with = "humantime_serde")]
    pub check_every: std::time::Duration,
}

impl Default for CasesConfig {
    fn default() -> CasesConfig {
        CasesConfig { deadline_days: 30, warn_days: 25, check_every: std::time::Duration::from_secs(15) }
    }
}

impl CasesConfig {
    pub(super) fn validate(&self) -> Result<(), String> {
        if self.deadline_days == 0 || self.deadline_days > 3650 {
            return Err("cases.deadline_days: must be 1-3650".into());
        }
        if self.warn_days >= self.deadline_days {
            return Err("cases.warn_days: must be less than cases.deadline_days".into());
        }
        if self.check_every < std::time::Duration::from_secs(1) || self.check_every > std::time::Duration::from_secs(3600) {
            return Err("cases.check_every: 1s to 1h".into());
        }
        Ok(())
    }
}

