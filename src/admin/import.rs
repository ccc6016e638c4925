//! `PUT /admin/connections/{connector}/{principal}`: brings in a grant a user made elsewhere
//! (moving from another gateway, or a service account's pre-issued token), so the user need
//! not connect again. The tokens are stored encrypted like a connect flow's; the answer and the
//! audit entry name the connection, never a token.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde::Deserialize;
use serde_json::json;

use super::{json_response, refuse};
use crate::body::{Body, Inbound};
use crate::clock::unix_now;
use crate::config::Grant;
use crate::proxy::error::{PolicyError, ProxyError};
use crate::proxy::State;
use crate::secret::Secret;
use crate::token::broker::CredentialError;
use crate::token::{Connection, ConnectionKey};

/// Longest token accepted (provider tokens are at most a few KiB; JWTs included).
const MAX_TOKEN: usize = 16 * 1024;
/// Longest principal accepted: what a caller's `sub` or API key name can be.
const MAX_PRINCIPAL: usize = 256;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Imported {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    /// Seconds the access token has left; absent: until the upstream answers 401.
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    refresh_token_expires_in: Option<u64>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
}

fn invalid(message: impl Into<String>) -> Response<Body> {
    refuse(&ProxyError::InvalidRequest(message.into()))
}

/// Stores the connection; `Ok(created)` says whether the user had none before.
pub async fn put_connection(
    state: &State,
    connector: &str,
    principal: &str,
    request: Request<Inbound>,
) -> Response<Body> {
    let Some(index) = state.config.resolve_name(connector) else {
        return refuse(&PolicyError::Unknown(connector.to_string()).into());
    };
    let found = &state.config.connectors[index];
    let Grant::AuthorizationCode(oauth) = &found.grant else {
        return invalid(format!("{}: only authorization_code connectors hold per-user connections", found.name));
    };
    if found.pin_host {
        return invalid(format!("{}: pin_host connections take their host from the connect flow", found.name));
    }
    if principal.is_empty() || principal.len() > MAX_PRINCIPAL || principal.chars().any(char::is_control) {
        return invalid(format!("principal: 1 to {MAX_PRINCIPAL} characters, no control characters"));
    }
    let body = Limited::new(request.into_body(), 64 * 1024).collect().await.map(|b| b.to_bytes());
    let Ok(body) = body else {
        return invalid("the body must be a JSON object under 64 KiB");
    };
    let imported = match parse(&body) {
        Ok(imported) => imported,
        Err(message) => return invalid(message),
    };
    let now = unix_now();
    let mut connection =
        Connection::new(Secret::new(imported.access_token), imported.expires_in.map(|s| now.saturating_add(s)));
    connection.refresh_token = imported.refresh_token.map(Secret::new);
    connection.refresh_expires_at = imported.refresh_token_expires_in.map(|s| now.saturating_add(s));
    connection.scopes = imported.scopes.unwrap_or_else(|| oauth.scopes.clone());
    let key = ConnectionKey::new(&found.name, principal);
    let existed = matches!(state.broker.store().get(&key).await, Ok(Some(_)));
    match state.broker.connect(&key, connection).await {
        Ok(version) => json_response(
            if existed { StatusCode::OK } else { StatusCode::CREATED },
            &json!({ "connector": found.name, "principal": principal, "status": "connected", "version": version }),
        ),
        Err(source) => refuse(&CredentialError::Store { connector: found.name.clone(), source }.into()),
    }
}

/// The body, checked field by field; the message names the field and never echoes a value.
fn parse(body: &Bytes) -> Result<Imported, String> {
    let imported: Imported = serde_json::from_slice(body).map_err(|e| {
        // serde's message can quote the offending value: keep only where it is.
        format!(
            "send {{\"access_token\", \"refresh_token\"?, \"expires_in\"?, \"refresh_token_expires_in\"?, \"scopes\"?}} (line {} column {})",
            e.line(),
            e.column()
        )
    })?;
    for (field, value) in
        [("access_token", Some(&imported.access_token)), ("refresh_token", imported.refresh_token.as_ref())]
    {
        if let Some(value) = value {
            if value.is_empty() || value.len() > MAX_TOKEN || value.bytes().any(|b| !(0x21..=0x7e).contains(&b)) {
                return Err(format!("{field}: 1 to {MAX_TOKEN} visible ASCII characters"));
            }
        }
    }
    Ok(imported)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_field_and_never_the_value() {
        let bad = parse(&Bytes::from_static(br#"{"access_token":"sec ret-value"}"#)).err().unwrap_or_default();
        assert!(bad.starts_with("access_token:"), "{bad}");
        assert!(!bad.contains("ret-value"));
        let unknown =
            parse(&Bytes::from_static(br#"{"access_token":"ok","token":"leaked-value"}"#)).err().unwrap_or_default();
        assert!(unknown.contains("line 1") && !unknown.contains("leaked-value"), "{unknown}");
        let empty_refresh = parse(&Bytes::from_static(br#"{"access_token":"ok","refresh_token":""}"#));
        assert!(empty_refresh.err().unwrap_or_default().starts_with("refresh_token:"));
        let good = parse(&Bytes::from_static(br#"{"access_token":"a.b-c","expires_in":60,"scopes":["x"]}"#));
        assert!(good.is_ok_and(|g| g.expires_in == Some(60) && g.scopes == Some(vec!["x".into()])));
    }
}
