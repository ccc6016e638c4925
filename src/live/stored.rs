//! Connectors stored through the admin API (their shape and validation: `config::stored`),
//! kept in the token store. All of them live in one record (connector `tollgate`, principal
//! `connectors`), sealed like every stored value and written with compare-and-swap on its
//! version, so two admins editing at once never lose a change. A write announces the record's
//! id on the invalidation feed; every replica then re-reads it and rebuilds its state
//! (`follow`).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Notify};

use super::Shared;
use crate::config::stored::{StoredConnector, StoredSet};
use crate::secret::Secret;
use crate::token::{Connection, ConnectionKey, Expect, StoreError, TokenStore};

#[derive(Serialize, Deserialize)]
struct Record {
    connectors: Vec<StoredConnector>,
}

/// Where the record lives.
pub fn record_key() -> ConnectionKey {
    ConnectionKey::new("tollgate", "connectors")
}

/// Reads the record.
pub async fn load(store: &dyn TokenStore) -> Result<StoredSet, StoreError> {
    match store.get(&record_key()).await? {
        None => Ok(StoredSet::default()),
        Some(stored) => {
            let record: Record = serde_json::from_str(stored.access_token.expose())
                .map_err(|e| StoreError::Corrupt(format!("stored connectors: {e}")))?;
            Ok(StoredSet { version: stored.version, connectors: record.connectors })
        }
    }
}

/// Why a change was not written.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The change itself was refused (`400`).
    #[error("{0}")]
    Invalid(String),
    /// The change conflicts with what exists (`409`).
    #[error("{0}")]
    Conflict(String),
    /// Nothing to change (`404`).
    #[error("{0}")]
    Missing(String),
}

/// Reads the record, lets `change` edit the list, and writes it back if the record did not
/// change meanwhile; retried a few times when another writer got there first.
pub async fn update<T>(
    store: &dyn TokenStore,
    mut change: impl FnMut(&mut Vec<StoredConnector>) -> Result<T, ChangeError>,
) -> Result<(T, StoredSet), ChangeError> {
    for _ in 0..8 {
        let mut set = load(store).await?;
        let outcome = change(&mut set.connectors)?;
        let text = serde_json::to_string(&Record { connectors: set.connectors.clone() })
            .map_err(|e| ChangeError::Invalid(e.to_string()))?;
        let expect = if set.version == 0 { Expect::Absent } else { Expect::Version(set.version) };
        match store.put(&record_key(), Connection::new(Secret::new(text), None), expect, None).await {
            Ok(version) => return Ok((outcome, StoredSet { version, connectors: set.connectors })),
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ChangeError::Conflict("the stored connectors kept changing; try again".into()))
}

/// Keeps the stored connectors current: re-reads them when the invalidation feed names their
/// record (or was interrupted), and every 30 s in case a notice was lost; every 2 s while the
/// store cannot be read.
pub(crate) async fn follow(
    shared: Arc<Shared>,
    changed: Arc<Notify>,
    mut failing: bool,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let wait = if failing { Duration::from_secs(2) } else { Duration::from_secs(30) };
        tokio::select! {
            _ = changed.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
        match shared.sync_stored().await {
            Ok(()) => failing = false,
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "stored connectors could not be read; retrying");
                }
                failing = true;
            }
        }
    }
}
