//! The Redis token store: shared by every replica, encrypted at rest, safe for Redis Cluster.
//!
//! Key schema (all keys of one connection share the hash tag `{<id>}`, where `<id>` is
//! [`ConnectionKey::id`], so a record, its lock and its version live in one slot):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `tollgate:{<id>}:conn` | hash | `v`: version (plain integer), `d`: the sealed `StoredConnection` |
//! | `tollgate:{<id>}:lock` | string | the refresh lock: a random owner token, with an expiry |
//! | channel `tollgate:invalidate` | pub/sub | `<id>` of every connection written or deleted |
//! | `tollgate:transient:{<name>}` | string | sealed short-lived value (OAuth flow state, used tickets), with an expiry |
//!
//! The sealed value binds the record key as associated data (see `crypto.rs`): a value copied
//! under another connection's key does not decrypt. Writes and their invalidation message are
//! one Lua script, so a reader never sees a write that was not announced.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_core::Stream;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;

use super::health::{spawn_probe, Health};
use super::{Expect, Invalidation, InvalidationSink, StoreError, TokenStore};
use crate::metrics::Metrics;
use crate::token::crypto::Sealer;
use crate::token::model::{Connection, ConnectionKey, StoredConnection};

/// The pub/sub channel that carries invalidations.
pub const CHANNEL: &str = "tollgate:invalidate";

const PUT_SCRIPT: &str = r#"
-- KEYS[1] record, KEYS[2] lock; ARGV[1] "any" | "absent" | version; ARGV[2] owner or "";
-- ARGV[3] sealed value; ARGV[4] channel; ARGV[5] id
if ARGV[2] ~= "" and redis.call("GET", KEYS[2]) ~= ARGV[2] then return -2 end
local current = redis.call("HGET", KEYS[1], "v")
if ARGV[1] == "absent" then
  if current then return -1 end
elseif ARGV[1] ~= "any" then
  if current ~= ARGV[1] then return -1 end
end
local version = (tonumber(current) or 0) + 1
redis.call("HSET", KEYS[1], "v", version, "d", ARGV[3])
redis.call("PUBLISH", ARGV[4], ARGV[5])
return version
"#;

const DELETE_SCRIPT: &str = r#"
local n = redis.call("DEL", KEYS[1])
redis.call("PUBLISH", ARGV[1], ARGV[2])
return n
"#;

const UNLOCK_SCRIPT: &str = r#"
if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end
return 0
"#;

pub fn record_key(key: &ConnectionKey) -> String {
    format!("tollgate:{{{}}}:conn", key.id())
}

pub fn transient_key(name: &str) -> String {
    format!("tollgate:transient:{{{name}}}")
}

pub fn lock_key(key: &ConnectionKey) -> String {
    format!("tollgate:{{{}}}:lock", key.id())
}

pub struct RedisStore {
    client: redis::Client,
    conn: ConnectionManager,
    health: Arc<Health>,
    sealer: Sealer,
    timeout: Duration,
    metrics: Metrics,
    put: Script,
    delete: Script,
    unlock: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Prepares the store; connects lazily, so Tollgate starts (and stays ready) while Redis
    /// is down. `url` may carry a password and is never logged.
    pub fn new(url: &str, sealer: Sealer, timeout: Duration, metrics: Metrics) -> Result<RedisStore, StoreError> {
        Self::with_tls(url, None, sealer, timeout, metrics)
    }

