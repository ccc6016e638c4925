//! The connect flow (SPEC section 5): `GET /oauth/start` shows who is connecting what;
//! its `POST` uses up the ticket, binds the flow to this browser with a per-flow cookie and
//! redirects to the provider with `state` and a PKCE S256 challenge; `GET /oauth/callback`
//! checks all of that, exchanges the code and stores the connection.
//!
//! Flow state lives in the token store (sealed in Redis, expiring after 10 minutes), so any
//! replica can finish a flow another started. Nothing here follows a caller-supplied redirect.

use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use oauth2::{AuthUrl, CsrfToken, PkceCodeChallenge, RedirectUrl, Scope};
use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};

use super::link::LINK_TTL_SECS;
use super::pages::{escape, failure, page, provider_error, Outcome};
use crate::config::{Connector, Grant, OAuthClient};
use crate::domains::target::parse_host;
use crate::proxy::pipeline::unix_now;
use crate::proxy::{Body, State};
use crate::secret::Secret;
use crate::token::endpoint::{request_token, Exchange, RefreshError};
use crate::token::{Connection, ConnectionKey, ConnectionStatus};

/// How long a started flow waits for its callback: the consent popup timeout.
const FLOW_TTL_SECS: u64 = 600;

/// A started flow, kept server-side under its `state`.
#[derive(Serialize, Deserialize)]
struct Flow {
    connector: String,
    principal: String,
    verifier: String,
    /// SHA-256 of the flow cookie's value: the browser that started it.
    browser: String,
    pinned_host: Option<String>,
    /// The endpoints this flow was started against (mix-up defence).
    token_endpoint: Option<String>,
    issuer: Option<String>,
}

fn random_token() -> Option<String> {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut bytes).ok()?;
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

fn sha256_hex(text: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, text.as_bytes()).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The per-flow cookie's name: two flows in two tabs never share one.
fn cookie_name(state: &str) -> String {
    format!("tollgate_flow_{}", &sha256_hex(state)[..16])
}

fn form(text: &str) -> Vec<(String, String)> {
    url_pairs(text)
}

/// Decodes `application/x-www-form-urlencoded` (also query strings).
fn url_pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match bytes.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()) {
                Some(b) => {
                    out.push(b);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
}

/// Serves `/oauth/*`. Never fails: every problem is a page that says what to fix.
pub async fn handle(state: &State, request: Request<Incoming>) -> Response<Body> {
    let path = request.uri().path().to_string();
    let query = url_pairs(request.uri().query().unwrap_or(""));
    match (request.method().clone(), path.as_str()) {
        (Method::GET, "/oauth/start") => start_page(state, &query),
        (Method::POST, "/oauth/start") => {
            let body = match Limited::new(request.into_body(), 8 * 1024).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => return failure(StatusCode::BAD_REQUEST, None, "The form could not be read.", "Open the link again."),
            };
            start_flow(state, &form(&String::from_utf8_lossy(&body))).await
        }
        (Method::GET, "/oauth/callback") => callback(state, request.headers(), &query).await,
        _ => failure(StatusCode::NOT_FOUND, None, "There is no such page.", "Use the link your tool gave you."),
    }
}

/// The connector of a ticket, if it is valid and names an authorization-code connector.
fn ticket_connector<'a>(state: &'a State, ticket: Option<&str>) -> Result<(usize, &'a Connector, crate::oauth::link::Ticket), Response<Body>> {
    let expired = || failure(StatusCode::BAD_REQUEST, None, "This connect link is invalid or has expired.", "Ask your tool for a new link and open it within 10 minutes.");
    let ticket = state.broker.links().verify(ticket.ok_or_else(expired)?, unix_now()).map_err(|_| expired())?;
    let index = state.config.resolve_name(&ticket.connector).ok_or_else(expired)?;
    let connector = &state.config.connectors[index];
    if !matches!(connector.grant, Grant::AuthorizationCode(_)) {
        return Err(expired());
    }
    Ok((index, connector, ticket))
}

