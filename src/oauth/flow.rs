//! The connect flow (SPEC section 5): `GET /oauth/start` shows who is connecting what;
//! its `POST` uses up the ticket, binds the flow to this browser with a per-flow cookie and
//! redirects to the provider with `state` and a PKCE S256 challenge; `callback.rs` finishes.
//!
//! Flow state lives in the token store (sealed in Redis, expiring after 10 minutes), so any
//! replica can finish a flow another started. Nothing here follows a caller-supplied redirect.

use http::{header, HeaderValue, Method, Request, Response, StatusCode};

use crate::form::{field, form, url_pairs};
use http_body_util::{BodyExt, Limited};
use oauth2::{AuthUrl, CsrfToken, PkceCodeChallenge, RedirectUrl, Scope};

use super::pages::{escape, failure, page};
use super::record::{cookie_name, cookie_value, oauth, random_token, sha256_hex, Flow};
use crate::body::Body;
use crate::body::Inbound;
use crate::clock::unix_now;
use crate::config::{Connector, Grant};
use crate::domains::target::parse_host;
use crate::proxy::State;
use crate::token::link::LINK_TTL_SECS;

/// How long a started flow waits for its callback: the consent popup timeout.
const FLOW_TTL_SECS: u64 = 600;

/// Serves `/oauth/*`. Never fails: every problem is a page that says what to fix.
pub async fn handle(state: &State, request: Request<Inbound>) -> Response<Body> {
    let path = request.uri().path().to_string();
    let query = url_pairs(request.uri().query().unwrap_or(""));
    match (request.method().clone(), path.as_str()) {
        (Method::GET, "/oauth/start") => start_page(state, &query),
        (Method::POST, "/oauth/start") => {
            if let Some(refused) = cross_site(state, request.headers()) {
                return refused;
            }
            let browser = cookie_value(request.headers(), START_COOKIE);
            let body = match Limited::new(request.into_body(), 8 * 1024).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return failure(
                        StatusCode::BAD_REQUEST,
                        None,
                        "The form could not be read.",
                        "Open the link again.",
                    )
                }
            };
            let form = form(&String::from_utf8_lossy(&body));
            // The POST must come from the page this browser loaded (login-CSRF defence): the
            // page's value and its SameSite=Strict cookie must agree.
            if browser.is_none() || field(&form, "csrf") != browser.as_deref() {
                return failure(
                    StatusCode::FORBIDDEN,
                    None,
                    "This form was not opened in this browser.",
                    "Open the connect link again and press Continue.",
                );
            }
            start_flow(state, &form).await
        }
        (Method::GET, "/oauth/callback") => super::callback::callback(state, request.headers(), &query).await,
        _ => failure(StatusCode::NOT_FOUND, None, "There is no such page.", "Use the link your tool gave you."),
    }
}

/// The connector of a ticket, if it is valid and names an authorization-code connector.
fn ticket_connector<'a>(
    state: &'a State,
    ticket: Option<&str>,
) -> Option<(usize, &'a Connector, crate::token::link::Ticket)> {
    let ticket = state.broker.links().verify(ticket?, unix_now()).ok()?;
    let index = state.config.resolve_name(&ticket.connector)?;
    let connector = &state.config.connectors[index];
    matches!(connector.grant, Grant::AuthorizationCode(_)).then_some((index, connector, ticket))
}

fn link_expired() -> Response<Body> {
    failure(
        StatusCode::BAD_REQUEST,
        None,
        "This connect link is invalid or has expired.",
        "Ask your tool for a new link and open it within 10 minutes.",
    )
}

