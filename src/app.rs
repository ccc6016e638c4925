//! Wiring: a validated config and its dependencies become state; listeners are bound and
//! served; shutdown drains them. Tests call [`start`] with port-0 listeners, a resolver that
//! answers DNS itself and a dialer that only reaches loopback.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::{Config, StoreBackend};
use crate::metrics::Metrics;
use crate::net::http::HttpClient;
use crate::net::{Dialer, Resolver, SystemResolver, TcpDialer};
use crate::oauth::link::LinkSigner;
use crate::proxy::upstream::{self, Upstream};
use crate::proxy::State;
use crate::server::{serve, ConnLimits};
use crate::token::broker::{Broker, RefreshPolicy};
use crate::token::crypto::Sealer;
use crate::token::store::memory::MemoryStore;
use crate::token::store::redis::RedisStore;
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
    pub state: Arc<State>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Running {
    /// The token store, for tools and tests that manage connections directly.
    pub fn store(&self) -> &Arc<dyn TokenStore> {
        self.state.broker.store()
    }

    /// Stops accepting and waits for open requests to finish.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Builds the state, binds every listener and starts serving.
pub async fn start(config: Config, deps: Deps) -> anyhow::Result<Running> {
    let config = Arc::new(config);
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

    let key = config.encryption_keys.first().context("no encryption key")?;
    let connectors = upstream::connectors(&config, deps.resolver, deps.dialer).map_err(anyhow::Error::msg)?;
    let http = HttpClient::new(connectors.clone(), config.refresh.token_endpoint_timeout);
    let policy = RefreshPolicy {
        skew: config.refresh.skew,
        lock_ttl: config.refresh.lock_ttl,
        retry_backoff: config.refresh.retry_backoff,
        default_lifetime: config.refresh.default_lifetime,
    };
    let links = LinkSigner::new(key, &public_url);
    let broker =
        Broker::new(store, links, config.store.cache_ttl, http, policy, metrics.clone(), config.connectors.len());
    broker.providers().warm_up(config.connectors.clone());
    let upstream = Upstream::new(connectors, config.upstream.response_timeout);
    let authority = match &config.interception_ca {
        Some((cert, key)) => crate::intercept::Authority::from_configured(cert, key.expose()),
        None => crate::intercept::Authority::load_or_create(broker.store().as_ref()).await,
    };
    let interception = match authority {
        Ok(ca) => Some(Arc::new(ca)),
        Err(e) => {
            tracing::error!(error = %e, "CONNECT interception is unavailable until the CA can be loaded");
            None
        }
    };
    let state = Arc::new(State { config: config.clone(), interception, broker, upstream, metrics });

    let limits = ConnLimits {
        max_header_bytes: config.limits.max_header_bytes,
        header_read_timeout: config.limits.header_read_timeout,
    };
    let (shutdown, watcher) = watch::channel(false);
    let mut tasks = JoinSet::new();

    let s = state.clone();
    tasks.spawn(serve(proxy, limits, move |r| crate::proxy::handle(s.clone(), r), watcher.clone()));
    let s = state.clone();
    tasks.spawn(serve(admin, limits, move |r| crate::admin::handle(s.clone(), r), watcher.clone()));

    if let Some(public) = public {
        // Only the OAuth pages face browsers.
        let s = state.clone();
        let pages = move |request: http::Request<hyper::body::Incoming>| {
            let s = s.clone();
            async move { Ok::<_, std::convert::Infallible>(crate::oauth::flow::handle(&s, request).await) }
        };
        tasks.spawn(serve(public, limits, pages, watcher.clone()));
    }
    tracing::info!(%proxy_addr, %admin_addr, public_addr = %public_addr.map(|a| a.to_string()).unwrap_or_default(), connectors = config.connectors.len(), "tollgate started");
    Ok(Running { proxy_addr, admin_addr, public_addr, state, shutdown, tasks })
}

async fn bind(addr: SocketAddr, field: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("{field}: cannot listen on {addr}"))
}
