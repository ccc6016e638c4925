//! Inline renewal that never stampedes: N replicas x M concurrent requests for one expiring
//! connection cause exactly one call to the token endpoint.
//!
//! 1. Within a process, requests for one connection queue on a per-connection gate (single
//!    flight); whoever gets it after a renewal finds the new token in the cache.
//! 2. Across replicas, the gate holder takes the connection's lock in the store (an owner
//!    token with an expiry longer than the token endpoint timeout); while another replica
//!    holds it, it polls the store until the renewed record appears.
//! 3. After taking the lock it reads the store again: a replica may have finished just before.
//! 4. The new tokens are written compare-and-swap on the version read and on the lock owner,
//!    so a writer that lost its lock can never overwrite newer data or drop a rotated refresh
//!    token; the rotated refresh token is stored before the new access token is used.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::cache::{Cached, TokenCache};
use super::connector_health::ConnectorHealth;
use super::endpoint::{request_token, Exchange, RefreshError};
use super::model::{Connection, ConnectionKey, ConnectionStatus};
use super::store::{Expect, StoreError, TokenStore};
use crate::config::{Connector, Grant};
use crate::metrics::Metrics;
use crate::net::http::HttpClient;
use crate::token::provider::Providers;

/// Refresh behaviour, from the config.
#[derive(Debug, Clone)]
pub struct RefreshPolicy {
    pub skew: Duration,
    pub lock_ttl: Duration,
    pub retry_backoff: Duration,
    /// Lifetime of a token answered without `expires_in` but with a refresh token.
    pub default_lifetime: Duration,
}

/// How often a replica waiting for another's lock looks at the store.
const LOCK_POLL: Duration = Duration::from_millis(25);

#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    #[error("the grant was refused for good")]
    Permanent,
    /// The token endpoint refused the connector's client credentials (with this code).
    #[error("the connector's client credentials were refused ({0})")]
    Connector(String),
    #[error("{reason}")]
    Transient { reason: String, retry_after: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Renewal {
    providers: Arc<Providers>,
    store: Arc<dyn TokenStore>,
    cache: Arc<TokenCache>,
    http: HttpClient,
    policy: RefreshPolicy,
    metrics: Metrics,
    gates: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Until when renewal of a connection is paused after a transient failure.
    backoff: Mutex<HashMap<String, Instant>>,
    connectors: Arc<ConnectorHealth>,
}

impl std::fmt::Debug for Renewal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renewal").field("policy", &self.policy).finish_non_exhaustive()
    }
}

impl Renewal {
    pub fn new(
        providers: Arc<Providers>,
        store: Arc<dyn TokenStore>,
        cache: Arc<TokenCache>,
        http: HttpClient,
        policy: RefreshPolicy,
        metrics: Metrics,
        connectors: Arc<ConnectorHealth>,
    ) -> Self {
        Renewal {
            providers,
            store,
            cache,
            http,
            policy,
            metrics,
            gates: Mutex::default(),
            backoff: Mutex::default(),
            connectors,
        }
    }

    pub fn skew_secs(&self) -> u64 {
        self.policy.skew.as_secs()
    }

    pub fn backoff_secs(&self) -> u64 {
        self.policy.retry_backoff.as_secs().max(1)
    }

    fn count(&self, connector: &str, result: &str) {
        self.metrics.token_refresh.with_label_values(&[connector, result]).inc();
    }

    /// Whether a connection can be used as it is at `now`. A record at version `stale` is
    /// not: the upstream refused that very token.
    fn usable(&self, c: &Connection, now: u64, stale: Option<u64>) -> bool {
        c.status == ConnectionStatus::Connected && !c.expires_within(now, self.skew_secs()) && Some(c.version) != stale
    }

    fn paused(&self, id: &str) -> Option<RenewError> {
        let backoff = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
        let until = backoff.get(id).filter(|until| **until > Instant::now())?;
        let retry_after = until.saturating_duration_since(Instant::now()).as_secs().max(1);
        Some(RenewError::Transient { reason: "a renewal failed moments ago".into(), retry_after })
    }