fn start_page(state: &State, query: &[(String, String)]) -> Response<Body> {
    let raw = field(query, "ticket");
    let Some(csrf) = random_token() else {
        return failure(StatusCode::SERVICE_UNAVAILABLE, None, "No randomness is available.", "Try again.");
    };
    let Some((_, connector, ticket)) = ticket_connector(state, raw) else {
        return link_expired();
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
         <form method=\"post\" action=\"/oauth/start\"><input type=\"hidden\" name=\"ticket\" value=\"{ticket}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">{host_input}\
         <button type=\"submit\">Continue</button></form>",
        connector = escape(&connector.name),
        principal = escape(&ticket.principal),
        ticket = escape(raw.unwrap_or("")),
    );
    let mut response = page(StatusCode::OK, &format!("Connect {}", connector.name), &body, None);
    let secure = if state.broker.links().public_url().starts_with("https://") { "; Secure" } else { "" };
    let cookie = format!("{START_COOKIE}={csrf}; Path=/oauth/start; Max-Age=600; HttpOnly; SameSite=Strict{secure}");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// The cookie that binds the Continue POST to the browser that loaded the start page.
const START_COOKIE: &str = "tollgate_start";

/// A POST whose `Origin` is another site is refused outright.
fn cross_site(state: &State, headers: &http::HeaderMap) -> Option<Response<Body>> {
    let origin = headers.get(header::ORIGIN)?.to_str().ok()?;
    let public = state.broker.links().public_url();
    let own = crate::domains::Target::parse(public).ok().map(|t| format!("{}://{}", t.scheme.as_str(), t.authority()));
    let theirs =
        crate::domains::Target::parse(origin).ok().map(|t| format!("{}://{}", t.scheme.as_str(), t.authority()));
    (own.is_some() && own != theirs).then(|| {
        failure(StatusCode::FORBIDDEN, None, "This form was sent from another site.", "Open the connect link again.")
    })
}

async fn start_flow(state: &State, form: &[(String, String)]) -> Response<Body> {
    let Some((index, connector, ticket)) = ticket_connector(state, field(form, "ticket")) else {
        return link_expired();
    };
    let name = connector.name.as_str();
    let oauth = match state.broker.providers().resolve(index, connector).await {
        Ok(oauth) => oauth,
        Err(problem) => {
            // Details (internal URLs, addresses) go to the log and /readyz, not to browsers.
            tracing::warn!(connector = %name, %problem, "a connect flow could not start");
            return failure(
                StatusCode::SERVICE_UNAVAILABLE,
                Some(name),
                "The connector's authorization server is not usable right now.",
                "An administrator can see why in /readyz on the admin listener and in Tollgate's log.",
            );
        }
    };
    let oauth = oauth.as_ref();
    if oauth.client_id.is_none() {
        return failure(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(name),
            "The connector has no client_id and none could be registered.",
            "An administrator must set client_id, or use an authorization server that offers registration.",
        );
    }
    let store = state.broker.store();
    let unavailable = || {
        failure(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(name),
            "Tollgate cannot reach its token store.",
            "Try again in a minute.",
        )
    };
    // Only the POST uses up the ticket, so link previews in chat tools cannot.
    match store
        .put_transient(&format!("ticket:{}", ticket.nonce), b"", std::time::Duration::from_secs(LINK_TTL_SECS), true)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            return failure(
                StatusCode::BAD_REQUEST,
                Some(name),
                "This connect link was already used.",
                "Ask your tool for a new link.",
            )
        }
        Err(_) => return unavailable(),
    }
    let pinned_host = if connector.pin_host && !oauth.host_from_instance_url {
        let typed = field(form, "host").unwrap_or("").trim().to_ascii_lowercase();
        match parse_host(&typed) {
            Ok(host) if connector.patterns.iter().any(|p| p.covers_host(&host)) => Some(host.to_string()),
            _ => {
                return failure(
                    StatusCode::BAD_REQUEST,
                    Some(name),
                    "That host is not one this connector may use.",
                    "Ask your tool for a new link and enter your workspace host.",
                )
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
        return failure(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(name),
            "The connector has no usable authorization endpoint or client id.",
            "An administrator must complete the connector's configuration.",
        );
    };
    let client = oauth2::basic::BasicClient::new(oauth2::ClientId::new(client_id.to_string()))
        .set_auth_uri(auth_url)
        .set_redirect_uri(redirect);
    let state_value = flow_state.clone();
    let mut request = client.authorize_url(move || CsrfToken::new(state_value)).set_pkce_challenge(challenge);
    if !oauth.omit_scope {
        request = request.add_scopes(oauth.scopes.iter().cloned().map(Scope::new));
    }
    for (k, v) in &oauth.authorize_params {
        request = request.add_extra_param(k.clone(), v.clone());
    }
    if let Some(resource) = oauth.resource.as_ref().filter(|_| !oauth.omit_resource) {
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
    let cookie = format!(
        "{}={browser}; Path=/oauth/callback; Max-Age={FLOW_TTL_SECS}; HttpOnly; SameSite=Lax{secure}",
        cookie_name(&flow_state)
    );
    let mut response = page(StatusCode::SEE_OTHER, "Redirecting", "<p>Continuing to the provider.</p>", None);
    let headers = response.headers_mut();
    if let (Ok(location), Ok(cookie)) = (HeaderValue::from_str(url.as_str()), HeaderValue::from_str(&cookie)) {
        headers.insert(header::LOCATION, location);
        headers.insert(header::SET_COOKIE, cookie);
    }
    response
}
