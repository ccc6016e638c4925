//! The effective OAuth settings of each connector: the config, completed by discovery
//! (RFC 8414 authorization-server metadata, OpenID Connect discovery, and for MCP servers RFC
//! 9728 protected-resource metadata first) and by dynamic client registration (RFC 7591)
//! when no `client_id` is configured.
//!
//! Every fetch goes through the connector's own HTTP client, so discovery obeys the same
//! scheme and address checks as tool traffic. Metadata must name exactly the issuer it was
//! fetched for, and every endpoint it returns must be https. A registration is stored
//! encrypted in the token store under a lock, so all replicas share one client per
//! connector and issuer. Problems are reported per connector (in `/readyz`, the
//! `tollgate_discovery_up` metric and the log) and retried; they never make a replica
//! not-ready.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod registration;
mod resource;

use http::{header, Method, Request};
use serde::Deserialize;
use tokio::time::Instant;

use crate::config::{Connector, Grant, OAuthClient};
use crate::domains::{Scheme, Target};
use crate::metrics::Metrics;
use crate::net::http::HttpClient;
use crate::token::TokenStore;

/// How long discovered metadata is trusted before it is fetched again.
const METADATA_TTL: Duration = Duration::from_secs(3600);
/// How long after a failure discovery is tried again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

#[derive(Debug, Deserialize)]
struct AuthorizationServerMetadata {
    issuer: String,
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
    registration_endpoint: Option<String>,
    revocation_endpoint: Option<String>,
    #[serde(default)]
    authorization_response_iss_parameter_supported: bool,
    code_challenge_methods_supported: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct ProtectedResourceMetadata {
    resource: String,
    #[serde(default)]
    authorization_servers: Vec<String>,
}

/// Where a connector's OAuth settings stand, for `/readyz`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Default)]
struct Entry {
    resolved: Option<(Arc<OAuthClient>, Instant)>,
    failed_at: Option<(Instant, String)>,
}

pub struct Providers {
    http: HttpClient,
    store: Arc<dyn TokenStore>,
    metrics: Metrics,
    redirect_uri: String,
    entries: Vec<tokio::sync::Mutex<Entry>>,
    status: Mutex<HashMap<String, Status>>,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Providers").field("connectors", &self.entries.len()).finish_non_exhaustive()
    }
}

fn needs_network(oauth: &OAuthClient) -> bool {
    oauth.issuer.is_some() || oauth.discovery_url.is_some() || oauth.mcp_url.is_some() || oauth.client_id.is_none()
}

impl Providers {
    pub fn new(
        connectors: usize,
        http: HttpClient,
        store: Arc<dyn TokenStore>,
        metrics: Metrics,
        redirect_uri: String,
    ) -> Self {
        let entries = (0..connectors).map(|_| tokio::sync::Mutex::new(Entry::default())).collect();
        Providers { http, store, metrics, redirect_uri, entries, status: Mutex::default() }
    }

    /// Resolves every connector that needs discovery or registration, in the background, so
    /// problems show in `/readyz` before the first request.
    pub fn warm_up(self: &Arc<Self>, connectors: Vec<Arc<Connector>>) {
        for (index, connector) in connectors.into_iter().enumerate() {
            let needs = match &connector.grant {
                Grant::AuthorizationCode(o) | Grant::ClientCredentials(o) => needs_network(o),
                Grant::Static(_) => false,
            };
            if needs {
                let this = self.clone();
                tokio::spawn(async move {
                    let _ = this.resolve(index, &connector).await;
                });
            } else {
                self.metrics.discovery_up.with_label_values(&[&connector.name]).set(1);
            }
        }
    }

    /// Connector name to status, for `/readyz`.
    pub fn status(&self) -> HashMap<String, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The effective OAuth settings of connector `index`. `Err` says what is wrong.
    pub async fn resolve(&self, index: usize, connector: &Connector) -> Result<Arc<OAuthClient>, String> {
        let configured = match &connector.grant {
            Grant::AuthorizationCode(o) | Grant::ClientCredentials(o) => o,
            Grant::Static(_) => return Err(format!("{} is a static connector", connector.name)),
        };
        if !needs_network(configured) {
            return Ok(Arc::new(configured.clone()));
        }
        let entry = self.entries.get(index).ok_or("unknown connector")?;
        let mut entry = entry.lock().await;
        if let Some((resolved, at)) = &entry.resolved {
            if at.elapsed() < METADATA_TTL {
                return Ok(resolved.clone());
            }
        }
        if let Some((at, message)) = &entry.failed_at {
            if at.elapsed() < RETRY_AFTER_FAILURE {
                return Err(message.clone());
            }
        }
        let labels = [connector.name.as_str()];
        match self.complete(index, connector, configured).await {
            Ok(resolved) => {
                let resolved = Arc::new(resolved);
                entry.resolved = Some((resolved.clone(), Instant::now()));
                entry.failed_at = None;
                self.metrics.discovery_up.with_label_values(&labels).set(1);
                self.set_status(&connector.name, "ok", None);
                Ok(resolved)
            }
            Err(message) => {
                tracing::warn!(connector = %connector.name, error = %message, "OAuth discovery or registration failed");
                entry.failed_at = Some((Instant::now(), message.clone()));
                self.metrics.discovery_up.with_label_values(&labels).set(0);
                self.set_status(&connector.name, "error", Some(message.clone()));
                // Metadata that worked before keeps serving until it can be refreshed.
                match &entry.resolved {
                    Some((resolved, _)) => Ok(resolved.clone()),
                    None => Err(message),
                }
            }
        }
    }

