//! Whether each connector's client configuration works, as its token endpoint last said.
//!
//! `invalid_client` or `unauthorized_client` at a token endpoint (SPEC section 4) is the
//! connector's fault, not a user's: the connector is marked `unhealthy` here, requests that
//! need a renewal through it answer `503 connector_misconfigured` without calling the endpoint
//! again until `refresh.retry_backoff` has passed, and no connection or refresh token is
//! touched. The first success marks it `healthy` again. The marks live in the running state,
//! which a reload or an admin change to connectors rebuilds: a fixed configuration is tried
//! at once, and the same connections refresh with no reconnect.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use std::sync::Arc;

use super::events::{Event, Events};
use crate::metrics::Metrics;

/// A connector's change of state is announced once across replicas within this long.
const ANNOUNCE_ONCE: Duration = Duration::from_secs(60);

/// A connector's state for the admin API.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConnectorHealthView {
    /// `healthy` (a token endpoint call succeeded), `unhealthy` (its client credentials were
    /// refused), or `unknown` (no call since the state was built).
    pub state: &'static str,
    /// The token endpoint's error code, while unhealthy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Unix seconds of the last change of state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
}

#[derive(Debug)]
enum Mark {
    Healthy { since: u64 },
    Unhealthy { code: String, since: u64, retry_at: Instant },
}

#[derive(Debug)]
pub struct ConnectorHealth {
    marks: Mutex<HashMap<String, Mark>>,
    metrics: Metrics,
    pause: Duration,
    events: Arc<Events>,
}

impl ConnectorHealth {
    /// Every connector starts `unknown`, counted healthy by `tollgate_connector_healthy`.
    pub fn new<'a>(
        metrics: Metrics,
        connectors: impl Iterator<Item = &'a str>,
        pause: Duration,
        events: Arc<Events>,
    ) -> Self {
        for name in connectors {
            metrics.connector_healthy.with_label_values(&[name]).set(1);
        }
        ConnectorHealth { marks: Mutex::default(), metrics, pause, events }
    }

    /// Where lifecycle events go (the renewal reports `connection.needs_reauth` there too).
    pub fn events(&self) -> &Arc<Events> {
        &self.events
    }

    fn announce(&self, kind: &str, connector: &str, detail: Option<serde_json::Value>, now: u64) {
        let event = Event::new(kind, connector, None, detail, now);
        self.events.emit_once(format!("{kind}:{connector}"), ANNOUNCE_ONCE, event);
    }

    /// The token endpoint refused `connector`'s client credentials with `code`.
    pub fn refused(&self, connector: &str, code: &str, now: u64) {
        let mut marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        let since = match marks.get(connector) {
            Some(Mark::Unhealthy { since, .. }) => *since,
            _ => {
                tracing::error!(
                    connector,
                    error = code,
                    "the token endpoint refused the connector's client credentials; the connector is unhealthy until they are fixed (no connection is changed)"
                );
                self.announce("connector.unhealthy", connector, Some(serde_json::json!({ "error": code })), now);
                now
            }
        };
        let retry_at = Instant::now() + self.pause;
        marks.insert(connector.to_string(), Mark::Unhealthy { code: code.to_string(), since, retry_at });
        self.metrics.connector_healthy.with_label_values(&[connector]).set(0);
    }

    /// A token endpoint call through `connector` succeeded.
    pub fn succeeded(&self, connector: &str, now: u64) {
        let mut marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(marks.get(connector), Some(Mark::Healthy { .. })) {
            return;
        }
        if matches!(marks.get(connector), Some(Mark::Unhealthy { .. })) {
            tracing::info!(connector, "the connector's client credentials work again; it is healthy");
            self.announce("connector.healthy", connector, None, now);
        }
        marks.insert(connector.to_string(), Mark::Healthy { since: now });
        self.metrics.connector_healthy.with_label_values(&[connector]).set(1);
    }

    /// While `connector` is unhealthy and its pause runs: the code to answer with, without
    /// calling the token endpoint again.
    pub fn paused(&self, connector: &str) -> Option<String> {
        let marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        match marks.get(connector) {
            Some(Mark::Unhealthy { code, retry_at, .. }) if *retry_at > Instant::now() => Some(code.clone()),
            _ => None,
        }
    }

    pub fn view(&self, connector: &str) -> ConnectorHealthView {
        let marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        match marks.get(connector) {
            Some(Mark::Healthy { since }) => {
                ConnectorHealthView { state: "healthy", reason: None, since: Some(*since) }
            }
            Some(Mark::Unhealthy { code, since, .. }) => {
                ConnectorHealthView { state: "unhealthy", reason: Some(code.clone()), since: Some(*since) }
            }
            None => ConnectorHealthView { state: "unknown", reason: None, since: None },
        }
    }
}
