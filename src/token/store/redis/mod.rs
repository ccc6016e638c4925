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
//!
//! The deployment (one server, Sentinel, Cluster) is the [`link::Link`]'s business; a write
//! that holds a refresh token waits for `store.replica_acks` replicas (`WAIT`), so a failover
//! right after a refresh cannot lose the rotated refresh token.

mod cluster;
mod feed;
mod kind;
mod link;
mod node;
pub mod rewrap;
mod scripts;
mod sentinel;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::Script;

use self::kind::KindText;
use self::link::{Conn, Link};
pub use self::node::NodeStatus;
use self::scripts::{DELETE_SCRIPT, PUT_SCRIPT, UNLOCK_SCRIPT};
use super::health::{spawn_probe, Health};
use super::{Expect, InvalidationSink, StoreError, StoreStatus, TokenStore};
use crate::config::{RedisMode, StoreSettings};
use crate::metrics::Metrics;
use crate::token::crypto::Sealer;
use crate::token::model::{Connection, ConnectionKey, StoredConnection};

/// The pub/sub channel that carries invalidations.
pub const CHANNEL: &str = "tollgate:invalidate";

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
    link: Arc<Link>,
    health: Arc<Health>,
    sealer: Sealer,
    timeout: Duration,
    replica_acks: u32,
    replica_ack_timeout: Duration,
    metrics: Metrics,
    put: Script,
    delete: Script,
    unlock: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("mode", &self.link.mode())
            .field("timeout", &self.timeout)
            .field("replica_acks", &self.replica_acks)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A standalone store at `url` with default settings (tests and tools). `url` may carry a
    /// password and is never logged.
    pub fn new(url: &str, sealer: Sealer, timeout: Duration, metrics: Metrics) -> Result<RedisStore, StoreError> {
        let settings = StoreSettings {
            backend: crate::config::StoreBackend::Memory,
            tls: None,
            timeout,
            cache_ttl: Duration::from_secs(30),
            mode: RedisMode::Standalone,
            replica_acks: 0,
            replica_ack_timeout: Duration::from_millis(500),
        };
        Self::open(url, &settings, sealer, metrics)
    }

    /// The store for `url` as `settings` describe the deployment. It connects lazily, so
    /// Tollgate starts (and stays ready) while Redis is down; its probe starts at once.
    pub fn open(
        url: &str,
        settings: &StoreSettings,
        sealer: Sealer,
        metrics: Metrics,
    ) -> Result<RedisStore, StoreError> {
        let timeout = settings.timeout;
        let link = Link::open(url, settings.tls.as_ref(), &settings.mode, timeout, metrics.store_node_up.clone())
            .map_err(|e| StoreError::Unavailable(format!("store.redis_url {e}")))?;
        let link = Arc::new(link);
        let health = Health::new(metrics.clone());
        let probe = link.clone();
        spawn_probe(
            &health,
            Box::new(move || {
                let link = probe.clone();
                Box::pin(async move { link.check(timeout).await })
            }),
        );
        Ok(RedisStore {
            link,
            health,
            sealer,
            timeout,
            replica_acks: settings.replica_acks,
            replica_ack_timeout: settings.replica_ack_timeout,
            metrics,
            put: Script::new(PUT_SCRIPT),
            delete: Script::new(DELETE_SCRIPT),
            unlock: Script::new(UNLOCK_SCRIPT),
        })
    }

    /// The connection for an operation, or why there is none.
    fn conn(&self, op: &str) -> Result<Conn, StoreError> {
        self.link.conn().map_err(|why| self.failed(op, &why, true))
    }

    /// Counts a failed `op`; `unreachable` says the backend could not be reached (as opposed
    /// to an answer that was an error), which marks the store down or wakes the probe.
    fn failed(&self, op: &str, why: &str, unreachable: bool) -> StoreError {
        self.metrics.store_errors.with_label_values(&[op]).inc();
        if unreachable {
            if self.link.fails_as_one() {
                self.health.mark_down(why);
            } else {
                self.health.suspect();
            }
        }
        StoreError::Unavailable(format!("{op}: {why}"))
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
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                // A demoted primary (a failover the sentinels have not told us of yet) is as
                // good as unreachable for writes: the probe finds the new one.
                let unreachable = e.is_timeout()
                    || e.is_connection_refusal()
                    || e.is_connection_dropped()
                    || e.is_io_error()
                    || e.code() == Some("READONLY");
                Err(self.failed(op, &e.kind_text(), unreachable))
            }
            Err(_) => Err(self.failed(op, &format!("timed out after {:?}", self.timeout), true)),
        }
    }

    /// After a write holding a refresh token: waits for `store.replica_acks` replicas, so a
    /// failover cannot lose the write. The write stands either way (it is on the primary);
    /// a wait that runs out is counted and logged.
    async fn await_replicas(&self, conn: &mut Conn, record: &str) {
        let wanted = self.replica_acks;
        let wait = self.link.wait(conn, record, wanted, self.replica_ack_timeout);
        let acked = tokio::time::timeout(self.replica_ack_timeout + self.timeout, wait).await;
        let acked = match acked {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                tracing::warn!(error = %e.kind_text(), "WAIT for replica acknowledgements failed");
                0
            }
            Err(_) => 0,
        };
        if acked < i64::from(wanted) {
            self.metrics.store_replica_ack_timeouts.inc();
            tracing::warn!(
                wanted,
                acked,
                timeout = ?self.replica_ack_timeout,
                "a write holding a refresh token was acknowledged by fewer replicas than store.replica_acks in time; a failover now could lose it"
            );
        }
    }
}

