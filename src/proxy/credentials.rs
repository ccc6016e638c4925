//! Phase `attach_credentials`: clean the caller's headers, then add the connector's
//! credential and the Host of the normalized target. Cleaning comes first so nothing the
//! caller sends can remove or duplicate what Tollgate adds.

use http::header::{self, HeaderMap, HeaderValue};

use super::error::ProxyError;
use super::headers::clean_request;
use crate::config::Connector;
use crate::domains::Target;
use crate::secret::Secret;

/// Refuses methods whose answer echoes the request: TRACE and TRACK would hand the injected
/// credential back to the caller.
pub fn refuse_echo_methods(method: &http::Method) -> Result<(), ProxyError> {
    match method.as_str() {
        "TRACE" | "TRACK" => Err(ProxyError::EchoMethod(method.to_string())),
        _ => Ok(()),
    }
}

/// Refuses protocol switches: h2c always, WebSocket unless the connector allows it.
/// `Ok(true)` is an allowed WebSocket upgrade.
pub fn refuse_upgrades(headers: &HeaderMap, connector: &Connector) -> Result<bool, ProxyError> {
    let Some(upgrade) = headers.get(header::UPGRADE) else {
        return Ok(false);
    };
    let text = upgrade.to_str().unwrap_or("").to_ascii_lowercase();
    if text.split(',').any(|p| p.trim() == "h2c") {
        return Err(ProxyError::UpgradeRefused("h2c".into()));
    }
    if !connector.allow_websocket || !text.contains("websocket") {
        return Err(ProxyError::UpgradeRefused(if text.contains("websocket") { "WebSocket".into() } else { text }));
    }
    Ok(true)
}

/// Rewrites the headers for the upstream: cleaned, `Host` rebuilt, credential injected.
pub fn attach_credentials(
    headers: &mut HeaderMap,
    connector: &Connector,
    target: &Target,
    token: &Secret,
) -> Result<(), ProxyError> {
    clean_request(headers, &connector.inject.header, &connector.strip_headers);
    // Replaces whatever Host the caller sent.
    let host = HeaderValue::from_str(target.authority()).map_err(|_| ProxyError::Internal)?;
    headers.insert(header::HOST, host);
    // A token that cannot be a header value is a broken connection record, not the caller's fault.
    let value = connector.inject.value(token).ok_or(ProxyError::Internal)?;
    headers.insert(connector.inject.header.clone(), value);
    Ok(())
}
