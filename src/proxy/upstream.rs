//! Phase `forward`: send the rewritten request to the checked upstream and stream the answer
//! back. Redirects are never followed: a 3xx goes back to the caller as it came.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, Uri, Version};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

use super::error::{PolicyError, ProxyError, UpstreamError};
use super::headers::clean_response;
use super::Body;
use crate::config::Config;
use crate::domains::Target;
use crate::net::connect::{tls_config, ConnectError, UpstreamConnector};
use crate::net::{Dialer, Resolver};

/// One pooling client per connector, each bound to that connector's address policy.
#[derive(Debug)]
pub struct Upstream {
    clients: Vec<Client<UpstreamConnector, Body>>,
    response_timeout: Duration,
}

impl Upstream {
    /// One pooling client per connector, from the connectors built by [`connectors`].
    pub fn new(connectors: Vec<UpstreamConnector>, response_timeout: Duration) -> Upstream {
        let clients = connectors
            .into_iter()
            .map(|c| {
                Client::builder(TokioExecutor::new())
                    .pool_idle_timeout(Duration::from_secs(90))
                    .set_host(false)
                    .build(c)
            })
            .collect();
        Upstream { clients, response_timeout }
    }

    /// Sends the request for connector `index` to `target` and returns the upstream response
    /// with its hop-by-hop headers removed. The elapsed time to headers is returned too.
    pub async fn forward(
        &self,
        index: usize,
        target: &Target,
        mut request: Request<Body>,
    ) -> Result<(Response<Body>, Duration), ProxyError> {
        let client = self.clients.get(index).ok_or(ProxyError::Internal)?;
        let uri: Uri = target.to_string().parse().map_err(|_| ProxyError::Internal)?;
        *request.uri_mut() = uri;
        *request.version_mut() = Version::HTTP_11;
        let started = Instant::now();
        let response = match tokio::time::timeout(self.response_timeout, client.request(request)).await {
            Err(_) => {
                return Err(UpstreamError::Timeout(target.without_query(), self.response_timeout.as_secs()).into())
            }
            Ok(Err(e)) => return Err(classify(&e, target.without_query())),
            Ok(Ok(r)) => r,
        };
        let elapsed = started.elapsed();
        let (mut parts, body) = response.into_parts();
        clean_response(&mut parts.headers);
        Ok((Response::from_parts(parts, body.map_err(Into::into).boxed()), elapsed))
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

/// Finds Tollgate's own connect error in the client error's chain.
fn classify(error: &hyper_util::client::legacy::Error, url: String) -> ProxyError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(connect) = e.downcast_ref::<ConnectError>() {
            return match connect {
                ConnectError::Denied(range) => PolicyError::AddressDenied { url, range: range.as_str() }.into(),
                other => UpstreamError::Unreachable(url, other.to_string()).into(),
            };
        }
        source = e.source();
    }
    UpstreamError::Unreachable(url, chain(error)).into()
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
