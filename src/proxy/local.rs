//! Tollgate's own paths on the proxy listener: `POST /connect` hands an authenticated caller
//! a connect link; `POST /connections/{connector}/test` runs the connector's health check with
//! the caller's own token; `DELETE /connections/{connector}` disconnects the caller's own
//! connection (deleted, and revoked at the provider through the durable queue). Any other origin-form path names no gateway connector, and `OPTIONS *` asks
//! the server itself: both are `proxy_request_expected`, saying what the listener takes.

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use serde::Deserialize;

use super::context::Record;
use super::error::{PolicyError, ProxyError};
use super::headers::Asked;
use super::identity::identify;
use super::{Session, State};
use crate::body::Body;
use crate::body::Inbound;
use crate::clock::unix_now;
use crate::config::Grant;

/// Largest `POST /connect` body accepted.
const CONNECT_BODY_LIMIT: usize = 16 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectRequest {
    connector: String,
}

pub async fn handle_local(
    state: &State,
    session: &Session,
    request: Request<Inbound>,
    path: &str,
    record: &mut Record,
) -> Result<Response<Body>, ProxyError> {
    if path == "/console-link" {
        return console_link(state, session, &request, record).await;
    }
    if let Some(name) = path.strip_prefix("/connections/") {
        if let Some(name) = name.strip_suffix("/test") {
            return test(state, session, &request, &crate::form::decode_path(name), record).await;
        }
        return disconnect(state, session, &request, &crate::form::decode_path(name), record).await;
    }
    if path != "/connect" {
        // Said the same whether or not the name exists: the caller is not authenticated yet.
        let got = if path == "*" {
            format!("got `{} *`, which asks the server itself", request.method())
        } else {
            format!("got the path {path}, which names no connector with a base_url")
        };
        return Err(ProxyError::ProxyRequestExpected(got));
    }
    if request.method() != Method::POST {
        return Err(ProxyError::InvalidRequest("use POST /connect with {\"connector\": NAME}".into()));
    }
    let config = &state.config;
    let caller = identify(&Asked::of(request.headers()), true, config, &session.callers, unix_now()).await?;
    record.caller = Some(caller.clone());
    let body = Limited::new(request.into_body(), CONNECT_BODY_LIMIT)
        .collect()
        .await
        .map_err(|_| ProxyError::InvalidRequest("the /connect body must be JSON under 16 KiB".into()))?
        .to_bytes();
    let asked: ConnectRequest = serde_json::from_slice(&body)
        .map_err(|_| ProxyError::InvalidRequest("the /connect body must be {\"connector\": NAME}".into()))?;
    let index = config.resolve_name(&asked.connector).ok_or_else(|| PolicyError::Unknown(asked.connector.clone()))?;
    let connector = &config.connectors[index];
    record.connector = Some(index);
    if !caller.may_use(index) {
        return Err(PolicyError::Forbidden(connector.name.clone()).into());
    }
    if !matches!(connector.grant, Grant::AuthorizationCode(_)) {
        return Err(ProxyError::InvalidRequest(format!(
            "{} uses {} and has no per-user connection to make",
            connector.name,
            connector.grant.as_str()
        )));
    }
    let (url, expires_at) = state.broker.links().connect_url(&connector.name, &caller.principal.name, unix_now());
    Ok(json(serde_json::json!({ "connect_url": url, "expires_at": expires_at })))
}

/// The caller of a `/connections/...` request, and the connector it names (which it may use).
async fn own_connection<'s>(
    state: &'s State,
    session: &Session,
    request: &Request<Inbound>,
    name: &str,
    record: &mut Record,
) -> Result<(std::sync::Arc<crate::caller::Caller>, usize, &'s crate::config::Connector), ProxyError> {
    let config = &state.config;
    let caller = identify(&Asked::of(request.headers()), true, config, &session.callers, unix_now()).await?;
    record.caller = Some(caller.clone());
    let index = config.resolve_name(name).ok_or_else(|| PolicyError::Unknown(name.to_string()))?;
    let connector = &config.connectors[index];
    record.connector = Some(index);
    if !caller.may_use(index) {
        return Err(PolicyError::Forbidden(connector.name.clone()).into());
    }
    Ok((caller, index, connector))
}

fn json(value: serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())).map_err(|never| match never {}).boxed());
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// `POST /console-link`: a one-time link that signs the caller's user in to the console's
/// "My connections" (the agent platform hands it to the user), limited to the connectors the
/// caller may use.
async fn console_link(
    state: &State,
    session: &Session,
    request: &Request<Inbound>,
    record: &mut Record,
) -> Result<Response<Body>, ProxyError> {
    if request.method() != Method::POST {
        return Err(ProxyError::InvalidRequest("use POST /console-link".into()));
    }
    let config = &state.config;
    let caller = identify(&Asked::of(request.headers()), true, config, &session.callers, unix_now()).await?;
    record.caller = Some(caller.clone());
    let connectors = caller
        .allowed
        .as_ref()
        .map(|list| list.iter().filter_map(|i| config.connectors.get(*i)).map(|c| c.name.clone()).collect());
    let grant =
        crate::signin::Grant { role: crate::signin::Role::User, principal: caller.principal.name.clone(), connectors };
    let store = state.broker.store();
    let token = crate::signin::mint_link(store.as_ref(), &grant)
        .await
        .map_err(|source| crate::token::broker::CredentialError::Store { connector: String::new(), source })?;
    let url = format!("{}/console/login?token={token}", state.broker.links().public_url());
    let expires_at = unix_now() + crate::signin::LINK_TTL.as_secs();
    Ok(json(serde_json::json!({ "url": url, "expires_at": expires_at })))
}

/// `POST /connections/{connector}/test`: the connector's health check with the caller's own
/// token.
async fn test(
    state: &State,
    session: &Session,
    request: &Request<Inbound>,
    name: &str,
    record: &mut Record,
) -> Result<Response<Body>, ProxyError> {
    if request.method() != Method::POST {
        return Err(ProxyError::InvalidRequest("use POST /connections/{connector}/test".into()));
    }
    let (caller, index, connector) = own_connection(state, session, request, name, record).await?;
    let outcome = state.broker.test_connection(index, connector, &caller.principal.name).await?;
    Ok(json(serde_json::json!(outcome)))
}

/// `DELETE /connections/{connector}`: the caller's own connection, deleted and revoked.
async fn disconnect(
    state: &State,
    session: &Session,
    request: &Request<Inbound>,
    name: &str,
    record: &mut Record,
) -> Result<Response<Body>, ProxyError> {
    if request.method() != Method::DELETE {
        return Err(ProxyError::InvalidRequest("use DELETE /connections/{connector} to disconnect".into()));
    }
    let (caller, index, connector) = own_connection(state, session, request, name, record).await?;
    let key = crate::token::ConnectionKey::new(&connector.name, caller.principal.name.as_str());
    match state.broker.delete(index, connector, &key).await {
        Ok(true) => {
            let mut response = Response::new(Full::new(Bytes::new()).map_err(|never| match never {}).boxed());
            *response.status_mut() = http::StatusCode::NO_CONTENT;
            Ok(response)
        }
        Ok(false) => Err(ProxyError::NotFound(format!("{} has no {} connection", caller.principal, connector.name))),
        Err(source) => {
            Err(crate::token::broker::CredentialError::Store { connector: connector.name.clone(), source }.into())
        }
    }
}
