//! Disconnecting: one connection or all of a connector's leave the store and every replica's
//! cache, and what revoking them at the provider takes is built at once and kept with the
//! queued job (`queue.rs`): the connector may be gone by the time the job runs.

use super::broker::Broker;
use super::events::Event;
use super::queue::{Grant as Revoked, Job, Revocation, Work};
use super::store::Expect;
use super::{Connection, ConnectionKey, ConnectionStatus, StoreError};
use crate::clock::unix_now;
use crate::config::connector::AuthMethod;
use crate::config::{Connector, Grant};
use crate::secret::Secret;

impl Broker {
    /// Disconnects a connection: its tokens leave the store and every replica's cache at
    /// once, their revocation at the provider (RFC 7009) is queued in the durable queue (the
    /// disconnect never waits for the provider, and the revocation survives a restart), and
    /// the record stays as `revoked`, without tokens, so the user and admins see what
    /// happened (the sweep removes it after 30 days; deleting it again removes it now).
    /// Returns whether there was a record.
    pub async fn delete(&self, index: usize, connector: &Connector, key: &ConnectionKey) -> Result<bool, StoreError> {
        self.forget(key);
        // A renewal may replace the record between our read and our write: then its new
        // token is revoked too.
        for _ in 0..4 {
            let Some(existing) = self.store().get(key).await? else { return Ok(false) };
            if existing.status == ConnectionStatus::Revoked {
                self.store().delete(key).await?;
                return Ok(true);
            }
            // Queued before the tokens go: a crash between the two leaves a revoked token in
            // a record about to be cleared, never a cleared record whose token stays live.
            let version = existing.version;
            let now = unix_now();
            self.queue_revocation(index, connector, vec![(key.principal.clone(), existing.clone())], now).await?;
            let mut health = existing.health.clone();
            health.failed(now, "revoked");
            let tombstone = Connection {
                access_token: Secret::new(""),
                refresh_token: None,
                expires_at: Some(0),
                scopes: existing.scopes,
                status: ConnectionStatus::Revoked,
                pinned_host: None,
                refresh_expires_at: None,
                expiry_warned: false,
                health,
                version: 0,
            };
            match self.store().put(key, tombstone, Expect::Version(version), None).await {
                Ok(_) => {
                    self.forget(key);
                    self.events().emit(Event::new(
                        "connection.revoked",
                        &key.connector,
                        Some(&key.principal),
                        None,
                        now,
                    ));
                    return Ok(true);
                }
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Unavailable("the connection kept changing while it was disconnected".into()))
    }

    /// Deletes every connection of connector `index` after queueing their revocation (one
    /// job); returns how many there were.
    pub async fn delete_all(&self, index: usize, connector: &Connector) -> Result<usize, StoreError> {
        let store = self.store();
        let all = store.list(Some(&connector.name), None).await?;
        let connections: Vec<(String, Connection)> =
            all.into_iter().filter(|(k, _)| k.connector == connector.name).map(|(k, c)| (k.principal, c)).collect();
        let principals: Vec<String> = connections.iter().map(|(p, _)| p.clone()).collect();
        self.queue_revocation(index, connector, connections, unix_now()).await?;
        for principal in &principals {
            let key = ConnectionKey::new(&connector.name, principal);
            self.forget(&key);
            if store.delete(&key).await? {
                let event = Event::new("connection.revoked", &connector.name, Some(principal), None, unix_now());
                self.events().emit(event);
            }
        }
        tracing::info!(connector = %connector.name, connections = principals.len(), "connections deleted with their connector; revocations queued");
        Ok(principals.len())
    }

    /// Queues the revocation of these connections at `connector`'s provider (one job in the
    /// durable queue, whose worker is woken), when it has a revocation endpoint.
    async fn queue_revocation(
        &self,
        index: usize,
        connector: &Connector,
        connections: Vec<(String, Connection)>,
        now: u64,
    ) -> Result<(), StoreError> {
        if let Some(revocation) = self.revocation(index, connector, connections).await {
            self.events().queue().push(vec![Job::new(Work::Revoke(revocation), now)]).await?;
            self.events().wake.notify_one();
        }
        Ok(())
    }

    /// What revoking these connections at `connector`'s provider takes, if it has a revocation
    /// endpoint: each connection's refresh token (its access token when it has none).
    pub async fn revocation(
        &self,
        index: usize,
        connector: &Connector,
        connections: Vec<(String, Connection)>,
    ) -> Option<Revocation> {
        if !matches!(connector.grant, Grant::AuthorizationCode(_)) || connections.is_empty() {
            return None;
        }
        let oauth = self.providers().resolve(index, connector).await.ok()?;
        let (Some(endpoint), Some(client_id)) = (oauth.revocation_endpoint.clone(), oauth.client_id.clone()) else {
            return None;
        };
        let grants = connections
            .into_iter()
            .map(|(principal, c)| match c.refresh_token {
                Some(t) => Revoked { principal, token: t.expose().to_string(), hint: "refresh_token".into() },
                None => Revoked { principal, token: c.access_token.expose().to_string(), hint: "access_token".into() },
            })
            .collect();
        Some(Revocation {
            connector: connector.name.clone(),
            endpoint,
            client_id,
            client_secret: oauth.client_secret.as_ref().map(|s| s.expose().to_string()),
            auth_method: match oauth.auth_method {
                AuthMethod::ClientSecretBasic => "client_secret_basic",
                AuthMethod::ClientSecretPost => "client_secret_post",
                AuthMethod::None => "none",
            }
            .into(),
            allow_ranges: connector.addresses.allowed_ranges().iter().map(|r| r.to_string()).collect(),
            grants,
        })
    }
}
