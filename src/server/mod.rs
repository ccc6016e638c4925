//! The accept loop shared by every listener: HTTP/1.1 connections served with the configured
//! limits, until shutdown is signalled; then accepting stops and open connections finish their
//! current request before closing (graceful shutdown).
//!
//! Each connection starts on the fast path (fast.rs), which reads, dispatches and answers the
//! plain requests that are most of the traffic itself, and refuses heads whose framing is
//! ambiguous or malformed. The first request it does not take (a chunked or large body, an
//! upgrade, `CONNECT`, `Expect`, HTTP/1.0, a head over the limit) hands the connection to
//! hyper, with the bytes already read in front, for that one request.

mod fast;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1::UpgradeableConnection;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::body::{Body, Inbound};
use crate::net::prefixed::Prefixed;
use fast::Ended;

/// Per-connection limits.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub max_header_bytes: usize,
    pub max_connections: usize,
    pub header_read_timeout: Duration,
}

/// Serves `listener` until `shutdown` turns true. `per_connection` makes the request handler
/// of each accepted connection, so a handler can keep what its connection's requests share.
/// A handler is given its request's [`Busy`] and hands it back in its answer
/// ([`Busy::answer`]), which ends it when the answer's body is done.
pub async fn serve<M, F, Fut>(
    listener: TcpListener,
    limits: ConnLimits,
    per_connection: M,
    mut shutdown: watch::Receiver<bool>,
) where
    M: Fn(std::net::SocketAddr) -> F + Send + 'static,
    F: Fn(Request<Inbound>, Busy) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Timed>, Infallible>> + Send + 'static,
{
    // Each connection task holds a sender; when all are dropped, every connection is done.
    let (alive, mut drained) = mpsc::channel::<()>(1);
    // Each connection holds a permit; without one, a new connection is closed at once.
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(limit = limits.max_connections, "connection limit reached; closing a new connection");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let handler = per_connection(peer);
        let alive = alive.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let (_alive, _permit) = (alive, permit);
            serve_connection(stream, handler, limits, stop).await;
        });
    }
    drop(listener);
    drop(alive);
    let _ = drained.recv().await;
}

