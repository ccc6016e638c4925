//! Which connection a request uses: (connector, principal), with its opaque id. The token
//! layer stores connections under these keys; they live here, beside the caller whose
//! principal they name, because each verified caller keeps the keys its requests have used
//! ([`KeyCache`]), so a request on a cached token costs no hashing.

use std::sync::{Arc, Mutex};

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

/// A connection key with its id, computed once.
#[derive(Debug)]
pub struct Keyed {
    pub key: ConnectionKey,
    pub id: String,
}

impl Keyed {
    pub fn new(key: ConnectionKey) -> Arc<Keyed> {
        let id = key.id();
        Arc::new(Keyed { key, id })
    }
}

/// The connection keys of one principal, by connector name, computed on first use: a
/// request on a cached token then costs no hashing. A few connectors per principal is the
/// norm; past `KeyCache::LIMIT` entries the cache starts over.
#[derive(Default)]
pub struct KeyCache(Mutex<Vec<Arc<Keyed>>>);

impl KeyCache {
    const LIMIT: usize = 16;

    pub fn get(&self, connector: &str, principal: &str) -> Arc<Keyed> {
        let mut keys = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = keys.iter().find(|k| k.key.connector == connector && k.key.principal == principal) {
            return found.clone();
        }
        if keys.len() >= Self::LIMIT {
            keys.clear();
        }
        let keyed = Keyed::new(ConnectionKey::new(connector, principal));
        keys.push(keyed.clone());
        keyed
    }
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache").finish_non_exhaustive()
    }
}
