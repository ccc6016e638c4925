//! The broker: which credential goes on a request for (connector, principal).
//!
//! Lookup order: the in-process cache, then the store, then (when the access token expires
//! within the refresh skew) an inline renewal shared by every concurrent request
//! (`renew.rs`). An expired access token is never injected. Static connectors carry their
//! token in the config.

use std::sync::{Arc, OnceLock};

use super::cache::{Cached, TokenCache};
use super::connector_health::ConnectorHealth;
use super::events::{Event, Events};
use super::keys::{Keyed, Principal};
use super::model::{Connection, ConnectionKey, ConnectionStatus};
use super::observed::Observations;
use super::renew::{RefreshPolicy, RenewError, Renewal};
use super::store::{Expect, StoreError, TokenStore};
use crate::config::{Connector, Grant, OAuthClient};
use crate::domains::Target;
use crate::metrics::Metrics;
use crate::net::http::HttpClient;
use crate::secret::Secret;
use crate::token::link::LinkSigner;
use crate::token::provider::Providers;

/// Why no credential can be attached.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("{principal} has not connected {connector} yet; open the connect_url to connect")]
    ConnectionRequired { connector: String, principal: String, connect_url: String },
    #[error("the {connector} connection of {principal} {reason}; open the connect_url to connect again")]
    ReauthRequired { connector: String, principal: String, reason: &'static str, connect_url: String },
    #[error("the {connector} token is pinned to {pinned}; it is not sent to another host")]
    PinnedHost { connector: String, pinned: String },
    #[error("the {connector} token could not be read and none is cached: {source}")]
    Store {
        connector: String,
        #[source]
        source: StoreError,
    },
    #[error(
        "the {connector} access token has expired and its token endpoint cannot renew it now ({reason}); retry later"
    )]
    TokenEndpointUnavailable { connector: String, reason: String, retry_after: u64 },
    #[error(
        "the {connector} connector's client credentials were refused by its token endpoint ({code}); an administrator must fix its client_id and client_secret"
    )]
    ConnectorMisconfigured { connector: String, code: String },
}

/// A credential to inject, and what is needed to renew it if the upstream refuses it.
#[derive(Debug)]
pub struct Credential {
    pub token: Secret,
    /// For renewable connections: the connection and the version of `token`.
    pub renewal: Option<(Arc<Keyed>, u64)>,
    /// The connection whose health the upstream's answer should update (`observed.rs`), when
    /// its recorded health is not fresh.
    pub observe: Option<Arc<Keyed>>,
}

#[derive(Debug)]
pub struct Broker {
    store: Arc<dyn TokenStore>,
    links: LinkSigner,
    cache: Arc<TokenCache>,
    renewal: Renewal,
    providers: Arc<Providers>,
    http: HttpClient,
    metrics: Metrics,
    /// The client-credentials connection key of each connector, computed on first use.
    client_keys: Vec<OnceLock<Arc<Keyed>>>,
    health: Arc<ConnectorHealth>,
    events: Arc<Events>,
    observations: Arc<Observations>,
}

/// What a broker shares with every other state of the process: the store, its cache, the
/// metrics and the events.
#[derive(Clone)]
pub struct Lasting {
    pub store: Arc<dyn TokenStore>,
    pub cache: Arc<TokenCache>,
    pub metrics: Metrics,
    pub events: Arc<Events>,
    pub observations: Arc<Observations>,
}

impl Broker {
    pub fn new(lasting: Lasting, links: LinkSigner, http: HttpClient, policy: RefreshPolicy, names: &[&str]) -> Self {
        let Lasting { store, cache, metrics, events, observations } = lasting;
        let connectors = names.len();
        let providers =
            Arc::new(Providers::new(connectors, http.clone(), store.clone(), metrics.clone(), links.redirect_uri()));
        let health = Arc::new(ConnectorHealth::new(
            metrics.clone(),
            names.iter().copied(),
            policy.retry_backoff,
            events.clone(),
        ));
        let renewal = Renewal::new(
            providers.clone(),
            store.clone(),
            cache.clone(),
            http.clone(),
            policy,
            metrics.clone(),
            health.clone(),
        );
        let client_keys = (0..connectors).map(|_| OnceLock::new()).collect();
        Broker { store, links, cache, renewal, providers, http, metrics, client_keys, health, events, observations }
    }

    /// Drops a connection from this process's cache (the store tells the other replicas).
    pub(super) fn forget(&self, key: &ConnectionKey) {
        self.cache.remove(&key.id());
    }

