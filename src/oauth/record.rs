//! What the two halves of the connect flow share: the flow record kept in the token store
//! under its `state`, and the per-flow cookie that binds it to the browser that started it.
//! `flow.rs` writes them; `callback.rs` reads them back.

use http::{header, HeaderMap};
use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};

use crate::config::{Connector, Grant, OAuthClient};

/// A started flow, kept server-side under its `state`.
#[derive(Serialize, Deserialize)]
pub(super) struct Flow {
    pub(super) connector: String,
    pub(super) principal: String,
    pub(super) verifier: String,
    /// SHA-256 of the flow cookie's value: the browser that started it.
    pub(super) browser: String,
    pub(super) pinned_host: Option<String>,
    /// The endpoints this flow was started against (mix-up defence).
    pub(super) token_endpoint: Option<String>,
    pub(super) issuer: Option<String>,
}

pub(super) fn random_token() -> Option<String> {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut bytes).ok()?;
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

pub(super) fn sha256_hex(text: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, text.as_bytes()).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The per-flow cookie's name: two flows in two tabs never share one.
pub(super) fn cookie_name(state: &str) -> String {
    format!("tollgate_flow_{}", &sha256_hex(state)[..16])
}

/// The value of the cookie `name`, from every Cookie header.
pub(super) fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// The OAuth client of an authorization-code connector.
pub(super) fn oauth(connector: &Connector) -> Option<&OAuthClient> {
    match &connector.grant {
        Grant::AuthorizationCode(o) => Some(o),
        _ => None,
    }
}
