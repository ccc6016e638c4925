//! Idle upstream connections of one connector, by origin (scheme, host, port).
//!
//! A connection is handed to one request at a time: it is taken out of the pool for the
//! request and goes back only once the answer's body has been read to its end, so a slow or
//! endless body (server-sent events) never holds up another request. Connections idle longer
//! than the idle timeout, or closed by the upstream, are dropped when met and by a sweep.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use tokio::time::Instant;

use super::affinity::Affinity;
use super::{Body, BoxError};
use crate::domains::{Host, Target};

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
    sender: SendRequest<Body>,
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
    pub fn take(&self, origin: &Origin) -> Option<SendRequest<Body>> {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.by_origin.get_mut(origin)?;
        while let Some(entry) = list.pop() {
            if !entry.sender.is_closed() && now.duration_since(entry.since) < self.idle_timeout {
                return Some(entry.sender);
            }
        }
        None
    }

    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// Keeps a connection whose last answer was read to its end.
    pub fn put(&self, origin: Origin, sender: SendRequest<Body>) {
        self.put_since(origin, sender, Instant::now());
    }

    /// Keeps a connection idle since `since`.
    pub fn put_since(&self, origin: Origin, sender: SendRequest<Body>, since: Instant) {
        if sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.swept.is_none_or(|at| now.duration_since(at) >= SWEEP_EVERY) {
            idle.swept = Some(now);
            let timeout = self.idle_timeout;
            idle.by_origin.retain(|_, list| {
                list.retain(|e| !e.sender.is_closed() && now.duration_since(e.since) < timeout);
                !list.is_empty()
            });
        }
        let list = idle.by_origin.entry(origin).or_default();
        if list.len() < MAX_IDLE_PER_ORIGIN && now.saturating_duration_since(since) < self.idle_timeout {
            list.push(Idle { sender, since });
        }
    }
}

/// Where a connection goes back once its answer has been read: to the client connection
/// that used it when there is one, else to the pool.
pub struct Back {
    pub pool: Arc<Pool>,
    pub origin: Origin,
    pub affinity: Option<Arc<Affinity>>,
}

/// An upstream answer's body that gives its connection back once read to the end. Dropped
/// earlier, the connection is dropped with it (hyper then closes it).
pub struct Release {
    inner: Incoming,
    sender: Option<SendRequest<Body>>,
    /// `None` for a connection that switched protocols, which is only kept alive until the
    /// answer is dropped.
    back: Option<Back>,
}

impl Release {
    pub fn new(inner: Incoming, sender: SendRequest<Body>, back: Option<Back>) -> Release {
        let mut release = Release { inner, sender: Some(sender), back };
        if release.inner.is_end_stream() {
            release.give_back();
        }
        release
    }

    fn give_back(&mut self) {
        if let (Some(back), Some(sender)) = (self.back.take(), self.sender.take()) {
            match back.affinity {
                Some(affinity) => affinity.keep(back.pool, back.origin, sender),
                None => back.pool.put(back.origin, sender),
            }
        }
    }
}

impl hyper::body::Body for Release {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.give_back(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.give_back(),
            Poll::Ready(Some(Err(_))) => {
                // A broken body leaves the connection in an unknown state: never reused.
                self.back = None;
            }
            _ => {}
        }
        polled.map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
