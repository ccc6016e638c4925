//! The live state: what every request starts from, kept current while Tollgate runs. A
//! request takes the current [`State`] and keeps it to its end; a config reload
//! ([`reload`]) or a change to the stored connectors ([`stored`]) builds a new one beside it
//! and swaps it in. What survives every rebuild (the store, its cache, the metrics, the
//! interception CA, how upstreams are reached) is the [`Base`].
//!
//! It sits above the request path (it builds the path's state) and below what serves
//! requests (the router, the admin API, the tunnel), which all reach the state through
//! [`Shared`].

pub mod ca;
pub mod jwks;
pub mod reload;
pub mod stored;
pub mod sweep;
pub mod worker;

use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use tokio::sync::watch;

use crate::authority::Authority;
use crate::config::stored::{merge, StoredSet};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::net::http::HttpClient;
use crate::net::{Dialer, Resolver};
use crate::proxy::upstream::{self, Upstream};
use crate::proxy::State;
use crate::server::ConnLimits;
use crate::token::broker::{Broker, Lasting};
use crate::token::cache::TokenCache;
use crate::token::link::LinkSigner;
use crate::token::renew::RefreshPolicy;
use crate::token::{StoreError, TokenStore};

/// What survives a config reload: the store and its cache, the metrics, the interception
/// CA, how upstreams are reached, the public URL and the link-signing key. Everything else
/// is rebuilt.
pub struct Base {
    pub link_key: crate::config::EncryptionKey,
    pub limits: ConnLimits,
    pub store: Arc<dyn TokenStore>,
    pub cache: Arc<TokenCache>,
    pub metrics: Metrics,
    /// The interception CA; empty until it could be loaded (a generated CA lives in the token
    /// store, which may be down at start).
    pub interception: OnceLock<Arc<Authority>>,
    pub resolver: Arc<dyn Resolver>,
    pub dialer: Arc<dyn Dialer>,
    pub public_url: String,
    /// Turns true when Tollgate shuts down: connections served inside tunnels end with the
    /// listeners'.
    pub shutdown: watch::Receiver<bool>,
    /// Lifecycle events and the durable queue (its backlog survives reloads).
    pub events: Arc<crate::token::events::Events>,
    /// Per-connection health noted from traffic, written every few seconds.
    pub observations: Arc<crate::token::observed::Observations>,
}

/// The state requests start from. Each request takes the current one and keeps it to the
/// end, so a reload never changes the rules under a request in flight.
pub struct Shared {
    current: RwLock<Arc<State>>,
    base: Base,
    /// What the current state was built from. Held while a new state is built, so a file
    /// reload and a stored-connector change never interleave.
    sources: Mutex<Sources>,
}

/// The file's config (as loaded, without stored connectors) and the stored connectors.
struct Sources {
    file: Arc<Config>,
    stored: StoredSet,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Shared {
    /// The live state for a file's config and the stored connectors read at start.
    pub fn new(base: Base, config: Config, stored: StoredSet) -> anyhow::Result<Shared> {
        let state = build_state(&base, merge(&config, &stored).map_err(anyhow::Error::msg)?)?;
        let sources = Mutex::new(Sources { file: Arc::new(config), stored });
        Ok(Shared { current: RwLock::new(Arc::new(state)), base, sources })
    }

    /// The interception CA, once loaded.
    pub fn authority(&self) -> Option<&Arc<Authority>> {
        self.base.interception.get()
    }

    /// The state new requests use.
    pub fn current(&self) -> Arc<State> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Builds a state from a validated file config (plus the stored connectors) and makes it
    /// current. Settings bound at start (listeners, store, encryption keys, interception CA)
    /// keep their running values.
    pub fn apply(&self, config: Config) -> anyhow::Result<()> {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        warn_restart_needed(&sources.file, &config);
        let merged = merge(&config, &sources.stored).map_err(anyhow::Error::msg)?;
        self.install(build_state(&self.base, merged)?);
        sources.file = Arc::new(config);
        Ok(())
    }

    /// Makes a newer set of stored connectors part of the running config. A version older than
    /// or equal to the one applied is ignored (two reads can finish out of order); a record
    /// that vanished (the store was emptied) removes them.
    pub fn apply_stored(&self, set: StoredSet) -> anyhow::Result<()> {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        let vanished = set.version == 0 && sources.stored.version != 0;
        if set.version <= sources.stored.version && !vanished {
            return Ok(());
        }
        let merged = merge(&sources.file, &set).map_err(anyhow::Error::msg)?;
        self.install(build_state(&self.base, merged)?);
        tracing::info!(version = set.version, stored = set.connectors.len(), "stored connectors applied");
        sources.stored = set;
        Ok(())
    }

    /// Reads the stored connectors and applies them if they changed.
    pub async fn sync_stored(&self) -> Result<(), StoreError> {
        let set = stored::load(self.base.store.as_ref()).await?;
        if let Err(e) = self.apply_stored(set) {
            tracing::error!(error = %e, "stored connectors could not be applied; the running connectors stay");
        }
        Ok(())
    }

    /// The token store (shared by every state).
    pub fn store(&self) -> &Arc<dyn TokenStore> {
        &self.base.store
    }

    fn install(&self, state: State) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(state);
    }

