//! Calls to a provider's token endpoint (refresh, client credentials, authorization code) and
//! revocation endpoint, through the oauth2 crate over Tollgate's own HTTP client, and the
//! classification of a token answer's outcome (SPEC section 4):
//!
//! - **permanent**: a 400/401 answer with `invalid_grant`, or a template-declared equivalent
//!   (GitHub answers 200 with `error=bad_refresh_token`). The connection needs
//!   re-authorization.
//! - **connector**: `invalid_client` or `unauthorized_client` (or a template-declared
//!   equivalent such as GitHub's `incorrect_client_credentials`): the connector's client
//!   configuration is wrong, not the user's grant. No connection changes.
//! - **transient**: timeouts, connection failures, 5xx, 429, anything unparseable. Nothing
//!   changes; the refresh is retried after a backoff.
//!
//! Errors carry only the short error code of the answer, never its body.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::StatusCode;
use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse, BasicTokenType,
};
use oauth2::{
    AuthType, AuthorizationCode, ClientId, ClientSecret, EndpointNotSet, EndpointSet, PkceCodeVerifier, RedirectUrl,
    RefreshToken, RequestTokenError, Scope, StandardRevocableToken, StandardTokenResponse, TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};

use crate::config::connector::AuthMethod;
use crate::config::OAuthClient;
use crate::net::http::{HttpClient, HttpError};
use crate::secret::Secret;

/// What is exchanged for a new access token.
#[derive(Debug)]
pub enum Exchange<'a> {
    RefreshToken(&'a Secret),
    ClientCredentials,
    /// The code from the callback, the PKCE verifier of its flow and the redirect URI.
    AuthorizationCode {
        code: &'a str,
        verifier: &'a Secret,
        redirect_uri: &'a str,
    },
}

/// Token-answer fields beyond RFC 6749 that Tollgate uses.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExtraFields {
    /// Salesforce: the instance the token belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_url: Option<String>,
    /// Seconds the refresh token lives (GitHub, Microsoft and others: `refresh_token_expires_in`;
    /// Keycloak: `refresh_expires_in`; some send the number as a string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_expires_in: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_expires_in: Option<serde_json::Value>,
}

impl ExtraFields {
    /// The refresh token's lifetime, when the answer gives one (`0` means "no expiry" to
    /// Keycloak, and is read as none).
    fn refresh_lifetime(&self) -> Option<Duration> {
        let seconds = |v: &serde_json::Value| match v {
            serde_json::Value::Number(n) => n.as_u64(),
            serde_json::Value::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        let secs = self
            .refresh_token_expires_in
            .as_ref()
            .and_then(seconds)
            .or_else(|| self.refresh_expires_in.as_ref().and_then(seconds))?;
        (secs > 0).then(|| Duration::from_secs(secs))
    }
}

impl oauth2::ExtraTokenFields for ExtraFields {}

type Answer = StandardTokenResponse<ExtraFields, BasicTokenType>;

type OAuth<HasRevocationUrl = EndpointNotSet> = oauth2::Client<
    BasicErrorResponse,
    Answer,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    HasRevocationUrl,
    EndpointSet,
>;

/// A token endpoint's successful answer.
#[derive(Debug)]
pub struct Issued {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    pub expires_in: Option<Duration>,
    pub scopes: Option<Vec<String>>,
    pub instance_url: Option<String>,
    pub refresh_expires_in: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefreshError {
    #[error("the token endpoint refused the grant for good ({0})")]
    Permanent(String),
    #[error("the token endpoint refused the connector's client credentials ({0})")]
    Connector(String),
    #[error("the token endpoint could not issue a token now ({0})")]
    Transient(String),
}

const STANDARD_PERMANENT: [&str; 1] = ["invalid_grant"];
const STANDARD_CLIENT: [&str; 2] = ["invalid_client", "unauthorized_client"];

/// An error code safe to show: short and made of `[a-z0-9_.-]`.
fn safe_code(code: &str) -> String {
    let ok =
        !code.is_empty() && code.len() <= 64 && code.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        code.to_string()
    } else {
        "unrecognized error".into()
    }
}

/// Only bearer tokens made of RFC 6750 `b64token` characters are stored or injected.
fn well_formed(kind: &oauth2::basic::BasicTokenType, token: &str) -> bool {
    let bearer = match kind {
        oauth2::basic::BasicTokenType::Bearer => true,
        oauth2::basic::BasicTokenType::Extension(other) => other.eq_ignore_ascii_case("bearer"),
        _ => false,
    };
    let body = token.trim_end_matches('=');
    bearer && !body.is_empty() && body.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// The `error` field of an answer that was not a token, JSON or form-encoded.
fn error_field(body: &[u8]) -> Option<String> {
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) {
        return json.get("error").and_then(|e| e.as_str()).map(str::to_string);
    }
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|pair| pair.strip_prefix("error=")).map(str::to_string)
}