fn start_page(state: &State, query: &[(String, String)]) -> Response<Body> {
    let raw = field(query, "ticket");
    let (_, connector, ticket) = match ticket_connector(state, raw) {
        Ok(found) => found,
        Err(page) => return page,
    };
    let host_input = if connector.pin_host && !oauth(connector).is_some_and(|o| o.host_from_instance_url) {
        let patterns: Vec<String> = connector.patterns.iter().map(|p| escape(&p.to_string())).collect();
        format!(
            "<p><label>Your {} host (for example the workspace address):<br><input name=\"host\" required size=\"40\"></label><br>\
             <small>It must match {}. Your token will only ever be sent to this host.</small></p>",
            escape(&connector.name),
            patterns.join(", ")
        )
    } else {
        String::new()
    };
    let body = format!(
        "<p>Connect <strong>{connector}</strong> for <strong>{principal}</strong>.</p>\
         <p>You will be sent to {connector} to sign in and approve access. Tollgate stores the resulting token \
         encrypted and adds it only to requests your tools make to {connector}.</p>\
         <form method=\"post\" action=\"/oauth/start\"><input type=\"hidden\" name=\"ticket\" value=\"{ticket}\">{host_input}\
         <button type=\"submit\">Continue</button></form>",
        connector = escape(&connector.name),
        principal = escape(&ticket.principal),
        ticket = escape(raw.unwrap_or("")),
    );
    page(StatusCode::OK, &format!("Connect {}", connector.name), &body, None)
}

fn oauth(connector: &Connector) -> Option<&OAuthClient> {
    match &connector.grant {
        Grant::AuthorizationCode(o) => Some(o),
        _ => None,
    }
}

