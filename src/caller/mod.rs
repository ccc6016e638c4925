//! Who is calling: the caller credential (`Proxy-Authorization` Bearer or Basic, or
//! `Authorization: Bearer` in gateway mode) verified as a JWT or a static API key.
//!
//! The principal and the connectors a caller may use come only from a verified credential,
//! never from headers the caller controls.

pub mod jwt;
mod memo;
mod recent;

use base64::Engine;
use http::HeaderValue;

use crate::config::{CallerSettings, Config};
use crate::secret::Secret;
use crate::token::Principal;

pub use memo::Memo;

/// Why the caller could not be authenticated. Messages never contain the credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("no caller credential was presented")]
    Missing,
    #[error("the caller credential is not Bearer or Basic")]
    Malformed,
    #[error("{0}")]
    Invalid(&'static str),
    /// The JWT's `kid` is not in the key set (a key the identity provider rotated in since the
    /// set was fetched, or a forgery): a remote set may be fetched again once.
    #[error("the JWT names no known key")]
    UnknownKey,
}

/// A credential as presented, before verification.
#[derive(Debug, Clone)]
pub struct Presented {
    /// The Basic username, which may name a connector or tool.
    pub username: Option<String>,
    pub secret: Secret,
}

/// Parses `Bearer <token>` or `Basic base64(user:token)`.
pub fn parse_credential(value: &HeaderValue) -> Result<Presented, IdentityError> {
    let text = value.to_str().map_err(|_| IdentityError::Malformed)?;
    let (scheme, rest) = text.trim().split_once(' ').ok_or(IdentityError::Malformed)?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        return Ok(Presented { username: None, secret: Secret::new(rest) });
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD.decode(rest).map_err(|_| IdentityError::Malformed)?;
        let decoded = String::from_utf8(decoded).map_err(|_| IdentityError::Malformed)?;
        let (user, password) = decoded.split_once(':').ok_or(IdentityError::Malformed)?;
        if password.is_empty() {
            return Err(IdentityError::Missing);
        }
        return Ok(Presented { username: (!user.is_empty()).then(|| user.to_string()), secret: Secret::new(password) });
    }
    Err(IdentityError::Malformed)
}

/// How the caller was authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallerKind {
    Jwt,
    ApiKey(String),
}

/// An authenticated caller.
#[derive(Debug)]
pub struct Caller {
    /// The end user (or service) whose credentials are used, with the connection keys its
    /// requests have used.
    pub principal: Principal,
    pub kind: CallerKind,
    /// Connector indices this caller may use; `None` means all.
    pub allowed: Option<Vec<usize>>,
    /// The connector named by the JWT `connector` claim.
    pub claimed_connector: Option<String>,
    /// The connector or tool named by the Basic username.
    pub username: Option<String>,
    /// Until when (Unix seconds) the credential stays valid: a JWT's `exp` plus the leeway.
    pub valid_until: Option<u64>,
    /// May use private connectors (`callers.jwt.admin_claim`, an API key's `admin`).
    pub admin: bool,
}

impl Caller {
    pub fn may_use(&self, connector: usize) -> bool {
        self.allowed.as_ref().is_none_or(|list| list.contains(&connector))
    }
}

/// The connectors a caller may use, without the private ones unless it is an admin (decided
/// once per credential, so requests pay nothing for it).
fn without_private(allowed: Option<Vec<usize>>, admin: bool, config: &Config) -> Option<Vec<usize>> {
    if admin || !config.connectors.iter().any(|c| c.private) {
        return allowed;
    }
    let public = |i: &usize| config.connectors.get(*i).is_some_and(|c| !c.private);
    Some(match allowed {
        Some(list) => list.into_iter().filter(public).collect(),
        None => (0..config.connectors.len()).filter(public).collect(),
    })
}

/// Verifies a presented credential against the configured JWT key and API keys.
pub fn authenticate(presented: Presented, config: &Config) -> Result<Caller, IdentityError> {
    let settings: &CallerSettings = &config.callers;
    let looks_like_jwt = presented.secret.expose().split('.').count() == 3;
    if looks_like_jwt {
        if let Some(jwt_settings) = &settings.jwt {
            let claims = jwt::verify(presented.secret.expose(), jwt_settings)?;
            let admin =
                jwt_settings.admin_claim.as_ref().is_some_and(|(name, value)| jwt::carries(&claims, name, value));
            let allowed =
                claims.connectors.as_ref().map(|names| names.iter().filter_map(|n| config.resolve_name(n)).collect());
            return Ok(Caller {
                principal: Principal::new(claims.sub),
                kind: CallerKind::Jwt,
                allowed: without_private(allowed, admin, config),
                claimed_connector: claims.connector,
                username: presented.username,
                valid_until: Some(claims.exp.saturating_add(jwt::LEEWAY_SECS)),
                admin,
            });
        }
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, presented.secret.expose().as_bytes());
    // Compare against every key without stopping early, so timing says nothing about which
    // key (if any) is close.
    let mut found = None;
    for key in &settings.api_keys {
        let equal = key.sha256.iter().zip(digest.as_ref()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        if equal {
            found = Some(key);
        }
    }
    match found {
        Some(key) => Ok(Caller {
            principal: Principal::new(format!("apikey:{}", key.name)),
            kind: CallerKind::ApiKey(key.name.clone()),
            allowed: without_private(Some(key.connectors.clone()), key.admin, config),
            claimed_connector: None,
            username: presented.username,
            valid_until: None,
            admin: key.admin,
        }),
        None if looks_like_jwt && settings.jwt.is_none() => {
            Err(IdentityError::Invalid("JWT callers are not configured"))
        }
        None => Err(IdentityError::Invalid("the caller credential is not valid")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_and_basic() {
        let p = parse_credential(&HeaderValue::from_static("Bearer abc.def.ghi")).unwrap();
        assert_eq!((p.username, p.secret.expose()), (None, "abc.def.ghi"));
        let basic = base64::engine::general_purpose::STANDARD.encode("github:tok");
        let p = parse_credential(&HeaderValue::from_str(&format!("Basic {basic}")).unwrap()).unwrap();
        assert_eq!((p.username.as_deref(), p.secret.expose()), (Some("github"), "tok"));
        let anon = base64::engine::general_purpose::STANDARD.encode(":tok");
        assert_eq!(parse_credential(&HeaderValue::from_str(&format!("Basic {anon}")).unwrap()).unwrap().username, None);
        for bad in ["Bearer", "Digest x", "Basic !!!", "tok"] {
            assert!(parse_credential(&HeaderValue::from_static(bad)).is_err(), "{bad}");
        }
    }
}
