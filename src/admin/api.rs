//! The admin API under `/admin/` (SPEC section 6): connectors (secrets shown only as
//! `•••• last4`), connections (never their tokens), explain, and a connector health check.
//! Every route is listed in [`ROUTES`] and documented in docs/admin-openapi.yaml; a test
//! keeps the two equal.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{json_response, refuse, text};

use crate::body::Body;
use crate::body::Inbound;
use crate::clock::unix_now;
use crate::config::Grant;
use crate::live::stored::{self, ChangeError};
use crate::live::Shared;
use crate::proxy::error::{PolicyError, ProxyError};
use crate::proxy::State;
use crate::token::broker::CredentialError;
use crate::token::ConnectionKey;

/// Every admin route: (method, path template).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/admin/connectors"),
    ("GET", "/admin/connectors/{name}"),
    ("PUT", "/admin/connectors/{name}"),
    ("DELETE", "/admin/connectors/{name}"),
    ("POST", "/admin/connectors/{name}/test"),
    ("GET", "/admin/connections"),
    ("PUT", "/admin/connections/{connector}/{principal}"),
    ("DELETE", "/admin/connections/{connector}/{principal}"),
    ("POST", "/admin/connections/{connector}/{principal}/test"),
    ("POST", "/admin/explain"),
    ("GET", "/admin/jobs"),
    ("POST", "/admin/console/links"),
];

fn masked(secret: Option<&crate::secret::Secret>) -> Value {
    secret.map_or(Value::Null, |s| Value::String(s.masked()))
}

/// A connector as the admin API shows it: no secret in clear.
fn view(state: &State, index: usize) -> Value {
    let connector = &state.config.connectors[index];
    let tools: Vec<&String> = state
        .config
        .names
        .iter()
        .filter(|(name, index)| **name != connector.name && state.config.connectors[**index].name == connector.name)
        .map(|(name, _)| name)
        .collect();
    let mut v = json!({
        "name": connector.name,
        "source": if state.config.is_stored(index) { "store" } else { "file" },
        "grant": connector.grant.as_str(),
        "allowed_domains": connector.patterns.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        "inject": { "header": connector.inject.header.as_str(), "format": format!("{}{{token}}{}", connector.inject.prefix, connector.inject.suffix) },
        "base_url": connector.base_url.as_ref().map(|b| b.to_string()),
        "pin_host": connector.pin_host,
        "allow_websocket": connector.allow_websocket,
        "description": connector.description,
        "template": connector.template,
        "access": if connector.private { "private" } else { "public" },
        "tools": tools,
    });
    match &connector.grant {
        Grant::Static(token) => v["token"] = masked(Some(token)),
        Grant::AuthorizationCode(o) | Grant::ClientCredentials(o) => {
            v["client_id"] = json!(o.client_id);
            v["client_secret"] = masked(o.client_secret.as_ref());
            v["scopes"] = json!(o.scopes);
            v["authorization_endpoint"] = json!(o.authorization_endpoint);
            v["token_endpoint"] = json!(o.token_endpoint);
            v["issuer"] = json!(o.issuer);
            v["mcp_url"] = json!(o.mcp_url);
        }
    }
    if let Some(status) = state.broker.providers().status().get(&connector.name) {
        v["discovery"] = json!(status);
    }
    // What its token endpoint last said of the client credentials (SPEC section 4).
    v["client_health"] = json!(state.broker.connector_health().view(&connector.name));
    v
}

fn query_param(request: &Request<Inbound>, name: &str) -> Option<String> {
    request.uri().query().and_then(|q| {
        crate::form::url_pairs(q).into_iter().find(|(k, _)| k == name).map(|(_, v)| v).filter(|v| !v.is_empty())
    })
}

/// Who made an admin request, for the audit trail.
pub struct Who {
    pub actor: String,
    pub from: String,
}

impl Who {
    async fn audit(&self, state: &State, action: &str, target: &str) {
        let entry = crate::audit::Entry::new(&self.actor, "admin-api", self.from.clone(), action, target);
        crate::audit::record(state.broker.store().as_ref(), entry).await;
    }
}

