//! Console sign-in with the organization's OpenID Connect provider (`console.oidc`): the
//! authorization code flow with PKCE, `state` bound to the browser by a cookie and `nonce`
//! bound to the ID token. The ID token is verified against the provider's published keys
//! (issuer, audience, expiry, nonce); its claims, with the userinfo answer's, decide the
//! role: the configured admin claim makes an admin, anyone else signs in as a user whose
//! principal is their subject (the principal the agent platform's caller JWTs name).

use std::time::Duration;

use http::{header, HeaderValue, Request, Response, StatusCode};
use maud::html;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::layout::page;
use super::{field, html_response, redirect, secure};
use crate::body::{Body, Inbound};
use crate::config::console::ConsoleOidc;
use crate::live::Shared;
use crate::net::http::HttpClient;
use crate::proxy::State;
use crate::signin::{self, Grant, Role};

/// The cookie that binds a sign-in to the browser that started it.
const COOKIE: &str = "tollgate_console_oidc";
const FLOW_TTL: Duration = Duration::from_secs(600);

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    userinfo_endpoint: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Pending {
    verifier: String,
    nonce: String,
    browser: String,
}

fn redirect_uri(state: &State) -> String {
    format!("{}/console/oidc/callback", state.broker.links().public_url())
}

async fn get_json<T: serde::de::DeserializeOwned>(
    http: &HttpClient,
    url: &str,
    bearer: Option<&str>,
) -> Result<T, String> {
    let mut request = http::Request::get(url).header(header::ACCEPT, "application/json");
    if let Some(token) = bearer {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request.body(Vec::new()).map_err(|_| format!("`{url}` is not a URL"))?;
    let answer = http.send(0, request).await.map_err(|e| format!("{url}: {e}"))?;
    if !answer.status().is_success() {
        return Err(format!("{url} answered {}", answer.status()));
    }
    serde_json::from_slice(answer.body()).map_err(|e| format!("{url}: {e}"))
}

async fn discover(http: &HttpClient, oidc: &ConsoleOidc) -> Result<Discovery, String> {
    let found: Discovery = get_json(http, &format!("{}/.well-known/openid-configuration", oidc.issuer), None).await?;
    if found.issuer.trim_end_matches('/') != oidc.issuer {
        return Err(format!("the provider names issuer {}, not {}", found.issuer, oidc.issuer));
    }
    Ok(found)
}

fn failed(state: &State, why: &str) -> Response<Body> {
    tracing::warn!(reason = %why, "console sign-in with the identity provider failed");
    let body = html! {
        p { "Signing in with your identity provider did not work. Try again; if it keeps failing, an administrator can check the log." }
        p { a href="/console/login" { "Back to sign-in" } }
    };
    html_response(StatusCode::UNAUTHORIZED, state, page("Sign in", None, body))
}

/// `GET /console/oidc/start`: off to the provider (a link, not a form: a form's
/// `form-action 'self'` would stop the redirect to the provider).
pub async fn start(shared: &Shared, state: &State) -> Response<Body> {
    let Some(oidc) = &state.config.console.oidc else {
        return html_response(StatusCode::NOT_FOUND, state, super::not_found(None));
    };
    let http = match shared.http_client(&state.config, oidc.addresses.clone()) {
        Ok(h) => h,
        Err(e) => return failed(state, &e),
    };
    let provider = match discover(&http, oidc).await {
        Ok(d) => d,
        Err(e) => return failed(state, &e),
    };
    let (Some(flow), Some(nonce), Some(browser)) = (signin::random(), signin::random(), signin::random()) else {
        return failed(state, "no randomness");
    };
    let (challenge, verifier) = oauth2::PkceCodeChallenge::new_random_sha256();
    let pending =
        Pending { verifier: verifier.secret().clone(), nonce: nonce.clone(), browser: signin::digest(&browser) };
    let Ok(value) = serde_json::to_vec(&pending) else { return failed(state, "the flow could not be kept") };
    let store = state.broker.store();
    if let Err(e) = store.put_transient(&format!("console:oidc:{flow}"), &value, FLOW_TTL, true).await {
        return failed(state, &e.to_string());
    }
    let query = oauth2::url::form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", &oidc.client_id)
        .append_pair("redirect_uri", &redirect_uri(state))
        .append_pair("scope", &oidc.scopes.join(" "))
        .append_pair("state", &flow)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", challenge.as_str())
        .append_pair("code_challenge_method", "S256")
        .finish();
    let separator = if provider.authorization_endpoint.contains('?') { '&' } else { '?' };
    let mut response = redirect(&format!("{}{separator}{query}", provider.authorization_endpoint));
    let flag = if secure(state) { "; Secure" } else { "" };
    let cookie = format!("{COOKIE}={browser}; Path=/console/oidc; Max-Age=600; HttpOnly; SameSite=Lax{flag}");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

/// `GET /console/oidc/callback`: the provider's answer; a session when it checks out.
pub async fn callback(shared: &Shared, state: &State, request: &Request<Inbound>, from: String) -> Response<Body> {
    let Some(oidc) = &state.config.console.oidc else {
        return html_response(StatusCode::NOT_FOUND, state, super::not_found(None));
    };
    let query = request.uri().query().map(crate::form::url_pairs).unwrap_or_default();
    if let Some(error) = field(&query, "error") {
        return failed(state, &format!("the provider answered {error}"));
    }
    let (Some(code), Some(flow)) = (field(&query, "code"), field(&query, "state")) else {
        return failed(state, "the answer has no code or state");
    };
    let store = state.broker.store();
    let pending: Pending = match store.take_transient(&format!("console:oidc:{flow}")).await {
        Ok(Some(v)) => match serde_json::from_slice(&v) {
            Ok(p) => p,
            Err(e) => return failed(state, &e.to_string()),
        },
        Ok(None) => return failed(state, "the sign-in expired or was already used"),
        Err(e) => return failed(state, &e.to_string()),
    };
    let browser = request
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, v)| signin::digest(v));
    if browser.as_deref() != Some(pending.browser.as_str()) {
        return failed(state, "the answer reached another browser than the one that started the sign-in");
    }
    match finish(shared, state, oidc, code, &pending).await {
        Ok(grant) => {
            let ttl = state.config.console.session_ttl;
            match signin::start(store.as_ref(), grant, ttl).await {
                Ok((session, cookie)) => {
                    let entry = crate::audit::Entry::new(
                        &session.grant.principal,
                        "console",
                        from,
                        "console.sign_in",
                        "identity provider",
                    );
                    crate::audit::record(store.as_ref(), entry).await;
                    // A page, not a redirect: the browser arrives here from the provider's site,
                    // and a SameSite=Strict cookie is not sent along a redirect chain that
                    // another site started. The page's own navigation is same-site.
                    let body = html! {
                        meta http-equiv="refresh" content="0;url=/console/";
                        p { "Signed in. " a href="/console/" { "Continue to the console" } }
                    };
                    let mut response = html_response(StatusCode::OK, state, page("Signed in", None, body));
                    if let Ok(v) = HeaderValue::from_str(&signin::set_cookie(&cookie, ttl, secure(state))) {
                        response.headers_mut().append(header::SET_COOKIE, v);
                    }
                    response
                }
                Err(e) => failed(state, &e.to_string()),
            }
        }
        Err(e) => failed(state, &e),
    }
}