#[async_trait]
impl TokenStore for RedisStore {
    async fn get(&self, key: &ConnectionKey) -> Result<Option<Connection>, StoreError> {
        let record = record_key(key);
        let mut conn = self.conn("get")?;
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
        let durable = self.replica_acks > 0 && connection.refresh_token.is_some();
        let plain = serde_json::to_vec(&StoredConnection::from_connection(key, &connection))
            .map_err(|_| StoreError::Corrupt("serialize".into()))?;
        let sealed = self.sealer.seal(&record, &plain).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let expect = match expect {
            Expect::Any => "any".to_string(),
            Expect::Absent => "absent".to_string(),
            Expect::Version(v) => v.to_string(),
        };
        let mut conn = if durable { self.link.durable() } else { self.link.conn() }
            .map_err(|why| self.failed("put", &why, true))?;
        let mut invocation = self.put.key(&record);
        invocation.key(lock_key(key)).arg(expect).arg(owner.unwrap_or("")).arg(sealed).arg(CHANNEL).arg(key.id());
        let result: i64 = self.run("put", invocation.invoke_async(&mut conn)).await?;
        match result {
            -1 => Err(StoreError::Conflict),
            -2 => Err(StoreError::LockLost),
            v => {
                if durable {
                    self.await_replicas(&mut conn, &record).await;
                }
                Ok(v as u64)
            }
        }
    }

    async fn delete(&self, key: &ConnectionKey) -> Result<bool, StoreError> {
        let mut conn = self.conn("delete")?;
        let mut invocation = self.delete.key(record_key(key));
        invocation.arg(CHANNEL).arg(key.id());
        let n: i64 = self.run("delete", invocation.invoke_async(&mut conn)).await?;
        Ok(n > 0)
    }

    async fn lock(&self, key: &ConnectionKey, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut conn = self.conn("lock")?;
        let mut set = redis::cmd("SET");
        set.arg(lock_key(key)).arg(owner).arg("NX").arg("PX").arg(ttl.as_millis() as u64);
        Ok(self.run("lock", set.query_async::<Option<String>>(&mut conn)).await?.is_some())
    }

    async fn unlock(&self, key: &ConnectionKey, owner: &str) -> Result<(), StoreError> {
        let mut conn = self.conn("unlock")?;
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
        // admin operation, bounded by SCAN batches (on every master of a Cluster), never on the
        // request path.
        let keys = self.run("list", self.link.scan("tollgate:{*}:conn")).await?;
        let mut conn = self.conn("list")?;
        let mut out = Vec::new();
        for record in keys {
            let mut hmget = redis::cmd("HMGET");
            hmget.arg(&record).arg("v").arg("d");
            let (version, sealed): (Option<u64>, Option<String>) =
                self.run("list", hmget.query_async(&mut conn)).await?;
            let (Some(version), Some(sealed)) = (version, sealed) else { continue };
            let Ok(plain) = self.sealer.open(&record, &sealed) else { continue };
            let Ok(stored) = serde_json::from_slice::<StoredConnection>(&plain) else { continue };
            if connector.is_some_and(|c| c != stored.connector) || principal.is_some_and(|p| p != stored.principal) {
                continue;
            }
            let key = ConnectionKey::new(&stored.connector, &stored.principal);
            out.push((key, stored.into_connection(version)));
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
        let mut conn = self.conn("put")?;
        let mut set = redis::cmd("SET");
        set.arg(&key).arg(sealed).arg("PX").arg(ttl.as_millis() as u64);
        if only_if_absent {
            set.arg("NX");
        }
        Ok(self.run("put", set.query_async::<Option<String>>(&mut conn)).await?.is_some())
    }

    async fn take_transient(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = transient_key(name);
        let mut conn = self.conn("get")?;
        let sealed: Option<String> = self.run("get", redis::cmd("GETDEL").arg(&key).query_async(&mut conn)).await?;
        sealed.map(|s| self.sealer.open(&key, &s).map_err(|e| StoreError::Corrupt(e.to_string()))).transpose()
    }

    async fn get_transient(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = transient_key(name);
        let mut conn = self.conn("get")?;
        let sealed: Option<String> = self.run("get", redis::cmd("GET").arg(&key).query_async(&mut conn)).await?;
        sealed.map(|s| self.sealer.open(&key, &s).map_err(|e| StoreError::Corrupt(e.to_string()))).transpose()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if !self.link.fails_as_one() {
            // A Cluster is up while any master answers, as the probe last saw every one of
            // them; a PING here would reach one node of its choosing.
            if self.health.is_up() {
                return Ok(());
            }
            return Err(StoreError::Unavailable(self.health.down_because()));
        }
        let mut conn = self.conn("ping")?;
        let _: String = self.run("ping", redis::cmd("PING").query_async(&mut conn)).await?;
        Ok(())
    }

    fn watch(&self, sink: InvalidationSink) {
        feed::follow(self.link.clone(), self.metrics.clone(), sink);
    }

    fn backend(&self) -> &'static str {
        "redis"
    }

    fn status(&self) -> StoreStatus {
        StoreStatus {
            mode: self.link.mode(),
            down_because: (!self.health.is_up()).then(|| self.health.down_because()),
            nodes: self.link.nodes(),
        }
    }
}
