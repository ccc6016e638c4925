//! How the store reaches Redis, whatever the deployment: one server, a primary found through
//! sentinels, or a Cluster. Operations take a [`Conn`] from the [`Link`] and never see the
//! difference; the probe (`health.rs`) calls [`Link::check`], which is also where a Sentinel
//! link follows a failover and a Cluster link takes each master's pulse.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, Pipeline, RedisFuture, Value};

use super::cluster::Cluster;
use super::kind::KindText;
use super::node::{manager, scan_one, NodeStatus};
use super::sentinel::Sentinel;
use crate::config::{redis_client, RedisMode, RedisTls};

/// One multiplexed connection to the deployment; cheap to clone.
#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// The deployment behind `store.redis_url`.
// One per store, behind an `Arc`: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub enum Link {
    Standalone {
        client: redis::Client,
        conn: ConnectionManager,
        /// Writes that wait for replicas (`WAIT` blocks its connection) use their own.
        durable: ConnectionManager,
    },
    Sentinel(Sentinel),
    Cluster(Cluster),
}

impl Link {
    pub fn open(
        url: &str,
        tls: Option<&RedisTls>,
        mode: &RedisMode,
        timeout: Duration,
        node_gauge: prometheus::IntGaugeVec,
    ) -> Result<Link, String> {
        match mode {
            RedisMode::Standalone => {
                let client = redis_client(url, tls)?;
                let conn = manager(client.clone(), timeout)?;
                let durable = manager(client.clone(), timeout)?;
                Ok(Link::Standalone { client, conn, durable })
            }
            RedisMode::Sentinel { master, sentinels, password } => {
                Sentinel::new(url, tls, master, sentinels, password.as_ref(), timeout).map(Link::Sentinel)
            }
            RedisMode::Cluster { seeds } => Cluster::new(url, tls, seeds, timeout, node_gauge).map(Link::Cluster),
        }
    }

    pub fn mode(&self) -> &'static str {
        match self {
            Link::Standalone { .. } => "standalone",
            Link::Sentinel(_) => "sentinel",
            Link::Cluster(_) => "cluster",
        }
    }

    /// The connection for ordinary operations; `Err` says why there is none yet (no sentinel
    /// has named a primary).
    pub fn conn(&self) -> Result<Conn, String> {
        match self {
            Link::Standalone { conn, .. } => Ok(Conn::Single(conn.clone())),
            Link::Sentinel(s) => s.conn().map(Conn::Single),
            Link::Cluster(c) => Ok(Conn::Cluster(c.conn())),
        }
    }

    /// The connection for a write that then waits for replicas, and the `WAIT` after it.
    pub fn durable(&self) -> Result<Conn, String> {
        match self {
            Link::Standalone { durable, .. } => Ok(Conn::Single(durable.clone())),
            Link::Sentinel(s) => s.durable().map(Conn::Single),
            Link::Cluster(c) => Ok(Conn::Cluster(c.conn())),
        }
    }

    /// `WAIT replicas timeout` on `conn` after a write to `key`: how many replicas have
    /// acknowledged every write made on that connection so far. In a Cluster it goes to the
    /// master that holds `key`, over the connection the write took.
    pub async fn wait(&self, conn: &mut Conn, key: &str, replicas: u32, timeout: Duration) -> redis::RedisResult<i64> {
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(replicas).arg(timeout.as_millis().max(1) as u64);
        match conn {
            Conn::Single(c) => cmd.query_async(c).await,
            Conn::Cluster(c) => {
                let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::with_key(
                    key,
                    SlotAddr::Master,
                )));
                Ok(redis::from_redis_value(c.route_command(cmd, route).await?)?)
            }
        }
    }

    /// Whether an operation's failure means the whole store is down (so later operations
    /// should stop waiting for it). In a Cluster one master down leaves the others serving:
    /// the probe decides, from every master's answer.
    pub fn fails_as_one(&self) -> bool {
        !matches!(self, Link::Cluster(_))
    }

    /// The probe's check: reaches the deployment and says why not. A Sentinel link asks the
    /// sentinels for the primary first and moves to a new one; a Cluster link pings every
    /// master and is up while any answers.
    pub async fn check(&self, timeout: Duration) -> Result<(), String> {
        match self {
            Link::Standalone { conn, .. } => standalone_check(conn.clone(), timeout).await,
            Link::Sentinel(s) => s.check(timeout).await,
            Link::Cluster(c) => c.check(timeout).await,
        }
    }

    /// Clients for the invalidation feed, in the order to try them.
    pub fn feed_clients(&self) -> Vec<redis::Client> {
        match self {
            Link::Standalone { client, .. } => vec![client.clone()],
            Link::Sentinel(s) => s.client().into_iter().collect(),
            Link::Cluster(c) => c.node_clients(),
        }
    }

    /// Every master's keys matching `pattern` (one node outside a Cluster).
    pub async fn scan(&self, pattern: &str) -> redis::RedisResult<Vec<String>> {
        match self {
            Link::Cluster(c) => c.scan(pattern).await,
            _ => {
                let Ok(Conn::Single(mut conn)) = self.conn() else {
                    return Err(redis::RedisError::from((redis::ErrorKind::Io, "no primary is known yet")));
                };
                scan_one(&mut conn, pattern).await
            }
        }
    }

    pub fn nodes(&self) -> Vec<NodeStatus> {
        match self {
            Link::Cluster(c) => c.nodes(),
            _ => Vec::new(),
        }
    }
}

/// A standalone server answers, and is not a Cluster node (whose keys this mode would send
/// to the wrong node: every operation would answer `MOVED`).
async fn standalone_check(mut conn: ConnectionManager, timeout: Duration) -> Result<(), String> {
    let mut info = redis::cmd("INFO");
    info.arg("cluster");
    match tokio::time::timeout(timeout, info.query_async::<String>(&mut conn)).await {
        Ok(Ok(text)) if text.lines().any(|l| l.trim() == "cluster_enabled:1") => {
            Err("the server runs in Cluster mode; set store.mode: cluster".into())
        }
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.kind_text()),
        Err(_) => Err(format!("timed out after {timeout:?}")),
    }
}
