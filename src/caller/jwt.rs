//! JWT verification for callers: the accepted algorithm is pinned by the configured key
//! (HS256 for a shared secret; RS256 or ES256 by each JWKS key's type), so a token cannot
//! choose how it is checked.

use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::IdentityError;
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
}

/// Verifies signature, `alg`, `aud`, `exp` (with leeway) and `iss` when configured.
pub fn verify(token: &str, settings: &JwtSettings) -> Result<Claims, IdentityError> {
    let header = decode_header(token).map_err(|_| IdentityError::Invalid("the JWT is malformed"))?;
    let (alg, key) = match &settings.key {
        JwtKey::Hs256(secret) => (Algorithm::HS256, DecodingKey::from_secret(secret.expose().as_bytes())),
        JwtKey::Jwks(keys) => {
            let found = match &header.kid {
                Some(kid) => keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
                None if keys.len() == 1 => keys.first(),
                None => None,
            };
            let k = found.ok_or(IdentityError::Invalid("the JWT names no known key"))?;
            (k.alg, k.key.clone())
        }
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
    Ok(data.claims)
}
