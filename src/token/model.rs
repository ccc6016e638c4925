//! A connection: one principal's tokens for one connector, as the store keeps it.

use crate::secret::Secret;

pub use crate::caller::keys::{ConnectionKey, KeyCache, Keyed};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionStatus {
    Connected,
    /// The refresh token was refused for good; the user must connect again.
    NeedsReauth,
}

/// The tokens of one connection. `version` is assigned by the store on every write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    /// Unix seconds; `None` means "until the upstream answers 401".
    pub expires_at: Option<u64>,
    pub scopes: Vec<String>,
    pub status: ConnectionStatus,
    /// For `pin_host` connectors: the only host this token may be sent to.
    pub pinned_host: Option<String>,
    /// Unix seconds when the refresh token expires, when the provider said.
    pub refresh_expires_at: Option<u64>,
    /// `connection.refresh_token_expiring` was sent for this refresh token.
    pub expiry_warned: bool,
    pub version: u64,
}

impl Connection {
    /// A connected connection with an access token; the version is set by the store.
    pub fn new(access_token: Secret, expires_at: Option<u64>) -> Self {
        Connection {
            access_token,
            refresh_token: None,
            expires_at,
            scopes: Vec::new(),
            status: ConnectionStatus::Connected,
            pinned_host: None,
            refresh_expires_at: None,
            expiry_warned: false,
            version: 0,
        }
    }

    /// Whether the access token has expired at `now` (Unix seconds). An expired token is
    /// never injected.
    pub fn is_expired(&self, now: u64) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// Whether the token expires within `skew` seconds of `now` (and so should be refreshed
    /// before use, when it can be).
    pub fn expires_within(&self, now: u64, skew: u64) -> bool {
        self.expires_at.is_some_and(|at| at <= now.saturating_add(skew))
    }
}

/// The plaintext of a stored connection, before sealing. Holds the key so a record read
/// back can be checked against where it was found, and so listings can name it.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct StoredConnection {
    pub connector: String,
    pub principal: String,
    pub access_token: String,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub expires_at: Option<u64>,
    #[serde(default)]
    pub scopes: Vec<String>,
    pub status: ConnectionStatus,
    #[serde(default)]
    pub pinned_host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_expires_at: Option<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expiry_warned: bool,
}

impl StoredConnection {
    pub fn from_connection(key: &ConnectionKey, c: &Connection) -> Self {
        StoredConnection {
            connector: key.connector.clone(),
            principal: key.principal.clone(),
            access_token: c.access_token.expose().to_string(),
            refresh_token: c.refresh_token.as_ref().map(|t| t.expose().to_string()),
            expires_at: c.expires_at,
            scopes: c.scopes.clone(),
            status: c.status,
            pinned_host: c.pinned_host.clone(),
            refresh_expires_at: c.refresh_expires_at,
            expiry_warned: c.expiry_warned,
        }
    }

    pub fn into_connection(self, version: u64) -> Connection {
        Connection {
            access_token: Secret::new(self.access_token),
            refresh_token: self.refresh_token.map(Secret::new),
            expires_at: self.expires_at,
            scopes: self.scopes,
            status: self.status,
            pinned_host: self.pinned_host,
            refresh_expires_at: self.refresh_expires_at,
            expiry_warned: self.expiry_warned,
            version,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_inclusive() {
        let c = Connection::new(Secret::new("t"), Some(100));
        assert!(!c.is_expired(99));
        assert!(c.is_expired(100));
        assert!(!Connection::new(Secret::new("t"), None).is_expired(u64::MAX));
    }
}