    /// Renews `key` (whose current record is `current`, if any) and returns the usable record.
    pub async fn renew(
        &self,
        index: usize,
        connector: &Connector,
        key: &ConnectionKey,
        current: Option<Connection>,
        now: u64,
        stale: Option<u64>,
    ) -> Result<Connection, RenewError> {
        let id = key.id();
        if let Some(code) = self.connectors.paused(&connector.name) {
            return Err(RenewError::Connector(code));
        }
        if let Some(paused) = self.paused(&id) {
            return Err(paused);
        }
        let gate = {
            let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
            gates.entry(id.clone()).or_default().clone()
        };
        let job = Job { index, connector, key, id: &id, now, stale };
        let result = {
            let _flight = gate.lock().await;
            self.renew_in_flight(&job, current).await
        };
        let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        // Only the map and this call hold the gate: nobody is waiting, so forget it.
        if Arc::strong_count(&gate) <= 2 {
            gates.remove(&id);
        }
        result
    }

    async fn renew_in_flight(&self, job: &Job<'_>, current: Option<Connection>) -> Result<Connection, RenewError> {
        let Job { key, id, now, stale, .. } = *job;
        // Whoever held the gate before may have renewed or failed already.
        if let Cached::Fresh(c) = self.cache.get_id(id, Instant::now()) {
            if self.usable(&c, now, stale) && current.as_ref().is_none_or(|old| c.version != old.version) {
                return Ok(Connection::clone(&c));
            }
        }
        if let Some(paused) = self.paused(id) {
            return Err(paused);
        }
        let owner = super::store::owner_token();
        let waiting = Instant::now();
        loop {
            if self.store.lock(key, &owner, self.policy.lock_ttl).await? {
                break;
            }
            tokio::time::sleep(LOCK_POLL).await;
            if let Some(c) = self.store.get(key).await? {
                if self.usable(&c, now, stale) {
                    self.metrics.refresh_lock_wait.observe(waiting.elapsed().as_secs_f64());
                    self.cache.put(id, &c);
                    return Ok(c);
                }
                if c.status != ConnectionStatus::Connected {
                    return Err(RenewError::Permanent);
                }
            }
            if waiting.elapsed() > self.policy.lock_ttl {
                return Err(RenewError::Transient {
                    reason: "another replica holds the refresh lock".into(),
                    retry_after: 1,
                });
            }
        }
        self.metrics.refresh_lock_wait.observe(waiting.elapsed().as_secs_f64());
        let result = self.renew_locked(job, &owner).await;
        if let Err(e) = self.store.unlock(key, &owner).await {
            // The lock expires by itself; another replica waits at most its TTL.
            tracing::warn!(error = %e, "could not release a refresh lock");
        }
        result
    }

