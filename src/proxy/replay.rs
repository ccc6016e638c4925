//! Phase `forward` for renewable credentials: when the upstream answers 401 to a token that
//! Tollgate thought valid (revoked early, clock skew), renew it once and send the request
//! again (the credential is written as the head is, so the retry carries the new token). Only
//! requests whose whole body is known and small (`refresh.replay_body_limit`,
//! from `Content-Length`) are kept for a second send; streams are never replayed.

use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Body as _;

use super::credentials::Outgoing;
use super::error::ProxyError;
use super::policy::Decision;
use super::redact;
use super::State;
use crate::body::Body;
use crate::body::Inbound;
use crate::clock::unix_now;
use crate::domains::Target;
use crate::http1::ResponseBody;
use crate::pool::Affinity;
use crate::pool::Back;
use crate::secret::Secret;
use crate::token::broker::Credential;

/// Whether the body can be held for a second send: its length is known from the framing
/// (`Content-Length`, or no body) and within the limit. A chunked body is a stream.
fn replayable(body: &Inbound, limit: u64) -> bool {
    body.size_hint().exact().is_some_and(|n| n <= limit)
}

/// The kept body, for one send. An empty one is boxed without allocating.
fn full(body: Bytes) -> Body {
    if body.is_empty() {
        return http_body_util::Empty::new().map_err(|never| match never {}).boxed();
    }
    Full::new(body).map_err(|never| match never {}).boxed()
}

/// Sends the request; on a 401 to a renewable token, renews once and retries once.
/// `parts` already carry the cleaned headers and the injected credential.
pub async fn forward(
    state: &State,
    affinity: &Arc<Affinity>,
    decision: &Decision<'_>,
    target: &Target,
    request: &Outgoing<'_>,
    body: Inbound,
    credential: Credential,
) -> Result<Response<Body>, ProxyError> {
    let limit = state.config.refresh.replay_body_limit;
    let token = &credential.token;
    let observe = credential.observe;
    let Some((key, version)) = credential.renewal.filter(|_| replayable(&body, limit)) else {
        let body = first_frame_checked(body).await?;
        let response = send(state, affinity, decision, target, request, token, body).await?;
        note(state, observe.as_deref(), response.status());
        return Ok(redact::echoed(response, token));
    };
    let bytes = if body.is_end_stream() {
        Bytes::new()
    } else {
        Limited::new(body, limit as usize).collect().await.map_err(|_| ProxyError::RequestBody)?.to_bytes()
    };
    let response = send(state, affinity, decision, target, request, token, full(bytes.clone())).await?;
    if response.status() != StatusCode::UNAUTHORIZED {
        note(state, observe.as_deref(), response.status());
        return Ok(redact::echoed(response, token));
    }
    // Boxed: a large future on a rare path would enlarge every request's future.
    let renewal = state.broker.renew_refused(decision.index, decision.connector, &key.key, version, unix_now());
    let Some(renewed) = Box::pin(renewal).await else {
        // A refused token that could not be renewed is a failure, whatever was recorded.
        state.broker.observe(&key, Some("upstream_401"), unix_now());
        return Ok(redact::echoed(response, token));
    };
    drop(response);
    tracing::info!(connector = %decision.connector.name, "retrying once with a renewed token after an upstream 401");
    let response = send(state, affinity, decision, target, request, &renewed, full(bytes)).await?;
    let failure = (response.status() == StatusCode::UNAUTHORIZED).then_some("upstream_401");
    state.broker.observe(&key, failure, unix_now());
    Ok(redact::echoed(response, &renewed))
}

/// Notes the upstream's answer to a token whose recorded health is not fresh: `401` refused
/// it, anything else took it.
fn note(state: &State, observe: Option<&crate::token::keys::Keyed>, status: StatusCode) {
    if let Some(keyed) = observe {
        let failure = (status == StatusCode::UNAUTHORIZED).then_some("upstream_401");
        state.broker.observe(keyed, failure, unix_now());
    }
}

async fn send(
    state: &State,
    affinity: &Arc<Affinity>,
    decision: &Decision<'_>,
    target: &Target,
    request: &Outgoing<'_>,
    token: &Secret,
    body: Body,
) -> Result<Response<ResponseBody<Back>>, ProxyError> {
    let (answer, elapsed) = state.upstream.forward(decision.index, target, request, token, body, affinity).await?;
    match state.series.get(decision.index) {
        Some(series) => series.upstream_duration.observe(elapsed.as_secs_f64()),
        None => state
            .metrics
            .upstream_duration
            .with_label_values(&[&decision.connector.name])
            .observe(elapsed.as_secs_f64()),
    }
    Ok(Response::from_parts(answer.head, answer.body))
}

/// Reads the first body frame before anything is dialed, so a body whose framing is broken
/// from the start (a smuggling attempt) is refused without reaching the upstream; the rest
/// still streams.
async fn first_frame_checked(mut body: Inbound) -> Result<Body, ProxyError> {
    use hyper::body::Body as _;
    if body.is_end_stream() {
        return Ok(body.map_err(Into::into).boxed());
    }
    let first = match body.frame().await {
        None => return Ok(http_body_util::Empty::new().map_err(|never| match never {}).boxed()),
        Some(Err(e)) if e.is_incomplete_message() => return Err(ProxyError::RequestBody),
        Some(Err(_)) => return Err(ProxyError::MalformedBody),
        Some(Ok(frame)) => frame,
    };
    Ok(Prepend { head: Some(first), rest: body }.boxed())
}

/// A body that yields one already-read frame, then the rest of the stream.
struct Prepend {
    head: Option<hyper::body::Frame<Bytes>>,
    rest: Inbound,
}

impl hyper::body::Body for Prepend {
    type Data = Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        if let Some(frame) = self.head.take() {
            return std::task::Poll::Ready(Some(Ok(frame)));
        }
        std::pin::Pin::new(&mut self.rest).poll_frame(cx).map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        let rest = self.rest.size_hint();
        let n = self.head.as_ref().and_then(|f| f.data_ref()).map_or(0, |d| d.len() as u64);
        let mut hint = hyper::body::SizeHint::new();
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + n);
        }
        hint.set_lower(rest.lower() + n);
        hint
    }
}
