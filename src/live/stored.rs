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
    /// Written, but the running state could not take it (`500`).
    #[error("{0}")]
    Internal(String),
}

/// Refuses changes to names the file owns, and to tool names (change their connector).
fn check_writable(config: &crate::config::Config, name: &str) -> Result<(), ChangeError> {
    let Some(index) = config.resolve_name(name) else {
        return Ok(());
    };
    let owner = &config.connectors[index].name;
    if !config.is_stored(index) {
        Err(ChangeError::Conflict(format!(
            "`{name}` is defined in the config file, which is read-only through the API; change the file (it is reloaded)"
        )))
    } else if owner != name {
        Err(ChangeError::Conflict(format!("`{name}` is a tool of connector `{owner}`; change that connector's tools")))
    } else {
        Ok(())
    }
}

/// Creates or replaces the stored connector `name` from a JSON body (the admin API's `PUT`
/// and the console's form): secrets the body omits keep their stored values; the same
/// validator as the config file. Every replica applies it. Returns whether it was created.
pub async fn write(shared: &Shared, name: &str, body: &[u8]) -> Result<bool, ChangeError> {
    let state = shared.current();
    check_writable(&state.config, name)?;
    let file_names = state.config.file_names();
    let (created, set) = update(shared.store().as_ref(), |list| {
        let position = list.iter().position(|c| c.name() == name);
        let previous = position.map(|i| &list[i]);
        let connector =
            StoredConnector::from_body(name, body, previous, crate::clock::unix_now()).map_err(ChangeError::Invalid)?;
        let mut taken = file_names.clone();
        for other in list.iter().filter(|c| c.name() != name) {
            taken.insert(other.name().to_string(), usize::MAX);
            taken.extend(other.tools.iter().map(|t| (t.clone(), usize::MAX)));
        }
        if let Some(p) = connector.name_problems(&std::collections::HashMap::new()).first() {
            return Err(ChangeError::Invalid(format!("{}: {}", p.path, p.message)));
        }
        if let Some(p) = connector.name_problems(&taken).first() {
            return Err(ChangeError::Conflict(format!("{}: {}", p.path, p.message)));
        }
        connector.validate().map_err(|e| ChangeError::Invalid(e.to_string()))?;
        match position {
            Some(i) => list[i] = connector,
            None => list.push(connector),
        }
        Ok(position.is_none())
    })
    .await?;
    shared.apply_stored(set).map_err(|e| ChangeError::Internal(e.to_string()))?;
    tracing::info!(connector = name, created, "stored connector written");
    Ok(created)
}

/// Removes the stored connector `name` and its tools, after deleting every connection it had
/// (their revocation queued as one job). Returns how many connections there were.
pub async fn remove(shared: &Shared, name: &str) -> Result<usize, ChangeError> {
    let state = shared.current();
    check_writable(&state.config, name)?;
    let connections = match state.config.resolve_name(name) {
        Some(index) => state.broker.delete_all(index, &state.config.connectors[index]).await?,
        None => 0,
    };
    let ((), set) = update(shared.store().as_ref(), |list| {
        let before = list.len();
        list.retain(|c| c.name() != name);
        if list.len() == before {
            return Err(ChangeError::Missing(format!("no stored connector is named `{name}`")));
        }
        Ok(())
    })
    .await?;
    shared.apply_stored(set).map_err(|e| ChangeError::Internal(e.to_string()))?;
    tracing::info!(connector = name, connections, "stored connector deleted");
    Ok(connections)
}

/// The stored connector `name`, as written (secrets included: never shown as they are).
pub async fn read_one(store: &dyn TokenStore, name: &str) -> Result<Option<StoredConnector>, StoreError> {
    Ok(load(store).await?.connectors.into_iter().find(|c| c.name() == name))
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