    async fn renew_locked(&self, job: &Job<'_>, owner: &str) -> Result<Connection, RenewError> {
        let Job { index, connector, key, id, now, stale } = *job;
        let current = self.store.get(key).await?;
        if let Some(c) = &current {
            if self.usable(c, now, stale) {
                self.cache.put(id, c);
                return Ok(c.clone());
            }
            if c.status != ConnectionStatus::Connected {
                return Err(RenewError::Permanent);
            }
        }
        let exchange = match (&connector.grant, &current) {
            (Grant::ClientCredentials(_), _) => Exchange::ClientCredentials,
            (Grant::AuthorizationCode(_), Some(Connection { refresh_token: Some(rt), .. })) => {
                Exchange::RefreshToken(rt)
            }
            _ => return Err(RenewError::Permanent),
        };
        let oauth = self
            .providers
            .resolve(index, connector)
            .await
            .map_err(|reason| RenewError::Transient { reason, retry_after: self.backoff_secs() })?;
        let oauth = oauth.as_ref();
        let started = Instant::now();
        let answer = request_token(&self.http, index, oauth, exchange).await;
        self.metrics
            .token_refresh_duration
            .with_label_values(&[&connector.name])
            .observe(started.elapsed().as_secs_f64());
        match answer {
            Ok(issued) => {
                self.count(&connector.name, "success");
                self.connectors.succeeded(&connector.name, crate::clock::unix_now());
                let lifetime =
                    issued.expires_in.or_else(|| issued.refresh_token.as_ref().map(|_| self.policy.default_lifetime));
                let (old_refresh, old_scopes, pinned, old_expiry) = match &current {
                    Some(c) => (
                        c.refresh_token.clone(),
                        c.scopes.clone(),
                        c.pinned_host.clone(),
                        (c.refresh_expires_at, c.expiry_warned),
                    ),
                    None => (None, Vec::new(), None, (None, false)),
                };
                // A rotated refresh token has its own lifetime (and its own warning); one kept
                // as it was keeps its expiry.
                let rotated = issued.refresh_token.is_some();
                let (refresh_expires_at, expiry_warned) = match issued.refresh_expires_in {
                    Some(d) => (Some(now + d.as_secs()), false),
                    None if rotated => (None, false),
                    None => old_expiry,
                };
                let mut next = Connection {
                    access_token: issued.access_token,
                    // Never drop the refresh token when the answer does not rotate it.
                    refresh_token: issued.refresh_token.or(old_refresh),
                    expires_at: lifetime.map(|d| now + d.as_secs()),
                    scopes: issued.scopes.unwrap_or(old_scopes),
                    status: ConnectionStatus::Connected,
                    pinned_host: pinned,
                    refresh_expires_at,
                    expiry_warned,
                    // A refresh that worked says the grant does.
                    health: {
                        let mut health = current.as_ref().map(|c| c.health.clone()).unwrap_or_default();
                        health.succeeded(now);
                        health
                    },
                    version: 0,
                };
                let expect = current.as_ref().map_or(Expect::Absent, |c| Expect::Version(c.version));
                match self.store.put(key, next.clone(), expect, Some(owner)).await {
                    Ok(version) => {
                        next.version = version;
                        self.cache.put(id, &next);
                        Ok(next)
                    }
                    Err(StoreError::Conflict | StoreError::LockLost) => {
                        tracing::warn!(connector = %connector.name, "a renewal lost its lock before writing; using the stored record");
                        match self.store.get(key).await? {
                            Some(c) if self.usable(&c, now, None) => Ok(c),
                            _ => Err(RenewError::Transient {
                                reason: "the renewal lost its lock".into(),
                                retry_after: 1,
                            }),
                        }
                    }
                    Err(e) => {
                        tracing::error!(connector = %connector.name, error = %e, "renewed tokens could not be stored");
                        Err(e.into())
                    }
                }
            }
            Err(RefreshError::Permanent(code)) => {
                self.count(&connector.name, "permanent_failure");
                tracing::warn!(connector = %connector.name, error = %code, "the token endpoint refused the grant; the connection needs re-authorization");
                if let (Some(c), Grant::AuthorizationCode(_)) = (current, &connector.grant) {
                    let version = c.version;
                    let mut marked = Connection { status: ConnectionStatus::NeedsReauth, ..c };
                    marked.health.failed(now, &code);
                    if self.store.put(key, marked, Expect::Version(version), Some(owner)).await.is_ok() {
                        self.metrics.reauth_required.with_label_values(&[&connector.name]).inc();
                        self.cache.remove(id);
                        let detail = serde_json::json!({ "error": code });
                        let event = super::events::Event::new(
                            "connection.needs_reauth",
                            &connector.name,
                            Some(&key.principal),
                            Some(detail),
                            now,
                        );
                        self.connectors.events().emit(event);
                    }
                }
                Err(RenewError::Permanent)
            }
            Err(RefreshError::Connector(code)) => {
                // The connector's fault: every connection and refresh token stays as it is.
                self.count(&connector.name, "connector_misconfigured");
                self.connectors.refused(&connector.name, &code, crate::clock::unix_now());
                Err(RenewError::Connector(code))
            }
            Err(RefreshError::Transient(reason)) => {
                self.count(&connector.name, "transient_failure");
                tracing::warn!(connector = %connector.name, %reason, "renewal failed; will retry after the backoff");
                let until = Instant::now() + self.policy.retry_backoff;
                self.backoff.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_string(), until);
                Err(RenewError::Transient { reason, retry_after: self.backoff_secs() })
            }
        }
    }
}

/// One renewal: which connection, at what time, and which token version the upstream refused.
#[derive(Clone, Copy)]
struct Job<'a> {
    index: usize,
    connector: &'a Connector,
    key: &'a ConnectionKey,
    id: &'a str,
    now: u64,
    stale: Option<u64>,
}
