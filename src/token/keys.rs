//! The connection keys a request uses, each with its opaque id ([`Keyed`]), and the keys one
//! principal's requests have used ([`Principal`]). A verified caller carries its
//! `Principal` for as long as its credential is remembered, so a request on a cached token
//! costs no hashing and no lookup in the shared cache's table: the key holds the cache entry
//! it last found (`cache::Slot`).

use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use super::cache::{Cached, Slot, TokenCache};
use super::model::ConnectionKey;

/// A connection key with its id, computed once, and the token cache's entry it last found.
#[derive(Debug)]
pub struct Keyed {
    pub key: ConnectionKey,
    pub id: String,
    slot: Slot,
}

impl Keyed {
    pub fn new(key: ConnectionKey) -> Arc<Keyed> {
        let id = key.id();
        Arc::new(Keyed { key, id, slot: Slot::default() })
    }

    /// What `cache` holds for this connection as of `at`, through the entry this key found
    /// last time.
    pub fn cached(&self, cache: &TokenCache, at: Instant) -> Cached {
        cache.get(&self.slot, &self.id, at)
    }
}

/// An end user (or service) whose connections are used, with the connection keys its
/// requests have used, by connector index, made on first use. A few connectors per principal
/// is the norm; past [`Principal::LIMIT`] keys the list starts over.
///
/// Indices are those of the configuration the principal's caller was verified under: a
/// verified caller is only ever used with that configuration (`caller::memo` and
/// `caller::recent` verify again after a reload), so an index always names the same connector.
pub struct Principal {
    pub name: String,
    keys: Mutex<Vec<(usize, Arc<Keyed>)>>,
}

impl Principal {
    const LIMIT: usize = 16;

    pub fn new(name: impl Into<String>) -> Self {
        Principal { name: name.into(), keys: Mutex::default() }
    }

    /// The key of this principal's connection to connector `index`, named `connector`.
    pub fn keyed(&self, index: usize, connector: &str) -> Arc<Keyed> {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, found)) = keys.iter().find(|(i, _)| *i == index) {
            debug_assert_eq!(found.key.connector, connector, "a principal outlived its configuration");
            return found.clone();
        }
        if keys.len() >= Self::LIMIT {
            keys.clear();
        }
        let keyed = Keyed::new(ConnectionKey::new(connector, self.name.as_str()));
        keys.push((index, keyed.clone()));
        keyed
    }
}

impl std::fmt::Debug for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Principal").field("name", &self.name).finish_non_exhaustive()
    }
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_principal_keeps_one_key_per_connector() {
        let alice = Principal::new("alice");
        let github = alice.keyed(0, "github");
        assert!(Arc::ptr_eq(&github, &alice.keyed(0, "github")));
        let slack = alice.keyed(1, "slack");
        assert_eq!((slack.key.connector.as_str(), slack.key.principal.as_str()), ("slack", "alice"));
        assert_eq!(slack.id, ConnectionKey::new("slack", "alice").id());
        assert!(!Arc::ptr_eq(&github, &slack));
    }
}
