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
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let (_alive, _permit) = (alive, permit);
            tokio::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                _ = stop.changed() => {
                    // Finish the request in flight, then close.
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    drop(alive);
    let _ = drained.recv().await;
}