/// Exchanges the code, verifies the ID token, reads the claims, decides the role.
async fn finish(
    shared: &Shared,
    state: &State,
    oidc: &ConsoleOidc,
    code: &str,
    pending: &Pending,
) -> Result<Grant, String> {
    let http = shared.http_client(&state.config, oidc.addresses.clone())?;
    let provider = discover(&http, oidc).await?;
    // Built before the next await: the form serializer is not Send.
    let form_body = {
        let mut form = oauth2::url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "authorization_code")
            .append_pair("code", code)
            .append_pair("redirect_uri", &redirect_uri(state))
            .append_pair("code_verifier", &pending.verifier);
        if oidc.client_secret.is_none() {
            form.append_pair("client_id", &oidc.client_id);
        }
        form.finish()
    };
    let mut request = http::Request::post(&provider.token_endpoint)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT, "application/json");
    if let Some(secret) = &oidc.client_secret {
        use base64::Engine;
        let encode = |s: &str| oauth2::url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let pair = format!("{}:{}", encode(&oidc.client_id), encode(secret.expose()));
        let basic = base64::engine::general_purpose::STANDARD.encode(pair);
        request = request.header(header::AUTHORIZATION, format!("Basic {basic}"));
    }
    let request = request.body(form_body.into_bytes()).map_err(|_| "the token endpoint is not a URL".to_string())?;
    let answer = http.send(0, request).await.map_err(|e| e.to_string())?;
    if !answer.status().is_success() {
        return Err(format!("the token endpoint answered {}", answer.status()));
    }
    let tokens: Value = serde_json::from_slice(answer.body()).map_err(|e| e.to_string())?;
    let id_token = tokens["id_token"].as_str().ok_or("the token answer has no id_token")?;
    let mut claims = verify(&http, &provider, oidc, id_token).await?;
    if claims["nonce"].as_str() != Some(pending.nonce.as_str()) {
        return Err("the ID token's nonce is not this sign-in's".into());
    }
    if let (Some(userinfo), Some(access)) = (&provider.userinfo_endpoint, tokens["access_token"].as_str()) {
        if let Ok(Value::Object(more)) = get_json::<Value>(&http, userinfo, Some(access)).await {
            if more.get("sub") == claims.get("sub") {
                if let Value::Object(map) = &mut claims {
                    for (k, v) in more {
                        map.entry(k).or_insert(v);
                    }
                }
            }
        }
    }
    let sub = claims["sub"].as_str().filter(|s| !s.is_empty()).ok_or("the ID token has no subject")?.to_string();
    let (name, value) = &oidc.admin_claim;
    let admin = match &claims[name.as_str()] {
        Value::String(s) => s == value,
        Value::Array(items) => items.iter().any(|i| i.as_str() == Some(value.as_str())),
        _ => false,
    };
    if admin {
        let shown = claims["email"].as_str().or(claims["preferred_username"].as_str()).unwrap_or(&sub).to_string();
        return Ok(Grant { role: Role::Admin, principal: shown, connectors: None });
    }
    // A user may use every public connector (private ones are for admins).
    let public = state.config.connectors.iter().filter(|c| !c.private).map(|c| c.name.clone()).collect();
    Ok(Grant { role: Role::User, principal: sub, connectors: Some(public) })
}

/// The ID token's claims, once its signature (a published key), issuer, audience and expiry
/// check out.
async fn verify(http: &HttpClient, provider: &Discovery, oidc: &ConsoleOidc, token: &str) -> Result<Value, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| "the ID token is malformed".to_string())?;
    let jwks: Value = get_json(http, &provider.jwks_uri, None).await?;
    let keys = crate::config::jwks::load_jwks(&jwks.to_string())?;
    let key = keys
        .iter()
        .find(|k| header.kid.is_none() || k.kid == header.kid)
        .ok_or("the ID token names no published key")?;
    if key.alg != header.alg {
        return Err("the ID token's algorithm is not its key's".into());
    }
    let mut validation = jsonwebtoken::Validation::new(key.alg);
    validation.leeway = 30;
    validation.set_audience(&[&oidc.client_id]);
    validation.set_issuer(&[&provider.issuer]);
    validation.set_required_spec_claims(&["exp", "sub", "aud", "iss"]);
    jsonwebtoken::decode::<Value>(token, &key.key, &validation)
        .map(|data| data.claims)
        .map_err(|e| format!("the ID token does not verify: {e}"))
}
