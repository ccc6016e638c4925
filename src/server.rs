//! The accept loop shared by every listener: HTTP/1.1 connections served by hyper with the
//! configured limits, until shutdown is signalled; then accepting stops and open connections
//! finish their current request before closing (graceful shutdown).

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::proxy::Body;

/// Per-connection limits.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub max_header_bytes: usize,
    pub max_connections: usize,
    pub header_read_timeout: Duration,
}

/// Serves `listener` until `shutdown` turns true. `per_connection` makes the request handler
/// of each accepted connection, so a handler can keep what its connection's requests share.
pub async fn serve<M, F, Fut>(
    listener: TcpListener,
    limits: ConnLimits,
    per_connection: M,
    mut shutdown: watch::Receiver<bool>,
) where
    M: Fn() -> F + Send + 'static,
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
{
    // Each connection task holds a sender; when all are dropped, every connection is done.
    let (alive, mut drained) = mpsc::channel::<()>(1);
    // Each connection holds a permit; without one, a new connection is closed at once.
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    // hyper answers 431 itself past its buffer; the pipeline's own check (with the JSON error)
    // runs below that, so the buffer is kept comfortably above the configured limit.
    let buffer = (limits.max_header_bytes * 2).max(16 * 1024);
    loop {
        let (stream, _) = tokio::select! {
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
        let handler = per_connection();
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(buffer)
            .keep_alive(true);
        let conn = builder.serve_connection(TokioIo::new(stream), service_fn(handler)).with_upgrades();
        let alive = alive.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let (_alive, _permit) = (alive, permit);
            if let Err(e) = until_shutdown(conn, stop).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    drop(alive);
    let _ = drained.recv().await;
}

/// Drives a connection; once `stop` changes, lets it finish the request in flight and close.
///
/// The shutdown signal is registered for a wake-up once, on the first poll, and afterwards
/// only read (one atomic load per poll): polling `changed()` every time the connection makes
/// progress takes the signal's lock twice per request.
async fn until_shutdown<C>(conn: C, stop: watch::Receiver<bool>) -> Result<(), hyper::Error>
where
    C: Future<Output = Result<(), hyper::Error>> + GracefulConnection,
{
    let mut conn = std::pin::pin!(conn);
    let mut waiter = stop.clone();
    // Wakes this task when the signal changes. A task's waker stays the same across polls,
    // so the registration made by the first poll stays good.
    let mut changed = std::pin::pin!(async move {
        let _ = waiter.changed().await;
    });
    let mut registered = false;
    let mut stopping = false;
    std::future::poll_fn(|cx| {
        if !stopping {
            let signalled = stop.has_changed().unwrap_or(true);
            if !registered {
                registered = true;
                stopping = signalled || changed.as_mut().poll(cx).is_ready();
            } else {
                stopping = signalled;
            }
            if stopping {
                // Finish the request in flight, then close.
                conn.as_mut().shutdown_gracefully();
            }
        }
        conn.as_mut().poll(cx)
    })
    .await
}

/// A connection that can be asked to close once its request in flight is answered.
trait GracefulConnection {
    fn shutdown_gracefully(self: std::pin::Pin<&mut Self>);
}

impl<I, S> GracefulConnection for hyper::server::conn::http1::UpgradeableConnection<I, S>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming>,
    S::ResBody: 'static,
    <S::ResBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn shutdown_gracefully(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}