/// Serves an authenticated `/admin/...` request.
pub async fn handle(shared: &Shared, state: &State, who: &Who, request: Request<Inbound>) -> Response<Body> {
    let path = request.uri().path().to_string();
    let segments: Vec<String> = path.trim_start_matches("/admin/").split('/').map(crate::form::decode_path).collect();
    let method = request.method().clone();
    let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (method.clone(), parts.as_slice()) {
        (Method::GET, ["connectors"]) => {
            let all: Vec<Value> = (0..state.config.connectors.len()).map(|i| view(state, i)).collect();
            json_response(StatusCode::OK, &json!({ "connectors": all }))
        }
        (Method::GET, ["connectors", name]) => match state.config.resolve_name(name) {
            Some(i) => json_response(StatusCode::OK, &view(state, i)),
            None => refuse(&PolicyError::Unknown(name.to_string()).into()),
        },
        (Method::PUT, ["connectors", name]) => {
            let response = put_connector(shared, name, request).await;
            if response.status().is_success() {
                who.audit(state, "connector.put", name).await;
            }
            response
        }
        (Method::DELETE, ["connectors", name]) => {
            let response = delete_connector(shared, name).await;
            if response.status().is_success() {
                who.audit(state, "connector.delete", name).await;
            }
            response
        }
        (Method::POST, ["connectors", name, "test"]) => match state.config.resolve_name(name) {
            Some(i) => {
                json_response(StatusCode::OK, &json!(state.broker.test_connector(i, &state.config.connectors[i]).await))
            }
            None => refuse(&PolicyError::Unknown(name.to_string()).into()),
        },
        (Method::GET, ["connections"]) => connections(state, &request).await,
        (Method::PUT, ["connections", connector, principal]) => {
            let response = super::import::put_connection(state, connector, principal, request).await;
            if response.status().is_success() {
                who.audit(state, "connection.import", &format!("{connector}/{principal}")).await;
            }
            response
        }
        (Method::DELETE, ["connections", connector, principal]) => {
            let response = delete_connection(state, connector, principal).await;
            if response.status().is_success() {
                who.audit(state, "connection.revoke", &format!("{connector}/{principal}")).await;
            }
            response
        }
        (Method::POST, ["connections", connector, principal, "test"]) => {
            test_connection(state, connector, principal).await
        }
        (Method::POST, ["explain"]) => explain(state, request).await,
        (Method::GET, ["jobs"]) => jobs(state, &request).await,
        (Method::POST, ["console", "links"]) => {
            let response = console_link(state, request).await;
            if response.status().is_success() {
                who.audit(state, "console.link", "admin sign-in link").await;
            }
            response
        }
        _ => {
            refuse(&ProxyError::NotFound(format!("{method} {path} is not an admin route; see docs/admin-openapi.yaml")))
        }
    }
}

fn change_refused(error: ChangeError) -> Response<Body> {
    match error {
        ChangeError::Store(source) => refuse(&CredentialError::Store { connector: String::new(), source }.into()),
        ChangeError::Internal(message) => {
            tracing::error!(error = %message, "stored connectors could not be applied");
            refuse(&ProxyError::Internal)
        }
        ChangeError::Invalid(message) => refuse(&ProxyError::InvalidRequest(message)),
        ChangeError::Conflict(message) => refuse(&ProxyError::Conflict(message)),
        ChangeError::Missing(message) => refuse(&ProxyError::NotFound(message)),
    }
}

/// `PUT /admin/connectors/{name}`: creates or replaces a stored connector. Secrets omitted
/// from the body keep their stored values. Answers the connector as `GET` shows it.
async fn put_connector(shared: &Shared, name: &str, request: Request<Inbound>) -> Response<Body> {
    let Ok(body) = Limited::new(request.into_body(), 64 * 1024).collect().await.map(|b| b.to_bytes()) else {
        return refuse(&ProxyError::InvalidRequest("the body must be a JSON object under 64 KiB".into()));
    };
    let created = match stored::write(shared, name, &body).await {
        Ok(created) => created,
        Err(e) => return change_refused(e),
    };
    let state = shared.current();
    match state.config.resolve_name(name) {
        Some(i) => json_response(if created { StatusCode::CREATED } else { StatusCode::OK }, &view(&state, i)),
        None => refuse(&ProxyError::Internal),
    }
}

/// `DELETE /admin/connectors/{name}`: removes a stored connector and its tools, and every
/// connection it had: each is deleted and its token revoked at the provider through the
/// durable queue (`GET /admin/jobs` until done).
async fn delete_connector(shared: &Shared, name: &str) -> Response<Body> {
    match stored::remove(shared, name).await {
        Ok(_) => text(StatusCode::NO_CONTENT, "text/plain", String::new()),
        Err(e) => change_refused(e),
    }
}

/// `POST /admin/console/links` with `{"name"?}`: a one-time console sign-in link for an
/// admin (bootstrap before an identity provider is set up); `name` is who the audit log shows.
async fn console_link(state: &State, request: Request<Inbound>) -> Response<Body> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Asked {
        #[serde(default)]
        name: Option<String>,
    }
    let body = Limited::new(request.into_body(), 4096).collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let asked = if body.iter().all(u8::is_ascii_whitespace) {
        Asked { name: None }
    } else {
        match serde_json::from_slice::<Asked>(&body) {
            Ok(a) => a,
            Err(_) => return refuse(&ProxyError::InvalidRequest("send {} or {\"name\": WHO}".into())),
        }
    };
    let name = asked.name.unwrap_or_else(|| "admin".into());
    if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
        return refuse(&ProxyError::InvalidRequest("name: 1 to 128 characters, no control characters".into()));
    }
    let grant = crate::signin::Grant { role: crate::signin::Role::Admin, principal: name, connectors: None };
    match crate::signin::mint_link(state.broker.store().as_ref(), &grant).await {
        Ok(token) => {
            let url = format!("{}/console/login?token={token}", state.broker.links().public_url());
            let expires_at = unix_now() + crate::signin::LINK_TTL.as_secs();
            json_response(StatusCode::CREATED, &json!({ "url": url, "expires_at": expires_at }))
        }
        Err(source) => refuse(&CredentialError::Store { connector: String::new(), source }.into()),
    }
}

