//! Changing a stored connection beside renewals: health noted from traffic written out, and
//! any other small change (the sweep's expiry mark, a test's outcome), each under the
//! connection's refresh lock so it never races a renewal.

use std::time::Duration;

use super::broker::Broker;
use super::keys::Keyed;
use super::model::{Connection, ConnectionKey};
use super::store::{owner_token, Expect, StoreError};

impl Broker {
    /// Notes the upstream's answer to a connection's token (`failure`: its code).
    pub fn observe(&self, keyed: &Keyed, failure: Option<&str>, now: u64) {
        self.observations().note(keyed, failure, now);
    }

    /// Writes the noted outcomes; returns how many connections were written. A connection
    /// whose refresh lock is held (a renewal is running) keeps its note for the next flush.
    pub async fn flush_health(&self) -> usize {
        let mut written = 0;
        for (id, key, health) in self.observations().take() {
            match self
                .amend(&key, |c| {
                    let before = c.health.clone();
                    c.health.merge(&health);
                    c.health != before
                })
                .await
            {
                Ok(Some(_)) => written += 1,
                Ok(None) => {}
                Err(StoreError::LockLost) | Err(StoreError::Unavailable(_)) | Err(StoreError::Conflict) => {
                    self.observations().put_back(id, key, health);
                }
                Err(StoreError::Corrupt(_)) => {}
            }
        }
        written
    }

    /// Changes a stored connection under its refresh lock (never racing a renewal, which
    /// holds the lock from its read to its write). `change` says whether it changed anything.
    /// Returns the written connection, `None` when there was nothing to write or no
    /// connection; `LockLost` when a renewal holds the lock.
    pub async fn amend(
        &self,
        key: &ConnectionKey,
        change: impl FnOnce(&mut Connection) -> bool,
    ) -> Result<Option<Connection>, StoreError> {
        let store = self.store();
        let owner = owner_token();
        if !store.lock(key, &owner, Duration::from_secs(5)).await? {
            return Err(StoreError::LockLost);
        }
        let outcome = async {
            let Some(mut connection) = store.get(key).await? else { return Ok(None) };
            if !change(&mut connection) {
                return Ok(None);
            }
            let version = connection.version;
            connection.version = store.put(key, connection.clone(), Expect::Version(version), Some(&owner)).await?;
            self.forget(key);
            Ok(Some(connection))
        }
        .await;
        let _ = store.unlock(key, &owner).await;
        outcome
    }
}
