//! The `events` block: webhooks that receive connection and connector lifecycle events, and
//! how the durable queue behind them (and behind revocations) retries.

use std::time::Duration;

use super::env::Environment;
use super::problems::Problems;
use super::raw::RawEvents;
use crate::domains::addr::{AddressPolicy, IpNet};
use crate::secret::Secret;

/// Every event type, as webhooks receive them and `events.webhooks[].types` names them.
pub const EVENT_TYPES: &[&str] = &[
    "connection.created",
    "connection.needs_reauth",
    "connection.revoked",
    "connection.refresh_token_expiring",
    "connector.unhealthy",
    "connector.healthy",
];

/// One receiver of events.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub url: String,
    /// Signs each delivery (HMAC-SHA256); never sent.
    pub secret: Secret,
    /// The event types it receives (every type when empty).
    pub types: Vec<String>,
    pub addresses: AddressPolicy,
}

impl Webhook {
    pub fn wants(&self, event_type: &str) -> bool {
        self.types.is_empty() || self.types.iter().any(|t| t == event_type)
    }
}

#[derive(Debug, Clone)]
pub struct EventSettings {
    pub webhooks: Vec<Webhook>,
    /// The first retry's pause; each later one doubles, up to `retry_max`.
    pub retry_backoff: Duration,
    pub retry_max: Duration,
    /// A delivery or revocation still failing this long after it was queued is dropped (and
    /// logged as an error).
    pub give_up_after: Duration,
    /// How long before a refresh token expires `connection.refresh_token_expiring` fires.
    pub refresh_token_warning: Duration,
    /// How often one replica counts connections by state and looks for refresh tokens about
    /// to expire.
    pub sweep_interval: Duration,
}

impl Default for EventSettings {
    fn default() -> Self {
        EventSettings {
            webhooks: Vec::new(),
            retry_backoff: Duration::from_secs(1),
            retry_max: Duration::from_secs(600),
            give_up_after: Duration::from_secs(72 * 3600),
            refresh_token_warning: Duration::from_secs(7 * 86_400),
            sweep_interval: Duration::from_secs(60),
        }
    }
}

pub(crate) fn events(raw: &RawEvents, env: &Environment, p: &mut Problems) -> EventSettings {
    let defaults = EventSettings::default();
    let mut webhooks = Vec::new();
    for (i, w) in raw.webhooks.iter().enumerate() {
        let path = format!("events.webhooks[{i}]");
        let url_ok = match w.url.parse::<http::Uri>() {
            Ok(u) if u.host().is_some() && u.scheme_str() == Some("https") => true,
            Ok(u) if u.host().is_some() && u.scheme_str() == Some("http") && w.unsafe_allow_http => true,
            Ok(u) if u.scheme_str() == Some("http") => {
                p.add(
                    format!("{path}.url"),
                    "must be https (set unsafe_allow_http: true for a receiver on plain http)",
                );
                false
            }
            _ => {
                p.add(format!("{path}.url"), "must be an https:// URL");
                false
            }
        };
        let secret = p.secret(env, &format!("{path}.secret"), Some(&w.secret));
        if secret.as_ref().is_some_and(|s| s.expose().len() < 16) {
            p.add(format!("{path}.secret"), "must be at least 16 characters");
        }
        let types = w.types.clone().unwrap_or_default();
        for (j, t) in types.iter().enumerate() {
            if !EVENT_TYPES.contains(&t.as_str()) {
                p.add(
                    format!("{path}.types[{j}]"),
                    format!("`{t}` is not an event type; one of {}", EVENT_TYPES.join(", ")),
                );
            }
        }
        let mut ranges = Vec::new();
        for (j, r) in w.unsafe_allow_ranges.iter().flatten().enumerate() {
            match r.parse::<IpNet>() {
                Ok(net) => ranges.push(net),
                Err(e) => p.add(format!("{path}.unsafe_allow_ranges[{j}]"), e),
            }
        }
        if let (true, Some(secret)) = (url_ok, secret) {
            webhooks.push(Webhook { url: w.url.clone(), secret, types, addresses: AddressPolicy::new(ranges) });
        }
    }
    let settings = EventSettings {
        webhooks,
        retry_backoff: p.duration("events.retry_backoff", raw.retry_backoff.as_deref(), defaults.retry_backoff),
        retry_max: p.duration("events.retry_max", raw.retry_max.as_deref(), defaults.retry_max),
        give_up_after: p.duration("events.give_up_after", raw.give_up_after.as_deref(), defaults.give_up_after),
        refresh_token_warning: p.duration(
            "events.refresh_token_warning",
            raw.refresh_token_warning.as_deref(),
            defaults.refresh_token_warning,
        ),
        sweep_interval: p.duration("events.sweep_interval", raw.sweep_interval.as_deref(), defaults.sweep_interval),
    };
    if settings.sweep_interval < Duration::from_secs(1) {
        p.add("events.sweep_interval", "must be at least 1s");
    }
    if settings.retry_backoff.is_zero() {
        p.add("events.retry_backoff", "must be more than 0s");
    }
    if settings.retry_max < settings.retry_backoff {
        p.add("events.retry_max", "must be at least events.retry_backoff");
    }
    settings
}
