//! One call to a token endpoint (refresh or client credentials) through the oauth2 crate over
//! Tollgate's own HTTP client, and the classification of its outcome (SPEC section 4):
//!
//! - **permanent**: a 400/401 answer with `invalid_grant`, `invalid_client` or
//!   `unauthorized_client`, or a template-declared equivalent (GitHub answers 200 with
//!   `error=bad_refresh_token`). The connection needs re-authorization.
//! - **transient**: timeouts, connection failures, 5xx, 429, anything unparseable. Nothing
//!   changes; the refresh is retried after a backoff.
//!
//! Errors carry only the short error code of the answer, never its body.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::StatusCode;
use oauth2::basic::BasicClient;
use oauth2::{AuthType, ClientId, ClientSecret, RefreshToken, RequestTokenError, Scope, TokenResponse, TokenUrl};

use crate::config::connector::AuthMethod;
use crate::config::OAuthClient;
use crate::net::http::{HttpClient, HttpError};
use crate::secret::Secret;

/// What is exchanged for a new access token.
#[derive(Debug)]
pub enum Exchange<'a> {
    RefreshToken(&'a Secret),
    ClientCredentials,
}

/// A token endpoint's successful answer.
#[derive(Debug)]
pub struct Issued {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    pub expires_in: Option<Duration>,
    pub scopes: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefreshError {
    #[error("the token endpoint refused the grant for good ({0})")]
    Permanent(String),
    #[error("the token endpoint could not issue a token now ({0})")]
    Transient(String),
}

const STANDARD_PERMANENT: [&str; 3] = ["invalid_grant", "invalid_client", "unauthorized_client"];

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
    let mut client = BasicClient::new(ClientId::new(client_id.to_string())).set_token_uri(token_url).set_auth_type(
        match oauth.auth_method {
            AuthMethod::ClientSecretBasic => AuthType::BasicAuth,
            AuthMethod::ClientSecretPost | AuthMethod::None => AuthType::RequestBody,
        },
    );
    if let (Some(secret), true) = (&oauth.client_secret, oauth.auth_method != AuthMethod::None) {
        client = client.set_client_secret(ClientSecret::new(secret.expose().to_string()));
    }

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
            for (k, v) in &oauth.token_params {
                request = request.add_extra_param(k.clone(), v.clone());
            }
            request.request_async(&send).await
        }
        Exchange::ClientCredentials => {
            let mut request =
                client.exchange_client_credentials().add_scopes(oauth.scopes.iter().cloned().map(Scope::new));
            for (k, v) in &oauth.token_params {
                request = request.add_extra_param(k.clone(), v.clone());
            }
            request.request_async(&send).await
        }
    };
    let status = *status.lock().unwrap_or_else(|p| p.into_inner());
    let refusal_status = matches!(status, Some(StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED));
    let permanent = |code: &str| STANDARD_PERMANENT.contains(&code) || oauth.permanent_errors.iter().any(|p| p == code);
    match result {
        Ok(answer) if !well_formed(answer.token_type(), answer.access_token().secret()) => {
            Err(RefreshError::Transient("the answer is not a well-formed bearer token".into()))
        }
        Ok(answer) => Ok(Issued {
            access_token: Secret::new(answer.access_token().secret().clone()),
            refresh_token: answer.refresh_token().map(|t| Secret::new(t.secret().clone())),
            expires_in: answer.expires_in(),
            scopes: answer.scopes().map(|s| s.iter().map(|s| s.to_string()).collect()),
        }),
        Err(RequestTokenError::ServerResponse(e)) => {
            let code = e.error().as_ref().to_string();
            if refusal_status && permanent(&code) {
                Err(RefreshError::Permanent(safe_code(&code)))
            } else {
                Err(RefreshError::Transient(format!("HTTP {} {}", status.map_or(0, |s| s.as_u16()), safe_code(&code))))
            }
        }
        Err(RequestTokenError::Parse(_, body)) => match error_field(&body) {
            // A template-declared error in an answer that is not an error status (GitHub).
            Some(code) if (status == Some(StatusCode::OK) || refusal_status) && permanent(&code) => {
                Err(RefreshError::Permanent(safe_code(&code)))
            }
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
