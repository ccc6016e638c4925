//! The request path: forward-proxy (absolute-form) and gateway requests, and `POST /connect`.
//! `pipeline.rs` runs the phases; the other files are the phases, in the order they run, and
//! what they share. The router (`router.rs`) hands requests in; nothing here calls back out
//! to the router, the OAuth pages or the tunnel.

pub mod context;
pub mod credentials;
pub mod error;
pub mod headers;
pub mod identity;
pub mod local;
pub mod pipeline;
pub mod policy;
pub mod redact;
pub mod replay;
pub mod target;
pub mod upstream;
pub mod websocket;

use std::sync::Arc;

use http::Response;

use crate::body::Body;
use crate::caller::Memo;
use crate::config::Config;
use crate::metrics::{ConnectorSeries, Metrics};
use crate::token::broker::Broker;
use context::Record;
use error::{error_response, ErrorContext, ProxyError};
use upstream::Upstream;

/// What a request needs: the config it started with, the broker, the upstream clients, the
/// metrics. Shared by every connection of every listener.
#[derive(Debug)]
pub struct State {
    pub config: Arc<Config>,
    pub broker: Broker,
    pub upstream: Upstream,
    pub metrics: Metrics,
    /// The per-connector metric series, by connector index.
    pub series: Vec<ConnectorSeries>,
}

/// What one client connection keeps between its requests.
#[derive(Debug, Default)]
pub struct Session {
    /// The last caller credential verified on this connection.
    pub callers: Memo,
    /// The response timer and the last upstream connection of this connection.
    pub upstream: Arc<crate::pool::Affinity>,
    /// The client's address (for the console's audit entries).
    pub peer: Option<std::net::SocketAddr>,
}

/// The one edge where a result becomes a response: refusals rendered, the audit line and
/// the metrics written once.
pub fn respond(record: Record, result: Result<Response<Body>, ProxyError>) -> Response<Body> {
    let (response, error) = match result {
        Ok(response) => (response, None),
        Err(e) => {
            if e.code() == error::ErrorCode::Internal {
                tracing::error!(request_id = %record.request_id, error = %e, "internal error");
            }
            let url = record.url();
            let context = ErrorContext {
                connector: record.connector_name(),
                url: url.as_deref(),
                request_id: &record.request_id,
                gateway: record.gateway,
            };
            (error_response(&e, &context), Some(e))
        }
    };
    record.finish(response.status(), error.as_ref());
    response
}