/// Serves one HTTP/1.1 connection, accepted here or opened inside a CONNECT tunnel: the fast
/// path first, then hyper for a request it hands over, with the connection's head timeout and
/// the server's shutdown (`stop`) as in `until_shutdown`.
pub async fn serve_connection<S, F, Fut>(mut stream: S, handler: F, limits: ConnLimits, stop: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(Request<Inbound>, Busy) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Timed>, Infallible>> + Send + 'static,
{
    // hyper answers 431 itself past its buffer; the router's own check (with the JSON error)
    // runs below that, so the buffer is kept comfortably above the configured limit.
    let buffer = (limits.max_header_bytes * 2).max(16 * 1024);
    let clock = Arc::new(HeadClock::new());
    let timeout = limits.header_read_timeout;
    let fast = fast::serve(&mut stream, &handler, &clock, buffer);
    let Some(Ended::HandOff(read)) = until_shutdown(fast, |_| clock.close(), stop.clone(), &clock, timeout).await
    else {
        return;
    };
    let io = Prefixed::new(read, stream);
    serve_with_hyper(io, handler, &clock, buffer, stop, timeout).await;
}

/// Serves a connection the fast path handed over with hyper's HTTP/1.1 server, `buffer` bytes
/// at most per head, until it closes or the server does (`stop`, as in `until_shutdown`).
async fn serve_with_hyper<S, F, Fut>(
    io: Prefixed<S>,
    handler: F,
    clock: &Arc<HeadClock>,
    buffer: usize,
    stop: watch::Receiver<bool>,
    timeout: Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(Request<Inbound>, Busy) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Timed>, Infallible>> + Send + 'static,
{
    let service = {
        let clock = clock.clone();
        // The handler's future goes to hyper as it is: a wrapping future would be one more
        // copy of it per request.
        service_fn(move |request: Request<Incoming>| handler(request.map(Inbound::from), Busy::begin(&clock)))
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    // One request only: the fast path screened its head, and would not see the next one.
    // Each answer goes out in one plain write (head and body copied into one buffer) rather
    // than a vectored one, as on the fast path for small answers.
    // Half-close: a caller that shuts its sending side after its request still gets the
    // answer, and the connection is not read while a request is in flight (a read then would
    // only look for the caller's end, at the cost of a fresh read buffer per request). A
    // caller that is gone is noticed when its answer is written; the upstream call is bounded
    // by `upstream.response_timeout`.
    builder.max_buf_size(buffer).keep_alive(false).writev(false).half_close(true);
    let conn = builder.serve_connection(TokioIo::new(io), service).with_upgrades();
    let graceful = |conn: Pin<&mut UpgradeableConnection<_, _>>| conn.graceful_shutdown();
    if let Some(Err(e)) = until_shutdown(conn, graceful, stop, clock, timeout).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Drives a connection; once `stop` changes, calls `graceful` so that it finishes the request
/// in flight and closes. A connection that has not sent a whole request head within `timeout`
/// of connecting or of its previous answer's end is closed (`limits.header_read_timeout`: slow
/// heads, idle keep-alive): then the answer is `None`.
///
/// The shutdown signal is registered for a wake-up once, on the first poll, and afterwards
/// only read (one atomic load per poll): polling `changed()` every time the connection makes
/// progress takes the signal's lock twice per request. Likewise the head timer is one per
/// connection and looked at only when it fires: per request, the connection's [`HeadClock`]
/// takes three atomic operations and a clock read, where a timer per request head would be
/// inserted into and removed from the runtime's timer wheel.
async fn until_shutdown<C: Future>(
    conn: C,
    graceful: impl FnOnce(Pin<&mut C>),
    stop: watch::Receiver<bool>,
    clock: &HeadClock,
    timeout: Duration,
) -> Option<C::Output> {
    let mut timer = std::pin::pin!(tokio::time::sleep(timeout));
    let mut conn = std::pin::pin!(conn);
    let mut graceful = Some(graceful);
    let mut waiter = stop.clone();
    // Wakes this task when the signal changes. A task's waker stays the same across polls,
    // so the registration made by the first poll stays good.
    let mut changed = std::pin::pin!(async move {
        let _ = waiter.changed().await;
    });
    let mut registered = false;
    std::future::poll_fn(|cx| {
        if !registered || timer.is_elapsed() {
            // A fired timer, or the first poll: see whether the head is overdue; if not,
            // sleep until it would be (the first poll registers the timer).
            loop {
                let deadline = clock.head_deadline(timeout);
                if deadline <= Instant::now() {
                    return Poll::Ready(None);
                }
                timer.as_mut().reset(deadline);
                if timer.as_mut().poll(cx).is_pending() {
                    break;
                }
            }
        }
        if graceful.is_some() {
            let mut stopping = stop.has_changed().unwrap_or(true);
            if !registered {
                registered = true;
                stopping = stopping || changed.as_mut().poll(cx).is_ready();
            }
            if stopping {
                // Finish the request in flight, then close.
                if let Some(graceful) = graceful.take() {
                    graceful(conn.as_mut());
                }
            }
        }
        conn.as_mut().poll(cx).map(Some)
    })
    .await
}

/// When a connection's next request head is due: `timeout` after the end of its previous
/// answer (or its start), unless a request is in flight.
#[derive(Debug)]
struct HeadClock {
    start: Instant,
    /// Requests whose answer has not ended.
    busy: AtomicUsize,
    /// When the last answer ended, in nanoseconds after `start`.
    idle_since: AtomicU64,
    /// The server is closing: the connection ends after the answer in flight.
    closing: AtomicBool,
}

impl HeadClock {
    fn new() -> HeadClock {
        HeadClock {
            start: Instant::now(),
            busy: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            closing: AtomicBool::new(false),
        }
    }

    fn close(&self) {
        self.closing.store(true, Ordering::Release);
    }

    fn closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// The deadline for the next head; a request in flight pushes it a whole timeout away.
    fn head_deadline(&self, timeout: Duration) -> Instant {
        if self.busy.load(Ordering::Acquire) > 0 {
            return Instant::now() + timeout;
        }
        self.start + Duration::from_nanos(self.idle_since.load(Ordering::Acquire)) + timeout
    }
}

/// One request in flight, from its head to the end (or drop) of its answer's body.
pub struct Busy(Arc<HeadClock>);

impl Busy {
    fn begin(clock: &Arc<HeadClock>) -> Busy {
        clock.busy.fetch_add(1, Ordering::AcqRel);
        Busy(clock.clone())
    }

    /// The answer, holding this request in flight until its body is done.
    pub fn answer(self, response: Response<Body>) -> Response<Timed> {
        response.map(|body| Timed { body, _busy: self })
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let since = u64::try_from(self.0.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.0.idle_since.store(since, Ordering::Release);
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A handler's answer, holding its request in flight (`busy`) until the answer's body is done:
/// for the listeners whose handlers do not take the [`Busy`] themselves.
pub async fn answering<Fut>(busy: Busy, answer: Fut) -> Result<Response<Timed>, Infallible>
where
    Fut: Future<Output = Result<Response<Body>, Infallible>>,
{
    let Ok(response) = answer.await;
    Ok(busy.answer(response))
}

/// An answer's body that ends its request's [`Busy`] when it is dropped (hyper drops it once
/// written, or when the connection goes).
pub struct Timed {
    body: Body,
    _busy: Busy,
}

impl http_body::Body for Timed {
    type Data = bytes::Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
