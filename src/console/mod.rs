//! The console: pages where admins manage connectors and every user's connections, and users
//! manage their own, served under `/console/` beside the OAuth pages (docs/console.md). A side
//! wing like `oauth/`: it reads the running state and acts through the broker, the same code
//! the admin API and the proxy listener use.
//!
//! Every page is server-rendered (`layout.rs`); the one script handles the connect popup and
//! copy buttons. Responses are not cacheable, not frameable (unless `console.embed_origins`
//! says by whom) and run no inline script.

mod admin;
mod connectors;
mod layout;
mod oidc;
mod user;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use maud::{html, Markup};

use crate::body::{Body, Inbound};
use crate::live::Shared;
use crate::proxy::State;
use crate::signin::{self as session, Role, Session};

const CSS: &str = include_str!("static/console.css");
const JS: &str = include_str!("static/console.js");

/// Largest form body.
const FORM_LIMIT: usize = 16 * 1024;

/// A request under `/console/`.
pub async fn handle(
    shared: &Shared,
    state: &State,
    peer: Option<std::net::SocketAddr>,
    request: Request<Inbound>,
) -> Response<Body> {
    let config = &state.config;
    let from = crate::audit::origin(peer, request.headers());
    if !config.console.enabled {
        return html_response(StatusCode::NOT_FOUND, state, not_found(None));
    }
    let path = request.uri().path().to_string();
    match (request.method().clone(), path.as_str()) {
        (Method::GET, "/console/static/console.css") => asset(CSS, "text/css; charset=utf-8"),
        (Method::GET, "/console/static/console.js") => asset(JS, "text/javascript; charset=utf-8"),
        (Method::GET, "/console/login") => user::login_page(state, &request),
        (Method::GET, "/console/oidc/start") => oidc::start(shared, state).await,
        (Method::GET, "/console/oidc/callback") => oidc::callback(shared, state, &request, from).await,
        (Method::POST, "/console/login") => {
            let form = read_form(request).await;
            user::login(state, &form, from).await
        }
        _ => signed_in(shared, state, request, &path, from).await,
    }
}

/// The pages behind a session.
async fn signed_in(
    shared: &Shared,
    state: &State,
    request: Request<Inbound>,
    path: &str,
    from: String,
) -> Response<Body> {
    let store = state.broker.store();
    let session = match session::current(store.as_ref(), request.headers()).await {
        Ok(Some(s)) => s,
        Ok(None) => return signed_out(state),
        Err(e) => return unavailable(state, &e.to_string()),
    };
    let method = request.method().clone();
    if method == Method::POST {
        let form = read_form(request).await;
        if !session::csrf_ok(&session, field(&form, "csrf")) {
            let body = html! { p { "This form has expired. Go back, reload the page and try again." } };
            return html_response(StatusCode::FORBIDDEN, state, layout::page("Refused", Some(&session), body));
        }
        return match (session.grant.role, path) {
            (_, "/console/logout") => user::logout(state, &session).await,
            (Role::Admin, p) if p.starts_with("/console/connectors/") => {
                connectors::post(shared, &session, p, &form, from).await
            }
            (Role::Admin, p) => admin::post(state, &session, p, &form, from).await,
            (Role::User, p) => user::post(state, &session, p, &form).await,
        };
    }
    if method != Method::GET {
        return html_response(StatusCode::METHOD_NOT_ALLOWED, state, not_found(Some(&session)));
    }
    let query = request.uri().query().map(crate::form::url_pairs).unwrap_or_default();
    match (session.grant.role, path) {
        (Role::Admin, "/console/" | "/console") => redirect("/console/connectors"),
        (Role::User, "/console/" | "/console") => redirect("/console/me"),
        (Role::Admin, p) if p.starts_with("/console/connectors/") => connectors::get(shared, &session, p, &query).await,
        (Role::Admin, p) => admin::get(state, &session, p, &query).await,
        (Role::User, "/console/me") => user::me(state, &session).await,
        _ => html_response(StatusCode::NOT_FOUND, state, not_found(Some(&session))),
    }
}

async fn read_form(request: Request<Inbound>) -> Vec<(String, String)> {
    let body = Limited::new(request.into_body(), FORM_LIMIT).collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    crate::form::url_pairs(&String::from_utf8_lossy(&body))
}

/// A form or query field.
pub(crate) fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn not_found(session: Option<&Session>) -> Markup {
    layout::page(
        "Not found",
        session,
        html! { p { "There is no such page. " a href="/console/" { "Back to the console" } } },
    )
}

fn signed_out(state: &State) -> Response<Body> {
    let body = html! {
        p { "You are not signed in, or your session has ended." }
        p { "Users: open the console from your agent platform again; it gives you a new link. Administrators: ask for a sign-in link (" code { "POST /admin/console/links" } ")." }
    };
    html_response(StatusCode::UNAUTHORIZED, state, layout::page("Sign in", None, body))
}

fn unavailable(state: &State, why: &str) -> Response<Body> {
    tracing::warn!(error = %why, "a console page could not read the token store");
    let body = html! { p { "The token store cannot be reached right now. Try again in a minute." } };
    html_response(StatusCode::SERVICE_UNAVAILABLE, state, layout::page("Unavailable", None, body))
}

pub(crate) fn redirect(to: &str) -> Response<Body> {
    let mut response = empty(StatusCode::SEE_OTHER);
    if let Ok(v) = HeaderValue::from_str(to) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::new()).map_err(|never| match never {}).boxed());
    *response.status_mut() = status;
    secure_headers(&mut response, &[]);
    response
}

fn asset(text: &'static str, content_type: &'static str) -> Response<Body> {
    let mut response =
        Response::new(Full::new(Bytes::from_static(text.as_bytes())).map_err(|never| match never {}).boxed());
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

pub(crate) fn html_response(status: StatusCode, state: &State, markup: Markup) -> Response<Body> {
    let mut response =
        Response::new(Full::new(Bytes::from(markup.into_string())).map_err(|never| match never {}).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    secure_headers(&mut response, &state.config.console.embed_origins);
    response
}

/// No caching, no inline script, no framing except by the configured origins.
fn secure_headers(response: &mut Response<Body>, embed_origins: &[String]) {
    let ancestors = if embed_origins.is_empty() { "'none'".to_string() } else { embed_origins.join(" ") };
    let csp = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors {ancestors}"
    );
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Same-origin, not no-referrer: with no-referrer a browser sends `Origin: null` on the
    // page's own form POST, which the origin check must refuse. Other sites get no referrer.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if embed_origins.is_empty() {
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
}

/// Whether session cookies must be `Secure`: everywhere but plain-http development.
pub(crate) fn secure(state: &State) -> bool {
    !state.broker.links().public_url().starts_with("http://")
}
