//! The embedded in-memory store: connections live as long as the process. For trials and
//! tests; a restart forgets every connection.

use std::collections::HashMap;

use async_trait::async_trait;
use tokio::sync::RwLock;

use super::{Expect, StoreError, TokenStore};
use crate::token::model::{Connection, ConnectionKey};

#[derive(Debug, Default)]
pub struct MemoryStore {
    connections: RwLock<HashMap<ConnectionKey, Connection>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl TokenStore for MemoryStore {
    async fn get(&self, key: &ConnectionKey) -> Result<Option<Connection>, StoreError> {
        Ok(self.connections.read().await.get(key).cloned())
    }

    async fn put(&self, key: &ConnectionKey, mut connection: Connection, expect: Expect) -> Result<u64, StoreError> {
        let mut map = self.connections.write().await;
        let current = map.get(key).map(|c| c.version);
        let matches = match expect {
            Expect::Any => true,
            Expect::Absent => current.is_none(),
            Expect::Version(v) => current == Some(v),
        };
        if !matches {
            return Err(StoreError::Conflict);
        }
        connection.version = current.unwrap_or(0) + 1;
        let version = connection.version;
        map.insert(key.clone(), connection);
        Ok(version)
    }

    async fn delete(&self, key: &ConnectionKey) -> Result<bool, StoreError> {
        Ok(self.connections.write().await.remove(key).is_some())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "memory"
    }
}