    pub(super) fn observations(&self) -> &Observations {
        &self.observations
    }

    /// Lifecycle events and the durable queue.
    pub fn events(&self) -> &Arc<Events> {
        &self.events
    }

    /// Whether each connector's client credentials work, as its token endpoint last said.
    pub fn connector_health(&self) -> &ConnectorHealth {
        &self.health
    }

    /// The effective OAuth settings (config, discovery, registration) of each connector.
    pub fn providers(&self) -> &Arc<Providers> {
        &self.providers
    }

    pub fn store(&self) -> &Arc<dyn TokenStore> {
        &self.store
    }

    pub fn links(&self) -> &LinkSigner {
        &self.links
    }

    /// The HTTP client for the OAuth calls of connector `index`.
    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    /// Stores a newly connected account (from the connect flow) and drops stale caches.
    pub async fn connect(&self, key: &ConnectionKey, connection: Connection) -> Result<u64, StoreError> {
        let version = self.store.put(key, connection, Expect::Any, None).await?;
        self.cache.remove(&key.id());
        let now = crate::clock::unix_now();
        self.events.emit(Event::new("connection.created", &key.connector, Some(&key.principal), None, now));
        Ok(version)
    }

    /// The token to inject for `principal` on connector `index` and `target`, at `now`
    /// (Unix seconds).
    pub async fn token_for(
        &self,
        index: usize,
        connector: &Connector,
        principal: &Principal,
        target: &Target,
        now: u64,
        at: tokio::time::Instant,
    ) -> Result<Credential, CredentialError> {
        let keyed = match &connector.grant {
            Grant::Static(token) => return Ok(Credential { token: token.clone(), renewal: None, observe: None }),
            Grant::AuthorizationCode(_) => principal.keyed(index, &connector.name),
            Grant::ClientCredentials(oauth) => self.client_key(index, &connector.name, oauth),
        };
        let key = &keyed.key;
        let link = || self.links.connect_url(&connector.name, &principal.name, now).0;
        let reauth = |reason| CredentialError::ReauthRequired {
            connector: connector.name.clone(),
            principal: principal.name.clone(),
            reason,
            connect_url: link(),
        };
        let client_credentials = matches!(connector.grant, Grant::ClientCredentials(_));
        let current = self.lookup(&keyed, connector, now, at).await?;
        let Some(current) = current else {
            if !client_credentials {
                return Err(CredentialError::ConnectionRequired {
                    connector: connector.name.clone(),
                    principal: principal.name.clone(),
                    connect_url: link(),
                });
            }
            // Renewal futures are large and rarely awaited: boxed, they do not make every
            // request's future (moved a few times per request) that much larger.
            let fresh = Box::pin(self.renewal.renew(index, connector, key, None, now, None))
                .await
                .map_err(|e| self.renew_failed(e, connector))?;
            let observe = super::observed::due(&fresh, now).then(|| keyed.clone());
            return Ok(Credential { token: fresh.access_token, renewal: Some((keyed, fresh.version)), observe });
        };
        match current.status {
            ConnectionStatus::Connected => {}
            ConnectionStatus::NeedsReauth => return Err(reauth("needs to be re-authorized")),
            ConnectionStatus::Revoked => {
                return Err(CredentialError::ConnectionRequired {
                    connector: connector.name.clone(),
                    principal: principal.name.clone(),
                    connect_url: link(),
                })
            }
        }
        let renewable = client_credentials || current.refresh_token.is_some();
        let connection = if renewable && current.expires_within(now, self.renewal.skew_secs()) {
            match Box::pin(self.renewal.renew(index, connector, key, Some(Connection::clone(&current)), now, None))
                .await
            {
                Ok(fresh) => Arc::new(fresh),
                Err(RenewError::Permanent) => return Err(reauth("was refused by the provider's token endpoint")),
                // A token that has not expired yet is still injected while renewal is failing.
                Err(e) if !current.is_expired(now) => {
                    tracing::warn!(connector = %connector.name, error = %e, "renewal failed; the current token is still valid");
                    current
                }
                Err(e) => return Err(self.renew_failed(e, connector)),
            }
        } else {
            current
        };
        if connection.is_expired(now) {
            return Err(reauth("has an expired access token and no refresh token"));
        }
        if connector.pin_host {
            check_pinned(connector, connection.pinned_host.as_deref(), target)?;
        }
        let renewal = renewable.then_some((keyed.clone(), connection.version));
        let observe = super::observed::due(&connection, now).then(|| keyed.clone());
        Ok(Credential { token: connection.access_token.clone(), renewal, observe })
    }

