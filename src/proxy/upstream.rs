//! Phase `forward`: send the rewritten request to the checked upstream and stream the answer
//! back. Redirects are never followed: a 3xx goes back to the caller as it came.

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use http::StatusCode;
use tokio::time::Instant;

use super::credentials::Outgoing;
use super::error::{PolicyError, ProxyError, UpstreamError};
use crate::body::Body;
use crate::config::Config;
use crate::domains::Target;
use crate::http1::{self, Conn, Outbound, ResponseBody, ResponseHead, SendError};
use crate::net::connect::{tls_config, ConnectError, UpstreamConnector};
use crate::net::{Dialer, Resolver};
use crate::pool::{Affinity, Back, Origin, Pool};
use crate::secret::Secret;

/// How long an upstream connection may stay idle in the pool.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// One connection pool per connector, each bound to that connector's address policy.
#[derive(Debug)]
pub struct Upstream {
    connectors: Vec<(UpstreamConnector, Arc<Pool>)>,
    response_timeout: Duration,
}

/// An upstream answer: its head, with hop-by-hop headers removed, and its body, read from
/// the connection as it is asked for.
pub struct Answer {
    pub head: http::response::Parts,
    pub body: ResponseBody<Back>,
}

impl Upstream {
    /// One pool per connector, from the connectors built by [`connectors`].
    pub fn new(connectors: Vec<UpstreamConnector>, response_timeout: Duration) -> Upstream {
        let connectors = connectors.into_iter().map(|c| (c, Arc::new(Pool::new(IDLE_TIMEOUT)))).collect();
        Upstream { connectors, response_timeout }
    }

    /// Sends the request (method, headers and credential from `request`, with `token`; path
    /// and query from `target`) for connector `index` and returns the upstream's answer and
    /// the time it took to its head. `affinity` is the client connection's: its timer and its
    /// last upstream connection.
    pub async fn forward(
        &self,
        index: usize,
        target: &Target,
        request: &Outgoing<'_>,
        token: &Secret,
        body: Body,
        affinity: &Arc<Affinity>,
    ) -> Result<(Answer, Duration), ProxyError> {
        let (connector, pool) = self.connectors.get(index).ok_or(ProxyError::Internal)?;
        let injection = request.injection;
        let out = Outbound {
            method: request.method,
            path: &target.path,
            query: target.query.as_deref(),
            headers: request.headers,
            filter: &request.filter,
            host: request.host,
            credential: (&injection.header, &injection.prefix, token.expose(), &injection.suffix),
            upgrade: request.upgrade,
        };
        let origin = Origin::of(target);
        let started = Instant::now();
        let kept = affinity.take(pool, &origin, started);
        let mut timer = affinity.timer(started + self.response_timeout);
        let outcome = {
            let mut exchange = std::pin::pin!(exchange(connector, pool, kept, &origin, &out, body));
            std::future::poll_fn(|cx| match exchange.as_mut().poll(cx) {
                Poll::Ready(answer) => Poll::Ready(Some(answer)),
                Poll::Pending => timer.as_mut().poll(cx).map(|()| None),
            })
            .await
        };
        affinity.keep_timer(timer);
        let (head, conn) = match outcome {
            None => return Err(UpstreamError::Timeout(target.without_query(), self.response_timeout.as_secs()).into()),
            Some(Err(failure)) => return Err(failure.classify(target.without_query())),
            Some(Ok(answer)) => answer,
        };
        let elapsed = started.elapsed();
        let ResponseHead { parts, framing, keep_alive } = head;
        let back = (parts.status != StatusCode::SWITCHING_PROTOCOLS).then(|| Back {
            pool: pool.clone(),
            origin,
            affinity: Some(affinity.clone()),
        });
        Ok((Answer { head: parts, body: ResponseBody::new(conn, framing, keep_alive, back) }, elapsed))
    }
}

/// Why an exchange failed: before the request could be sent, or while it was.
enum Failure {
    Connect(ConnectError),
    Send(http1::Error),
}

impl Failure {
    fn classify(self, url: String) -> ProxyError {
        match self {
            Failure::Connect(ConnectError::Denied(range)) => {
                PolicyError::AddressDenied { url, range: range.as_str() }.into()
            }
            Failure::Connect(other) => UpstreamError::Unreachable(url, other.to_string()).into(),
            Failure::Send(http1::Error::RequestBody) => ProxyError::RequestBody,
            // A token that cannot be a header value is a broken connection record, not the
            // caller's fault.
            Failure::Send(http1::Error::Target | http1::Error::Credential) => ProxyError::Internal,
            Failure::Send(e) => UpstreamError::Unreachable(url, chain(&e)).into(),
        }
    }
}

/// Sends on an idle connection when there is one, else on a new one. A request that a kept
/// connection turned out too stale to take (the upstream had just closed it) goes on the
/// next one; a new connection is never stale.
async fn exchange(
    connector: &UpstreamConnector,
    pool: &Pool,
    kept: Option<Conn>,
    origin: &Origin,
    out: &Outbound<'_>,
    body: Body,
) -> Result<(ResponseHead, Conn), Failure> {
    let mut body = body;
    let mut next = kept;
    loop {
        let mut conn = match next.take().or_else(|| pool.take(origin)) {
            Some(conn) => conn,
            // Boxed: dialing and the TLS handshake make a large future, awaited only for a
            // new connection; inline, every request's future would carry its size.
            None => Conn::new(
                Box::pin(connector.open_stream(&origin.host, origin.port, origin.https))
                    .await
                    .map_err(Failure::Connect)?,
            ),
        };
        match conn.send(out, body).await {
            Ok(head) => return Ok((head, conn)),
            Err(SendError::Stale(unsent)) => body = unsent,
            Err(SendError::Failed(e)) => return Err(Failure::Send(e)),
        }
    }
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

/// The error and its causes (no headers, no bodies, no secrets).
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
