//! Wiring: a validated config and its dependencies become state; listeners are bound and
//! served; shutdown drains them. Tests call [`start`] with port-0 listeners, a resolver that
//! answers DNS itself and a dialer that only reaches loopback.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

use crate::config::stored::{self, StoredSet};
use crate::config::{Config, StoreBackend};
use crate::metrics::Metrics;
use crate::net::http::HttpClient;
use crate::net::{Dialer, Resolver, SystemResolver, TcpDialer};
use crate::oauth::link::LinkSigner;
use crate::proxy::upstream::{self, Upstream};
use crate::proxy::State;
use crate::server::{answering, serve, ConnLimits};
use crate::token::broker::{Broker, RefreshPolicy};
use crate::token::cache::TokenCache;
use crate::token::crypto::Sealer;
use crate::token::store::memory::MemoryStore;
use crate::token::store::redis::RedisStore;
use crate::token::store::Invalidation;
use crate::token::{StoreError, TokenStore};

/// What the outside world is reached through.
#[derive(Debug, Clone)]
pub struct Deps {
    pub resolver: Arc<dyn Resolver>,
    pub dialer: Arc<dyn Dialer>,
    /// `None`: the backend the config names.
    pub store: Option<Arc<dyn TokenStore>>,
}

impl Default for Deps {
    fn default() -> Self {
        Deps { resolver: Arc::new(SystemResolver), dialer: Arc::new(TcpDialer), store: None }
    }
}

/// What survives a config reload: the store and its cache, the metrics, the interception
/// CA, how upstreams are reached, the public URL and the link-signing key. Everything else
/// is rebuilt.
struct Base {
    link_key: crate::config::EncryptionKey,
    limits: ConnLimits,
    store: Arc<dyn TokenStore>,
    cache: Arc<TokenCache>,
    metrics: Metrics,
    interception: Arc<OnceLock<Arc<crate::intercept::Authority>>>,
    resolver: Arc<dyn Resolver>,
    dialer: Arc<dyn Dialer>,
    public_url: String,
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
        let merged = stored::merge(&config, &sources.stored).map_err(anyhow::Error::msg)?;
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
        let merged = stored::merge(&sources.file, &set).map_err(anyhow::Error::msg)?;
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

    /// Limits of the listeners (fixed at start), for connections served inside tunnels.
    pub fn limits(&self) -> ConnLimits {
        self.base.limits
    }

    /// Counts a reload attempt.
    pub fn count_reload(&self, ok: bool) {
        self.base.metrics.config_reloads.with_label_values(&[if ok { "success" } else { "failure" }]).inc();
    }
}

