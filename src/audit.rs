//! The audit trail of admin changes: who (an admin token by its position in the config, or a
//! console admin by name), what (the action and what it acted on), when, and from where (the
//! client address, and `X-Forwarded-For` as the client sent it). Never a secret. Each entry
//! is written to the log (`audit = true`) and kept in the token store, the newest
//! [`KEEP`] of them, in one record changed by compare-and-swap, so every replica adds to and
//! reads the same trail; the console shows it.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;
use crate::token::{Connection, ConnectionKey, Expect, StoreError, TokenStore};

/// Entries kept.
pub const KEEP: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Unix seconds.
    pub at: u64,
    pub actor: String,
    /// `admin-api` or `console`.
    pub via: String,
    pub from: String,
    /// `connector.put`, `connector.delete`, `connection.import`, `connection.revoke`, `console.sign_in`, ...
    pub action: String,
    pub target: String,
}

impl Entry {
    pub fn new(actor: &str, via: &str, from: String, action: &str, target: &str) -> Entry {
        Entry {
            at: crate::clock::unix_now(),
            actor: actor.into(),
            via: via.into(),
            from,
            action: action.into(),
            target: target.into(),
        }
    }
}

/// Where a request came from: the peer, and what it says it forwards for.
pub fn origin(peer: Option<SocketAddr>, headers: &http::HeaderMap) -> String {
    let peer = peer.map_or_else(|| "unknown".to_string(), |p| p.ip().to_string());
    match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(forwarded) if forwarded.len() <= 200 => format!("{peer} (for {})", forwarded.trim()),
        _ => peer,
    }
}

#[derive(Default, Serialize, Deserialize)]
struct Record {
    entries: Vec<Entry>,
}

fn key() -> ConnectionKey {
    ConnectionKey::new("tollgate", "audit")
}

/// Logs and keeps an entry. A store that cannot take it loses it from the trail, never from
/// the log.
pub async fn record(store: &dyn TokenStore, entry: Entry) {
    tracing::info!(
        audit = true,
        actor = %entry.actor,
        via = %entry.via,
        from = %entry.from,
        action = %entry.action,
        target = %entry.target,
        "admin change"
    );
    for _ in 0..8 {
        let (mut record, version) = match load(store).await {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::warn!(error = %e, "the audit trail could not be read; the entry is only in the log");
                return;
            }
        };
        record.entries.push(entry.clone());
        let over = record.entries.len().saturating_sub(KEEP);
        record.entries.drain(..over);
        let Ok(text) = serde_json::to_string(&record) else { return };
        let expect = if version == 0 { Expect::Absent } else { Expect::Version(version) };
        match store.put(&key(), Connection::new(Secret::new(text), None), expect, None).await {
            Ok(_) => return,
            Err(StoreError::Conflict) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "the audit trail could not be written; the entry is only in the log");
                return;
            }
        }
    }
}

/// The trail, newest first.
pub async fn read(store: &dyn TokenStore) -> Result<Vec<Entry>, StoreError> {
    let (record, _) = load(store).await?;
    Ok(record.entries.into_iter().rev().collect())
}

async fn load(store: &dyn TokenStore) -> Result<(Record, u64), StoreError> {
    match store.get(&key()).await? {
        None => Ok((Record::default(), 0)),
        Some(stored) => {
            let record = serde_json::from_str(stored.access_token.expose())
                .map_err(|e| StoreError::Corrupt(format!("the audit trail: {e}")))?;
            Ok((record, stored.version))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_the_newest_entries() {
        let store = crate::token::store::memory::MemoryStore::default();
        for i in 0..(KEEP + 5) {
            record(
                &store,
                Entry::new("admin token 1", "admin-api", "127.0.0.1".into(), "connector.put", &format!("c{i}")),
            )
            .await;
        }
        let trail = read(&store).await.unwrap();
        assert_eq!(trail.len(), KEEP);
        assert_eq!(trail[0].target, format!("c{}", KEEP + 4), "newest first");
        assert_eq!(trail[KEEP - 1].target, "c5");
    }

    #[test]
    fn origin_names_the_peer_and_what_it_forwards_for() {
        let mut headers = http::HeaderMap::new();
        let peer = Some("10.1.2.3:5555".parse().unwrap());
        assert_eq!(origin(peer, &headers), "10.1.2.3");
        headers.insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
        assert_eq!(origin(peer, &headers), "10.1.2.3 (for 203.0.113.9)");
    }
}
