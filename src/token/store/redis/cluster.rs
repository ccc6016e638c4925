//! Redis Cluster: keys routed by slot (every key of one connection shares a hash tag, so a
//! record, its lock and the Lua script that writes them stay on one master), `SCAN` run on
//! every master, and each master's pulse taken by the probe for `/readyz` and
//! `tollgate_store_node_up`.
//!
//! `store.redis_url` is one seed node (its credentials and TLS go to every node) and
//! `store.nodes` may name more. The topology is read from the nodes (`CLUSTER NODES`) at each
//! probe; invalidations travel on classic pub/sub, which a Cluster delivers to every node.

use std::sync::Mutex;
use std::time::Duration;

use prometheus::IntGaugeVec;
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{ConnectionInfo, IntoConnectionInfo};

use super::kind::KindText;
use super::node::{address, scan_one, short_lived, NodeStatus};
use crate::config::{redis_certificates, redis_client, redis_error_reason, RedisTls};

pub struct Cluster {
    conn: ClusterConnection,
    template: ConnectionInfo,
    tls: Option<RedisTls>,
    seeds: Vec<(String, u16)>,
    /// The masters as the probe last found them.
    nodes: Mutex<Vec<NodeStatus>>,
    gauge: IntGaugeVec,
}

impl Cluster {
    pub fn new(
        url: &str,
        tls: Option<&RedisTls>,
        more_seeds: &[(String, u16)],
        timeout: Duration,
        gauge: IntGaugeVec,
    ) -> Result<Cluster, String> {
        let opened = |e: redis::RedisError| format!("cannot be opened by this build: {}", redis_error_reason(&e));
        let template = url.into_connection_info().map_err(opened)?;
        let mut seeds = Vec::new();
        if let redis::ConnectionAddr::Tcp(host, port) | redis::ConnectionAddr::TcpTls { host, port, .. } =
            template.addr()
        {
            seeds.push((host.clone(), *port));
        }
        seeds.extend(more_seeds.iter().cloned());
        let infos: Vec<ConnectionInfo> =
            seeds.iter().map(|(h, p)| template.clone().set_addr(address(&template, h, *p))).collect();
        let mut builder = ClusterClientBuilder::new(infos).retries(2);
        let settings = template.redis_settings();
        if let Some(user) = settings.username() {
            builder = builder.username(user);
        }
        if let Some(password) = settings.password() {
            builder = builder.password(password);
        }
        if matches!(template.addr(), redis::ConnectionAddr::TcpTls { .. }) {
            builder = builder.tls(redis::TlsMode::Secure);
            if let Some(tls) = tls {
                builder = builder.certs(redis_certificates(tls));
            }
        }
        let client = builder.build().map_err(opened)?;
        let config = redis::cluster::ClusterConfig::new().set_connection_timeout(timeout).set_response_timeout(timeout);
        let conn = client.get_pending_async_connection_with_config(config);
        Ok(Cluster { conn, template, tls: tls.cloned(), seeds, nodes: Mutex::new(Vec::new()), gauge })
    }

    pub fn conn(&self) -> ClusterConnection {
        self.conn.clone()
    }

    pub fn nodes(&self) -> Vec<NodeStatus> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn client(&self, host: &str, port: u16) -> Result<redis::Client, String> {
        redis_client(self.template.clone().set_addr(address(&self.template, host, port)), self.tls.as_ref())
    }

    /// The masters first (as last seen), then the seeds: where to ask about the Cluster.
    fn candidates(&self) -> Vec<(String, u16)> {
        let mut out: Vec<(String, u16)> = self.nodes().iter().filter_map(|n| split(&n.node)).collect();
        for seed in &self.seeds {
            if !out.contains(seed) {
                out.push(seed.clone());
            }
        }
        out
    }

    /// Clients for the invalidation feed: any node hears every `PUBLISH` of the Cluster.
    pub fn node_clients(&self) -> Vec<redis::Client> {
        self.candidates().iter().filter_map(|(h, p)| self.client(h, *p).ok()).collect()
    }

    /// Every master of the Cluster, by the first node that describes it.
    async fn masters(&self, timeout: Duration) -> Result<Vec<(String, u16)>, String> {
        let mut failures = Vec::new();
        for (host, port) in self.candidates() {
            let answer = async {
                let client = self.client(&host, port).map_err(|e| (redis::ErrorKind::Io, "client", e))?;
                let mut conn = client.get_multiplexed_async_connection_with_config(&short_lived(timeout)).await?;
                redis::cmd("CLUSTER").arg("NODES").query_async::<String>(&mut conn).await
            };
            match tokio::time::timeout(timeout * 2, answer).await {
                Ok(Ok(text)) => return Ok(parse_masters(&text)),
                Ok(Err(e)) => failures.push(format!("{host}:{port}: {}", e.kind_text())),
                Err(_) => failures.push(format!("{host}:{port}: timed out")),
            }
        }
        Err(format!("no Cluster node answered ({})", failures.join("; ")))
    }