async fn start_flow(state: &State, form: &[(String, String)]) -> Response<Body> {
    let (_, connector, ticket) = match ticket_connector(state, field(form, "ticket")) {
        Ok(found) => found,
        Err(page) => return page,
    };
    let name = connector.name.as_str();
    let Some(oauth) = oauth(connector) else {
        return failure(StatusCode::BAD_REQUEST, Some(name), "This connector does not connect accounts.", "Use the link your tool gave you.");
    };
    let store = state.broker.store();
    let unavailable = || failure(StatusCode::SERVICE_UNAVAILABLE, Some(name), "Tollgate cannot reach its token store.", "Try again in a minute.");
    // Only the POST uses up the ticket, so link previews in chat tools cannot.
    match store.put_transient(&format!("ticket:{}", ticket.nonce), b"", std::time::Duration::from_secs(LINK_TTL_SECS), true).await {
        Ok(true) => {}
        Ok(false) => return failure(StatusCode::BAD_REQUEST, Some(name), "This connect link was already used.", "Ask your tool for a new link."),
        Err(_) => return unavailable(),
    }
    let pinned_host = if connector.pin_host && !oauth.host_from_instance_url {
        let typed = field(form, "host").unwrap_or("").trim().to_ascii_lowercase();
        match parse_host(&typed) {
            Ok(host) if connector.patterns.iter().any(|p| p.covers_host(&host)) => Some(host.to_string()),
            _ => {
                return failure(StatusCode::BAD_REQUEST, Some(name), "That host is not one this connector may use.", "Ask your tool for a new link and enter your workspace host.")
            }
        }
    } else {
        None
    };
    let (Some(flow_state), Some(browser)) = (random_token(), random_token()) else {
        return unavailable();
    };
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let redirect_uri = state.broker.links().redirect_uri();
    let (Some(auth_url), Ok(redirect), Some(client_id)) = (
        oauth.authorization_endpoint.as_deref().and_then(|u| AuthUrl::new(u.to_string()).ok()),
        RedirectUrl::new(redirect_uri),
        oauth.client_id.as_deref(),
    ) else {
        return failure(StatusCode::SERVICE_UNAVAILABLE, Some(name), "The connector has no usable authorization endpoint or client id.", "An administrator must complete the connector's configuration.");
    };
    let client = oauth2::basic::BasicClient::new(oauth2::ClientId::new(client_id.to_string())).set_auth_uri(auth_url).set_redirect_uri(redirect);
    let state_value = flow_state.clone();
    let mut request = client
        .authorize_url(move || CsrfToken::new(state_value))
        .add_scopes(oauth.scopes.iter().cloned().map(Scope::new))
        .set_pkce_challenge(challenge);
    for (k, v) in &oauth.authorize_params {
        request = request.add_extra_param(k.clone(), v.clone());
    }
    if let Some(resource) = &oauth.resource {
        request = request.add_extra_param("resource", resource.clone());
    }
    let (url, _) = request.url();
    let flow = Flow {
        connector: connector.name.clone(),
        principal: ticket.principal.clone(),
        verifier: verifier.secret().clone(),
        browser: sha256_hex(&browser),
        pinned_host,
        token_endpoint: oauth.token_endpoint.clone(),
        issuer: oauth.issuer.clone(),
    };
    let Ok(record) = serde_json::to_vec(&flow) else { return unavailable() };
    let ttl = std::time::Duration::from_secs(FLOW_TTL_SECS);
    if store.put_transient(&format!("flow:{flow_state}"), &record, ttl, false).await.is_err() {
        return unavailable();
    }
    let secure = if state.broker.links().public_url().starts_with("https://") { "; Secure" } else { "" };
    let cookie = format!("{}={browser}; Path=/oauth/callback; Max-Age={FLOW_TTL_SECS}; HttpOnly; SameSite=Lax{secure}", cookie_name(&flow_state));
    let mut response = page(StatusCode::SEE_OTHER, "Redirecting", "<p>Continuing to the provider.</p>", None);
    let headers = response.headers_mut();
    if let (Ok(location), Ok(cookie)) = (HeaderValue::from_str(url.as_str()), HeaderValue::from_str(&cookie)) {
        headers.insert(header::LOCATION, location);
        headers.insert(header::SET_COOKIE, cookie);
    }
    response
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

async fn callback(state: &State, headers: &HeaderMap, query: &[(String, String)]) -> Response<Body> {
    let Some(flow_state) = field(query, "state") else {
        return failure(StatusCode::BAD_REQUEST, None, "The provider's answer has no state.", "Start again from your tool.");
    };
    let record = match state.broker.store().take_transient(&format!("flow:{flow_state}")).await {
        Ok(Some(r)) => r,
        Ok(None) => return failure(StatusCode::BAD_REQUEST, None, "This sign-in expired or was already completed.", "Start again from your tool and finish within 10 minutes."),
        Err(_) => return failure(StatusCode::SERVICE_UNAVAILABLE, None, "Tollgate cannot reach its token store.", "Start again from your tool in a minute."),
    };
    let Ok(flow) = serde_json::from_slice::<Flow>(&record) else {
        return failure(StatusCode::BAD_REQUEST, None, "This sign-in could not be read.", "Start again from your tool.");
    };
    let name = flow.connector.as_str();
    let same_browser = cookie_value(headers, &cookie_name(flow_state)).is_some_and(|v| sha256_hex(&v) == flow.browser);
    if !same_browser {
        return failure(StatusCode::BAD_REQUEST, Some(name), "This sign-in was started in another browser.", "Open the connect link again in this browser.");
    }
    let redirect_uri = state.broker.links().redirect_uri();
    if let Some(code) = field(query, "error") {
        let (what, fix) = provider_error(code, name, &redirect_uri);
        return failure(StatusCode::BAD_REQUEST, Some(name), what, &fix);
    }
    let Some(index) = state.config.resolve_name(name) else {
        return failure(StatusCode::BAD_REQUEST, Some(name), "The connector no longer exists.", "Ask an administrator.");
    };
    let connector = &state.config.connectors[index];
    let Some(oauth) = oauth(connector) else {
        return failure(StatusCode::BAD_REQUEST, Some(name), "The connector no longer connects accounts.", "Ask an administrator.");
    };
    // RFC 9207: an `iss` must name the issuer this flow was started with.
    if let (Some(iss), Some(expected)) = (field(query, "iss"), flow.issuer.as_deref()) {
        if iss != expected {
            return failure(StatusCode::BAD_REQUEST, Some(name), "The answer came from a different authorization server than the one the sign-in started with.", "Start again from your tool.");
        }
    }
    // The code goes only to the token endpoint this flow was started against.
    if oauth.token_endpoint != flow.token_endpoint {
        return failure(StatusCode::BAD_REQUEST, Some(name), "The connector's token endpoint changed during the sign-in.", "Start again from your tool.");
    }
    let Some(code) = field(query, "code") else {
        return failure(StatusCode::BAD_REQUEST, Some(name), "The provider's answer has no code.", "Start again from your tool.");
    };
    let verifier = Secret::new(flow.verifier.clone());
    let exchange = Exchange::AuthorizationCode { code, verifier: &verifier, redirect_uri: &redirect_uri };
    let issued = match request_token(state.broker.http(), index, oauth, exchange).await {
        Ok(issued) => issued,
        Err(RefreshError::Permanent(code)) => {
            let (what, fix) = match code.as_str() {
                "invalid_grant" => ("The provider did not accept the sign-in code (it expired or was used).", "Start again from your tool.".to_string()),
                other => {
                    let (what, fix) = provider_error(other, name, &redirect_uri);
                    (what, fix)
                }
            };
            return failure(StatusCode::BAD_REQUEST, Some(name), what, &fix);
        }
        Err(RefreshError::Transient(reason)) => {
            tracing::warn!(connector = %name, %reason, "code exchange failed");
            return failure(StatusCode::BAD_GATEWAY, Some(name), "The provider's token endpoint could not be reached or answered unexpectedly.", "Start again from your tool in a minute.");
        }
    };
    let pinned_host = if connector.pin_host {
        let from_answer = issued.instance_url.as_deref().filter(|_| oauth.host_from_instance_url).and_then(|u| crate::domains::Target::parse(u).ok()).map(|t| t.host);
        let host = match from_answer {
            Some(host) if connector.patterns.iter().any(|p| p.covers_host(&host)) => host.to_string(),
            Some(_) => return failure(StatusCode::BAD_REQUEST, Some(name), "The provider named an instance outside the connector's allowed domains.", "An administrator must check the connector's allowed_domains."),
            None => match flow.pinned_host.clone() {
                Some(h) => h,
                None => return failure(StatusCode::BAD_REQUEST, Some(name), "The provider did not say which host the token belongs to.", "An administrator must check the connector."),
            },
        };
        Some(host)
    } else {
        None
    };
    let now = unix_now();
    let lifetime = issued.expires_in.or_else(|| issued.refresh_token.as_ref().map(|_| state.config.refresh.default_lifetime));
    let connection = Connection {
        access_token: issued.access_token,
        refresh_token: issued.refresh_token,
        expires_at: lifetime.map(|d| now + d.as_secs()),
        scopes: issued.scopes.unwrap_or_else(|| oauth.scopes.clone()),
        status: ConnectionStatus::Connected,
        pinned_host,
        version: 0,
    };
    let key = ConnectionKey::new(&connector.name, &flow.principal);
    if state.broker.connect(&key, connection).await.is_err() {
        return failure(StatusCode::SERVICE_UNAVAILABLE, Some(name), "The connection could not be saved.", "Start again from your tool in a minute.");
    }
    tracing::info!(connector = %name, "account connected");
    let body = format!("<p>Connected to <strong>{}</strong>. You can close this window.</p>", escape(name));
    page(StatusCode::OK, &format!("Connected to {name}"), &body, Some((Outcome::Connected, name)))
}
