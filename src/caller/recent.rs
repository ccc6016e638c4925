//! Credentials verified recently, shared by every connection of the process.
//!
//! A runtime that multiplexes users sends a different caller credential on almost every
//! request, so the per-connection [`Memo`](super::Memo) rarely holds the one presented, and
//! each request would verify a JWT again (two thirds of its instructions with 10,000 users).
//! This table keeps what was verified, keyed by a seeded 64-bit hash of the header value, under
//! the same rules as the memo:
//!
//! - a hit needs the whole header value equal to the one verified, compared without an early
//!   exit (the hash only finds the slot; a collision is a miss and replaces the slot);
//! - only under the configuration it was verified against (a reload verifies again, so a key
//!   removed from the config stops working at once);
//! - a JWT only until its `exp` (plus the leeway `jwt::verify` allows);
//! - failures are never kept, so the table holds only credentials that verified; it is
//!   bounded ([`CAPACITY`]) and starts over when full.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, LazyLock, Mutex, Weak};

use super::Caller;
use crate::config::Config;
use crate::secret::Secret;

/// Entries kept at most; past that the table starts over.
pub const CAPACITY: usize = 65_536;

pub(super) struct Remembered {
    pub config: Weak<Config>,
    pub credential: Secret,
    pub caller: Arc<Caller>,
}

impl Remembered {
    pub fn recall(&self, value: &[u8], config: &Arc<Config>, now: u64) -> Option<Arc<Caller>> {
        let fresh = std::ptr::eq(self.config.as_ptr(), Arc::as_ptr(config))
            && self.caller.valid_until.is_none_or(|until| now <= until)
            && same(self.credential.expose().as_bytes(), value);
        fresh.then(|| self.caller.clone())
    }
}

/// Equality without an early exit, so timing says nothing about how much of a credential
/// matched.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(super) struct Recent {
    /// Seeded at random per process: which slot a value lands in says nothing useful.
    hasher: foldhash::fast::RandomState,
    slots: Mutex<HashMap<u64, Remembered>>,
}

pub(super) static RECENT: LazyLock<Recent> =
    LazyLock::new(|| Recent { hasher: foldhash::fast::RandomState::default(), slots: Mutex::default() });

impl Recent {
    pub fn recall(&self, value: &[u8], config: &Arc<Config>, now: u64) -> Option<Arc<Caller>> {
        let slot = self.hasher.hash_one(value);
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).get(&slot)?.recall(value, config, now)
    }

    pub fn remember(&self, value: &[u8], config: &Arc<Config>, caller: &Arc<Caller>) {
        let slot = self.hasher.hash_one(value);
        let remembered = Remembered {
            config: Arc::downgrade(config),
            credential: Secret::new(String::from_utf8_lossy(value)),
            caller: caller.clone(),
        };
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if slots.len() >= CAPACITY && !slots.contains_key(&slot) {
            slots.clear();
        }
        slots.insert(slot, remembered);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(principal: &str, valid_until: Option<u64>) -> Arc<Caller> {
        Arc::new(Caller {
            principal: principal.into(),
            kind: super::super::CallerKind::Jwt,
            allowed: None,
            claimed_connector: None,
            username: None,
            valid_until,
            keys: Default::default(),
            admin: false,
        })
    }

    #[test]
    fn a_hit_needs_the_same_value_config_and_time() {
        let table = Recent { hasher: Default::default(), slots: Mutex::default() };
        let yaml = "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nencryption_keys: [{ id: k1, secret: \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\" }]\nconnectors: []\n";
        let env = crate::config::Environment::from_vars([("UNUSED", "x")]);
        let load = || Arc::new(Config::from_yaml(yaml, &env).expect("a minimal config"));
        let (config, other) = (load(), load());
        table.remember(b"Bearer alice-jwt", &config, &caller("alice", Some(100)));
        assert_eq!(table.recall(b"Bearer alice-jwt", &config, 100).map(|c| c.principal.clone()), Some("alice".into()));
        assert!(table.recall(b"Bearer alice-jwt", &config, 101).is_none(), "expired");
        assert!(table.recall(b"Bearer alice-jwt", &other, 50).is_none(), "another config");
        assert!(table.recall(b"Bearer alice-jwX", &config, 50).is_none(), "another value");
        assert_eq!(table.len(), 1);
    }
}
