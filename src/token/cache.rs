//! The in-process token cache in front of the store: hot tokens without a Redis round trip.
//!
//! Entries are fresh for `cache_ttl`; after that the store is asked again, but a stale entry
//! still serves (while its access token is valid) when the store cannot answer, so a Redis
//! outage does not stop requests whose tokens are cached. Invalidations from any replica
//! (Redis pub/sub) drop entries at once; an interrupted feed flushes everything when it is
//! re-established. Keys are `ConnectionKey::id` hashes, never principals.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::model::Connection;
use super::store::Invalidation;

struct Entry {
    connection: Arc<Connection>,
    fresh_until: Instant,
}

/// What the cache knows about a connection.
#[derive(Debug)]
pub enum Cached {
    Fresh(Arc<Connection>),
    /// Older than the TTL: ask the store, fall back to this if the store is down.
    Stale(Arc<Connection>),
    Miss,
}

#[derive(Default)]
pub struct TokenCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, Entry, foldhash::fast::RandomState>>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache").field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

impl TokenCache {
    pub fn new(ttl: Duration) -> Self {
        TokenCache { ttl, entries: Mutex::new(HashMap::default()) }
    }

    /// The entry for `id`, fresh or stale as of `at` (the request's start: the clock is
    /// read once per request).
    pub fn get(&self, id: &str, at: Instant) -> Cached {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.get(id) {
            Some(e) if e.fresh_until > at => Cached::Fresh(e.connection.clone()),
            Some(e) => Cached::Stale(e.connection.clone()),
            None => Cached::Miss,
        }
    }

    /// Caches a connection read from or written to the store; never replaces a newer version.
    pub fn put(&self, id: &str, connection: &Connection) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.get(id).is_some_and(|e| e.connection.version > connection.version) {
            return;
        }
        let fresh_until = Instant::now() + self.ttl;
        entries.insert(id.to_string(), Entry { connection: Arc::new(connection.clone()), fresh_until });
    }

    pub fn remove(&self, id: &str) {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    pub fn invalidate(&self, what: &Invalidation) {
        match what {
            Invalidation::Connection(id) => self.remove(id),
            Invalidation::All => self.entries.lock().unwrap_or_else(|p| p.into_inner()).clear(),
        }
    }
}