    /// The store for `url`, with `tls` settings beyond a `rediss://` URL's defaults.
    pub fn with_tls(
        url: &str,
        tls: Option<&crate::config::RedisTls>,
        sealer: Sealer,
        timeout: Duration,
        metrics: Metrics,
    ) -> Result<RedisStore, StoreError> {
        let client = crate::config::redis_client(url, tls)
            .map_err(|e| StoreError::Unavailable(format!("store.redis_url {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let health = Health::new(metrics.clone());
        let probe = conn.clone();
        spawn_probe(
            &health,
            Box::new(move || {
                let mut conn = probe.clone();
                Box::pin(async move {
                    let cmd = redis::cmd("PING");
                    match tokio::time::timeout(timeout, cmd.query_async::<String>(&mut conn)).await {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err(e)) => Err(e.kind_text()),
                        Err(_) => Err(format!("timed out after {timeout:?}")),
                    }
                })
            }),
        );
        Ok(RedisStore {
            client,
            conn,
            health,
            sealer,
            timeout,
            metrics,
            put: Script::new(PUT_SCRIPT),
            delete: Script::new(DELETE_SCRIPT),
            unlock: Script::new(UNLOCK_SCRIPT),
        })
    }

    /// Runs one Redis operation under the store timeout, counting failures by `op`.
    async fn run<T>(
        &self,
        op: &str,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        // Known down: fail at once rather than wait for a timeout (health.rs).
        if !self.health.is_up() {
            self.metrics.store_errors.with_label_values(&[op]).inc();
            return Err(StoreError::Unavailable(format!("{op}: {}", self.health.down_because())));
        }
        let result = match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                let why = e.kind_text();
                if e.is_timeout() || e.is_connection_refusal() || e.is_connection_dropped() || e.is_io_error() {
                    self.health.mark_down(&why);
                }
                Err(StoreError::Unavailable(format!("{op}: {why}")))
            }
            Err(_) => {
                let why = format!("timed out after {:?}", self.timeout);
                self.health.mark_down(&why);
                Err(StoreError::Unavailable(format!("{op}: {why}")))
            }
        };
        if result.is_err() {
            self.metrics.store_errors.with_label_values(&[op]).inc();
        }
        result
    }
}

/// A short, secret-free description of a Redis error.
trait KindText {
    fn kind_text(&self) -> String;
}

impl KindText for redis::RedisError {
    fn kind_text(&self) -> String {
        // rustls's own words: they name the problem, never key material.
        let text = self.to_string();
        if let Some(why) = text.strip_prefix("invalid peer certificate: ") {
            return format!(
                "TLS: the Redis server's certificate is not trusted ({why}); check store.tls.ca_file or the system's CA roots"
            );
        }
        if text.contains("alert") && text.contains("Certificate") {
            return format!(
                "TLS: the Redis server refused this client ({text}); check store.tls.cert_file and key_file"
            );
        }
        if self.is_timeout() {
            "timed out".into()
        } else if self.is_connection_refusal() || self.is_connection_dropped() || self.is_io_error() {
            "connection failed".into()
        } else {
            format!("{:?}", self.kind())
        }
    }
}

#[async_trait]
impl TokenStore for RedisStore {
    async fn get(&self, key: &ConnectionKey) -> Result<Option<Connection>, StoreError> {
        let record = record_key(key);
        let mut conn = self.conn.clone();
        let (version, sealed): (Option<u64>, Option<String>) =
            self.run("get", redis::cmd("HMGET").arg(&record).arg("v").arg("d").query_async(&mut conn)).await?;
        let (Some(version), Some(sealed)) = (version, sealed) else {
            return Ok(None);
        };
        let plain = self.sealer.open(&record, &sealed).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let stored: StoredConnection =
            serde_json::from_slice(&plain).map_err(|_| StoreError::Corrupt("not a connection record".into()))?;
        if stored.connector != key.connector || stored.principal != key.principal {
            return Err(StoreError::Corrupt("the record belongs to another connection".into()));
        }
        Ok(Some(stored.into_connection(version)))
    }

    async fn put(
        &self,
        key: &ConnectionKey,
        connection: Connection,
        expect: Expect,
        owner: Option<&str>,
    ) -> Result<u64, StoreError> {
        let record = record_key(key);
        let plain = serde_json::to_vec(&StoredConnection::from_connection(key, &connection))
            .map_err(|_| StoreError::Corrupt("serialize".into()))?;
        let sealed = self.sealer.seal(&record, &plain).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let expect = match expect {
            Expect::Any => "any".to_string(),
            Expect::Absent => "absent".to_string(),
            Expect::Version(v) => v.to_string(),
        };
        let mut conn = self.conn.clone();
        let mut invocation = self.put.key(&record);
        invocation.key(lock_key(key)).arg(expect).arg(owner.unwrap_or("")).arg(sealed).arg(CHANNEL).arg(key.id());
        let result: i64 = self.run("put", invocation.invoke_async(&mut conn)).await?;
        match result {
            -1 => Err(StoreError::Conflict),
            -2 => Err(StoreError::LockLost),
            v => Ok(v as u64),
        }
    }

