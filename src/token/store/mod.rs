//! The token-store interface. Every backend passes the same behaviour tests; writes are
//! compare-and-swap on the connection's version so a slow writer never overwrites newer data.

pub mod memory;

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
    #[error("the token store is unavailable: {0}")]
    Unavailable(String),
}

/// Where connections live.
#[async_trait]
pub trait TokenStore: Send + Sync + std::fmt::Debug {
    /// The connection, if any.
    async fn get(&self, key: &ConnectionKey) -> Result<Option<Connection>, StoreError>;

    /// Writes the connection if the stored one matches `expect`; returns the new version.
    async fn put(&self, key: &ConnectionKey, connection: Connection, expect: Expect) -> Result<u64, StoreError>;

    /// Deletes the connection; `true` if there was one.
    async fn delete(&self, key: &ConnectionKey) -> Result<bool, StoreError>;

    /// Whether the backend answers (for `/readyz` and `tollgate_store_up`).
    async fn ping(&self) -> Result<(), StoreError>;

    /// `memory` or `redis`.
    fn backend(&self) -> &'static str;
}
