//! JWT verification for callers: the accepted algorithm is pinned by the configured key
//! (HS256 for a shared secret; RS256 or ES256 by each JWKS key's type), so a token cannot
//! choose how it is checked.

use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::IdentityError;
use crate::config::jwks::PublicKey;
use crate::config::{JwtKey, JwtSettings};

/// Expiry leeway for clocks that disagree a little.
pub const LEEWAY_SECS: u64 = 30;

/// The claims Tollgate reads.
#[derive(Debug, Deserialize)]
pub struct Claims {
    pub sub: String,
    /// Unix seconds; required, checked with [`LEEWAY_SECS`].
    pub exp: u64,
    #[serde(default)]
    pub connectors: Option<Vec<String>>,
    #[serde(default)]
    pub connector: Option<String>,
    /// Every other claim, read only for `callers.jwt.required_claims`.
    #[serde(flatten)]
    pub other: std::collections::HashMap<String, serde_json::Value>,
}

/// Whether `claims` carries `value` under `name`: equal as a string, or held in an array.
pub fn carries(claims: &Claims, name: &str, value: &str) -> bool {
    match claims.other.get(name) {
        Some(serde_json::Value::String(s)) => s == value,
        Some(serde_json::Value::Array(items)) => items.iter().any(|i| i.as_str() == Some(value)),
        Some(serde_json::Value::Bool(b)) => value == if *b { "true" } else { "false" },
        Some(serde_json::Value::Number(n)) => n.to_string() == value,
        _ => false,
    }
}

/// The key a JWT names by `kid` (or the only key, when it names none).
fn find(keys: &[PublicKey], kid: Option<&str>) -> Result<(Algorithm, DecodingKey), IdentityError> {
    let found = match kid {
        Some(kid) => keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
        None if keys.len() == 1 => keys.first(),
        None => None,
    };
    let k = found.ok_or(IdentityError::UnknownKey)?;
    Ok((k.alg, k.key.clone()))
}

/// Verifies signature, `alg`, `aud`, `exp` (with leeway) and `iss` when configured.
pub fn verify(token: &str, settings: &JwtSettings) -> Result<Claims, IdentityError> {
    let header = decode_header(token).map_err(|_| IdentityError::Invalid("the JWT is malformed"))?;
    let (alg, key) = match &settings.key {
        JwtKey::Hs256(secret) => (Algorithm::HS256, DecodingKey::from_secret(secret.expose().as_bytes())),
        JwtKey::Jwks(keys) => find(keys, header.kid.as_deref())?,
        JwtKey::Remote(remote) => find(&remote.keys(), header.kid.as_deref())?,
    };
    if header.alg != alg {
        return Err(IdentityError::Invalid("the JWT uses an algorithm that is not accepted"));
    }
    let mut validation = Validation::new(alg);
    validation.leeway = LEEWAY_SECS;
    validation.set_audience(&[&settings.audience]);
    validation.set_required_spec_claims(&["exp", "sub", "aud"]);
    if let Some(iss) = &settings.issuer {
        validation.set_issuer(&[iss]);
    }
    let data = decode::<Claims>(token, &key, &validation).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind;
        IdentityError::Invalid(match e.kind() {
            ErrorKind::ExpiredSignature => "the JWT has expired",
            ErrorKind::InvalidAudience => "the JWT audience is wrong",
            ErrorKind::InvalidIssuer => "the JWT issuer is wrong",
            ErrorKind::InvalidSignature => "the JWT signature is invalid",
            ErrorKind::MissingRequiredClaim(_) => "the JWT lacks exp, sub or aud",
            _ => "the JWT is invalid",
        })
    })?;
    if data.claims.sub.is_empty() {
        return Err(IdentityError::Invalid("the JWT subject is empty"));
    }
    if !settings.required_claims.iter().all(|(name, value)| carries(&data.claims, name, value)) {
        return Err(IdentityError::Invalid("the JWT lacks a required claim"));
    }
    Ok(data.claims)
}
