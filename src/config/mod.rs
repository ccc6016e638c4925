//! Configuration: the YAML file parsed (`raw`), secret references resolved (`env`), and
//! validated once into types that cannot be invalid (`validate`, `connector`). `serve` and
//! `check-config` share [`load_file`], so what one accepts the other runs.

pub mod authorize;
pub mod connector;
pub mod console;
pub mod env;
pub mod events;
pub mod health_check;
pub mod inject;
pub mod json;
pub mod jwks;
pub mod problems;
pub mod raw;
pub mod store;
pub mod stored;
pub mod templates;
pub mod units;
pub mod validate;
pub mod yaml;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use connector::{Connector, Grant, Injection, OAuthClient};
pub use env::Environment;

use crate::domains::AllowList;
use crate::secret::Secret;

/// One problem in the config: the field path, what is wrong, and the line when the parser
/// reported one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
    pub line: Option<usize>,
}

/// Every problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match (p.path.is_empty(), p.line) {
                (true, Some(line)) => write!(f, "line {line}: {}", p.message)?,
                (true, None) => write!(f, "{}", p.message)?,
                (false, Some(line)) => write!(f, "{} (line {line}): {}", p.path, p.message)?,
                (false, None) => write!(f, "{}: {}", p.path, p.message)?,
            }
        }
        Ok(())
    }
}

/// Which token store backs connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreBackend {
    Memory,
    /// The URL may carry a password.
    Redis(Secret),
}

/// TLS settings for Redis beyond a `rediss://` URL's defaults (the system's CA roots).
#[derive(Clone, Default)]
pub struct RedisTls {
    /// PEM CA certificates trusted instead of the system's.
    pub ca_pem: Option<Vec<u8>>,
    /// A PEM client certificate (chain) and its key (mutual TLS).
    pub client: Option<(Vec<u8>, Secret)>,
}

impl fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTls")
            .field("ca", &self.ca_pem.is_some())
            .field("client_certificate", &self.client.is_some())
            .finish()
    }
}

/// Opens a Redis client for `url` (and `tls`): the one judgement of a Redis URL, made by
/// `check-config` when the file loads and by the store when `serve` builds it. The message
/// never shows the URL, which may carry a password. TLS is rustls with the ring provider,
/// as everywhere else in Tollgate.
pub fn redis_client(url: impl redis::IntoConnectionInfo, tls: Option<&RedisTls>) -> Result<redis::Client, String> {
    let opened = match tls {
        None => {
            install_crypto_provider();
            redis::Client::open(url)
        }
        Some(tls) => redis::Client::build_with_tls(url, redis_certificates(tls)),
    };
    opened.map_err(|e| format!("cannot be opened by this build: {}", redis_error_reason(&e)))
}

/// The certificates of `tls` as redis-rs takes them (also for Cluster clients).
pub fn redis_certificates(tls: &RedisTls) -> redis::TlsCertificates {
    install_crypto_provider();
    redis::TlsCertificates {
        client_tls: tls.client.as_ref().map(|(cert, key)| redis::ClientTlsConfig {
            client_cert: cert.clone(),
            client_key: key.expose().as_bytes().to_vec(),
        }),
        root_cert: tls.ca_pem.clone(),
    }
}

/// redis-rs builds its rustls configuration with the process's default provider: ring, as
/// everywhere else in Tollgate.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// redis-rs describes a refused URL or certificate with a fixed sentence ("Redis URL did not
/// parse", ...), never the URL or key material.
pub fn redis_error_reason(e: &redis::RedisError) -> String {
    match e.kind() {
        redis::ErrorKind::InvalidClientConfig => e.to_string().split(" - ").next().unwrap_or_default().to_string(),
        _ => e.category().to_string(),
    }
}

#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub backend: StoreBackend,
    /// `store.tls`: only with a `rediss://` URL.
    pub tls: Option<RedisTls>,
    pub timeout: Duration,
    pub cache_ttl: Duration,
    /// How the Redis deployment is reached.
    pub mode: RedisMode,
    /// Replicas that must acknowledge a write holding a refresh token before it counts as
    /// done (`WAIT`), and how long to wait for them.
    pub replica_acks: u32,
    pub replica_ack_timeout: Duration,
}

/// The shape of the Redis deployment behind `store.redis_url`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RedisMode {
    /// One server (or a managed endpoint that fails over behind one address).
    #[default]
    Standalone,
    /// Redis Cluster: the URL and `nodes` are seeds; keys are routed by slot.
    Cluster { seeds: Vec<(String, u16)> },
    /// A primary found through sentinels by the name in the URL's host.
    Sentinel { master: String, sentinels: Vec<(String, u16)>, password: Option<Secret> },
}

/// A key for encrypting stored values and signing links. The first one is current.
#[derive(Clone)]
pub struct EncryptionKey {
    pub id: String,
    pub key: [u8; 32],
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptionKey").field("id", &self.id).finish_non_exhaustive()
    }
}

