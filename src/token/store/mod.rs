//! The token-store interface. Every backend passes the same behaviour tests
//! (`tests/store.rs`). Writes are compare-and-swap on the connection's version, optionally
//! also on the owner of the connection's refresh lock, so a writer that lost its lock or
//! read an old version can never overwrite newer data.

pub mod health;
pub mod memory;
pub mod redis;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::model::{Connection, ConnectionKey};

/// What a write expects to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Only if there is no connection yet.
    Absent,
    /// Only if the stored version is exactly this.
    Version(u64),
    /// Unconditionally (a fresh connect replaces whatever was there).
    Any,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("the stored connection changed since it was read")]
    Conflict,
    #[error("the refresh lock is held by someone else")]
    LockLost,
    #[error("the token store is unavailable: {0}")]
    Unavailable(String),
    #[error("a stored value could not be read: {0}")]
    Corrupt(String),
}

/// What changed, for the caches of every replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// One connection, by [`ConnectionKey::id`].
    Connection(String),
    /// Everything: the invalidation feed was interrupted and messages may have been missed.
    All,
}

/// Receives invalidations.
pub type InvalidationSink = Arc<dyn Fn(Invalidation) + Send + Sync>;

/// Where connections live.
#[async_trait]
pub trait TokenStore: Send + Sync + std::fmt::Debug {
    /// The connection, if any.
    async fn get(&self, key: &ConnectionKey) -> Result<Option<Connection>, StoreError>;

    /// Writes the connection if the stored version matches `expect` and, when `owner` is
    /// given, the refresh lock is held by that owner. Returns the new version and announces
    /// the change to every replica.
    async fn put(
        &self,
        key: &ConnectionKey,
        connection: Connection,
        expect: Expect,
        owner: Option<&str>,
    ) -> Result<u64, StoreError>;

    /// Deletes the connection and announces it; `true` if there was one.
    async fn delete(&self, key: &ConnectionKey) -> Result<bool, StoreError>;

    /// Takes the connection's refresh lock for `owner` unless someone holds it. It expires
    /// after `ttl` whatever happens to the holder.
    async fn lock(&self, key: &ConnectionKey, owner: &str, ttl: Duration) -> Result<bool, StoreError>;

    /// Releases the lock if `owner` still holds it.
    async fn unlock(&self, key: &ConnectionKey, owner: &str) -> Result<(), StoreError>;

    /// Connections, optionally only those of one connector and/or principal. Records Tollgate
    /// keeps for itself (registrations, the interception CA) are included; callers filter.
    async fn list(
        &self,
        connector: Option<&str>,
        principal: Option<&str>,
    ) -> Result<Vec<(ConnectionKey, Connection)>, StoreError>;

    /// Keeps a short-lived value (OAuth flow state, used-ticket markers) that expires by
    /// itself after `ttl`, shared by every replica. With `only_if_absent`, writes nothing and
    /// returns `false` when the name is taken (a claim).
    async fn put_transient(
        &self,
        name: &str,
        value: &[u8],
        ttl: Duration,
        only_if_absent: bool,
    ) -> Result<bool, StoreError>;

    /// Reads and deletes a transient value in one step, so it can be used once.
    async fn take_transient(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Reads a transient value and leaves it (a console session).
    async fn get_transient(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Deletes a transient value.
    async fn drop_transient(&self, name: &str) -> Result<(), StoreError> {
        self.take_transient(name).await.map(|_| ())
    }

    /// Whether the backend answers (for `/readyz` and `tollgate_store_up`).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Starts delivering invalidations made by other processes to `sink`. Backends shared by
    /// one process only deliver nothing.
    fn watch(&self, sink: InvalidationSink);

    /// `memory` or `redis`.
    fn backend(&self) -> &'static str;

    /// Where the backend stands, for `/readyz`: its mode, why it is down, and (Redis Cluster)
    /// each master node.
    fn status(&self) -> StoreStatus {
        StoreStatus { mode: "memory", down_because: None, nodes: Vec::new() }
    }
}

/// A store's state for `/readyz`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoreStatus {
    /// `memory`, or the Redis mode: `standalone`, `sentinel`, `cluster`.
    pub mode: &'static str,
    /// Why the store is down, while it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub down_because: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<redis::NodeStatus>,
}

/// A random token naming the holder of a lock.
pub fn owner_token() -> String {
    let mut bytes = [0u8; 16];
    // Without OS randomness the token is still unique enough within this process's lifetime.
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).is_err() {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        bytes = nanos.to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
