//! The configuration file as written: serde structs that mirror the YAML exactly, filled by
//! `yaml.rs`. Nothing here is trusted; `validate.rs` turns it into [`super::Config`].

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: String,
    pub admin_listen: String,
    #[serde(default)]
    pub public_listen: Option<String>,
    #[serde(default)]
    pub public_url: Option<String>,
    #[serde(default)]
    pub admin_tokens: Vec<String>,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub encryption_keys: Vec<RawKey>,
    #[serde(default)]
    pub callers: RawCallers,
    #[serde(default)]
    pub upstream: RawUpstream,
    #[serde(default)]
    pub refresh: RawRefresh,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub interception: RawInterception,
    #[serde(default)]
    pub connectors: Vec<RawConnector>,
    #[serde(default)]
    pub tools: Vec<RawTool>,
    #[serde(default)]
    pub events: RawEvents,
    #[serde(default)]
    pub console: RawConsole,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsole {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub embed_origins: Option<Vec<String>>,
    #[serde(default)]
    pub session_ttl: Option<String>,
    #[serde(default)]
    pub oidc: Option<RawConsoleOidc>,
}

/// Signing in to the console with the organization's OpenID Connect provider.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsoleOidc {
    pub issuer: String,
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<String>,
    /// The claim and value (from the ID token or userinfo) that make the user an admin.
    pub admin_claim: RawClaim,
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    #[serde(default)]
    pub unsafe_allow_ranges: Option<Vec<String>>,
}

/// Lifecycle events for the agent platform, and how queued work (events, revocations) retries.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvents {
    #[serde(default)]
    pub webhooks: Vec<RawWebhook>,
    #[serde(default)]
    pub retry_backoff: Option<String>,
    #[serde(default)]
    pub retry_max: Option<String>,
    #[serde(default)]
    pub give_up_after: Option<String>,
    #[serde(default)]
    pub refresh_token_warning: Option<String>,
    #[serde(default)]
    pub sweep_interval: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    pub url: String,
    pub secret: String,
    /// Only these event types (all when unset).
    #[serde(default)]
    pub types: Option<Vec<String>>,
    #[serde(default)]
    pub unsafe_allow_http: bool,
    #[serde(default)]
    pub unsafe_allow_ranges: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    #[serde(default)]
    pub backend: Option<String>,
    #[serde(default)]
    pub redis_url: Option<String>,
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub cache_ttl: Option<String>,
    /// TLS to Redis beyond a `rediss://` URL's defaults: a private CA, a client certificate.
    #[serde(default)]
    pub tls: Option<RawStoreTls>,
    /// `standalone` (default), `cluster` or `sentinel`.
    #[serde(default)]
    pub mode: Option<String>,
    /// `host:port` addresses: more seed nodes (cluster) or the sentinels (sentinel).
    #[serde(default)]
    pub nodes: Option<Vec<String>>,
    /// The sentinels' own password, when they ask for one.
    #[serde(default)]
    pub sentinel_password: Option<String>,
    /// Replicas that must acknowledge a write holding a refresh token.
    #[serde(default)]
    pub replica_acks: Option<u32>,
    #[serde(default)]
    pub replica_ack_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStoreTls {
    /// PEM CA certificates to trust instead of the system's.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// A PEM client certificate (chain) and its key, for Redis servers that ask for one.
    #[serde(default)]
    pub cert_file: Option<String>,
    #[serde(default)]
    pub key_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    pub id: String,
    pub secret: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCallers {
    #[serde(default)]
    pub jwt: Option<RawJwt>,
    #[serde(default)]
    pub api_keys: Vec<RawApiKey>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwt {
    pub audience: String,
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub hs256_secret: Option<String>,
    #[serde(default)]
    pub jwks_file: Option<String>,
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Private ranges the JWKS fetch may connect to (an identity provider inside the network).
    #[serde(default)]
    pub unsafe_allow_ranges: Option<Vec<String>>,
    /// Claims every JWT must carry with these values (a string claim equal to the value, or an
    /// array claim that holds it).
    #[serde(default)]
    pub required_claims: std::collections::BTreeMap<String, String>,
    /// A claim and value that make a JWT's caller an admin (may use private connectors).
    #[serde(default)]
    pub admin_claim: Option<RawClaim>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClaim {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApiKey {
    pub name: String,
    pub sha256: String,
    #[serde(default)]
    pub connectors: Vec<String>,
    /// The key's caller may use private connectors.
    #[serde(default)]
    pub admin: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    #[serde(default)]
    pub extra_ca_file: Option<String>,
    #[serde(default)]
    pub connect_timeout: Option<String>,
    #[serde(default)]
    pub response_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRefresh {
    #[serde(default)]
    pub skew: Option<String>,
    #[serde(default)]
    pub replay_body_limit: Option<String>,
    #[serde(default)]
    pub token_endpoint_timeout: Option<String>,
    #[serde(default)]
    pub lock_ttl: Option<String>,
    #[serde(default)]
    pub retry_backoff: Option<String>,
    #[serde(default)]
    pub default_lifetime: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInterception {
    #[serde(default)]
    pub ca_cert_file: Option<String>,
    #[serde(default)]
    pub ca_key_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    #[serde(default)]
    pub max_header_bytes: Option<String>,
    #[serde(default)]
    pub max_connections: Option<usize>,
    #[serde(default)]
    pub header_read_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConnector {
    pub name: String,
    #[serde(default)]
    pub template: Option<String>,
    #[serde(default)]
    pub grant: Option<String>,
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    #[serde(default)]
    pub token_endpoint: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub token_endpoint_auth_method: Option<String>,
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    #[serde(default)]
    pub allowed_domains: Option<Vec<String>>,
    #[serde(default)]
    pub pin_host: Option<bool>,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub inject: Option<RawInject>,
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub discovery_url: Option<String>,
    #[serde(default)]
    pub mcp_url: Option<String>,
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub unsafe_allow_http: Option<bool>,
    #[serde(default)]
    pub unsafe_allow_ranges: Option<Vec<String>>,
    #[serde(default)]
    pub allow_websocket: Option<bool>,
    #[serde(default)]
    pub strip_headers: Option<Vec<String>>,
    #[serde(default)]
    pub authorize_params: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub token_params: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub exclude_authorize_params: Option<Vec<String>>,
    #[serde(default)]
    pub resource: Option<String>,
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
    #[serde(default)]
    pub template_vars: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub health_check: Option<RawHealthCheck>,
    /// What the connector is for, as admins and users read it.
    #[serde(default)]
    pub description: Option<String>,
    /// `public` (every caller, the default) or `private` (admin callers only).
    #[serde(default)]
    pub access: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    pub url: String,
    #[serde(default)]
    pub expect: Option<u16>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInject {
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub format: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTool {
    pub name: String,
    pub connector: String,
}