/// A running Tollgate.
#[derive(Debug)]
pub struct Running {
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub public_addr: Option<SocketAddr>,
    pub shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Running {
    /// The state new requests use.
    pub fn state(&self) -> Arc<State> {
        self.shared.current()
    }

    /// The token store, for tools and tests that manage connections directly.
    pub fn store(&self) -> &Arc<dyn TokenStore> {
        self.shared.store()
    }

    /// Stops accepting and waits for open requests to finish.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
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

/// Keeps the stored connectors current: re-reads them when the invalidation feed names their
/// record (or was interrupted), and every 30 s in case a notice was lost; every 2 s while the
/// store cannot be read.
async fn follow_stored(
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

/// Retries loading the generated interception CA from the token store (down at start) every
/// 2 s until it is there; CONNECT answers 503 `token_store_unavailable` meanwhile.
async fn load_interception_ca(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = shutdown.changed() => return,
        }
        match crate::intercept::Authority::load_or_create(shared.base.store.as_ref()).await {
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
    let policy = RefreshPolicy {
        skew: config.refresh.skew,
        lock_ttl: config.refresh.lock_ttl,
        retry_backoff: config.refresh.retry_backoff,
        default_lifetime: config.refresh.default_lifetime,
    };
    let links = LinkSigner::new(link_key, &base.public_url);
    let broker = Broker::new(
        base.store.clone(),
        links,
        base.cache.clone(),
        http,
        policy,
        base.metrics.clone(),
        config.connectors.len(),
    );
    broker.providers().warm_up(config.connectors.clone());
    let upstream = Upstream::new(connectors, config.upstream.response_timeout);
    let series = config.connectors.iter().map(|c| base.metrics.series(&c.name)).collect();
    Ok(State {
        config,
        interception: base.interception.clone(),
        broker,
        upstream,
        metrics: base.metrics.clone(),
        series,
    })
}

/// Builds the state, binds every listener and starts serving.
pub async fn start(config: Config, deps: Deps) -> anyhow::Result<Running> {
    let metrics = Metrics::new(config.connectors.iter().map(|c| c.name.as_str())).context("metrics")?;
    let store: Arc<dyn TokenStore> = match (deps.store, &config.store.backend) {
        (Some(store), _) => store,
        (None, StoreBackend::Memory) => Arc::new(MemoryStore::new()),
        (None, StoreBackend::Redis(url)) => {
            let sealer = Sealer::new(&config.encryption_keys).map_err(|e| anyhow::anyhow!("encryption_keys: {e}"))?;
            Arc::new(
                RedisStore::new(url.expose(), sealer, config.store.timeout, metrics.clone())
                    .map_err(|e| anyhow::anyhow!("store: {e}"))?,
            )
        }
    };
    let cache = Arc::new(TokenCache::new(config.store.cache_ttl));
    let (sink, changed) = (cache.clone(), Arc::new(Notify::new()));
    let (notice, record) = (changed.clone(), Invalidation::Connection(stored::record_key().id()));
    store.watch(Arc::new(move |what| {
        if what == record || what == Invalidation::All {
            notice.notify_one();
        }
        sink.invalidate(&what);
    }));
    let stored_set = stored::load(store.as_ref()).await;
    if let Err(e) = &stored_set {
        tracing::warn!(error = %e, "stored connectors could not be read at start; retrying in the background");
    }

    let proxy = bind(config.listen, "listen").await?;
    let admin = bind(config.admin_listen, "admin_listen").await?;
    let public = match config.public_listen {
        Some(addr) => Some(bind(addr, "public_listen").await?),
        None => None,
    };
    let proxy_addr = proxy.local_addr()?;
    let admin_addr = admin.local_addr()?;
    let public_addr = public.as_ref().map(|l| l.local_addr()).transpose()?;
    let public_url =
        config.public_url.clone().unwrap_or_else(|| format!("http://{}", public_addr.unwrap_or(proxy_addr)));

    let authority = match &config.interception_ca {
        Some((cert, key)) => crate::intercept::Authority::from_configured(cert, key.expose()),
        None => crate::intercept::Authority::load_or_create(store.as_ref()).await,
    };
    let interception = Arc::new(OnceLock::new());
    let ca_missing = match authority {
        Ok(ca) => {
            let _ = interception.set(Arc::new(ca));
            false
        }
        Err(e) => {
            tracing::error!(error = %e, "CONNECT interception is unavailable until the CA can be loaded; retrying");
            true
        }
    };
    let limits = ConnLimits {
        max_header_bytes: config.limits.max_header_bytes,
        max_connections: config.limits.max_connections,
        header_read_timeout: config.limits.header_read_timeout,
    };
    let connector_count = config.connectors.len();
    let link_key = config.encryption_keys.first().context("no encryption key")?.clone();
    let base = Base {
        link_key,
        limits,
        store,
        cache,
        metrics,
        interception,
        resolver: deps.resolver,
        dialer: deps.dialer,
        public_url,
    };
    let stored_failing = stored_set.is_err();
    let stored_set = stored_set.unwrap_or_default();
    let state = build_state(&base, stored::merge(&config, &stored_set).map_err(anyhow::Error::msg)?)?;
    let sources = Mutex::new(Sources { file: Arc::new(config), stored: stored_set });
    let shared = Arc::new(Shared { current: RwLock::new(Arc::new(state)), base, sources });

    let (shutdown, watcher) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let s = shared.clone();
    let per_connection = move || {
        let (s, session) = (s.clone(), Arc::new(crate::proxy::Session::default()));
        move |r, busy| crate::proxy::handle(s.clone(), session.clone(), r, busy)
    };
    tasks.spawn(serve(proxy, limits, per_connection, watcher.clone()));
    let s = shared.clone();
    let admin_handler = move |r, busy| answering(busy, crate::admin::handle(s.clone(), r));
    tasks.spawn(serve(admin, limits, move || admin_handler.clone(), watcher.clone()));
    tasks.spawn(follow_stored(shared.clone(), changed, stored_failing, watcher.clone()));
    if ca_missing {
        tasks.spawn(load_interception_ca(shared.clone(), watcher.clone()));
    }
    if let Some(public) = public {
        // Only the OAuth pages face browsers.
        let s = shared.clone();
        let pages = move |request: http::Request<crate::server::Inbound>, busy| {
            let state = s.current();
            answering(busy, async move { Ok(crate::oauth::flow::handle(&state, request).await) })
        };
        tasks.spawn(serve(public, limits, move || pages.clone(), watcher.clone()));
    }
    tracing::info!(%proxy_addr, %admin_addr, public_addr = %public_addr.map(|a| a.to_string()).unwrap_or_default(), connectors = connector_count, "tollgate started");
    Ok(Running { proxy_addr, admin_addr, public_addr, shared, shutdown, tasks })
}

async fn bind(addr: SocketAddr, field: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("{field}: cannot listen on {addr}"))
}
