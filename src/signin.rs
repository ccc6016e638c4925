//! Console sign-in and sessions.
//!
//! A sign-in link is minted by an admin token (`POST /admin/console/links`, bootstrap before
//! an identity provider is set up) or, for a user, by the agent platform with the user's own
//! caller credential (`POST /console-link` on the proxy listener: the hosted "connect UI"
//! pattern). A link is a random token, good once, for 10 minutes; opening it shows a Sign in
//! button (a link preview cannot use it up), and pressing it starts a session. Only SHA-256
//! digests of links and session cookies are stored (as transient values in the token store,
//! shared by every replica); the session cookie is HttpOnly, SameSite=Strict, limited to
//! `/console`, and Secure unless the console is served over plain http; every form carries
//! the session's CSRF token.

use std::time::Duration;

use http::{header, HeaderMap};
use serde::{Deserialize, Serialize};

use crate::token::{StoreError, TokenStore};

/// The session cookie's name.
pub const COOKIE: &str = "tollgate_console";
/// How long a sign-in link is good for.
pub const LINK_TTL: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Manages connectors and every user's connections.
    Admin,
    /// Sees and manages their own connections.
    User,
}

/// Who a link or session is for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Grant {
    pub role: Role,
    /// The admin's name, or the user's principal.
    pub principal: String,
    /// Connector names the user may use (`None`: every connector).
    #[serde(default)]
    pub connectors: Option<Vec<String>>,
}

/// A signed-in browser.
#[derive(Clone, Serialize, Deserialize)]
pub struct Session {
    pub grant: Grant,
    /// Echoed by every form.
    pub csrf: String,
    /// The stored name, to sign out.
    #[serde(skip)]
    pub id: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("grant", &self.grant).finish_non_exhaustive()
    }
}

/// 32 random bytes in hex.
pub fn random() -> Option<String> {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// SHA-256 in hex.
pub fn digest(value: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, value.as_bytes()).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Mints a sign-in link's token for `grant`.
pub async fn mint_link(store: &dyn TokenStore, grant: &Grant) -> Result<String, StoreError> {
    let token = random().ok_or_else(|| StoreError::Unavailable("no randomness for a sign-in link".into()))?;
    let value = serde_json::to_vec(grant).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    store.put_transient(&format!("console:link:{}", digest(&token)), &value, LINK_TTL, true).await?;
    Ok(token)
}

/// Uses a link up and starts a session; returns the session and its cookie value.
pub async fn sign_in(
    store: &dyn TokenStore,
    token: &str,
    ttl: Duration,
) -> Result<Option<(Session, String)>, StoreError> {
    let Some(value) = store.take_transient(&format!("console:link:{}", digest(token))).await? else {
        return Ok(None);
    };
    let grant: Grant = serde_json::from_slice(&value).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    start(store, grant, ttl).await.map(Some)
}

/// Starts a session for `grant` (a used link, or an identity provider's answer); returns the
/// session and its cookie value.
pub async fn start(store: &dyn TokenStore, grant: Grant, ttl: Duration) -> Result<(Session, String), StoreError> {
    let (Some(cookie), Some(csrf)) = (random(), random()) else {
        return Err(StoreError::Unavailable("no randomness for a session".into()));
    };
    let id = format!("console:session:{}", digest(&cookie));
    let session = Session { grant, csrf, id: id.clone() };
    let value = serde_json::to_vec(&session).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    store.put_transient(&id, &value, ttl, false).await?;
    Ok((session, cookie))
}

/// The session a request's cookie names, if it is still on.
pub async fn current(store: &dyn TokenStore, headers: &HeaderMap) -> Result<Option<Session>, StoreError> {
    let Some(cookie) = cookie(headers) else { return Ok(None) };
    let id = format!("console:session:{}", digest(&cookie));
    let Some(value) = store.get_transient(&id).await? else { return Ok(None) };
    let mut session: Session = serde_json::from_slice(&value).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    session.id = id;
    Ok(Some(session))
}

pub async fn sign_out(store: &dyn TokenStore, session: &Session) -> Result<(), StoreError> {
    store.drop_transient(&session.id).await
}

/// The session cookie's value in a request.
fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// `Set-Cookie` for a new session (`secure` unless served over plain http).
pub fn set_cookie(value: &str, ttl: Duration, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={value}; Path=/console; Max-Age={}; HttpOnly; SameSite=Strict{secure}", ttl.as_secs())
}

/// `Set-Cookie` that ends the session in the browser.
pub fn clear_cookie(secure: bool) -> String {
    set_cookie("", Duration::ZERO, secure)
}

/// Whether a form's CSRF value is the session's (compared in full).
pub fn csrf_ok(session: &Session, presented: Option<&str>) -> bool {
    let Some(presented) = presented else { return false };
    let (a, b) = (digest(&session.csrf), digest(presented));
    a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
