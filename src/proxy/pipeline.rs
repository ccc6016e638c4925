//! THE REQUEST PATH. Each phase is one call returning a typed value or a typed error, in the
//! order they run (docs/architecture.md draws the same chart):
//!
//! ```text
//! identify -> resolve_target -> authorize -> refuse_upgrades -> refuse_echo_methods
//!          -> attach_credentials -> forward (replay.rs: one renewal and retry on an
//!             upstream 401; redact.rs: echoed credential masked)
//! ```
//!
//! Its callers (the router, and the tunnel for its inner requests) have checked the header
//! limit; they turn an error into a response and write the log line and metrics.

use std::sync::Arc;

use http::{Request, Response};

use super::context::Record;
use super::credentials::{attach_credentials, refuse_echo_methods, refuse_upgrades};
use super::error::ProxyError;
use super::headers::Asked;
use super::identity::identify;
use super::policy::authorize;
use super::target::{resolve_target, Route};
use super::{replay, Session, State};
use crate::body::{Body, Inbound};
use crate::caller::Caller;
use crate::clock::unix_now;

/// Runs a forward or gateway request through every phase. `caller` is given for requests
/// inside a CONNECT tunnel, authenticated on the CONNECT; otherwise the connection's memo
/// (in `session`) verifies the request's credential.
pub async fn run(
    state: &State,
    session: &Session,
    mut request: Request<Inbound>,
    route: Route,
    record: &mut Record,
    caller: Option<Arc<Caller>>,
) -> Result<Response<Body>, ProxyError> {
    let config = &state.config;
    let now = unix_now();
    let gateway_name = match &route {
        Route::Gateway { name, .. } => Some(name.as_str()),
        _ => None,
    };
    let asked = Asked::of(request.headers());
    let caller = match caller {
        Some(caller) => caller,
        None => identify(&asked, record.gateway, config, &session.callers, now).await?,
    };
    record.caller = Some(caller.clone());

    let target = record.set_target(resolve_target(&route, config)?);

    let decision = authorize(&asked, &caller, gateway_name, &target, config)?;
    record.connector = Some(decision.index);
    let websocket = refuse_upgrades(asked.upgrade, decision.connector)?;
    refuse_echo_methods(request.method())?;

    let credential = state
        .broker
        .token_for(decision.index, decision.connector, &caller.principal, &target, now, record.started())
        .await?;
    let client_upgrade = websocket.then(|| super::websocket::client_side(&mut request));
    let (parts, body) = request.into_parts();
    let mut outgoing = attach_credentials(&parts, decision.connector, &target);
    if let Some(client_upgrade) = client_upgrade {
        outgoing.upgrade = true;
        let (upstream, token) = (&session.upstream, &credential.token);
        // Boxed: a rare path's large future would enlarge every request's.
        let upgrade = super::websocket::forward(state, upstream, &decision, &target, &outgoing, token, client_upgrade);
        return Box::pin(upgrade).await;
    }

    // Not boxed: boxing copied this 1.3 KB future into a fresh allocation on every request,
    // which cost more instructions and cache misses than the moves it saved
    // (`make bench-callgrind`, `make bench-callgrind-paced`; BENCHMARKS.md round twelve).
    replay::forward(state, &session.upstream, &decision, &target, &outgoing, body, credential).await
}