/// How callers' JWTs are verified.
#[derive(Debug, Clone)]
pub enum JwtKey {
    Hs256(Secret),
    /// Public keys from a JWKS document; each key's type pins its algorithm.
    Jwks(Vec<jwks::PublicKey>),
    /// Public keys fetched from the identity provider's JWKS URL, kept fresh while running.
    Remote(std::sync::Arc<jwks::RemoteJwks>),
}

#[derive(Debug, Clone)]
pub struct JwtSettings {
    pub audience: String,
    pub issuer: Option<String>,
    pub key: JwtKey,
    /// `callers.jwt.required_claims`: (claim, value) pairs every JWT must match.
    pub required_claims: Vec<(String, String)>,
    /// `callers.jwt.admin_claim`: (claim, value) that makes the caller an admin.
    pub admin_claim: Option<(String, String)>,
}

/// A static API key for service callers, stored as the SHA-256 of the key.
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub name: String,
    pub sha256: [u8; 32],
    pub connectors: Vec<usize>,
    pub admin: bool,
}

#[derive(Debug, Clone, Default)]
pub struct CallerSettings {
    pub jwt: Option<JwtSettings>,
    pub api_keys: Vec<ApiKey>,
}

#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// PEM certificates trusted in addition to the webpki roots.
    pub extra_ca_pem: Option<Vec<u8>>,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct RefreshSettings {
    pub skew: Duration,
    pub replay_body_limit: u64,
    /// The whole exchange with a token endpoint.
    pub token_endpoint_timeout: Duration,
    /// How long a refresh lock lives if its holder dies; longer than the endpoint timeout.
    pub lock_ttl: Duration,
    /// Pause before retrying a renewal that failed transiently.
    pub retry_backoff: Duration,
    /// Lifetime of a token answered without `expires_in` but with a refresh token.
    pub default_lifetime: Duration,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_header_bytes: usize,
    /// Open connections per listener; past it new connections are closed at once.
    pub max_connections: usize,
    pub header_read_timeout: Duration,
}

/// A validated configuration.
#[derive(Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub public_listen: Option<SocketAddr>,
    /// Without a trailing slash; browsers reach `{public_url}/oauth/...`. When unset, the
    /// address `public_listen` (else `listen`) is bound to.
    pub public_url: Option<String>,
    pub admin_tokens: Vec<Secret>,
    pub store: StoreSettings,
    pub encryption_keys: Vec<EncryptionKey>,
    pub callers: CallerSettings,
    pub upstream: UpstreamSettings,
    pub refresh: RefreshSettings,
    pub limits: Limits,
    /// An operator-supplied interception CA: (certificate PEM, private key PEM). Without it,
    /// Tollgate generates one and keeps it in the token store.
    pub interception_ca: Option<(String, Secret)>,
    /// The file's connectors first, then those stored through the admin API.
    pub connectors: Vec<Arc<Connector>>,
    /// How many of `connectors` come from the file.
    pub file_connectors: usize,
    /// Connector and tool names (one namespace) to connector index.
    pub names: HashMap<String, usize>,
    pub allow_list: AllowList,
    pub events: events::EventSettings,
    pub console: console::ConsoleSettings,
}

impl Config {
    /// Parses and validates YAML text.
    pub fn from_yaml(text: &str, env: &Environment) -> Result<Config, ConfigError> {
        validate::validate(text, env)
    }

    /// This config with another connector list (the file's plus stored ones).
    pub fn with_connectors(
        &self,
        connectors: Vec<Arc<Connector>>,
        names: HashMap<String, usize>,
        allow_list: AllowList,
    ) -> Config {
        Config {
            listen: self.listen,
            admin_listen: self.admin_listen,
            public_listen: self.public_listen,
            public_url: self.public_url.clone(),
            admin_tokens: self.admin_tokens.clone(),
            store: self.store.clone(),
            encryption_keys: self.encryption_keys.clone(),
            callers: self.callers.clone(),
            upstream: self.upstream.clone(),
            refresh: self.refresh.clone(),
            limits: self.limits.clone(),
            interception_ca: self.interception_ca.clone(),
            file_connectors: self.file_connectors,
            connectors,
            names,
            allow_list,
            events: self.events.clone(),
            console: self.console.clone(),
        }
    }

    /// Connector and tool names defined by the file (not by stored connectors).
    pub fn file_names(&self) -> HashMap<String, usize> {
        self.names.iter().filter(|(_, i)| !self.is_stored(**i)).map(|(n, i)| (n.clone(), *i)).collect()
    }

    /// Whether the connector at `index` was stored through the admin API.
    pub fn is_stored(&self, index: usize) -> bool {
        index >= self.file_connectors
    }

    /// The connector a connector or tool name refers to.
    pub fn resolve_name(&self, name: &str) -> Option<usize> {
        self.names.get(name).copied()
    }
}

/// Reads, parses and validates a config file.
pub fn load_file(path: &Path, env: &Environment) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        problems: vec![Problem {
            path: String::new(),
            message: format!("cannot read {}: {e}", path.display()),
            line: None,
        }],
    })?;
    Config::from_yaml(&text, env)
}