    async fn delete(&self, key: &ConnectionKey) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let mut invocation = self.delete.key(record_key(key));
        invocation.arg(CHANNEL).arg(key.id());
        let n: i64 = self.run("delete", invocation.invoke_async(&mut conn)).await?;
        Ok(n > 0)
    }

    async fn lock(&self, key: &ConnectionKey, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let mut set = redis::cmd("SET");
        set.arg(lock_key(key)).arg(owner).arg("NX").arg("PX").arg(ttl.as_millis() as u64);
        Ok(self.run("lock", set.query_async::<Option<String>>(&mut conn)).await?.is_some())
    }

    async fn unlock(&self, key: &ConnectionKey, owner: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let mut invocation = self.unlock.key(lock_key(key));
        invocation.arg(owner);
        let _: i64 = self.run("unlock", invocation.invoke_async(&mut conn)).await?;
        Ok(())
    }

    async fn list(
        &self,
        connector: Option<&str>,
        principal: Option<&str>,
    ) -> Result<Vec<(ConnectionKey, Connection)>, StoreError> {
        // Keys name no connector or principal, so every record is read and opened; this is an
        // admin operation, bounded by SCAN batches, never on the request path.
        let mut conn = self.conn.clone();
        let mut cursor: u64 = 0;
        let mut out = Vec::new();
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor).arg("MATCH").arg("tollgate:{*}:conn").arg("COUNT").arg(500);
            let (next, keys): (u64, Vec<String>) = self.run("list", scan.query_async(&mut conn)).await?;
            for record in keys {
                let mut hmget = redis::cmd("HMGET");
                hmget.arg(&record).arg("v").arg("d");
                let (version, sealed): (Option<u64>, Option<String>) =
                    self.run("list", hmget.query_async(&mut conn)).await?;
                let (Some(version), Some(sealed)) = (version, sealed) else { continue };
                let Ok(plain) = self.sealer.open(&record, &sealed) else { continue };
                let Ok(stored) = serde_json::from_slice::<StoredConnection>(&plain) else { continue };
                if connector.is_some_and(|c| c != stored.connector) || principal.is_some_and(|p| p != stored.principal)
                {
                    continue;
                }
                let key = ConnectionKey::new(&stored.connector, &stored.principal);
                out.push((key, stored.into_connection(version)));
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    async fn put_transient(
        &self,
        name: &str,
        value: &[u8],
        ttl: Duration,
        only_if_absent: bool,
    ) -> Result<bool, StoreError> {
        let key = transient_key(name);
        let sealed = self.sealer.seal(&key, value).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut conn = self.conn.clone();
        let mut set = redis::cmd("SET");
        set.arg(&key).arg(sealed).arg("PX").arg(ttl.as_millis() as u64);
        if only_if_absent {
            set.arg("NX");
        }
        Ok(self.run("put", set.query_async::<Option<String>>(&mut conn)).await?.is_some())
    }

    async fn take_transient(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = transient_key(name);
        let mut conn = self.conn.clone();
        let sealed: Option<String> = self.run("get", redis::cmd("GETDEL").arg(&key).query_async(&mut conn)).await?;
        sealed.map(|s| self.sealer.open(&key, &s).map_err(|e| StoreError::Corrupt(e.to_string()))).transpose()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: String = self.run("ping", redis::cmd("PING").query_async(&mut conn)).await?;
        Ok(())
    }

    fn watch(&self, sink: InvalidationSink) {
        let client = self.client.clone();
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                match subscribe(&client).await {
                    Ok(mut stream) => {
                        backoff = Duration::from_millis(100);
                        // Messages may have been missed while unsubscribed: drop every cached entry.
                        sink(Invalidation::All);
                        while let Some(msg) = std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)).await {
                            if let Ok(id) = msg.get_payload::<String>() {
                                sink(Invalidation::Connection(id));
                            }
                        }
                        tracing::warn!("the token store invalidation feed was interrupted; reconnecting");
                    }
                    Err(_) => metrics.store_errors.with_label_values(&["subscribe"]).inc(),
                }
                // Cached tokens keep serving while Redis is away; the flush above runs when the
                // feed is back.
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        });
    }

    fn backend(&self) -> &'static str {
        "redis"
    }
}

async fn subscribe(client: &redis::Client) -> redis::RedisResult<Pin<Box<redis::aio::PubSubStream>>> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(CHANNEL).await?;
    Ok(Box::pin(pubsub.into_on_message()))
}
