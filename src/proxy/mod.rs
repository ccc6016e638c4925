//! The proxy listener: forward-proxy (absolute-form) and gateway requests, and `POST /connect`.
//! `pipeline.rs` is the request path; the other files are its phases, in the order they run.

pub mod affinity;
pub mod context;
pub mod credentials;
pub mod error;
pub mod h1;
pub mod headers;
pub mod identity;
pub mod local;
pub mod pipeline;
pub mod policy;
pub mod pool;
pub mod redact;
pub mod replay;
pub mod target;
pub mod upstream;
pub mod websocket;

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;

use crate::caller::Memo;
use crate::config::Config;
use crate::metrics::{ConnectorSeries, Metrics};
use crate::server::Inbound;
use crate::server::{Busy, Timed};
use crate::token::broker::Broker;
use context::Record;
use error::{error_response, ErrorContext, ProxyError};
use target::{route, Route};
use upstream::Upstream;

/// Boxed error for bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every response body Tollgate sends: streamed from upstream or made here.
pub type Body = BoxBody<Bytes, BoxError>;

/// What a request needs: the config it started with, the broker, the upstream clients, the
/// metrics. Shared by every connection of every listener.
#[derive(Debug)]
pub struct State {
    pub config: Arc<Config>,
    /// The CA for CONNECT interception, shared by every state; empty until it could be loaded
    /// (a generated CA lives in the token store, which may be down at start).
    pub interception: Arc<std::sync::OnceLock<Arc<crate::intercept::Authority>>>,
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
    pub upstream: Arc<affinity::Affinity>,
}

/// Handles one request on the proxy listener. Never fails: every error becomes a response.
pub async fn handle(
    shared: Arc<crate::app::Shared>,
    session: Arc<Session>,
    request: Request<Inbound>,
    busy: Busy,
) -> Result<Response<Timed>, std::convert::Infallible> {
    let state = shared.current();
    if request.uri().scheme().is_none() && request.uri().path().starts_with("/oauth/") {
        return Ok(busy.answer(Box::pin(crate::oauth::flow::handle(&state, request)).await));
    }
    let mut record = Record::start(request.method(), &state);
    let route = route(request.method(), request.uri(), &state.config);
    record.gateway = matches!(route, Route::Gateway { .. });
    let result = match route {
        // The rare routes are boxed: their futures are large, and this one is moved a few
        // times for every request.
        Route::Connect => Box::pin(crate::intercept::tunnel::open(&shared, &state, request, &mut record)).await,
        Route::Local(path) => {
            record.gateway = true;
            Box::pin(local::handle_local(&state, &session, request, &path, &mut record)).await
        }
        route => pipeline::run(&state, &session, request, route, &mut record, None).await,
    };
    Ok(busy.answer(respond(record, result)))
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
