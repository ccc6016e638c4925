//! Signing in and out, and "My connections": every connector the user may use, with Connect
//! (a popup through the provider), Reconnect, Test and Disconnect.

use http::{header, HeaderValue, Request, Response, StatusCode};
use maud::html;

use super::layout::{action, badge, page, when};
use super::{field, html_response, redirect, secure};
use crate::body::{Body, Inbound};
use crate::clock::unix_now;
use crate::config::Grant;
use crate::proxy::State;
use crate::signin::{self as session, Session};
use crate::token::{ConnectionKey, ConnectionStatus};

/// `GET /console/login?token=`: a Sign in button, so a link preview cannot use the link up.
pub fn login_page(state: &State, request: &Request<Inbound>) -> Response<Body> {
    let query = request.uri().query().map(crate::form::url_pairs).unwrap_or_default();
    let token = field(&query, "token").unwrap_or_default();
    let oidc = state.config.console.oidc.as_ref();
    let body = html! {
        @if !token.is_empty() {
            p { "This link signs you in to the Tollgate console. It works once, within 10 minutes of being made." }
            form method="post" action="/console/login" {
                input type="hidden" name="token" value=(token);
                button type="submit" { "Sign in" }
            }
        }
        @if let Some(oidc) = oidc {
            p { a class=(if token.is_empty() { "button" } else { "button secondary" }) href="/console/oidc/start" { "Sign in with your organization" } }
            p class="muted" { "Through " (oidc.issuer) "." }
        }
        @if token.is_empty() && oidc.is_none() {
            p { "Open the sign-in link you were given: your agent platform gives users one, and an administrator can make one with the admin API." }
        }
    };
    html_response(StatusCode::OK, state, page("Sign in", None, body))
}

/// `POST /console/login`: uses the link up, starts a session.
pub async fn login(state: &State, form: &[(String, String)], from: String) -> Response<Body> {
    let token = field(form, "token").unwrap_or_default();
    let ttl = state.config.console.session_ttl;
    match session::sign_in(state.broker.store().as_ref(), token, ttl).await {
        Ok(Some((session, cookie))) => {
            if session.grant.role == crate::signin::Role::Admin {
                let entry =
                    crate::audit::Entry::new(&session.grant.principal, "console", from, "console.sign_in", "console");
                crate::audit::record(state.broker.store().as_ref(), entry).await;
            } else {
                tracing::info!(principal = %session.grant.principal, "console sign-in");
            }
            let mut response = redirect("/console/");
            if let Ok(v) = HeaderValue::from_str(&session::set_cookie(&cookie, ttl, secure(state))) {
                response.headers_mut().insert(header::SET_COOKIE, v);
            }
            response
        }
        Ok(None) => {
            let body = html! { p { "This sign-in link was already used or has expired. Ask for a new one." } };
            html_response(StatusCode::UNAUTHORIZED, state, page("Sign in", None, body))
        }
        Err(e) => super::unavailable(state, &e.to_string()),
    }
}

pub async fn logout(state: &State, session: &Session) -> Response<Body> {
    if let Err(e) = session::sign_out(state.broker.store().as_ref(), session).await {
        return super::unavailable(state, &e.to_string());
    }
    let mut response = redirect("/console/login");
    if let Ok(v) = HeaderValue::from_str(&session::clear_cookie(secure(state))) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

/// The connectors `session`'s user may connect (per-user OAuth ones), by index.
fn usable(state: &State, session: &Session) -> Vec<usize> {
    state
        .config
        .connectors
        .iter()
        .enumerate()
        .filter(|(_, c)| matches!(c.grant, Grant::AuthorizationCode(_)))
        .filter(|(_, c)| session.grant.connectors.as_ref().is_none_or(|names| names.contains(&c.name)))
        .map(|(i, _)| i)
        .collect()
}

/// `GET /console/me`.
pub async fn me(state: &State, session: &Session) -> Response<Body> {
    let principal = &session.grant.principal;
    let listed = state.broker.store().list(None, Some(principal)).await;
    let Ok(connections) = listed else {
        return super::unavailable(state, "listing connections");
    };
    let now = unix_now();
    let cards = usable(state, session).into_iter().map(|index| {
        let connector = &state.config.connectors[index];
        let found = connections.iter().find(|(k, _)| k.connector == connector.name && &k.principal == principal);
        let (status, health) = match found.map(|(_, c)| c) {
            None => ("not_connected", "unknown"),
            Some(c) => match c.status {
                ConnectionStatus::Connected => ("connected", c.health.state()),
                ConnectionStatus::NeedsReauth => ("needs_reauth", "unhealthy"),
                ConnectionStatus::Revoked => ("revoked", "unhealthy"),
            },
        };
        let connection = found.map(|(_, c)| c);
        let (link, _) = state.broker.links().connect_url(&connector.name, principal, now);
        html! {
            section class="card" aria-labelledby={ "c-" (connector.name) } {
                h2 id={ "c-" (connector.name) } { (connector.name) }
                p { "State: " (badge(status)) " Health: " (badge(health)) }
                @if let Some(c) = connection {
                    p class="muted" {
                        "Last success: " (when(c.health.last_success_at))
                        @if let Some(code) = &c.health.last_error { " · last failure: " (when(c.health.last_failure_at)) " (" (code) ")" }
                    }
                }
                p {
                    @match status {
                        "connected" => {
                            (action(session, "/console/me/test", "Test", &[("connector", &connector.name)], "secondary"))
                            (action(session, "/console/me/disconnect", "Disconnect", &[("connector", &connector.name)], "danger"))
                        }
                        "needs_reauth" => { a class="button" href=(link) data-popup="" { "Reconnect" } }
                        _ => { a class="button" href=(link) data-popup="" { "Connect" } }
                    }
                }
            }
        }
    });
    let body = html! {
        p id="connect-status" role="status" aria-live="polite" {}
        div class="cards" { @for card in cards { (card) } }
    };
    html_response(StatusCode::OK, state, page("My connections", Some(session), body))
}

/// The user's own actions: test and disconnect.
pub async fn post(state: &State, session: &Session, path: &str, form: &[(String, String)]) -> Response<Body> {
    let name = field(form, "connector").unwrap_or_default();
    let Some(index) = usable(state, session).into_iter().find(|i| state.config.connectors[*i].name == name) else {
        let body = html! { p { "You cannot use that connector." } };
        return html_response(StatusCode::FORBIDDEN, state, page("Refused", Some(session), body));
    };
    let connector = &state.config.connectors[index];
    let principal = &session.grant.principal;
    match path {
        "/console/me/test" => {
            let outcome = state.broker.test_connection(index, connector, principal).await;
            tracing::info!(connector = %connector.name, principal = %principal, "console: connection tested by its user");
            let (title, message) = match outcome {
                Ok(o) => (o.health, o.message),
                Err(e) => ("unhealthy", e.to_string()),
            };
            let body = html! {
                p { "Test of " strong { (connector.name) } ": " (badge(title)) }
                p { (message) }
                p { a href="/console/me" { "Back to my connections" } }
            };
            html_response(StatusCode::OK, state, page("Test connection", Some(session), body))
        }
        "/console/me/disconnect" => {
            let key = ConnectionKey::new(&connector.name, principal);
            match state.broker.delete(index, connector, &key).await {
                Ok(_) => {
                    tracing::info!(connector = %connector.name, principal = %principal, "console: disconnected by its user");
                    redirect("/console/me")
                }
                Err(e) => super::unavailable(state, &e.to_string()),
            }
        }
        _ => html_response(StatusCode::NOT_FOUND, state, super::not_found(Some(session))),
    }
}