    fn set_status(&self, connector: &str, state: &'static str, message: Option<String>) {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).insert(connector.to_string(), Status { state, message });
    }

    async fn complete(
        &self,
        index: usize,
        connector: &Connector,
        configured: &OAuthClient,
    ) -> Result<OAuthClient, String> {
        let mut oauth = configured.clone();
        let mut issuer = oauth.issuer.clone();
        if let Some(mcp_url) = &oauth.mcp_url {
            let (url, resource) = self.protected_resource(index, mcp_url).await?;
            let server =
                resource.authorization_servers.first().ok_or(format!("{url} names no authorization server"))?;
            if !matches!(Target::parse(server), Ok(t) if t.scheme == Scheme::Https) {
                return Err(format!("{url} names an authorization server that is not https: {server}"));
            }
            issuer.get_or_insert_with(|| server.clone());
            // MCP servers expect the resource indicator (RFC 8707).
            oauth.resource.get_or_insert_with(|| mcp_url.clone());
        }
        if issuer.is_some() || oauth.discovery_url.is_some() {
            let metadata = self.discover(index, issuer.as_deref(), oauth.discovery_url.as_deref()).await?;
            let https = |field: &str, v: &Option<String>| -> Result<Option<String>, String> {
                match v {
                    None => Ok(None),
                    Some(u) => match Target::parse(u) {
                        Ok(t) if t.scheme == Scheme::Https => Ok(Some(u.clone())),
                        _ => Err(format!("the metadata's {field} `{u}` is not an https URL")),
                    },
                }
            };
            if let Some(methods) = &metadata.code_challenge_methods_supported {
                if !methods.iter().any(|m| m == "S256") {
                    return Err("the authorization server does not support PKCE S256".into());
                }
            }
            // Configured values win over discovered ones.
            oauth.authorization_endpoint =
                oauth.authorization_endpoint.or(https("authorization_endpoint", &metadata.authorization_endpoint)?);
            oauth.token_endpoint = oauth.token_endpoint.or(https("token_endpoint", &metadata.token_endpoint)?);
            oauth.revocation_endpoint =
                oauth.revocation_endpoint.or(https("revocation_endpoint", &metadata.revocation_endpoint)?);
            oauth.registration_endpoint = https("registration_endpoint", &metadata.registration_endpoint)?;
            oauth.iss_required = metadata.authorization_response_iss_parameter_supported;
            oauth.issuer = Some(metadata.issuer);
        }
        if oauth.token_endpoint.is_none() {
            return Err("no token endpoint is configured or discovered".into());
        }
        if oauth.client_id.is_none() {
            self.register(index, connector, &mut oauth).await?;
        }
        Ok(oauth)
    }

    /// RFC 8414 then OpenID Connect discovery; the metadata must name the expected issuer.
    async fn discover(
        &self,
        index: usize,
        issuer: Option<&str>,
        discovery_url: Option<&str>,
    ) -> Result<AuthorizationServerMetadata, String> {
        let candidates: Vec<String> = match (discovery_url, issuer) {
            (Some(url), _) => vec![url.to_string()],
            (None, Some(issuer)) => vec![
                well_known(issuer, "oauth-authorization-server")?,
                format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/')),
            ],
            (None, None) => return Err("no issuer to discover".into()),
        };
        let mut errors: Vec<String> = Vec::new();
        for url in candidates {
            match self.fetch::<AuthorizationServerMetadata>(index, &url).await {
                Ok(metadata) => {
                    if let Some(expected) = issuer {
                        if metadata.issuer != expected {
                            return Err(format!(
                                "the metadata at {url} names issuer {}, not {expected}",
                                metadata.issuer
                            ));
                        }
                    }
                    return Ok(metadata);
                }
                Err(e) => errors.push(e),
            }
        }
        Err(errors.join("; "))
    }

    async fn fetch<T: serde::de::DeserializeOwned>(&self, index: usize, url: &str) -> Result<T, String> {
        let request = Request::builder()
            .method(Method::GET)
            .uri(url)
            .header(header::ACCEPT, "application/json")
            .body(Vec::new())
            .map_err(|_| format!("`{url}` is not a URL"))?;
        let response = self.http.send(index, request).await.map_err(|e| format!("fetching {url} failed: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("{url} answered {}", response.status()));
        }
        serde_json::from_slice(response.body()).map_err(|e| format!("{url} is not valid metadata: {e}"))
    }
}

/// RFC 8414 / RFC 9728 well-known URL: the suffix goes between the host and the path.
fn well_known(url: &str, suffix: &str) -> Result<String, String> {
    let target = Target::parse(url).map_err(|e| format!("`{url}`: {e}"))?;
    let path = target.path.trim_end_matches('/');
    Ok(format!("{}://{}/.well-known/{suffix}{path}", target.scheme.as_str(), target.authority()))
}

fn canonical(url: &str) -> String {
    Target::parse(url).map(|t| t.to_string().trim_end_matches('/').to_string()).unwrap_or_else(|_| url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_urls() {
        assert_eq!(
            well_known("https://as.example", "oauth-authorization-server").unwrap(),
            "https://as.example/.well-known/oauth-authorization-server"
        );
        assert_eq!(
            well_known("https://as.example/tenant1", "oauth-authorization-server").unwrap(),
            "https://as.example/.well-known/oauth-authorization-server/tenant1"
        );
        assert_eq!(
            well_known("https://mcp.example.com/mcp", "oauth-protected-resource").unwrap(),
            "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
        );
    }
}
