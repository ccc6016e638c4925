//! One router above the request path: each listener hands every request to exactly one
//! place. On the proxy listener that is the OAuth pages (`/oauth/...`), the CONNECT tunnel,
//! Tollgate's own paths (`POST /connect`, and the refusal of anything else that is not proxy
//! traffic), or the request path itself ([`crate::proxy::pipeline::run`]) for forward-proxy and
//! gateway requests. The admin listener goes to [`admin`], the public listener to the OAuth
//! pages alone.
//!
//! Every listener's header limit is checked here, once, before anything else sees the request
//! (a tunnel checks its inner requests itself). The router decides nothing else: the phases
//! and the wings do the work, and none of them calls back up into this file.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response};

use crate::body::{Body, Inbound};
use crate::intercept::tunnel;
use crate::live::Shared;
use crate::proxy::context::{next_request_id, Record};
use crate::proxy::error::{error_response, ErrorContext};
use crate::proxy::headers::check_header_limit;
use crate::proxy::target::{route, Route};
use crate::proxy::{local, pipeline, respond, Session, State};
use crate::server::{Busy, Timed};

/// A request on the proxy listener.
pub async fn proxy(
    shared: Arc<Shared>,
    session: Arc<Session>,
    request: Request<Inbound>,
    busy: Busy,
) -> Result<Response<Timed>, Infallible> {
    let state = shared.current();
    let path = request.uri().path();
    if request.uri().scheme().is_none() && (path.starts_with("/oauth/") || path.starts_with("/console/")) {
        return Ok(busy.answer(Box::pin(pages(&shared, &state, session.peer, request)).await));
    }
    let mut record = Record::start(request.method(), &state);
    let route = route(request.method(), request.uri(), &state.config);
    record.gateway = matches!(route, Route::Gateway { .. } | Route::Local(_));
    let result = match check_header_limit(request.headers(), state.config.limits.max_header_bytes) {
        Err(refused) => Err(refused),
        // The rare routes are boxed: their futures are large, and this one is moved a few
        // times for every request.
        Ok(()) => match route {
            Route::Connect => Box::pin(tunnel::open(&shared, &state, request, &mut record)).await,
            Route::Local(path) => Box::pin(local::handle_local(&state, &session, request, &path, &mut record)).await,
            route => pipeline::run(&state, &session, request, route, &mut record, None).await,
        },
    };
    Ok(busy.answer(respond(record, result)))
}

/// A request on the admin listener.
pub async fn admin(
    shared: Arc<Shared>,
    peer: SocketAddr,
    request: Request<Inbound>,
    busy: Busy,
) -> Result<Response<Timed>, Infallible> {
    let limit = shared.current().config.limits.max_header_bytes;
    let response = match check_header_limit(request.headers(), limit) {
        Err(refused) => crate::admin::refuse(&refused),
        Ok(()) => crate::admin::handle(&shared, peer, request).await,
    };
    Ok(busy.answer(response))
}

/// A request on the public listener: the OAuth pages and the console only.
pub async fn public(
    shared: Arc<Shared>,
    peer: SocketAddr,
    request: Request<Inbound>,
    busy: Busy,
) -> Result<Response<Timed>, Infallible> {
    let state = shared.current();
    Ok(busy.answer(pages(&shared, &state, Some(peer), request).await))
}

/// The OAuth pages and the console, on whichever listener they are asked for.
async fn pages(shared: &Shared, state: &State, peer: Option<SocketAddr>, request: Request<Inbound>) -> Response<Body> {
    match check_header_limit(request.headers(), state.config.limits.max_header_bytes) {
        Err(refused) => {
            error_response(&refused, &ErrorContext { request_id: &next_request_id(), ..Default::default() })
        }
        Ok(()) if request.uri().path().starts_with("/console") => {
            crate::console::handle(shared, state, peer, request).await
        }
        Ok(()) => crate::oauth::flow::handle(state, request).await,
    }
}