    /// Pings every master; up while any answers. Each master's state goes to `/readyz` and
    /// `tollgate_store_node_up`.
    pub async fn check(&self, timeout: Duration) -> Result<(), String> {
        let masters = self.masters(timeout).await?;
        let mut statuses = Vec::new();
        for (host, port) in masters {
            let ping = async {
                let client = self.client(&host, port).map_err(|e| (redis::ErrorKind::Io, "client", e))?;
                let mut conn = client.get_multiplexed_async_connection_with_config(&short_lived(timeout)).await?;
                redis::cmd("PING").query_async::<String>(&mut conn).await
            };
            let error = match tokio::time::timeout(timeout * 2, ping).await {
                Ok(Ok(_)) => None,
                Ok(Err(e)) => Some(e.kind_text()),
                Err(_) => Some("timed out".to_string()),
            };
            statuses.push(NodeStatus { node: format!("{host}:{port}"), up: error.is_none(), error });
        }
        self.gauge.reset();
        for status in &statuses {
            self.gauge.with_label_values(&[&status.node]).set(i64::from(status.up));
        }
        let down: Vec<String> = statuses.iter().filter(|s| !s.up).map(|s| s.node.clone()).collect();
        let all_down = !statuses.is_empty() && down.len() == statuses.len();
        *self.nodes.lock().unwrap_or_else(|p| p.into_inner()) = statuses;
        if all_down {
            return Err(format!("no Cluster master answers ({})", down.join(", ")));
        }
        if !down.is_empty() {
            tracing::warn!(nodes = %down.join(", "), "Redis Cluster masters do not answer; their keys wait for a failover");
        }
        Ok(())
    }

    /// `SCAN` on every master; fails if one cannot be read (a partial list would mislead).
    pub async fn scan(&self, pattern: &str) -> redis::RedisResult<Vec<String>> {
        let timeout = Duration::from_secs(2);
        let masters =
            self.masters(timeout).await.map_err(|e| redis::RedisError::from((redis::ErrorKind::Io, "masters", e)))?;
        let mut out = Vec::new();
        for (host, port) in masters {
            let client =
                self.client(&host, port).map_err(|e| redis::RedisError::from((redis::ErrorKind::Io, "client", e)))?;
            let mut conn = client.get_multiplexed_async_connection_with_config(&short_lived(timeout)).await?;
            out.extend(scan_one(&mut conn, pattern).await?);
        }
        Ok(out)
    }
}

fn split(node: &str) -> Option<(String, u16)> {
    let (host, port) = node.rsplit_once(':')?;
    Some((host.to_string(), port.parse().ok()?))
}

/// Masters from `CLUSTER NODES` lines: `<id> <ip:port@cport[,hostname]> <flags> ...`. A
/// master marked `fail` is kept: it is how a node that is down shows.
fn parse_masters(text: &str) -> Vec<(String, u16)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(addr), Some(flags)) = (fields.get(1), fields.get(2)) else { continue };
        if !flags.split(',').any(|f| f == "master") || flags.split(',').any(|f| f == "noaddr") {
            continue;
        }
        let (ip_port, hostname) = match addr.split_once(',') {
            Some((a, h)) if !h.is_empty() => (a, Some(h)),
            Some((a, _)) => (a, None),
            None => (*addr, None),
        };
        let ip_port = ip_port.split('@').next().unwrap_or(ip_port);
        let Some((ip, port)) = split(ip_port) else { continue };
        out.push((hostname.map(str::to_string).unwrap_or(ip), port));
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::parse_masters;

    #[test]
    fn masters_from_cluster_nodes() {
        let text = "\
a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7002@17002 master,fail - 1 1 2 disconnected 5461-10922
c3 127.0.0.1:7004@17004 slave a1 0 1 4 connected
d4 10.0.0.3:7003@17003,redis-3.internal master - 0 1 3 connected 10923-16383
e5 :0@0 master,noaddr - 0 0 5 disconnected
";
        assert_eq!(
            parse_masters(text),
            [("127.0.0.1".to_string(), 7001), ("127.0.0.1".to_string(), 7002), ("redis-3.internal".to_string(), 7003)]
        );
    }
}
