//! Phase `forward` for an allowed WebSocket upgrade (`allow_websocket: true`): the upgrade
//! request goes upstream with its credential like any other request; only when the upstream
//! answers `101 Switching Protocols` are the two connections joined and bytes relayed. Any
//! other answer is relayed as it came and no bytes flow.

use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::error::ProxyError;
use super::policy::Decision;
use super::{Body, State};
use crate::domains::Target;

/// Sends the upgrade request and, on 101, relays bytes between the caller and the upstream.
pub async fn forward(
    state: &State,
    affinity: &std::sync::Arc<super::affinity::Affinity>,
    decision: &Decision<'_>,
    target: &Target,
    mut parts: http::request::Parts,
    client_upgrade: hyper::upgrade::OnUpgrade,
) -> Result<Response<Body>, ProxyError> {
    // Cleaning removed the hop-by-hop upgrade headers; this request asks for the switch itself.
    parts.headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    parts.headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    let request = Request::from_parts(parts, Empty::new().map_err(|never| match never {}).boxed());
    let (mut response, _) = state.upstream.forward(decision.index, target, request, affinity).await?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(response);
    }
    let upstream_upgrade = hyper::upgrade::on(&mut response);
    let connector = decision.connector.name.clone();
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    let (parts, upstream_body) = response.into_parts();
    tokio::spawn(async move {
        // The answer's body holds the upstream connection until its upgrade completes.
        let _held = upstream_body;
        let (client, upstream) = match tokio::try_join!(client_upgrade, upstream_upgrade) {
            Ok(both) => both,
            Err(e) => return tracing::debug!(%connector, error = %e, "WebSocket upgrade did not complete"),
        };
        let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            tracing::debug!(%connector, error = %e, "WebSocket relay ended with an error");
        }
    });
    Ok(Response::from_parts(parts, Empty::new().map_err(|never| match never {}).boxed()))
}

/// Takes the caller's side of the upgrade out of the request, before it is taken apart.
pub fn client_side(request: &mut Request<Incoming>) -> hyper::upgrade::OnUpgrade {
    hyper::upgrade::on(request)
}
