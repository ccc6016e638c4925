//! The embedded in-memory store: connections live as long as the process. For trials and
//! tests; a restart forgets every connection. Same semantics as Redis, including the lock.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{Expect, Invalidation, InvalidationSink, StoreError, TokenStore};
use crate::token::model::{Connection, ConnectionKey};

#[derive(Debug, Default)]
struct Inner {
    connections: HashMap<ConnectionKey, Connection>,
    locks: HashMap<ConnectionKey, (String, Instant)>,
    transient: HashMap<String, (Vec<u8>, Instant)>,
}

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    /// Caches of this process, told about every write like Redis tells every replica.
    watchers: std::sync::Mutex<Vec<InvalidationSink>>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn announce(&self, key: &ConnectionKey) {
        let id = key.id();
        for sink in self.watchers.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            sink(Invalidation::Connection(id.clone()));
        }
    }
}

fn holder(inner: &Inner, key: &ConnectionKey) -> Option<String> {
    inner.locks.get(key).filter(|(_, until)| *until > Instant::now()).map(|(o, _)| o.clone())
}

#[async_trait]
impl TokenStore for MemoryStore {
    async fn get(&self, key: &ConnectionKey) -> Result<Option<Connection>, StoreError> {
        Ok(self.inner.lock().await.connections.get(key).cloned())
    }

    async fn put(
        &self,
        key: &ConnectionKey,
        mut connection: Connection,
        expect: Expect,
        owner: Option<&str>,
    ) -> Result<u64, StoreError> {
        let mut inner = self.inner.lock().await;
        if let Some(owner) = owner {
            if holder(&inner, key).as_deref() != Some(owner) {
                return Err(StoreError::LockLost);
            }
        }
        let current = inner.connections.get(key).map(|c| c.version);
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
        inner.connections.insert(key.clone(), connection);
        drop(inner);
        self.announce(key);
        Ok(version)
    }

    async fn delete(&self, key: &ConnectionKey) -> Result<bool, StoreError> {
        let existed = self.inner.lock().await.connections.remove(key).is_some();
        self.announce(key);
        Ok(existed)
    }

    async fn lock(&self, key: &ConnectionKey, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut inner = self.inner.lock().await;
        if holder(&inner, key).is_some() {
            return Ok(false);
        }
        inner.locks.insert(key.clone(), (owner.to_string(), Instant::now() + ttl));
        Ok(true)
    }

    async fn unlock(&self, key: &ConnectionKey, owner: &str) -> Result<(), StoreError> {
        let mut inner = self.inner.lock().await;
        if holder(&inner, key).as_deref() == Some(owner) {
            inner.locks.remove(key);
        }
        Ok(())
    }

    async fn list(
        &self,
        connector: Option<&str>,
        principal: Option<&str>,
    ) -> Result<Vec<(ConnectionKey, Connection)>, StoreError> {
        let inner = self.inner.lock().await;
        let mut all: Vec<(ConnectionKey, Connection)> = inner
            .connections
            .iter()
            .filter(|(k, _)| connector.is_none_or(|c| k.connector == c) && principal.is_none_or(|p| k.principal == p))
            .map(|(k, c)| (k.clone(), c.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(all)
    }

    async fn put_transient(
        &self,
        name: &str,
        value: &[u8],
        ttl: Duration,
        only_if_absent: bool,
    ) -> Result<bool, StoreError> {
        let mut inner = self.inner.lock().await;
        let now = Instant::now();
        inner.transient.retain(|_, (_, until)| *until > now);
        if only_if_absent && inner.transient.contains_key(name) {
            return Ok(false);
        }
        inner.transient.insert(name.to_string(), (value.to_vec(), now + ttl));
        Ok(true)
    }

    async fn take_transient(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut inner = self.inner.lock().await;
        Ok(inner.transient.remove(name).filter(|(_, until)| *until > Instant::now()).map(|(v, _)| v))
    }

    async fn get_transient(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let inner = self.inner.lock().await;
        Ok(inner.transient.get(name).filter(|(_, until)| *until > Instant::now()).map(|(v, _)| v.clone()))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn watch(&self, sink: InvalidationSink) {
        self.watchers.lock().unwrap_or_else(|p| p.into_inner()).push(sink);
    }

    fn backend(&self) -> &'static str {
        "memory"
    }
}
