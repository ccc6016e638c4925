//! The `console` block: the pages admins and users work in, under `/console/` on the
//! browser-facing listener.

use std::time::Duration;

use super::env::Environment;
use super::problems::Problems;
use super::raw::RawConsole;
use crate::domains::addr::{AddressPolicy, IpNet};
use crate::secret::Secret;

/// The console's OpenID Connect sign-in.
#[derive(Debug, Clone)]
pub struct ConsoleOidc {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    /// (claim, value) that makes the signed-in user an admin; others sign in as users whose
    /// principal is their subject.
    pub admin_claim: (String, String),
    pub scopes: Vec<String>,
    pub addresses: AddressPolicy,
}

#[derive(Debug, Clone)]
pub struct ConsoleSettings {
    pub enabled: bool,
    /// Origins that may frame the console (`frame-ancestors`); none by default.
    pub embed_origins: Vec<String>,
    /// How long a console session lasts.
    pub session_ttl: Duration,
    pub oidc: Option<ConsoleOidc>,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        ConsoleSettings {
            enabled: true,
            embed_origins: Vec::new(),
            session_ttl: Duration::from_secs(8 * 3600),
            oidc: None,
        }
    }
}

pub(crate) fn console(raw: &RawConsole, env: &Environment, p: &mut Problems) -> ConsoleSettings {
    let defaults = ConsoleSettings::default();
    let mut embed_origins = Vec::new();
    for (i, origin) in raw.embed_origins.iter().flatten().enumerate() {
        let ok = origin.parse::<http::Uri>().ok().filter(|u| {
            matches!(u.scheme_str(), Some("https") | Some("http"))
                && u.host().is_some()
                && u.path_and_query().is_none_or(|pq| pq.as_str() == "/")
        });
        match ok {
            Some(_) => embed_origins.push(origin.trim_end_matches('/').to_string()),
            None => {
                p.add(format!("console.embed_origins[{i}]"), "must be an origin such as https://agents.example.com")
            }
        }
    }
    let session_ttl = p.duration("console.session_ttl", raw.session_ttl.as_deref(), defaults.session_ttl);
    if session_ttl < Duration::from_secs(60) || session_ttl > Duration::from_secs(7 * 86_400) {
        p.add("console.session_ttl", "must be between 1m and 7d");
    }
    let oidc = raw.oidc.as_ref().and_then(|o| {
        let https =
            o.issuer.parse::<http::Uri>().ok().filter(|u| u.scheme_str() == Some("https") && u.host().is_some());
        if https.is_none() {
            p.add("console.oidc.issuer", "must be an https:// issuer URL");
        }
        let client_secret = p.secret(env, "console.oidc.client_secret", o.client_secret.as_deref());
        let mut ranges = Vec::new();
        for (i, r) in o.unsafe_allow_ranges.iter().flatten().enumerate() {
            match r.parse::<IpNet>() {
                Ok(net) => ranges.push(net),
                Err(e) => p.add(format!("console.oidc.unsafe_allow_ranges[{i}]"), e),
            }
        }
        https.map(|_| ConsoleOidc {
            issuer: o.issuer.trim_end_matches('/').to_string(),
            client_id: o.client_id.clone(),
            client_secret,
            admin_claim: (o.admin_claim.name.clone(), o.admin_claim.value.clone()),
            scopes: o.scopes.clone().unwrap_or_else(|| vec!["openid".into(), "profile".into(), "email".into()]),
            addresses: AddressPolicy::new(ranges),
        })
    });
    ConsoleSettings { enabled: raw.enabled.unwrap_or(true), embed_origins, session_ttl, oidc }
}
