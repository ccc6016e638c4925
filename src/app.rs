//! Wiring: a validated config and its dependencies become the live state; listeners are
//! bound and each is served by the router; shutdown drains them. Tests call [`start`] with
//! port-0 listeners, a resolver that answers DNS itself and a dialer that only reaches
//! loopback.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

use crate::authority::Authority;
use crate::config::{Config, StoreBackend};
use crate::live::{ca, stored, Base, Shared};
use crate::metrics::Metrics;
use crate::net::{Dialer, Resolver, SystemResolver, TcpDialer};
use crate::proxy::State;
use crate::server::{serve, ConnLimits};
use crate::token::cache::TokenCache;
use crate::token::crypto::Sealer;
use crate::token::store::memory::MemoryStore;
use crate::token::store::redis::RedisStore;
use crate::token::store::Invalidation;
use crate::token::TokenStore;

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

/// Builds the state, binds every listener and starts serving.
pub async fn start(config: Config, deps: Deps) -> anyhow::Result<Running> {
    let metrics = Metrics::new(config.connectors.iter().map(|c| c.name.as_str())).context("metrics")?;
    let store: Arc<dyn TokenStore> = match (deps.store, &config.store.backend) {
        (Some(store), _) => store,
        (None, StoreBackend::Memory) => Arc::new(MemoryStore::new()),
        (None, StoreBackend::Redis(url)) => {
            let sealer = Sealer::new(&config.encryption_keys).map_err(|e| anyhow::anyhow!("encryption_keys: {e}"))?;
            Arc::new(
                RedisStore::open(url.expose(), &config.store, sealer, metrics.clone())
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
        match what {
            Invalidation::Connection(id) => sink.remove(&id),
            Invalidation::All => sink.clear(),
        }
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
        Some((cert, key)) => Authority::from_configured(cert, key.expose()).map_err(ca::CaError::from),
        None => ca::load_or_create(store.as_ref()).await,
    };
    let interception = OnceLock::new();
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
    let (shutdown, watcher) = watch::channel(false);
    let events = crate::token::events::Events::new(crate::token::queue::Queue::new(store.clone()), metrics.clone());
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
        shutdown: watcher.clone(),
        events,
        observations: Default::default(),
    };
    let stored_failing = stored_set.is_err();
    let shared = Arc::new(Shared::new(base, config, stored_set.unwrap_or_default())?);

    let mut tasks = JoinSet::new();
    let s = shared.clone();
    let per_connection = move |peer| {
        let session = crate::proxy::Session { peer: Some(peer), ..Default::default() };
        let (s, session) = (s.clone(), Arc::new(session));
        move |r, busy| crate::router::proxy(s.clone(), session.clone(), r, busy)
    };
    tasks.spawn(serve(proxy, limits, per_connection, watcher.clone()));
    let s = shared.clone();
    let admin_handler = move |peer| {
        let s = s.clone();
        move |r, busy| crate::router::admin(s.clone(), peer, r, busy)
    };
    tasks.spawn(serve(admin, limits, admin_handler, watcher.clone()));
    tasks.spawn(stored::follow(shared.clone(), changed, stored_failing, watcher.clone()));
    tasks.spawn(crate::live::worker::run(shared.clone(), watcher.clone()));
    tasks.spawn(crate::live::sweep::run(shared.clone(), watcher.clone()));
    if ca_missing {
        tasks.spawn(crate::live::load_interception_ca(shared.clone(), watcher.clone()));
    }
    if let Some(public) = public {
        // Only the OAuth pages face browsers.
        let s = shared.clone();
        let pages = move |peer| {
            let s = s.clone();
            move |r, busy| crate::router::public(s.clone(), peer, r, busy)
        };
        tasks.spawn(serve(public, limits, pages, watcher.clone()));
    }
    tracing::info!(%proxy_addr, %admin_addr, public_addr = %public_addr.map(|a| a.to_string()).unwrap_or_default(), connectors = connector_count, "tollgate started");
    Ok(Running { proxy_addr, admin_addr, public_addr, shared, shutdown, tasks })
}

async fn bind(addr: SocketAddr, field: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("{field}: cannot listen on {addr}"))
}
