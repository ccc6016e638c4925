//! `GET /oauth/callback`: the one redirect URI. Checks that the answer belongs to a flow this
//! browser started (state, per-flow cookie, `iss`, the token endpoint the flow began with),
//! exchanges the code with the flow's PKCE verifier, pins the host for `pin_host` connectors
//! and stores the connection. Every failure is a page that says what to fix.

use http::{HeaderMap, Response, StatusCode};

use super::pages::{escape, failure, page, provider_error, Outcome};
use super::record::{cookie_name, cookie_value, oauth, sha256_hex, Flow};
use crate::body::Body;
use crate::clock::unix_now;
use crate::form::field;
use crate::proxy::State;
use crate::secret::Secret;
use crate::token::endpoint::{request_token, Exchange, RefreshError};
use crate::token::{Connection, ConnectionKey, ConnectionStatus};

pub async fn callback(state: &State, headers: &HeaderMap, query: &[(String, String)]) -> Response<Body> {
    let Some(flow_state) = field(query, "state") else {
        return failure(
            StatusCode::BAD_REQUEST,
            None,
            "The provider's answer has no state.",
            "Start again from your tool.",
        );
    };
    let record = match state.broker.store().take_transient(&format!("flow:{flow_state}")).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return failure(
                StatusCode::BAD_REQUEST,
                None,
                "This sign-in expired or was already completed.",
                "Start again from your tool and finish within 10 minutes.",
            )
        }
        Err(_) => {
            return failure(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "Tollgate cannot reach its token store.",
                "Start again from your tool in a minute.",
            )
        }
    };
    let Ok(flow) = serde_json::from_slice::<Flow>(&record) else {
        return failure(
            StatusCode::BAD_REQUEST,
            None,
            "This sign-in could not be read.",
            "Start again from your tool.",
        );
    };
    let name = flow.connector.as_str();
    let same_browser = cookie_value(headers, &cookie_name(flow_state)).is_some_and(|v| sha256_hex(&v) == flow.browser);
    if !same_browser {
        return failure(
            StatusCode::BAD_REQUEST,
            Some(name),
            "This sign-in was started in another browser.",
            "Open the connect link again in this browser.",
        );
    }
    let redirect_uri = state.broker.links().redirect_uri();
    if let Some(code) = field(query, "error") {
        let (what, fix) = provider_error(code, name, &redirect_uri);
        return failure(StatusCode::BAD_REQUEST, Some(name), what, &fix);
    }
    let Some(index) = state.config.resolve_name(name) else {
        return failure(
            StatusCode::BAD_REQUEST,
            Some(name),
            "The connector no longer exists.",
            "Ask an administrator.",
        );
    };
    let connector = &state.config.connectors[index];
    if oauth(connector).is_none() {
        return failure(
            StatusCode::BAD_REQUEST,
            Some(name),
            "The connector no longer connects accounts.",
            "Ask an administrator.",
        );
    }
    let Ok(oauth) = state.broker.providers().resolve(index, connector).await else {
        return failure(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(name),
            "The connector's authorization server is not usable now.",
            "Start again from your tool in a minute.",
        );
    };
    let oauth = oauth.as_ref();
    if oauth.iss_required && field(query, "iss").is_none() {
        return failure(
            StatusCode::BAD_REQUEST,
            Some(name),
            "The authorization server promised to name itself (iss) but did not.",
            "Start again from your tool.",
        );
    }
    // RFC 9207: an `iss` must name the issuer this flow was started with.
    if let (Some(iss), Some(expected)) = (field(query, "iss"), flow.issuer.as_deref()) {
        if iss != expected {
            return failure(
                StatusCode::BAD_REQUEST,
                Some(name),
                "The answer came from a different authorization server than the one the sign-in started with.",
                "Start again from your tool.",
            );
        }
    }
    // The code goes only to the token endpoint this flow was started against.
    if oauth.token_endpoint != flow.token_endpoint {
        return failure(
            StatusCode::BAD_REQUEST,
            Some(name),
            "The connector's token endpoint changed during the sign-in.",
            "Start again from your tool.",
        );
    }
    let Some(code) = field(query, "code") else {
        return failure(
            StatusCode::BAD_REQUEST,
            Some(name),
            "The provider's answer has no code.",
            "Start again from your tool.",
        );
    };
    let verifier = Secret::new(flow.verifier.clone());
    let exchange = Exchange::AuthorizationCode { code, verifier: &verifier, redirect_uri: &redirect_uri };
    let issued = match request_token(state.broker.http(), index, oauth, exchange).await {
        Ok(issued) => issued,
        Err(RefreshError::Permanent(code)) => {
            let (what, fix) = match code.as_str() {
                "invalid_grant" => (
                    "The provider did not accept the sign-in code (it expired or was used).",
                    "Start again from your tool.".to_string(),
                ),
                other => {
                    let (what, fix) = provider_error(other, name, &redirect_uri);
                    (what, fix)
                }
            };
            return failure(StatusCode::BAD_REQUEST, Some(name), what, &fix);
        }
        Err(RefreshError::Connector(code)) => {
            tracing::error!(connector = %name, error = %code, "the token endpoint refused the connector's client credentials at the code exchange");
            // The same words for a template's own code (GitHub's incorrect_client_credentials).
            let (what, fix) = provider_error("invalid_client", name, &redirect_uri);
            return failure(StatusCode::BAD_REQUEST, Some(name), what, &fix);
        }
        Err(RefreshError::Transient(reason)) => {
            tracing::warn!(connector = %name, %reason, "code exchange failed");
            return failure(
                StatusCode::BAD_GATEWAY,
                Some(name),
                "The provider's token endpoint could not be reached or answered unexpectedly.",
                "Start again from your tool in a minute.",
            );
        }
    };
    let pinned_host = if connector.pin_host {
        let from_answer = issued
            .instance_url
            .as_deref()
            .filter(|_| oauth.host_from_instance_url)
            .and_then(|u| crate::domains::Target::parse(u).ok())
            .map(|t| t.host);
        let host = match from_answer {
            Some(host) if connector.patterns.iter().any(|p| p.covers_host(&host)) => host.to_string(),
            Some(_) => {
                return failure(
                    StatusCode::BAD_REQUEST,
                    Some(name),
                    "The provider named an instance outside the connector's allowed domains.",
                    "An administrator must check the connector's allowed_domains.",
                )
            }
            None => match flow.pinned_host.clone() {
                Some(h) => h,
                None => {
                    return failure(
                        StatusCode::BAD_REQUEST,
                        Some(name),
                        "The provider did not say which host the token belongs to.",
                        "An administrator must check the connector.",
                    )
                }
            },
        };
        Some(host)
    } else {
        None
    };
    let now = unix_now();
    let lifetime =
        issued.expires_in.or_else(|| issued.refresh_token.as_ref().map(|_| state.config.refresh.default_lifetime));
    let connection = Connection {
        access_token: issued.access_token,
        refresh_token: issued.refresh_token,
        expires_at: lifetime.map(|d| now + d.as_secs()),
        scopes: issued.scopes.unwrap_or_else(|| oauth.scopes.clone()),
        status: ConnectionStatus::Connected,
        pinned_host,
        refresh_expires_at: issued.refresh_expires_in.map(|d| now + d.as_secs()),
        expiry_warned: false,
        health: Default::default(),
        version: 0,
    };
    let key = ConnectionKey::new(&connector.name, &flow.principal);
    if state.broker.connect(&key, connection).await.is_err() {
        return failure(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(name),
            "The connection could not be saved.",
            "Start again from your tool in a minute.",
        );
    }
    tracing::info!(connector = %name, "account connected");
    let body = format!("<p>Connected to <strong>{}</strong>. You can close this window.</p>", escape(name));
    page(StatusCode::OK, &format!("Connected to {name}"), &body, Some((Outcome::Connected, name)))
}
