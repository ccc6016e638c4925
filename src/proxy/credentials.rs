//! Phase `attach_credentials`: the caller's headers filtered, then the Host of the normalized
//! target and the connector's credential. Tollgate's own come last, after the filter, so
//! nothing the caller sends can remove or duplicate what Tollgate adds.

use http::header::{HeaderMap, HeaderValue};
use http::request::Parts;
use http::Method;

use super::error::ProxyError;
use super::headers::RequestFilter;
use crate::config::{Connector, Injection};
use crate::domains::Target;

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
pub fn refuse_upgrades(upgrade: Option<&HeaderValue>, connector: &Connector) -> Result<bool, ProxyError> {
    let Some(upgrade) = upgrade else {
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

/// The request as it goes upstream, described rather than rewritten: the caller's method
/// and headers (filtered as the head is written, proxy/headers.rs), the target's `Host`, and
/// the connector's credential, written last. The token itself is given at each send, so a
/// retry after renewal writes the new one.
pub struct Outgoing<'a> {
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
    pub filter: RequestFilter<'a>,
    pub host: &'a str,
    pub injection: &'a Injection,
    /// An allowed WebSocket upgrade: the request asks for the switch itself (the caller's
    /// own `Connection` and `Upgrade` are hop-by-hop and never pass).
    pub upgrade: bool,
}

/// The request for the upstream: cleaned, `Host` rebuilt, credential injected.
pub fn attach_credentials<'a>(parts: &'a Parts, connector: &'a Connector, target: &'a Target) -> Outgoing<'a> {
    Outgoing {
        method: &parts.method,
        headers: &parts.headers,
        filter: RequestFilter::new(&parts.headers, &connector.inject.header, &connector.strip_headers),
        host: target.authority(),
        injection: &connector.inject,
        upgrade: false,
    }
}
