//! Phase `forward` for an allowed WebSocket upgrade (`allow_websocket: true`): the upgrade
//! request goes upstream with its credential like any other request; only when the upstream
//! answers `101 Switching Protocols` are the two connections joined and bytes relayed. Any
//! other answer is relayed as it came and no bytes flow.

use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

use super::credentials::Outgoing;
use super::error::ProxyError;
use super::policy::Decision;
use super::upstream::Answer;
use super::State;
use crate::body::Body;
use crate::body::Inbound;
use crate::domains::Target;
use crate::secret::Secret;

/// Sends the upgrade request and, on 101, relays bytes between the caller and the upstream.
pub async fn forward(
    state: &State,
    affinity: &std::sync::Arc<crate::pool::Affinity>,
    decision: &Decision<'_>,
    target: &Target,
    request: &Outgoing<'_>,
    token: &Secret,
    client_upgrade: hyper::upgrade::OnUpgrade,
) -> Result<Response<Body>, ProxyError> {
    let empty = Empty::new().map_err(|never| match never {}).boxed();
    let (answer, _) = state.upstream.forward(decision.index, target, request, token, empty, affinity).await?;
    if answer.head.status != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(super::redact::echoed(Response::from_parts(answer.head, answer.body), token));
    }
    let Answer { mut head, body } = answer;
    let mut upstream = body.into_upgraded().ok_or(ProxyError::Internal)?;
    let connector = decision.connector.name.clone();
    head.headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    head.headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    tokio::spawn(async move {
        let client = match client_upgrade.await {
            Ok(client) => client,
            Err(e) => return tracing::debug!(%connector, error = %e, "WebSocket upgrade did not complete"),
        };
        let mut client = TokioIo::new(client);
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            tracing::debug!(%connector, error = %e, "WebSocket relay ended with an error");
        }
    });
    Ok(Response::from_parts(head, Empty::new().map_err(|never| match never {}).boxed()))
}

/// Takes the caller's side of the upgrade out of the request, before it is taken apart.
pub fn client_side(request: &mut Request<Inbound>) -> hyper::upgrade::OnUpgrade {
    hyper::upgrade::on(request)
}
