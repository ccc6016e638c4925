//! Whether a shared store is up, as one background probe sees it, so that no request waits on
//! a store that is known to be down.
//!
//! A store operation that fails to reach the backend (refused, dropped, timed out) marks the
//! store down. While it is down, operations fail at once instead of each waiting for its own
//! timeout: requests with cached tokens are served from the cache at full speed, the rest get
//! `503 token_store_unavailable` quickly. One probe at a time pings the backend, 100 ms after
//! the failure and then with a doubling pause up to 2 s, and marks it up again. While up, the
//! probe pings every 5 s, so `tollgate_store_up` is true at scrape time without traffic and
//! without `/readyz` calls.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use crate::metrics::Metrics;

/// How often an up store is pinged.
pub const EVERY: Duration = Duration::from_secs(5);
/// The first pause after a failure, and the longest.
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LONGEST_RETRY: Duration = Duration::from_secs(2);

/// The store's state, shared by its operations and its probe.
#[derive(Debug)]
pub struct Health {
    up: AtomicBool,
    /// Why the store was last found down (secret-free, from `kind_text`).
    why: Mutex<String>,
    metrics: Metrics,
    /// Wakes the probe when an operation finds the store down.
    wake: Arc<Notify>,
}

impl Health {
    pub fn new(metrics: Metrics) -> Arc<Health> {
        metrics.store_up.set(1);
        Arc::new(Health {
            up: AtomicBool::new(true),
            why: Mutex::new(String::new()),
            metrics,
            wake: Arc::new(Notify::new()),
        })
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// An operation could not reach the backend, for `why`: down until the probe says
    /// otherwise.
    pub fn mark_down(&self, why: &str) {
        *self.why.lock().unwrap_or_else(|p| p.into_inner()) = why.to_string();
        if self.up.swap(false, Ordering::AcqRel) {
            self.metrics.store_up.set(0);
            tracing::warn!(
                reason = why,
                "the token store is down; requests stop waiting for it until a probe finds it back"
            );
            self.wake.notify_one();
        }
    }

    /// An operation could not reach part of the backend (one Cluster node): the probe looks
    /// now, and decides.
    pub fn suspect(&self) {
        self.wake.notify_one();
    }

    /// What an operation says while the store is down.
    pub fn down_because(&self) -> String {
        let why = self.why.lock().unwrap_or_else(|p| p.into_inner());
        format!("the store is down ({why}); a probe is checking it")
    }

    fn mark_up(&self) {
        if !self.up.swap(true, Ordering::AcqRel) {
            tracing::info!("the token store is back");
        }
        self.metrics.store_up.set(1);
    }
}

/// A ping of the backend: `Err` says why it failed.
pub type Ping = Box<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// Starts the one probe of `health`, on the current runtime if there is one. It ends when the
/// store (the last strong reference to `health`) is dropped.
pub fn spawn_probe(health: &Arc<Health>, ping: Ping) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    let (weak, wake): (Weak<Health>, Arc<Notify>) = (Arc::downgrade(health), health.wake.clone());
    runtime.spawn(async move {
        let mut retry = FIRST_RETRY;
        // The first look is at once: a store that is down at start shows so, and a primary
        // named by sentinels is known before the first request.
        let mut first = true;
        loop {
            let wait = match weak.upgrade() {
                Some(_) if first => Duration::ZERO,
                Some(health) if health.is_up() => EVERY,
                Some(_) => retry,
                None => return,
            };
            first = false;
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                // Found down by an operation: the first retry comes a short pause later.
                _ = wake.notified() => tokio::time::sleep(FIRST_RETRY).await,
            }
            let answer = ping().await;
            let Some(health) = weak.upgrade() else { return };
            match answer {
                Ok(()) => {
                    health.mark_up();
                    retry = FIRST_RETRY;
                }
                Err(why) => {
                    health.mark_down(&why);
                    retry = (retry * 2).min(LONGEST_RETRY);
                }
            }
        }
    });
}
