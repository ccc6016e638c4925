//! The lifecycle sweep: every `events.sweep_interval`, one replica (the one that takes the
//! sweep's lock in the store) reads every connection once, sets `tollgate_connections{connector,
//! state, health}` and `tollgate_connections_refresh_expiring{connector}`, and sends
//! `connection.refresh_token_expiring` once per refresh token that expires within
//! `events.refresh_token_warning` (marked on the connection with compare-and-swap, so it is
//! sent once whichever replica sweeps). Other replicas keep the figures of their own last
//! sweep: aggregate them with `max`.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::watch;

use super::Shared;
use crate::clock::unix_now;
use crate::token::events::Event;
use crate::token::{ConnectionKey, ConnectionStatus};

/// How long a revoked connection stays listed.
const TOMBSTONE_SECS: u64 = 30 * 86_400;

pub(crate) async fn run(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let owner = crate::token::store::owner_token();
    loop {
        let interval = shared.current().config.events.sweep_interval;
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        let store = shared.base.store.clone();
        let lock = ConnectionKey::new("tollgate", "sweep");
        // Held for the interval: the next sweep anywhere comes one interval later.
        match store.lock(&lock, &owner, interval).await {
            Ok(true) => {}
            _ => continue,
        }
        if let Err(e) = sweep(&shared).await {
            tracing::warn!(error = %e, "the lifecycle sweep could not read the connections");
        }
    }
}

async fn sweep(shared: &Shared) -> Result<(), crate::token::StoreError> {
    let state = shared.current();
    let config = &state.config;
    let store = state.broker.store();
    let now = unix_now();
    let warn_before = config.events.refresh_token_warning.as_secs();
    let mut counts: HashMap<(&str, &'static str, &'static str), i64> = HashMap::new();
    let mut expiring: HashMap<&str, i64> = HashMap::new();
    for connector in &config.connectors {
        expiring.insert(connector.name.as_str(), 0);
    }
    for (key, connection) in store.list(None, None).await? {
        let Some(connector) = config.connectors.iter().find(|c| c.name == key.connector) else { continue };
        let name = connector.name.as_str();
        let (status, health) = match connection.status {
            ConnectionStatus::Connected => ("connected", connection.health.state()),
            ConnectionStatus::NeedsReauth => ("needs_reauth", "unhealthy"),
            ConnectionStatus::Revoked => {
                // Kept for 30 days so the user and admins see it, then removed.
                let since = connection.health.last_failure_at.unwrap_or(0);
                if now.saturating_sub(since) > TOMBSTONE_SECS {
                    let _ = store.delete(&key).await;
                    continue;
                }
                ("revoked", "unhealthy")
            }
        };
        *counts.entry((name, status, health)).or_default() += 1;
        let Some(at) = connection.refresh_expires_at else { continue };
        if connection.status != ConnectionStatus::Connected || at > now + warn_before {
            continue;
        }
        *expiring.entry(name).or_default() += 1;
        if connection.expiry_warned {
            continue;
        }
        // Under the connection's refresh lock; only the write that marks it sends the event.
        let marked = state
            .broker
            .amend(&key, |c| {
                let fresh = !c.expiry_warned && c.refresh_expires_at == Some(at);
                c.expiry_warned |= fresh;
                fresh
            })
            .await;
        if let Ok(Some(_)) = marked {
            let detail = serde_json::json!({ "refresh_token_expires_at": at });
            let event = Event::new(
                "connection.refresh_token_expiring",
                &key.connector,
                Some(&key.principal),
                Some(detail),
                now,
            );
            state.broker.events().emit(event);
        }
    }
    let metrics = &shared.base.metrics;
    metrics.connections.reset();
    for connector in &config.connectors {
        metrics.connections.with_label_values(&[&connector.name, "connected", "unknown"]);
    }
    for ((connector, status, health), n) in counts {
        metrics.connections.with_label_values(&[connector, status, health]).set(n);
    }
    metrics.refresh_expiring.reset();
    for (connector, n) in expiring {
        metrics.refresh_expiring.with_label_values(&[connector]).set(n);
    }
    Ok(())
}
