//! One Redis node, whatever the deployment: the reconnecting connection manager, addresses
//! in the URL's scheme, short-lived connections for one question, a node's status, and a
//! `SCAN` to the end. What `link.rs`, `sentinel.rs` and `cluster.rs` share.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};

use super::kind::KindText;

/// A connection manager that reconnects by itself, with the store's timeouts.
pub fn manager(client: redis::Client, timeout: Duration) -> Result<ConnectionManager, String> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500));
    ConnectionManager::new_lazy_with_config(client, config).map_err(|e| e.kind_text())
}

/// The address `host:port` with the scheme (TLS or not) of `template`.
pub fn address(template: &redis::ConnectionInfo, host: &str, port: u16) -> redis::ConnectionAddr {
    match template.addr() {
        redis::ConnectionAddr::TcpTls { .. } => {
            redis::ConnectionAddr::TcpTls { host: host.to_string(), port, insecure: false, tls_params: None }
        }
        _ => redis::ConnectionAddr::Tcp(host.to_string(), port),
    }
}

/// Settings for a connection opened for one question (a sentinel, a Cluster node's pulse).
pub fn short_lived(timeout: Duration) -> redis::AsyncConnectionConfig {
    redis::AsyncConnectionConfig::new().set_connection_timeout(Some(timeout)).set_response_timeout(Some(timeout))
}

/// One node's state as the probe last saw it (Cluster mode), for `/readyz`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeStatus {
    pub node: String,
    pub up: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `SCAN` one node to the end.
pub async fn scan_one(conn: &mut impl ConnectionLike, pattern: &str) -> redis::RedisResult<Vec<String>> {
    let mut cursor: u64 = 0;
    let mut out = Vec::new();
    loop {
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(500);
        let (next, keys): (u64, Vec<String>) = scan.query_async(conn).await?;
        out.extend(keys);
        if next == 0 {
            return Ok(out);
        }
        cursor = next;
    }
}