/// `GET /admin/jobs`: revocations and event deliveries not done yet (never a token).
async fn jobs(state: &State, request: &Request<Inbound>) -> Response<Body> {
    let kind = query_param(request, "kind");
    match state.broker.events().queue().jobs().await {
        Ok(jobs) => {
            let rows: Vec<Value> =
                jobs.iter().map(|j| j.view()).filter(|v| kind.as_deref().is_none_or(|k| v["kind"] == k)).collect();
            json_response(StatusCode::OK, &json!({ "jobs": rows }))
        }
        Err(source) => refuse(&CredentialError::Store { connector: String::new(), source }.into()),
    }
}

async fn connections(state: &State, request: &Request<Inbound>) -> Response<Body> {
    let connector = query_param(request, "connector");
    let principal = query_param(request, "principal");
    let name = connector
        .as_deref()
        .and_then(|c| state.config.resolve_name(c))
        .map(|i| state.config.connectors[i].name.clone());
    if connector.is_some() && name.is_none() {
        return refuse(&PolicyError::Unknown(connector.unwrap_or_default()).into());
    }
    match state.broker.store().list(name.as_deref(), principal.as_deref()).await {
        Ok(all) => {
            let rows: Vec<Value> = all
                .into_iter()
                .filter(|(k, _)| k.connector != "tollgate")
                .map(|(k, c)| {
                    json!({
                        "connector": k.connector, "principal": k.principal,
                        "status": c.status, "expires_at": c.expires_at, "scopes": c.scopes,
                        "pinned_host": c.pinned_host, "version": c.version,
                        "has_refresh_token": c.refresh_token.is_some(),
                        "refresh_token_expires_at": c.refresh_expires_at,
                        "health": if c.status == crate::token::ConnectionStatus::Connected { c.health.state() } else { "unhealthy" },
                        "last_success_at": c.health.last_success_at,
                        "last_failure_at": c.health.last_failure_at,
                        "last_error": c.health.last_error,
                    })
                })
                .collect();
            json_response(StatusCode::OK, &json!({ "connections": rows }))
        }
        Err(source) => refuse(&CredentialError::Store { connector: name.unwrap_or_default(), source }.into()),
    }
}

/// `DELETE /admin/connections/{connector}/{principal}`: gone from the store and every
/// replica's cache, then revoked at the provider.
async fn delete_connection(state: &State, connector: &str, principal: &str) -> Response<Body> {
    let Some(index) = state.config.resolve_name(connector) else {
        return refuse(&PolicyError::Unknown(connector.to_string()).into());
    };
    let found = &state.config.connectors[index];
    match state.broker.delete(index, found, &ConnectionKey::new(&found.name, principal)).await {
        Ok(true) => text(StatusCode::NO_CONTENT, "text/plain", String::new()),
        Ok(false) => refuse(&ProxyError::NotFound(format!("{principal} has no {} connection", found.name))),
        Err(source) => refuse(&CredentialError::Store { connector: found.name.clone(), source }.into()),
    }
}

/// `POST /admin/connections/{connector}/{principal}/test`: the connector's health check with
/// that user's token.
async fn test_connection(state: &State, connector: &str, principal: &str) -> Response<Body> {
    let Some(index) = state.config.resolve_name(connector) else {
        return refuse(&PolicyError::Unknown(connector.to_string()).into());
    };
    let found = &state.config.connectors[index];
    match state.broker.test_connection(index, found, principal).await {
        Ok(outcome) => json_response(StatusCode::OK, &json!(outcome)),
        Err(e) => refuse(&e.into()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExplainRequest {
    url: String,
    #[serde(default)]
    connector: Option<String>,
}

async fn explain(state: &State, request: Request<Inbound>) -> Response<Body> {
    let body = Limited::new(request.into_body(), 16 * 1024)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_else(|_| Bytes::new());
    let Ok(asked) = serde_json::from_slice::<ExplainRequest>(&body) else {
        return refuse(&ProxyError::InvalidRequest("send {\"url\": URL, \"connector\"?: NAME}".into()));
    };
    match crate::explain::with_config(&state.config, asked.connector.as_deref(), &asked.url) {
        Ok(explanation) => json_response(StatusCode::OK, &json!(explanation.without_query())),
        Err(_) => refuse(&PolicyError::Unknown(asked.connector.unwrap_or_default()).into()),
    }
}
