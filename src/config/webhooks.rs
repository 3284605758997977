//! `[webhooks]`: the supervisors' routes, their signing secrets and the
//! retry schedule.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Supervisors' webhooks: where alerts are POSTed, signed, and how failed
/// deliveries are retried.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Attempts per delivery before it goes to the webhook dead-letter list.
    pub max_attempts: u32,
    /// Wait before the first retry; it doubles each time (with ±20 % jitter)
    /// up to `max_retry`. The defaults spread 10 attempts over ~6 hours.
    #[serde(with = "humantime_serde")]
    pub first_retry: Duration,
    #[serde(with = "humantime_serde")]
    pub max_retry: Duration,
    /// One request, connection included.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Requests in flight per route at most.
    pub concurrency: usize,
    pub routes: Vec<RouteConfig>,
}

/// Most routes a config may declare.
pub const MAX_ROUTES: usize = 200;

impl Default for WebhooksConfig {
    fn default() -> WebhooksConfig {
        WebhooksConfig {
            max_attempts: 10,
            first_retry: Duration::from_secs(45),
            max_retry: Duration::from_secs(3 * 3600),
            timeout: Duration::from_secs(10),
            concurrency: 4,
            routes: Vec::new(),
        }
    }
}

/// One receiver (a township supervisor's system, the district office).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Names the route in metrics and the dead-letter list.
    pub name: String,
    /// `http://` or `https://`; redirects are refused.
    pub url: String,
    /// One secret, or two while rotating: every request is signed with each.
    pub secrets: Vec<String>,
    /// Only alerts of these townships; all when empty.
    #[serde(default)]
    pub townships: Vec<String>,
    /// Only these rules; all when empty.
    #[serde(default)]
    pub rules: Vec<crate::model::Rule>,
    /// Only alerts at least this severe.
    #[serde(default = "lowest")]
    pub min_severity: crate::model::Severity,
}

fn lowest() -> crate::model::Severity {
    crate::model::Severity::Low
}

impl RouteConfig {
    /// Whether an alert goes to this route.
    pub fn matches(&self, a: &crate::model::Alert) -> bool {
        (self.townships.is_empty() || self.townships.contains(&a.township))
            && (self.rules.is_empty() || self.rules.contains(&a.rule))
            && a.severity >= self.min_severity
    }
}

impl WebhooksConfig {
    pub(super) fn validate(&self) -> Result<(), String> {
        if self.max_attempts == 0 {
            return Err("webhooks.max_attempts: must be at least 1".into());
        }
        if self.concurrency == 0 {
            return Err("webhooks.concurrency: must be at least 1".into());
        }
        if self.timeout.is_zero() || self.first_retry.is_zero() || self.max_retry < self.first_retry {
            return Err("webhooks: timeout and first_retry must be more than 0, max_retry at least first_retry".into());
        }
        if self.routes.len() > MAX_ROUTES {
            return Err(format!("webhooks.routes: {} routes, at most {MAX_ROUTES}", self.routes.len()));
        }
        for (i, r) in self.routes.iter().enumerate() {
            let at = format!("webhooks.routes[{i}] ({:?})", r.name);
            if r.name.trim().is_empty() || r.name.len() > 64 {
                return Err(format!("{at}.name: 1 to 64 characters"));
            }
            if self.routes[..i].iter().any(|o| o.name == r.name) {
                return Err(format!("{at}.name: used twice"));
            }
            if !(r.url.starts_with("http://") || r.url.starts_with("https://")) {
                return Err(format!("{at}.url: {:?} is not an http:// or https:// address", r.url));
            }
            if r.secrets.is_empty() || r.secrets.len() > 4 || r.secrets.iter().any(String::is_empty) {
                return Err(format!("{at}.secrets: one to four non-empty secrets (more than one while rotating)"));
            }
            if r.secrets.iter().any(|s| s.len() < 16) {
                tracing::warn!(route = %r.name, "a webhook secret shorter than 16 characters is easy to guess");
            }
        }
        Ok(())
    }
}