    /// The shutdown signal, for connections served inside tunnels.
    pub fn shutdown(&self) -> watch::Receiver<bool> {
        self.base.shutdown.clone()
    }

    /// Limits of the listeners (fixed at start), for connections served inside tunnels.
    pub fn limits(&self) -> ConnLimits {
        self.base.limits
    }

    /// An HTTP client for Tollgate's own calls (webhooks, revocations, a console check) that
    /// reaches `policy`'s addresses with the upstream TLS roots, resolver and dialer.
    pub fn http_client(
        &self,
        config: &Config,
        policy: crate::domains::addr::AddressPolicy,
    ) -> Result<HttpClient, String> {
        let tls = crate::net::connect::tls_config(config.upstream.extra_ca_pem.as_deref())?;
        let connector = crate::net::connect::UpstreamConnector {
            resolver: self.base.resolver.clone(),
            dialer: self.base.dialer.clone(),
            policy,
            tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
            timeout: config.upstream.connect_timeout,
        };
        Ok(HttpClient::new(vec![connector], config.refresh.token_endpoint_timeout))
    }

    /// Counts a reload attempt.
    pub fn count_reload(&self, ok: bool) {
        self.base.metrics.config_reloads.with_label_values(&[if ok { "success" } else { "failure" }]).inc();
    }
}

/// Logs the settings a reload cannot change.
fn warn_restart_needed(old: &Config, new: &Config) {
    let restart_needed: Vec<&str> = [
        ("listen", old.listen != new.listen),
        ("admin_listen", old.admin_listen != new.admin_listen),
        ("public_listen", old.public_listen != new.public_listen),
        ("public_url", old.public_url != new.public_url),
        ("store", format!("{:?}", old.store) != format!("{:?}", new.store)),
        (
            "encryption_keys",
            old.encryption_keys.iter().map(|k| (&k.id, k.key)).ne(new.encryption_keys.iter().map(|k| (&k.id, k.key))),
        ),
        ("interception", old.interception_ca.as_ref().map(|c| &c.0) != new.interception_ca.as_ref().map(|c| &c.0)),
        ("limits.header_read_timeout", old.limits.header_read_timeout != new.limits.header_read_timeout),
    ]
    .into_iter()
    .filter(|(_, changed)| *changed)
    .map(|(name, _)| name)
    .collect();
    if !restart_needed.is_empty() {
        tracing::warn!(settings = ?restart_needed, "these settings change only on restart; the running values stay");
    }
}

/// Retries loading the generated interception CA from the token store (down at start) every
/// 2 s until it is there; CONNECT answers 503 `token_store_unavailable` meanwhile.
pub(crate) async fn load_interception_ca(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = shutdown.changed() => return,
        }
        match ca::load_or_create(shared.base.store.as_ref()).await {
            Ok(ca) => {
                let _ = shared.base.interception.set(Arc::new(ca));
                tracing::info!("the interception CA is loaded; CONNECT interception is available");
                return;
            }
            Err(e) => tracing::debug!(error = %e, "the interception CA still cannot be loaded"),
        }
    }
}

/// Builds the per-config part of the state on top of what survives reloads, and starts
/// discovery for its connectors.
fn build_state(base: &Base, config: Config) -> anyhow::Result<State> {
    let config = Arc::new(config);
    base.metrics.zero_connectors(config.connectors.iter().map(|c| c.name.as_str()));
    // Encryption keys are bound at start (the Redis store seals with them): links keep the
    // key Tollgate started with, so links handed out before a reload stay valid.
    let link_key = &base.link_key;
    let connectors =
        upstream::connectors(&config, base.resolver.clone(), base.dialer.clone()).map_err(anyhow::Error::msg)?;
    let http = HttpClient::new(connectors.clone(), config.refresh.token_endpoint_timeout);
    jwks::start(&config, base.resolver.clone(), base.dialer.clone()).map_err(anyhow::Error::msg)?;
    let policy = RefreshPolicy {
        skew: config.refresh.skew,
        lock_ttl: config.refresh.lock_ttl,
        retry_backoff: config.refresh.retry_backoff,
        default_lifetime: config.refresh.default_lifetime,
    };
    let links = LinkSigner::new(link_key, &base.public_url);
    base.events.set_webhooks(config.events.webhooks.clone());
    let lasting = Lasting {
        store: base.store.clone(),
        cache: base.cache.clone(),
        metrics: base.metrics.clone(),
        events: base.events.clone(),
        observations: base.observations.clone(),
    };
    let names: Vec<&str> = config.connectors.iter().map(|c| c.name.as_str()).collect();
    let broker = Broker::new(lasting, links, http, policy, &names);
    broker.providers().warm_up(config.connectors.clone());
    let upstream = Upstream::new(connectors, config.upstream.response_timeout);
    let series = config.connectors.iter().map(|c| base.metrics.series(&c.name)).collect();
    Ok(State { config, broker, upstream, metrics: base.metrics.clone(), series })
}