/// An oauth2 client with the connector's client id, secret and authentication method.
fn client_for(
    oauth: &OAuthClient,
    client_id: &str,
) -> oauth2::Client<
    BasicErrorResponse,
    Answer,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
> {
    let mut client = oauth2::Client::new(ClientId::new(client_id.to_string())).set_auth_type(match oauth.auth_method {
        AuthMethod::ClientSecretBasic => AuthType::BasicAuth,
        AuthMethod::ClientSecretPost | AuthMethod::None => AuthType::RequestBody,
    });
    if let (Some(secret), true) = (&oauth.client_secret, oauth.auth_method != AuthMethod::None) {
        client = client.set_client_secret(ClientSecret::new(secret.expose().to_string()));
    }
    client
}

/// The connector's extra token parameters, and `resource` (RFC 8707) when configured.
fn extra_params(oauth: &OAuthClient) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = oauth.token_params.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    if let Some(resource) = &oauth.resource {
        params.push(("resource".into(), resource.clone()));
    }
    params
}

/// Revokes a refresh token (RFC 7009, `token_type_hint=refresh_token`). `Err` is a short
/// reason; the caller retries.
///
/// `client` is what the connector had when the revocation was queued: it may be gone since.
///
/// The request is written here rather than by the oauth2 crate, which refuses any revocation
/// URL but https: the URL was already judged when the config loaded (https, or http on a
/// connector with `unsafe_allow_http`), like the token endpoint's, and a revocation that is
/// silently never sent would leave the grant live at the provider.
/// A revocation endpoint and the client that calls it.
pub struct RevokeClient<'a> {
    pub endpoint: &'a str,
    pub client_id: &'a str,
    pub client_secret: Option<&'a Secret>,
    pub auth_method: AuthMethod,
}

pub async fn revoke(
    http: &HttpClient,
    index: usize,
    client: &RevokeClient<'_>,
    token: &str,
    hint: &str,
) -> Result<(), String> {
    // Built before the first await: the form serializer is not Send.
    let request = {
        let mut form = oauth2::url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("token", token).append_pair("token_type_hint", hint);
        let mut request = http::Request::post(client.endpoint)
            .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(http::header::ACCEPT, "application/json");
        match (client.auth_method, client.client_secret) {
            (AuthMethod::ClientSecretBasic, Some(secret)) => {
                request = request.header(http::header::AUTHORIZATION, basic_auth(client.client_id, secret));
            }
            (AuthMethod::ClientSecretPost, Some(secret)) => {
                form.append_pair("client_id", client.client_id).append_pair("client_secret", secret.expose());
            }
            _ => {
                form.append_pair("client_id", client.client_id);
            }
        }
        request.body(form.finish().into_bytes()).map_err(|_| "the revocation URL is not a URL".to_string())?
    };
    let answer = http.send(index, request).await.map_err(|e| e.to_string())?;
    // RFC 7009 section 2.2: 200 whether or not the token was still valid.
    if answer.status() == StatusCode::OK {
        return Ok(());
    }
    Err(match error_field(answer.body()) {
        Some(code) => format!("{} {}", answer.status().as_u16(), safe_code(&code)),
        None => format!("status {}", answer.status().as_u16()),
    })
}

/// `Authorization: Basic` for a client (RFC 6749 section 2.3.1: id and secret form-encoded
/// first).
fn basic_auth(client_id: &str, secret: &Secret) -> String {
    use base64::Engine;
    let encode = |s: &str| oauth2::url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", encode(client_id), encode(secret.expose()));
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
}

