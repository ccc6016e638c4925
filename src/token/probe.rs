//! "Test connection": the connector's `health_check` called with one user's token, the way a
//! tool call would carry it (renewed first when it is about to expire, renewed once more if
//! the API answers 401). The outcome is written to the connection's health at once.

use http::{Request, StatusCode};

use super::broker::{Broker, CredentialError};
use super::model::Health;
use crate::clock::unix_now;
use crate::config::Connector;

/// What a test found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TestOutcome {
    /// `healthy`, `unhealthy`, or `unknown` (the connector declares no `health_check`).
    pub health: &'static str,
    /// The health check's answer, when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub message: String,
    pub checked_at: u64,
}

impl Broker {
    /// Tests `principal`'s connection to connector `index`. A connection that cannot give a
    /// token (none yet, needs re-authorization, store down) is the error the proxy would
    /// answer a tool call with.
    pub async fn test_connection(
        &self,
        index: usize,
        connector: &Connector,
        principal: &str,
    ) -> Result<TestOutcome, CredentialError> {
        let now = unix_now();
        let Some(check) = &connector.health_check else {
            return Ok(TestOutcome {
                health: "unknown",
                status: None,
                error: None,
                message: format!("{} declares no health_check; a tool call will tell", connector.name),
                checked_at: now,
            });
        };
        let principal = super::keys::Principal::new(principal);
        let credential =
            self.token_for(index, connector, &principal, &check.target, now, tokio::time::Instant::now()).await?;
        let mut token = credential.token.clone();
        let mut answer = self.probe(index, connector, &check.url, token.expose()).await;
        if let (Ok(StatusCode::UNAUTHORIZED), Some((keyed, version))) = (&answer, &credential.renewal) {
            if let Some(renewed) = self.renew_refused(index, connector, &keyed.key, *version, now).await {
                token = renewed;
                answer = self.probe(index, connector, &check.url, token.expose()).await;
            }
        }
        let (health, status, error) = match answer {
            Ok(status) if status.as_u16() == check.expect => ("healthy", Some(status.as_u16()), None),
            Ok(status) => ("unhealthy", Some(status.as_u16()), Some(format!("upstream_{}", status.as_u16()))),
            Err(reason) => {
                tracing::warn!(connector = %connector.name, %reason, "the health check could not be sent");
                ("unhealthy", None, Some("upstream_unreachable".to_string()))
            }
        };
        let keyed = credential.renewal.map(|(k, _)| k).or(credential.observe);
        if let Some(keyed) = keyed {
            let mut seen = Health::default();
            match &error {
                None => seen.succeeded(now),
                Some(code) => seen.failed(now, code),
            }
            let written = self.amend(&keyed.key, |c| {
                let before = c.health.clone();
                c.health.merge(&seen);
                c.health != before
            });
            if written.await.is_err() {
                // A renewal holds the lock: written with the next flush.
                self.observe(&keyed, error.as_deref(), now);
            }
        }
        let message = match (&error, status) {
            (None, _) => format!("{} answered {} to the token", check.url, check.expect),
            (Some(_), Some(s)) => format!("{} answered {s}, not {}", check.url, check.expect),
            (Some(_), None) => format!("{} could not be reached", check.url),
        };
        Ok(TestOutcome { health, status, error, message, checked_at: now })
    }

    async fn probe(&self, index: usize, connector: &Connector, url: &str, token: &str) -> Result<StatusCode, String> {
        let inject = &connector.inject;
        let value = format!("{}{token}{}", inject.prefix, inject.suffix);
        let request = Request::get(url)
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::USER_AGENT, "tollgate-health-check")
            .header(&inject.header, value)
            .body(Vec::new())
            .map_err(|_| "the health check does not make a request".to_string())?;
        self.http().send(index, request).await.map(|r| r.status()).map_err(|e| e.to_string())
    }
}

/// What a connector test found: `healthy` (Tollgate reached what it needs: metadata,
/// registration, or a client-credentials token), `unhealthy` (it could not), or `unknown`
/// (nothing can be checked without a user's token).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConnectorTest {
    pub health: &'static str,
    pub message: String,
}

impl Broker {
    /// "Test" on a connector (`POST /admin/connectors/{name}/test`, the console).
    pub async fn test_connector(&self, index: usize, connector: &Connector) -> ConnectorTest {
        use crate::config::Grant;
        use crate::token::endpoint::{request_token, Exchange};
        let says = |health, message: &str| ConnectorTest { health, message: message.to_string() };
        let resolved = match &connector.grant {
            Grant::Static(_) => return says("unknown", "a static credential can only be checked by calling the API"),
            _ => self.providers().resolve(index, connector).await,
        };
        let oauth = match resolved {
            Ok(o) => o,
            Err(message) => return says("unhealthy", &message),
        };
        let seen = self.connector_health().view(&connector.name);
        if seen.state == "unhealthy" {
            let code = seen.reason.unwrap_or_default();
            return says(
                "unhealthy",
                &format!("the token endpoint refused the client credentials ({code}) at the last renewal; fix client_id and client_secret"),
            );
        }
        match &connector.grant {
            Grant::ClientCredentials(_) => {
                match request_token(self.http(), index, &oauth, Exchange::ClientCredentials).await {
                    Ok(_) => says("healthy", "the token endpoint issued a client-credentials token"),
                    Err(e) => says("unhealthy", &e.to_string()),
                }
            }
            _ if oauth.issuer.is_some() || oauth.mcp_url.is_some() || oauth.discovery_url.is_some() => {
                says("healthy", "discovery metadata and client are usable")
            }
            _ => says("unknown", "endpoints are configured; they are exercised when a user connects"),
        }
    }
}
