//! Keeping secrets (webhook secrets, Kafka passwords and keys) out of
//! messages and off readable files: config parse errors without values,
//! secrets given by reference (`${env:NAME}`, `${file:PATH}`) instead of
//! inline, and a warning for a config holding inline secrets that others
//! can read.

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

/// A setting under `[kafka.*]` that holds a secret.
fn secret_key(key: &str) -> bool {
    ["password", "secret", "key"].iter().any(|w| key.contains(w))
}

/// Replaces a reference by what it names: `${env:NAME}` by the environment
/// variable, `${file:PATH}` by the file's content (without its final line
/// break). Returns whether the value was written inline. Errors name the
/// setting and the variable or file, never a value.
fn resolve(v: &mut String, at: &str) -> Result<bool, String> {
    let Some((kind, what)) = v.strip_prefix("${").and_then(|r| r.strip_suffix('}')).and_then(|r| r.split_once(':')) else {
        return Ok(true);
    };
    let value = match kind {
        "env" => std::env::var(what).map_err(|_| format!("{at}: the environment variable {what} is not set"))?,
        "file" => std::fs::read_to_string(what)
            .map_err(|e| format!("{at}: cannot read {what}: {}", e.kind()))?
            .trim_end_matches(['\n', '\r'])
            .to_owned(),
        other => return Err(format!("{at}: ${{{other}:…}} is neither ${{env:NAME}} nor ${{file:PATH}}")),
    };
    if value.is_empty() {
        return Err(format!("{at}: {kind} {what} is empty"));
    }
    *v = value;
    Ok(false)
}

impl Config {
    /// Resolves the secrets given by reference: webhook secrets, API token
    /// hashes and the secret settings under `[kafka.*]`, and notes whether
    /// any secret was written inline.
    pub(super) fn resolve_secrets(&mut self) -> Result<(), String> {
        let mut inline = false;
        for (i, r) in self.webhooks.routes.iter_mut().enumerate() {
            for (j, s) in r.secrets.iter_mut().enumerate() {
                inline |= resolve(s, &format!("webhooks.routes[{i}].secrets[{j}]"))?;
            }
        }
        for (i, t) in self.api.tokens.iter_mut().enumerate() {
            resolve(&mut t.token_sha256, &format!("api.tokens[{i}].token_sha256"))?;
        }
        let k = &mut self.kafka;
        for (section, map) in [("client", &mut k.client), ("consumer", &mut k.consumer), ("producer", &mut k.producer)] {
            // Any setting may name a variable (`"group.instance.id" =
            // "${env:POD_NAME}"`); only secret ones written inline count.
            for (key, v) in map.iter_mut() {
                let written_inline = resolve(v, &format!("kafka.{section}.{key:?}"))?;
                inline |= written_inline && secret_key(key);
            }
        }
        self.inline_secrets = inline;
        Ok(())
    }

    /// Whether the config file itself holds a secret (a webhook secret, or
    /// a password, secret or key setting under `[kafka.*]`) rather than a
    /// reference to one.
    pub fn holds_secrets(&self) -> bool {
        self.inline_secrets
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
