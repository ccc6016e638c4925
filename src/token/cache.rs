//! The in-process token cache in front of the store: hot tokens without a Redis round trip.
//!
//! Entries are fresh for `cache_ttl`; after that the store is asked again, but a stale entry
//! still serves (while its access token is valid) when the store cannot answer, so a Redis
//! outage does not stop requests whose tokens are cached. Invalidations from any replica
//! (Redis pub/sub) drop entries at once; an interrupted feed flushes everything when it is
//! re-established. Keys are `ConnectionKey::id` hashes, never principals.
//!
//! A connection key keeps the entry it last found ([`Slot`]), so the next request of the
//! same principal reads it without hashing the id or taking the table's lock: with thousands
//! of users that lookup touched memory no other request had warmed. An entry the table
//! replaced or dropped is marked as no longer current at that moment, and a key holding it
//! then asks the table again, so the slot never serves what the table would not.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::model::Connection;

#[derive(Debug)]
pub(super) struct Entry {
    connection: Arc<Connection>,
    fresh_until: Instant,
    /// Still the table's entry for its id (false once replaced, removed or flushed).
    current: AtomicBool,
    /// Which cache it belongs to (a key is only ever used with one, but a slot checks).
    cache: u64,
}

/// The entry a connection key last found in the cache.
#[derive(Debug, Default)]
pub(super) struct Slot(Mutex<Option<Arc<Entry>>>);

/// What the cache knows about a connection.
#[derive(Debug)]
pub enum Cached {
    Fresh(Arc<Connection>),
    /// Older than the TTL: ask the store, fall back to this if the store is down.
    Stale(Arc<Connection>),
    Miss,
}

impl Cached {
    fn of(entry: &Entry, at: Instant) -> Cached {
        if entry.fresh_until > at {
            Cached::Fresh(entry.connection.clone())
        } else {
            Cached::Stale(entry.connection.clone())
        }
    }
}

pub struct TokenCache {
    ttl: Duration,
    id: u64,
    entries: Mutex<HashMap<String, Arc<Entry>, foldhash::fast::RandomState>>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache").field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache::new(Duration::ZERO)
    }
}

impl TokenCache {
    pub fn new(ttl: Duration) -> Self {
        static IDS: AtomicU64 = AtomicU64::new(0);
        TokenCache { ttl, id: IDS.fetch_add(1, Ordering::Relaxed), entries: Mutex::new(HashMap::default()) }
    }

    /// The entry for `id` (`ConnectionKey::id`), fresh or stale as of `at` (the request's
    /// start: the clock is read once per request), through the slot of the key it belongs to.
    pub(super) fn get(&self, slot: &Slot, id: &str, at: Instant) -> Cached {
        let mut slot = slot.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = slot.as_ref() {
            if entry.current.load(Ordering::Acquire) && entry.cache == self.id {
                return Cached::of(entry, at);
            }
        }
        // Taken while the slot is held: the table's lock is never held while taking a slot's.
        let found = self.entries.lock().unwrap_or_else(|p| p.into_inner()).get(id).cloned();
        let cached = found.as_deref().map_or(Cached::Miss, |entry| Cached::of(entry, at));
        *slot = found;
        cached
    }

    /// The table's entry for `id` (`ConnectionKey::id`), for callers without a key at hand.
    pub fn get_id(&self, id: &str, at: Instant) -> Cached {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(id).map_or(Cached::Miss, |entry| Cached::of(entry, at))
    }

    /// Caches a connection read from or written to the store; never replaces a newer version.
    pub fn put(&self, id: &str, connection: &Connection) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.get(id).is_some_and(|e| e.connection.version > connection.version) {
            return;
        }
        let entry = Entry {
            connection: Arc::new(connection.clone()),
            fresh_until: Instant::now() + self.ttl,
            current: AtomicBool::new(true),
            cache: self.id,
        };
        if let Some(old) = entries.insert(id.to_string(), Arc::new(entry)) {
            old.current.store(false, Ordering::Release);
        }
    }

    /// Drops one connection (`ConnectionKey::id`).
    pub fn remove(&self, id: &str) {
        if let Some(old) = self.entries.lock().unwrap_or_else(|p| p.into_inner()).remove(id) {
            old.current.store(false, Ordering::Release);
        }
    }

    /// Drops every connection.
    pub fn clear(&self) {
        for (_, old) in self.entries.lock().unwrap_or_else(|p| p.into_inner()).drain() {
            old.current.store(false, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::model::ConnectionKey;

    fn connection(token: &str, version: u64) -> Connection {
        let mut c = Connection::new(crate::secret::Secret::new(token), None);
        c.version = version;
        c
    }

    fn token(cached: Cached) -> Option<String> {
        match cached {
            Cached::Fresh(c) | Cached::Stale(c) => Some(c.access_token.expose().to_string()),
            Cached::Miss => None,
        }
    }

    #[test]
    fn a_key_never_serves_what_the_table_dropped_or_replaced() {
        let cache = TokenCache::new(Duration::from_secs(60));
        let (slot, id) = (Slot::default(), ConnectionKey::new("github", "alice").id());
        assert!(matches!(cache.get(&slot, &id, Instant::now()), Cached::Miss));
        cache.put(&id, &connection("one", 1));
        assert!(matches!(cache.get(&slot, &id, Instant::now()), Cached::Fresh(_)));
        // Now held by the key's slot: a replacement, a removal and a flush each reach it.
        cache.put(&id, &connection("two", 2));
        assert_eq!(token(cache.get(&slot, &id, Instant::now())).as_deref(), Some("two"));
        cache.put(&id, &connection("older", 1));
        assert_eq!(
            token(cache.get(&slot, &id, Instant::now())).as_deref(),
            Some("two"),
            "never replaced by an older version"
        );
        cache.remove(&id);
        assert!(matches!(cache.get(&slot, &id, Instant::now()), Cached::Miss));
        cache.put(&id, &connection("three", 3));
        assert_eq!(token(cache.get(&slot, &id, Instant::now())).as_deref(), Some("three"));
        cache.clear();
        assert!(matches!(cache.get(&slot, &id, Instant::now()), Cached::Miss));
    }

    #[test]
    fn a_slot_entry_goes_stale_with_time_and_belongs_to_one_cache() {
        let (cache, other) = (TokenCache::new(Duration::from_secs(60)), TokenCache::new(Duration::from_secs(60)));
        let (slot, id) = (Slot::default(), ConnectionKey::new("github", "alice").id());
        cache.put(&id, &connection("one", 1));
        let now = Instant::now();
        assert!(matches!(cache.get(&slot, &id, now), Cached::Fresh(_)));
        assert!(matches!(cache.get(&slot, &id, now + Duration::from_secs(61)), Cached::Stale(_)));
        assert!(matches!(other.get(&slot, &id, Instant::now()), Cached::Miss), "another cache's entry is not served");
    }
}
