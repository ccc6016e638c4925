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

    /// A stable, opaque id: hex of SHA-256(connector NUL principal), first 128 bits. Used for
    /// storage keys, cache keys and invalidation messages, so principals never appear in them
    /// and no principal can break a Redis Cluster hash tag.
    pub fn id(&self) -> String {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(self.connector.as_bytes());
        ctx.update(&[0]);
        ctx.update(self.principal.as_bytes());
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut id = String::with_capacity(32);
        for b in &ctx.finish().as_ref()[..16] {
            id.push(HEX[usize::from(b >> 4)] as char);
            id.push(HEX[usize::from(b & 0xf)] as char);
        }
        id
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionStatus {
    Connected,
    /// The refresh token was refused for good; the user must connect again.
    NeedsReauth,
    /// Disconnected by the user or an admin: the tokens are gone (and revoked at the
    /// provider); the record stays, without them, so the user and admins see what happened.
    Revoked,
}

/// What real traffic and tests last said of a connection: the time of the last success and of
/// the last failure with its code (`upstream_401`, `invalid_grant`, ...). Never a token.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Health {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl Health {
    pub fn is_empty(&self) -> bool {
        self == &Health::default()
    }

    /// `healthy` when the latest outcome succeeded, `unhealthy` when it failed, `unknown`
    /// before the first call or test.
    pub fn state(&self) -> &'static str {
        match (self.last_success_at, self.last_failure_at) {
            (None, None) => "unknown",
            (Some(ok), Some(failed)) if failed > ok => "unhealthy",
            (None, Some(_)) => "unhealthy",
            _ => "healthy",
        }
    }

    pub fn succeeded(&mut self, at: u64) {
        self.last_success_at = Some(self.last_success_at.map_or(at, |t| t.max(at)));
    }

    pub fn failed(&mut self, at: u64, code: &str) {
        if self.last_failure_at.is_none_or(|t| t <= at) {
            self.last_failure_at = Some(at);
            self.last_error = Some(code.to_string());
        }
    }

    /// Both observations, the later of each.
    pub fn merge(&mut self, other: &Health) {
        if let Some(at) = other.last_success_at {
            self.succeeded(at);
        }
        if let (Some(at), Some(code)) = (other.last_failure_at, &other.last_error) {
            self.failed(at, code);
        }
    }
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
    pub health: Health,
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
            health: Health::default(),
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
    #[serde(default, skip_serializing_if = "Health::is_empty")]
    pub health: Health,
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
            health: c.health.clone(),
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
            health: self.health,
            version,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_follows_the_latest_outcome() {
        let mut h = Health::default();
        assert_eq!(h.state(), "unknown");
        h.succeeded(10);
        assert_eq!(h.state(), "healthy");
        h.failed(20, "upstream_401");
        assert_eq!((h.state(), h.last_error.as_deref()), ("unhealthy", Some("upstream_401")));
        h.succeeded(15);
        assert_eq!(h.state(), "unhealthy", "an older success does not hide a newer failure");
        let mut later = Health::default();
        later.succeeded(30);
        h.merge(&later);
        assert_eq!((h.state(), h.last_success_at, h.last_failure_at), ("healthy", Some(30), Some(20)));
    }

    #[test]
    fn expiry_is_inclusive() {
        let c = Connection::new(Secret::new("t"), Some(100));
        assert!(!c.is_expired(99));
        assert!(c.is_expired(100));
        assert!(!Connection::new(Secret::new("t"), None).is_expired(u64::MAX));
    }
}
