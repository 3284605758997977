//! Bearer tokens for `/api/v1/`: stored as SHA-256 hashes in the config,
//! compared in constant time, each with a role that bounds what it sees.

use crate::config::TokenConfig;
use sha2::{Digest, Sha256};

/// What a token may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Everything.
    District,
    /// Only that township's alerts; reviews them.
    Township(String),
    /// Reads everything, reviews nothing.
    ReadOnly,
    /// Runs the service: reads `/status` (townships and counts), nothing
    /// under `/api/v1/` (no personal data).
    Operator,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "district" => Some(Role::District),
            "readonly" => Some(Role::ReadOnly),
            "operator" => Some(Role::Operator),
            _ => s.strip_prefix("township:").filter(|t| !t.trim().is_empty()).map(|t| Role::Township(t.to_owned())),
        }
    }

    /// Whether this role may see an alert of `township`.
    pub fn sees(&self, township: &str) -> bool {
        match self {
            Role::Township(t) => t == township,
            Role::Operator => false,
            Role::District | Role::ReadOnly => true,
        }
    }
}

/// Who is calling.
#[derive(Clone, Debug, PartialEq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

/// The token in an `Authorization: Bearer …` header, checked against every
/// configured hash without stopping at the first match.
pub fn authenticate(tokens: &[TokenConfig], authorization: Option<&str>) -> Option<Principal> {
    let token = authorization?.strip_prefix("Bearer ")?.trim();
    if token.is_empty() {
        return None;
    }
    let hash = Sha256::digest(token.as_bytes());
    let mut found = None;
    for t in tokens {
        let want = hex::decode(&t.token_sha256).unwrap_or_default();
        if constant_time_eq(&want, &hash) {
            found = Role::parse(&t.role).map(|role| Principal { name: t.holder(), role });
        }
    }
    found
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(name: &str, secret: &str, role: &str) -> TokenConfig {
        TokenConfig { name: Some(name.into()), token_sha256: hex::encode(Sha256::digest(secret.as_bytes())), role: role.into() }
    }

    #[test]
    fn an_operator_sees_no_township() {
        let ts = [token("ops", "o-secret", "operator")];
        let p = authenticate(&ts, Some("Bearer o-secret")).unwrap();
        assert_eq!(p.role, Role::Operator);
        assert!(!p.role.sees("水阳镇"));
    }

    #[test]
    fn tokens_map_to_their_roles() {
        let ts = [token("district", "d-secret", "district"), token("shuiyang", "s-secret", "township:水阳镇")];
        assert_eq!(authenticate(&ts, Some("Bearer d-secret")).unwrap().role, Role::District);
        let p = authenticate(&ts, Some("Bearer s-secret")).unwrap();
        assert_eq!(p.role, Role::Township("水阳镇".into()));
        assert!(p.role.sees("水阳镇") && !p.role.sees("狸桥镇"));
        assert_eq!(authenticate(&ts, Some("Bearer wrong")), None);
        assert_eq!(authenticate(&ts, Some("d-secret")), None);
        assert_eq!(authenticate(&ts, None), None);
        assert_eq!(Role::parse("township:"), None);
        assert_eq!(Role::parse("admin"), None);
    }
}