/// Calls the token endpoint of connector `index`.
pub async fn request_token(
    http: &HttpClient,
    index: usize,
    oauth: &OAuthClient,
    exchange: Exchange<'_>,
) -> Result<Issued, RefreshError> {
    let token_url = oauth
        .token_endpoint
        .as_deref()
        .ok_or_else(|| RefreshError::Transient("no token endpoint is configured or discovered".into()))?;
    let client_id = oauth
        .client_id
        .as_deref()
        .ok_or_else(|| RefreshError::Transient("no client_id is configured or registered".into()))?;
    let token_url = TokenUrl::new(token_url.to_string())
        .map_err(|_| RefreshError::Transient("the token endpoint is not a URL".into()))?;
    let client: OAuth = client_for(oauth, client_id).set_token_uri(token_url);

    // oauth2 does not report the HTTP status of an error answer; the closure records it.
    let status: Arc<Mutex<Option<StatusCode>>> = Arc::default();
    let send = |request: oauth2::HttpRequest| {
        let (status, http) = (status.clone(), http.clone());
        async move {
            let response = http.send(index, request).await?;
            *status.lock().unwrap_or_else(|p| p.into_inner()) = Some(response.status());
            Ok::<_, HttpError>(response)
        }
    };

    let result = match exchange {
        Exchange::RefreshToken(token) => {
            let token = RefreshToken::new(token.expose().to_string());
            let mut request = client.exchange_refresh_token(&token);
            for (k, v) in extra_params(oauth) {
                request = request.add_extra_param(k, v);
            }
            request.request_async(&send).await
        }
        Exchange::ClientCredentials => {
            let mut request =
                client.exchange_client_credentials().add_scopes(oauth.scopes.iter().cloned().map(Scope::new));
            for (k, v) in extra_params(oauth) {
                request = request.add_extra_param(k, v);
            }
            request.request_async(&send).await
        }
        Exchange::AuthorizationCode { code, verifier, redirect_uri } => {
            let redirect = RedirectUrl::new(redirect_uri.to_string())
                .map_err(|_| RefreshError::Transient("the redirect URI is not a URL".into()))?;
            let mut request = client
                .exchange_code(AuthorizationCode::new(code.to_string()))
                .set_pkce_verifier(PkceCodeVerifier::new(verifier.expose().to_string()))
                .set_redirect_uri(std::borrow::Cow::Owned(redirect));
            for (k, v) in extra_params(oauth) {
                request = request.add_extra_param(k, v);
            }
            request.request_async(&send).await
        }
    };
    let status = *status.lock().unwrap_or_else(|p| p.into_inner());
    let refusal_status = matches!(status, Some(StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED));
    let classify = |code: &str| {
        if STANDARD_CLIENT.contains(&code) || oauth.client_errors.iter().any(|p| p == code) {
            Some(RefreshError::Connector(safe_code(code)))
        } else if STANDARD_PERMANENT.contains(&code) || oauth.permanent_errors.iter().any(|p| p == code) {
            Some(RefreshError::Permanent(safe_code(code)))
        } else {
            None
        }
    };
    match result {
        Ok(answer) if !well_formed(answer.token_type(), answer.access_token().secret()) => {
            Err(RefreshError::Transient("the answer is not a well-formed bearer token".into()))
        }
        Ok(answer) => Ok(Issued {
            access_token: Secret::new(answer.access_token().secret().clone()),
            refresh_token: answer.refresh_token().map(|t| Secret::new(t.secret().clone())),
            expires_in: answer.expires_in(),
            scopes: answer.scopes().map(|s| s.iter().map(|s| s.to_string()).collect()),
            instance_url: answer.extra_fields().instance_url.clone(),
            refresh_expires_in: answer.extra_fields().refresh_lifetime(),
        }),
        Err(RequestTokenError::ServerResponse(e)) => {
            let code = e.error().as_ref().to_string();
            match classify(&code) {
                Some(refused) if refusal_status => Err(refused),
                _ => Err(RefreshError::Transient(format!(
                    "HTTP {} {}",
                    status.map_or(0, |s| s.as_u16()),
                    safe_code(&code)
                ))),
            }
        }
        Err(RequestTokenError::Parse(_, body)) => match error_field(&body).as_deref().and_then(classify) {
            // A template-declared error in an answer that is not an error status (GitHub).
            Some(refused) if status == Some(StatusCode::OK) || refusal_status => Err(refused),
            _ => Err(RefreshError::Transient(format!("HTTP {}: unparseable answer", status.map_or(0, |s| s.as_u16())))),
        },
        Err(RequestTokenError::Request(e)) => Err(RefreshError::Transient(e.to_string())),
        Err(RequestTokenError::Other(_)) => {
            Err(RefreshError::Transient(format!("HTTP {}: unexpected answer", status.map_or(0, |s| s.as_u16()))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_fields_and_safe_codes() {
        assert_eq!(error_field(br#"{"error":"bad_refresh_token"}"#).as_deref(), Some("bad_refresh_token"));
        assert_eq!(error_field(b"error=bad_refresh_token&error_description=x").as_deref(), Some("bad_refresh_token"));
        assert_eq!(error_field(b"<html>"), None);
        assert_eq!(safe_code("invalid_grant"), "invalid_grant");
        assert_eq!(safe_code("<script>alert(1)</script>"), "unrecognized error");
        use oauth2::basic::BasicTokenType as T;
        assert!(well_formed(&T::Bearer, "gho_abc.DEF-123~+/=="));
        assert!(well_formed(&T::Extension("bearer".into()), "abc"));
        assert!(!well_formed(&T::Mac, "abc"));
        assert!(!well_formed(&T::Bearer, "abc def"));
        assert!(!well_formed(&T::Bearer, "abc\r\nX-Injected: 1"));
        assert!(!well_formed(&T::Bearer, ""));
    }
}
