//! Phase `forward`: send the rewritten request to the checked upstream and stream the answer
//! back. Redirects are never followed: a 3xx goes back to the caller as it came.

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::client::conn::http1::SendRequest;
use tokio::time::Instant;

use super::affinity::Affinity;
use super::error::{PolicyError, ProxyError, UpstreamError};
use super::headers::clean_response;
use super::pool::{Back, Origin, Pool, Release};
use super::Body;
use crate::config::Config;
use crate::domains::Target;
use crate::net::connect::{tls_config, ConnectError, UpstreamConnector};
use crate::net::{Dialer, Resolver};

/// How long an upstream connection may stay idle in the pool.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// One connection pool per connector, each bound to that connector's address policy.
#[derive(Debug)]
pub struct Upstream {
    connectors: Vec<(UpstreamConnector, Arc<Pool>)>,
    response_timeout: Duration,
}

impl Upstream {
    /// One pool per connector, from the connectors built by [`connectors`].
    pub fn new(connectors: Vec<UpstreamConnector>, response_timeout: Duration) -> Upstream {
        let connectors = connectors.into_iter().map(|c| (c, Arc::new(Pool::new(IDLE_TIMEOUT)))).collect();
        Upstream { connectors, response_timeout }
    }

    /// Sends the request for connector `index` to `target` and returns the upstream response
    /// with its hop-by-hop headers removed. The elapsed time to headers is returned too.
    /// `affinity` is the client connection's: its timer and its last upstream connection.
    pub async fn forward(
        &self,
        index: usize,
        target: &Target,
        mut request: Request<Body>,
        affinity: &Arc<Affinity>,
    ) -> Result<(Response<Body>, Duration), ProxyError> {
        let (connector, pool) = self.connectors.get(index).ok_or(ProxyError::Internal)?;
        *request.uri_mut() = origin_form(request.uri(), target)?;
        *request.version_mut() = Version::HTTP_11;
        let origin = Origin::of(target);
        let started = Instant::now();
        let kept = affinity.take(pool, &origin, started);
        let mut timer = affinity.timer(started + self.response_timeout);
        let outcome = {
            let mut exchange = std::pin::pin!(exchange(connector, pool, kept, &origin, request));
            std::future::poll_fn(|cx| match exchange.as_mut().poll(cx) {
                Poll::Ready(answer) => Poll::Ready(Some(answer)),
                Poll::Pending => timer.as_mut().poll(cx).map(|()| None),
            })
            .await
        };
        affinity.keep_timer(timer);
        let (response, sender) = match outcome {
            None => return Err(UpstreamError::Timeout(target.without_query(), self.response_timeout.as_secs()).into()),
            Some(Err(failure)) => return Err(failure.classify(target.without_query())),
            Some(Ok(answer)) => answer,
        };
        let elapsed = started.elapsed();
        let (mut parts, body) = response.into_parts();
        clean_response(&mut parts.headers);
        let back = (parts.status != StatusCode::SWITCHING_PROTOCOLS).then(|| Back {
            pool: pool.clone(),
            origin,
            affinity: Some(affinity.clone()),
        });
        Ok((Response::from_parts(parts, Release::new(body, sender, back).boxed()), elapsed))
    }
}

/// The request target for the upstream: the target's path and query. The caller's own,
/// already parsed, is reused when it is exactly that (the usual case) instead of parsing again.
fn origin_form(uri: &Uri, target: &Target) -> Result<Uri, ProxyError> {
    if let Some(given) = uri.path_and_query() {
        let text = given.as_str();
        let same = match &target.query {
            None => text == target.path,
            Some(query) => {
                text.len() == target.path.len() + 1 + query.len()
                    && text.starts_with(target.path.as_str())
                    && text.as_bytes()[target.path.len()] == b'?'
                    && text.ends_with(query.as_str())
            }
        };
        if same {
            return Ok(Uri::from(given.clone()));
        }
    }
    Uri::try_from(target.path_and_query()).map_err(|_| ProxyError::Internal)
}

/// Why an exchange failed: before the request could be sent, or while it was.
enum Failure {
    Connect(ConnectError),
    Send(hyper::Error),
}

impl Failure {
    fn classify(self, url: String) -> ProxyError {
        match self {
            Failure::Connect(ConnectError::Denied(range)) => {
                PolicyError::AddressDenied { url, range: range.as_str() }.into()
            }
            Failure::Connect(other) => UpstreamError::Unreachable(url, other.to_string()).into(),
            Failure::Send(e) => UpstreamError::Unreachable(url, chain(&e)).into(),
        }
    }
}

/// Sends on an idle connection when there is one, else on a new one. A request that an idle
/// connection could not take (the upstream had just closed it) was never written, so it is
/// sent again on a new connection.
async fn exchange(
    connector: &UpstreamConnector,
    pool: &Pool,
    kept: Option<SendRequest<Body>>,
    origin: &Origin,
    request: Request<Body>,
) -> Result<(Response<hyper::body::Incoming>, SendRequest<Body>), Failure> {
    let mut request = request;
    let mut kept = kept;
    while let Some(mut sender) = kept.take().or_else(|| pool.take(origin)) {
        if sender.ready().await.is_err() {
            continue;
        }
        match sender.try_send_request(request).await {
            Ok(response) => return Ok((response, sender)),
            Err(mut e) => match e.take_message() {
                Some(unsent) => request = unsent,
                None => return Err(Failure::Send(e.into_error())),
            },
        }
    }
    let mut sender = open(connector, origin).await?;
    sender.ready().await.map_err(Failure::Send)?;
    let response = sender.send_request(request).await.map_err(Failure::Send)?;
    Ok((response, sender))
}

/// A new HTTP/1.1 connection under the connector's address policy. Its driver runs as its own
/// task, with upgrades, so an allowed WebSocket can take the connection over.
async fn open(connector: &UpstreamConnector, origin: &Origin) -> Result<SendRequest<Body>, Failure> {
    let io = connector.open(&origin.host, origin.port, origin.https).await.map_err(Failure::Connect)?;
    let (sender, connection) = hyper::client::conn::http1::Builder::new().handshake(io).await.map_err(Failure::Send)?;
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// One connector (resolver, address policy, dialer, TLS) per configured connector, in order.
pub fn connectors(
    config: &Config,
    resolver: Arc<dyn Resolver>,
    dialer: Arc<dyn Dialer>,
) -> Result<Vec<UpstreamConnector>, String> {
    let tls = tokio_rustls::TlsConnector::from(Arc::new(tls_config(config.upstream.extra_ca_pem.as_deref())?));
    Ok(config
        .connectors
        .iter()
        .map(|c| UpstreamConnector {
            resolver: resolver.clone(),
            dialer: dialer.clone(),
            policy: c.addresses.clone(),
            tls: tls.clone(),
            timeout: config.upstream.connect_timeout,
        })
        .collect())
}

/// The error and its causes, as hyper describes them (no headers, no bodies, no secrets).
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}
