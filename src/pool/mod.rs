//! Upstream connections kept for reuse, outside the request path's phases: the idle
//! connections of one connector by origin (scheme, host, port), here, and the one a client
//! connection keeps for its next request (`affinity.rs`).
//!
//! A connection is handed to one request at a time: it is taken out of the pool for the
//! request and goes back only once the answer's body has been read to its end, so a slow or
//! endless body (server-sent events) never holds up another request. Connections idle longer
//! than the idle timeout, or closed by the upstream, are dropped when met and by a sweep.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

pub mod affinity;

pub use affinity::{Affinity, Back};

use crate::domains::{Host, Target};
use crate::http1::Conn;

/// Where a connection goes. Connections are never shared across connectors: each has its
/// own pool, bound to its address policy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    pub https: bool,
    pub host: Host,
    pub port: u16,
}

impl Origin {
    pub fn of(target: &Target) -> Origin {
        Origin { https: target.scheme == crate::domains::Scheme::Https, host: target.host.clone(), port: target.port }
    }
}

struct Idle {
    conn: Conn,
    since: Instant,
}

/// The idle connections of one connector.
pub struct Pool {
    idle: Mutex<Idling>,
    idle_timeout: Duration,
}

#[derive(Default)]
struct Idling {
    by_origin: HashMap<Origin, Vec<Idle>, foldhash::fast::RandomState>,
    swept: Option<Instant>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("idle_timeout", &self.idle_timeout).finish_non_exhaustive()
    }
}

/// Idle connections kept per origin; more are closed.
const MAX_IDLE_PER_ORIGIN: usize = 256;

/// How often the whole pool is swept of expired and closed connections.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

impl Pool {
    pub fn new(idle_timeout: Duration) -> Pool {
        Pool { idle: Mutex::new(Idling::default()), idle_timeout }
    }

    /// The most recently used open connection to `origin`, if one is idle.
    pub fn take(&self, origin: &Origin) -> Option<Conn> {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.by_origin.get_mut(origin)?;
        while let Some(mut entry) = list.pop() {
            if now.duration_since(entry.since) < self.idle_timeout && entry.conn.is_open() {
                return Some(entry.conn);
            }
        }
        None
    }

    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// Keeps a connection whose last answer was read to its end.
    pub fn put(&self, origin: Origin, conn: Conn) {
        self.put_since(origin, conn, Instant::now());
    }

    /// Keeps a connection idle since `since`.
    pub fn put_since(&self, origin: Origin, conn: Conn, since: Instant) {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.swept.is_none_or(|at| now.duration_since(at) >= SWEEP_EVERY) {
            idle.swept = Some(now);
            let timeout = self.idle_timeout;
            idle.by_origin.retain(|_, list| {
                list.retain_mut(|e| now.duration_since(e.since) < timeout && e.conn.is_open());
                !list.is_empty()
            });
        }
        let list = idle.by_origin.entry(origin).or_default();
        if list.len() < MAX_IDLE_PER_ORIGIN && now.saturating_duration_since(since) < self.idle_timeout {
            list.push(Idle { conn, since });
        }
    }
}
