//! What one client connection keeps for its upstream requests between them: the timer of
//! the response timeout, armed again for each request instead of made anew, and the upstream
//! connection its last answer came over.
//!
//! An agent calling one API over one keep-alive connection then goes to the same upstream
//! connection each time without the shared pool's lock and lookup. The kept connection is
//! only reused for the same pool (so a config reload never carries it to another connector's
//! address policy) and the same origin, and under the pool's idle limit; when the client
//! connection closes it goes back to the pool.

use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::time::{Instant, Sleep};

use super::{Origin, Pool};
use crate::http1::{Conn, Return};

struct Kept {
    pool: Arc<Pool>,
    origin: Origin,
    conn: Conn,
    since: Instant,
}

#[derive(Default)]
pub struct Affinity {
    timer: Mutex<Option<Pin<Box<Sleep>>>>,
    kept: Mutex<Option<Kept>>,
}

impl std::fmt::Debug for Affinity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Affinity").finish_non_exhaustive()
    }
}

impl Affinity {
    /// The connection's timer, set to `deadline`. Moving a registered timer later does not
    /// touch the runtime's timer wheel, where a new timer per request would be inserted and
    /// removed again.
    pub fn timer(&self, deadline: Instant) -> Pin<Box<Sleep>> {
        let kept = self.timer.lock().unwrap_or_else(|p| p.into_inner()).take();
        match kept {
            Some(mut timer) => {
                timer.as_mut().reset(deadline);
                timer
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        }
    }

    /// Gives the timer back for the connection's next request.
    pub fn keep_timer(&self, timer: Pin<Box<Sleep>>) {
        *self.timer.lock().unwrap_or_else(|p| p.into_inner()) = Some(timer);
    }

    /// The kept upstream connection, if it belongs to `pool`, goes to `origin`, is still open
    /// and has not been idle longer than `idle_timeout`.
    pub fn take(&self, pool: &Arc<Pool>, origin: &Origin, now: Instant) -> Option<Conn> {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let usable = kept.as_mut().is_some_and(|k| {
            Arc::ptr_eq(&k.pool, pool)
                && k.origin == *origin
                && now.saturating_duration_since(k.since) < pool.idle_timeout()
                && k.conn.is_open()
        });
        if usable {
            return kept.take().map(|k| k.conn);
        }
        None
    }

    /// Keeps a connection whose last answer was read to its end; the one kept before goes
    /// back to its pool.
    pub fn keep(&self, pool: Arc<Pool>, origin: Origin, conn: Conn) {
        let new = Kept { pool, origin, conn, since: Instant::now() };
        let old = self.kept.lock().unwrap_or_else(|p| p.into_inner()).replace(new);
        if let Some(old) = old {
            old.pool.put_since(old.origin, old.conn, old.since);
        }
    }
}

impl Drop for Affinity {
    /// The client connection is gone: its upstream connection is still good for others.
    fn drop(&mut self) {
        let kept = self.kept.get_mut().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(k) = kept {
            k.pool.put_since(k.origin, k.conn, k.since);
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

impl Return for Back {
    fn give(self, conn: Conn) {
        match self.affinity {
            Some(affinity) => affinity.keep(self.pool, self.origin, conn),
            None => self.pool.put(self.origin, conn),
        }
    }
}
