//! Keeping secrets (webhook secrets, Kafka passwords and keys) out of
//! messages and off readable files: config parse errors without values, and
//! a warning for a config others can read.

use super::Config;
use std::path::Path;

/// A TOML error as paywatch reports it: the line and the key, and the
/// parser's words with every quoted value replaced by `"…"` (key names,
/// which serde quotes with backticks, stay). Never the line itself: a
/// config holds secrets (webhook secrets, SASL passwords).
pub(super) fn parse_error(text: &str, e: &toml::de::Error) -> String {
    let mut words = String::new();
    let mut quoted = false;
    let mut ticked: Option<String> = None;
    for c in e.message().chars() {
        if let Some(t) = ticked.as_mut() {
            if c == '`' {
                // A key name stays; anything else (a number given as a
                // value) is a value.
                let name = t.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                    && t.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
                words.push_str(&format!("`{}`", if name { t.as_str() } else { "…" }));
                ticked = None;
            } else {
                t.push(c);
            }
            continue;
        }
        match (c, quoted) {
            ('"', false) => {
                quoted = true;
                words.push_str("\"…");
            }
            ('"', true) => {
                quoted = false;
                words.push('"');
            }
            (_, true) => {}
            ('`', false) => ticked = Some(String::new()),
            (c, false) => words.push(if c == '\n' { ' ' } else { c }),
        }
    }
    let words = words.trim().to_owned();
    let Some(span) = e.span() else { return words };
    let start = span.start.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("");
    let key = line.split_once('=').map(|(k, _)| k.trim().trim_matches('"').to_owned()).filter(|k| !k.is_empty() && !k.starts_with('['));
    match key {
        Some(k) => format!("line {line_no}, key {k:?}: {words}"),
        None => format!("line {line_no}: {words}"),
    }
}

impl Config {
    /// Whether the config holds a secret: a webhook secret, or a
    /// password, secret or key setting under `[kafka.*]`.
    pub fn holds_secrets(&self) -> bool {
        let k = &self.kafka;
        let secret_key = |key: &String| ["password", "secret", "key"].iter().any(|w| key.contains(w));
        self.webhooks.routes.iter().any(|r| !r.secrets.is_empty())
            || k.client.keys().chain(k.consumer.keys()).chain(k.producer.keys()).any(secret_key)
    }

    /// A warning when a config holding secrets can be read by its group or
    /// by others (install it 0600, or 0640 with a group of its own).
    pub fn permission_warning(&self, path: &Path) -> Option<String> {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
        (self.holds_secrets() && mode & 0o077 != 0).then(|| {
            format!(
                "config {} holds secrets and is readable by {} (mode {mode:04o}); make it 0600 (chmod 600)",
                path.display(),
                if mode & 0o007 != 0 { "everyone" } else { "its group" }
            )
        })
    }

}
