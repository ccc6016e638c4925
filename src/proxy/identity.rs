//! Phase `identify`: the caller credential, verified. Runs before any policy or token lookup.

use http::{header, HeaderMap};

use crate::caller::{authenticate, parse_credential, Caller, IdentityError};
use crate::config::Config;

/// Authenticates the caller from `Proxy-Authorization`, or in gateway mode also from
/// `Authorization: Bearer`.
pub fn identify(headers: &HeaderMap, gateway: bool, config: &Config) -> Result<Caller, IdentityError> {
    let value = headers
        .get(header::PROXY_AUTHORIZATION)
        .or_else(|| gateway.then(|| headers.get(header::AUTHORIZATION)).flatten())
        .ok_or(IdentityError::Missing)?;
    let presented = parse_credential(value)?;
    authenticate(presented, config)
}
