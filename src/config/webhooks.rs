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
    /// Allows an `http://` URL to another host. The body carries identity
    /// and account numbers, so plain HTTP leaves the machine only when a
    /// route says so (a receiver behind a TLS-terminating proxy on a
    /// private network); a loopback receiver (127.0.0.0/8, `[::1]`,
    /// `localhost`) needs no flag.
    #[serde(default)]
    pub allow_insecure_http: bool,
    /// What this route receives: alerts, and the cases' deadline events
    /// (`case.due_soon`, `case.overdue`, `case.relapsed`). Only alerts
    /// unless a route lists more, so receivers written for alerts never
    /// see a body of another shape.
    #[serde(default = "alerts_only")]
    pub events: Vec<Event>,
}

/// What a webhook delivery is (its `X-Paywatch-Event` header).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Event {
    /// An alert, the contract's §4 JSON.
    #[serde(rename = "alert")]
    Alert,
    /// A case not closed reached `[cases] warn_days` (临期).
    #[serde(rename = "case.due_soon")]
    CaseDueSoon,
    /// A case not closed reached `[cases] deadline_days` (超期).
    #[serde(rename = "case.overdue")]
    CaseOverdue,
    /// A case closed as `rectified` was reopened by a new alert (反弹).
    #[serde(rename = "case.relapsed")]
    CaseRelapsed,
}

impl Event {
    pub const ALL: [Event; 4] = [Event::Alert, Event::CaseDueSoon, Event::CaseOverdue, Event::CaseRelapsed];

    /// The name in config, in the header and in the event body.
    pub fn name(self) -> &'static str {
        match self {
            Event::Alert => "alert",
            Event::CaseDueSoon => "case.due_soon",
            Event::CaseOverdue => "case.overdue",
            Event::CaseRelapsed => "case.relapsed",
        }
    }
}

fn alerts_only() -> Vec<Event> {
    vec![Event::Alert]
}

fn lowest() -> crate::model::Severity {
    crate::model::Severity::Low
}

/// Every URL in `text` with its query string (`?access_token=…`, as the
/// DingTalk and WeCom robots take it) replaced by `?<redacted>`: for logs,
/// error messages and the webhook dead list.
pub fn redact_url(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("http") {
        let (head, tail) = rest.split_at(at);
        out.push_str(head);
        let end = tail.find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ')' | '>' | ',')).unwrap_or(tail.len());
        let url = &tail[..end];
        match url.split_once('?') {
            Some((base, _)) if url.starts_with("http://") || url.starts_with("https://") => {
                out.push_str(base);
                out.push_str("?<redacted>");
            }
            _ => out.push_str(url),
        }
        rest = &tail[end..];
        if end == 0 {
            out.push_str(&rest[..1]);
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    out
}

/// Whether an `http://` URL names this machine (127.0.0.0/8, `[::1]`,
/// `localhost`).
fn loopback(url: &str) -> bool {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host.starts_with('[') { host.split(']').next().map(|h| format!("{h}]")).unwrap_or_default() } else { host.split(':').next().unwrap_or("").to_owned() };
    host == "localhost" || host == "[::1]" || host.strip_prefix("127.").is_some_and(|r| r.split('.').count() == 3 && r.split('.').all(|o| o.parse::<u8>().is_ok()))
}

impl RouteConfig {
    /// Whether an alert goes to this route.
    pub fn matches(&self, a: &crate::model::Alert) -> bool {
        self.events.contains(&Event::Alert)
            && (self.townships.is_empty() || self.townships.contains(&a.township))
            && (self.rules.is_empty() || self.rules.contains(&a.rule))
            && a.severity >= self.min_severity
    }

    /// Whether a case event of a case of `rule` in `township` goes to this
    /// route: it lists the event, and the township and rule filters pass
    /// (a case has no severity; `min_severity` applies to alerts only).
    pub fn wants_case_event(&self, event: Event, township: &str, rule: crate::model::Rule) -> bool {
        self.events.contains(&event)
            && (self.townships.is_empty() || self.townships.iter().any(|t| t == township))
            && (self.rules.is_empty() || self.rules.contains(&rule))
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
            if r.name.chars().any(char::is_control) {
                return Err(format!("{at}.name: no control characters"));
            }
            if r.events.is_empty() {
                return Err(format!("{at}.events: at least one of {:?}", Event::ALL.map(Event::name)));
            }
            if self.routes[..i].iter().any(|o| o.name == r.name) {
                return Err(format!("{at}.name: used twice"));
            }
            if !(r.url.starts_with("http://") || r.url.starts_with("https://")) {
                return Err(format!("{at}.url: {:?} is not an http:// or https:// address", redact_url(&r.url)));
            }
            if r.url.starts_with("http://") && !r.allow_insecure_http && !loopback(&r.url) {
                return Err(format!(
                    "{at}.url: {} is plain http:// to another host, and alerts carry identity and account numbers; \
                     use https://, or set allow_insecure_http = true on this route for a receiver on a private network",
                    redact_url(&r.url)
                ));
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