    /// The connection key of a client-credentials connector: one connection per connector and
    /// scope set, whoever calls.
    fn client_key(&self, index: usize, name: &str, oauth: &OAuthClient) -> Arc<Keyed> {
        let make = || {
            let mut scopes = oauth.scopes.clone();
            scopes.sort();
            Keyed::new(ConnectionKey::new(name, format!("client_credentials:{}", scopes.join(" "))))
        };
        match self.client_keys.get(index) {
            Some(slot) => slot.get_or_init(make).clone(),
            None => make(),
        }
    }

    /// After the upstream answered 401 to the token at `version`: renew once, unless another
    /// request already replaced that version, and return the token to retry with.
    pub async fn renew_refused(
        &self,
        index: usize,
        connector: &Connector,
        key: &ConnectionKey,
        version: u64,
        now: u64,
    ) -> Option<Secret> {
        let current = self.store.get(key).await.ok().flatten()?;
        match self.renewal.renew(index, connector, key, Some(current), now, Some(version)).await {
            Ok(fresh) if fresh.version != version => Some(fresh.access_token),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(connector = %connector.name, error = %e, "renewal after an upstream 401 failed");
                None
            }
        }
    }

    /// Cache, then store; a stale cached entry serves when the store cannot answer.
    async fn lookup(
        &self,
        keyed: &Keyed,
        connector: &Connector,
        now: u64,
        at: tokio::time::Instant,
    ) -> Result<Option<Arc<Connection>>, CredentialError> {
        let Keyed { key, id, .. } = keyed;
        let stale = match keyed.cached(&self.cache, at) {
            Cached::Fresh(c) => {
                self.metrics.memory_hits.inc();
                return Ok(Some(c));
            }
            Cached::Stale(c) => {
                self.metrics.token_cache.with_label_values(&["memory", "stale"]).inc();
                Some(c)
            }
            Cached::Miss => {
                self.metrics.token_cache.with_label_values(&["memory", "miss"]).inc();
                None
            }
        };
        match self.store.get(key).await {
            Ok(Some(c)) => {
                self.metrics.token_cache.with_label_values(&["store", "hit"]).inc();
                self.cache.put(id, &c);
                Ok(Some(Arc::new(c)))
            }
            Ok(None) => {
                self.metrics.token_cache.with_label_values(&["store", "miss"]).inc();
                Ok(None)
            }
            // A record that does not open (tampered, moved from another key, sealed with an
            // unknown key) is no credential: the user is asked to connect again, which
            // replaces it. Logged and counted so it is noticed.
            Err(StoreError::Corrupt(reason)) => {
                self.metrics.token_cache.with_label_values(&["store", "error"]).inc();
                self.metrics.store_errors.with_label_values(&["get"]).inc();
                tracing::error!(connector = %connector.name, connection = %id, %reason, "a stored connection cannot be opened; treated as no connection");
                Ok(None)
            }
            Err(source) => {
                self.metrics.token_cache.with_label_values(&["store", "error"]).inc();
                match stale {
                    Some(c) if !c.is_expired(now) => Ok(Some(c)),
                    _ => Err(CredentialError::Store { connector: connector.name.clone(), source }),
                }
            }
        }
    }

    fn renew_failed(&self, error: RenewError, connector: &Connector) -> CredentialError {
        match error {
            RenewError::Store(source) => CredentialError::Store { connector: connector.name.clone(), source },
            RenewError::Permanent => CredentialError::TokenEndpointUnavailable {
                connector: connector.name.clone(),
                reason: "the client credentials were refused".into(),
                retry_after: self.renewal.backoff_secs(),
            },
            RenewError::Transient { reason, retry_after } => {
                CredentialError::TokenEndpointUnavailable { connector: connector.name.clone(), reason, retry_after }
            }
            RenewError::Connector(code) => {
                CredentialError::ConnectorMisconfigured { connector: connector.name.clone(), code }
            }
        }
    }
}

fn check_pinned(connector: &Connector, pinned: Option<&str>, target: &Target) -> Result<(), CredentialError> {
    let host = target.host.to_string();
    match pinned {
        Some(p) if !p.is_empty() && p == host => Ok(()),
        other => Err(CredentialError::PinnedHost {
            connector: connector.name.clone(),
            pinned: other.unwrap_or("no recorded host").to_string(),
        }),
    }
}
