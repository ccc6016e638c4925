//! A connection: one principal's tokens for one connector, as the store keeps it.

use crate::secret::Secret;

/// Which connection: (connector, principal).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionKey {
    pub connector: String,
    pub principal: String,
}

impl ConnectionKey {
    pub fn new(connector: impl Into<String>, principal: impl Into<String>) -> Self {
        ConnectionKey { connector: connector.into(), principal: principal.into() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
            version: 0,
        }
    }

    /// Whether the access token has expired at `now` (Unix seconds). An expired token is
    /// never injected.
    pub fn is_expired(&self, now: u64) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
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
