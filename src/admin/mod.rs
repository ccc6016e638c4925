//! The admin listener: `/healthz`, `/readyz` and `/metrics` without a token; everything under
//! `/admin/` behind an admin token compared in constant time; the API itself is `api.rs`.
//! A plain match on the path.

pub mod api;
mod import;

use crate::live::Shared;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::body::Body;
use crate::body::Inbound;
use crate::proxy::context::next_request_id;
use crate::proxy::error::{error_response, ErrorContext, ProxyError};
use crate::proxy::State;

/// A JSON answer of the admin API.
pub(crate) fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    text(status, "application/json", value.to_string())
}

pub(crate) fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Which admin token the request carries (its position in `admin_tokens`), if any. Every
/// token is compared in full.
fn admin_token(request: &Request<Inbound>, state: &State) -> Option<usize> {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let mut found = None;
    for (i, token) in state.config.admin_tokens.iter().enumerate() {
        if constant_time_eq(token.expose().as_bytes(), presented.as_bytes()) {
            found = Some(i);
        }
    }
    found
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let a = ring::digest::digest(&ring::digest::SHA256, a);
    let b = ring::digest::digest(&ring::digest::SHA256, b);
    a.as_ref().iter().zip(b.as_ref()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Serves one request on the admin listener (the router has checked its header limit).
pub async fn handle(shared: &Shared, peer: std::net::SocketAddr, request: Request<Inbound>) -> Response<Body> {
    let state = shared.current();
    let path = request.uri().path().to_string();
    let response = match path.as_str() {
        "/healthz" => text(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" => {
            let store = state.broker.store();
            let up = store.ping().await.is_ok();
            let status = store.status();
            let mut described = serde_json::json!({ "backend": store.backend(), "up": up, "mode": status.mode });
            if let Some(why) = &status.down_because {
                described["reason"] = why.as_str().into();
            }
            if !status.nodes.is_empty() {
                described["nodes"] = serde_json::to_value(&status.nodes).unwrap_or_default();
            }
            let body = serde_json::json!({
                "ready": true,
                "store": described,
                "connectors": state.config.connectors.len(),
                "discovery": state.broker.providers().status(),
            });
            text(StatusCode::OK, "application/json", body.to_string())
        }
        "/metrics" => text(StatusCode::OK, "text/plain; version=0.0.4", state.metrics.render()),
        // The interception CA certificate (public): what runtimes add to their CA bundle.
        "/ca.pem" => match shared.authority() {
            Some(ca) => text(StatusCode::OK, "application/x-pem-file", ca.cert_pem().to_string()),
            None => refuse(&ProxyError::NotFound("the interception CA is not loaded; see the log".into())),
        },
        p if p.starts_with("/admin/") => match admin_token(&request, &state) {
            None => refuse(&ProxyError::AdminUnauthenticated),
            Some(i) => {
                let who = api::Who {
                    actor: format!("admin token {}", i + 1),
                    from: crate::audit::origin(Some(peer), request.headers()),
                };
                api::handle(shared, &state, &who, request).await
            }
        },
        p => refuse(&ProxyError::NotFound(format!("{p} is not an admin route"))),
    };
    response
}

pub(crate) fn refuse(error: &ProxyError) -> Response<Body> {
    let context = ErrorContext { request_id: &next_request_id(), gateway: true, ..Default::default() };
    error_response(error, &context)
}
