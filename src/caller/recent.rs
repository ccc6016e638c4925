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
//! - failures are never kept, so the table holds only credentials that verified. It is bounded
//!   by two generations of [`GENERATION`] entries: new entries go to the current one, a hit in
//!   the older one moves the entry forward, and a full current generation becomes the older one
//!   (dropping the oldest), so a credential in use is never dropped for ones that are not.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, LazyLock, Mutex, Weak};

use super::Caller;
use crate::config::Config;
use crate::secret::Secret;

/// Entries per generation (two are kept: at most twice this many credentials).
pub const GENERATION: usize = 65_536;

#[derive(Clone)]
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
    slots: Mutex<Generations>,
}

/// The slots are already seeded hashes: the tables use them as they are.
type Slots = HashMap<u64, Remembered, std::hash::BuildHasherDefault<Spread>>;

#[derive(Default)]
struct Generations {
    current: Slots,
    older: Slots,
}

/// Hashes a slot (a seeded 64-bit hash already) to itself: the table's own default, SipHash,
/// would hash every request's slot again.
#[derive(Default)]
struct Spread(u64);

impl std::hash::Hasher for Spread {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed; any other input still spreads.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl Generations {
    fn insert(&mut self, slot: u64, remembered: Remembered) {
        if self.current.len() >= GENERATION && !self.current.contains_key(&slot) {
            self.older = std::mem::take(&mut self.current);
        }
        self.current.insert(slot, remembered);
    }
}

pub(super) static RECENT: LazyLock<Recent> =
    LazyLock::new(|| Recent { hasher: foldhash::fast::RandomState::default(), slots: Mutex::default() });

impl Recent {
    /// The entry this value hits, if any (cloned: three reference counts, no allocation), so
    /// a connection can keep it as its own memory.
    pub fn recall(&self, value: &[u8], config: &Arc<Config>, now: u64) -> Option<Remembered> {
        let slot = self.hasher.hash_one(value);
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = slots.current.get(&slot) {
            return found.recall(value, config, now).map(|_| found.clone());
        }
        let found = slots.older.remove(&slot)?;
        found.recall(value, config, now)?;
        slots.insert(slot, found.clone());
        Some(found)
    }

    pub fn remember(&self, remembered: Remembered) {
        let slot = self.hasher.hash_one(remembered.credential.expose().as_bytes());
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.older.remove(&slot);
        slots.insert(slot, remembered);
    }

    #[cfg(test)]
    fn len(&self) -> (usize, usize) {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        (slots.current.len(), slots.older.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new config each call: entries verified under one never hit under another.
    fn minimal_config() -> Arc<Config> {
        let yaml = "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nencryption_keys: [{ id: k1, secret: \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\" }]\nconnectors: []\n";
        let env = crate::config::Environment::from_vars([("UNUSED", "x")]);
        Arc::new(Config::from_yaml(yaml, &env).expect("a minimal config"))
    }

    fn caller(principal: &str, valid_until: Option<u64>) -> Arc<Caller> {
        Arc::new(Caller {
            principal: crate::token::Principal::new(principal),
            kind: super::super::CallerKind::Jwt,
            allowed: None,
            claimed_connector: None,
            username: None,
            valid_until,
            admin: false,
        })
    }

    #[test]
    fn a_hit_needs_the_same_value_config_and_time() {
        let table = Recent { hasher: Default::default(), slots: Mutex::default() };
        let (config, other) = (minimal_config(), minimal_config());
        let credential = Secret::new("Bearer alice-jwt");
        table.remember(Remembered { config: Arc::downgrade(&config), credential, caller: caller("alice", Some(100)) });
        let hit = table.recall(b"Bearer alice-jwt", &config, 100);
        assert_eq!(hit.map(|r| r.caller.principal.name.clone()), Some("alice".into()));
        assert!(table.recall(b"Bearer alice-jwt", &config, 101).is_none(), "expired");
        assert!(table.recall(b"Bearer alice-jwt", &other, 50).is_none(), "another config");
        assert!(table.recall(b"Bearer alice-jwX", &config, 50).is_none(), "another value");
        assert_eq!(table.len(), (1, 0));
    }

    #[test]
    fn a_credential_in_use_outlives_a_full_generation() {
        let table = Recent { hasher: Default::default(), slots: Mutex::default() };
        let config = minimal_config();
        let remember = |value: String| {
            let credential = Secret::new(value);
            table.remember(Remembered { config: Arc::downgrade(&config), credential, caller: caller("u", None) });
        };
        remember("Bearer kept".into());
        for i in 0..GENERATION {
            remember(format!("Bearer other-{i}"));
        }
        // The first generation filled and aged; "kept" is in the older one and moves forward.
        assert_eq!(table.len(), (1, GENERATION));
        assert!(table.recall(b"Bearer kept", &config, 0).is_some());
        assert_eq!(table.len(), (2, GENERATION - 1));
        for i in 0..GENERATION {
            remember(format!("Bearer more-{i}"));
        }
        assert!(table.recall(b"Bearer kept", &config, 0).is_some(), "in use, so kept");
        assert!(table.recall(b"Bearer other-5", &config, 0).is_none(), "two generations old: dropped");
    }
}
