//! Per-connection health from real traffic, without a store write per request.
//!
//! A request looks at the connection it already holds (from the cache): when its recorded
//! health is `healthy` and the last success is under [`FRESH_FOR`] old, there is nothing to
//! record and nothing is done. Otherwise the outcome (the upstream's answer to the injected
//! token: `401` is a failure, anything else a success) is noted in memory, keyed by
//! connection, the later outcome of each kind kept. Every few seconds the notes are written
//! (`Broker::flush_health`, in `amend.rs`): one write per connection that changed, under the connection's
//! refresh lock, so a note never races a renewal. A connection therefore costs at most one
//! write per [`FRESH_FOR`] while it stays healthy, and one more when its health changes.

use std::collections::HashMap;
use std::sync::Mutex;

use super::keys::Keyed;
use super::model::{Connection, ConnectionKey, Health};

/// A healthy connection's last success is written again after this many seconds.
pub const FRESH_FOR: u64 = 600;

/// Outcomes not written yet, by connection id.
#[derive(Default)]
pub struct Observations {
    pending: Mutex<HashMap<String, (ConnectionKey, Health)>>,
}

impl std::fmt::Debug for Observations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observations").finish_non_exhaustive()
    }
}

impl Observations {
    pub fn note(&self, keyed: &Keyed, failure: Option<&str>, now: u64) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let (_, health) = pending.entry(keyed.id.clone()).or_insert_with(|| (keyed.key.clone(), Health::default()));
        match failure {
            None => health.succeeded(now),
            Some(code) => health.failed(now, code),
        }
    }

    pub(super) fn take(&self) -> Vec<(String, ConnectionKey, Health)> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.drain().map(|(id, (key, health))| (id, key, health)).collect()
    }

    pub(super) fn put_back(&self, id: String, key: ConnectionKey, health: Health) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.entry(id).or_insert_with(|| (key, Health::default())).1.merge(&health);
    }
}

/// Whether an outcome on `connection` at `now` is worth noting.
pub fn due(connection: &Connection, now: u64) -> bool {
    connection.health.state() != "healthy"
        || connection.health.last_success_at.is_none_or(|at| now.saturating_sub(at) >= FRESH_FOR)
}
