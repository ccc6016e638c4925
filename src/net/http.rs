//! A small HTTP client for Tollgate's own calls (token endpoints; later discovery and
//! registration): the same hyper-util + rustls stack and address policy as the proxy, one
//! pool per connector, a timeout on the whole exchange and a cap on the answer's size.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::connect::UpstreamConnector;

/// Largest answer read from a token endpoint.
const MAX_ANSWER: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct HttpClient {
    clients: Arc<Vec<Client<UpstreamConnector, Full<Bytes>>>>,
    timeout: Duration,
}

impl HttpClient {
    /// One client per connector, from the connectors the proxy uses.
    pub fn new(connectors: Vec<UpstreamConnector>, timeout: Duration) -> Self {
        let clients = connectors
            .into_iter()
            .map(|c| Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(60)).build(c))
            .collect();
        HttpClient { clients: Arc::new(clients), timeout }
    }

    /// Sends a request under connector `index`'s address policy and reads the whole answer.
    pub async fn send(&self, index: usize, request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, HttpError> {
        let client = self.clients.get(index).ok_or_else(|| HttpError::Failed("unknown connector".into()))?;
        let exchange = async {
            let response = client.request(request.map(|b| Full::new(Bytes::from(b)))).await.map_err(|e| {
                let mut text = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    text = format!("{text}: {s}");
                    source = s.source();
                }
                HttpError::Failed(text)
            })?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_ANSWER)
                .collect()
                .await
                .map_err(|_| HttpError::Failed("the answer was cut off or larger than 1 MiB".into()))?
                .to_bytes();
            Ok(Response::from_parts(parts, body.to_vec()))
        };
        tokio::time::timeout(self.timeout, exchange).await.unwrap_or(Err(HttpError::Timeout(self.timeout)))
    }
}
