//! A client connection remembers the last caller credential it verified, and the process
//! remembers credentials any connection verified. These tests hold one kept-alive connection
//! and open new ones, and check that neither memory outlives what made the credential valid:
//! the config it was verified against, the JWT's expiry, the exact bytes.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::BodyExt;
use hyper::client::conn::http1::SendRequest;
use tollgate::config::Environment;
use tollgate::live::reload::reload_file;

const KEY: &str = "svc-key-0123456789";

fn config(ca: &TestCa, port: u16, with_key: bool) -> String {
    let hash: String = ring::digest::digest(&ring::digest::SHA256, KEY.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let keys = if with_key {
        format!("  api_keys:\n    - name: billing-worker\n      sha256: {hash}\n      connectors: [weather]\nupstream:")
    } else {
        "upstream:".to_string()
    };
    base_config(ca).replace("upstream:", &keys)
        + &format!(
            "connectors:\n  - name: weather\n    token: \"weather-key\"\n    allowed_domains: [\"https://api.test:{port}/*\"]\n"
        )
}

/// One kept-alive client connection to the proxy.
struct Connection(SendRequest<http_body_util::Empty<Bytes>>);

impl Connection {
    async fn open(addr: std::net::SocketAddr) -> Connection {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        Connection(sender)
    }

    async fn get(&mut self, url: &str, credential: &str) -> (u16, String) {
        self.0.ready().await.expect("the connection stayed open");
        let request = http::Request::get(url)
            .header("proxy-authorization", credential)
            .body(http_body_util::Empty::new())
            .unwrap();
        let response = self.0.send_request(request).await.unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

#[tokio::test]
async fn a_reload_that_removes_an_api_key_refuses_it_on_open_connections() {
    let ca = TestCa::new(&["api.test"]);
    let upstream = Upstream::ok(&ca).await;
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), config(&ca, upstream.port, true)).unwrap();
    let env = Environment::from_vars([("UNUSED", "x")]);
    let running = start_from_file(file.path(), &env).await;
    let url = format!("https://api.test:{}/x", upstream.port);
    let key = format!("Bearer {KEY}");
    let mut connection = Connection::open(running.proxy_addr).await;
    for _ in 0..2 {
        let (status, body) = connection.get(&url, &key).await;
        assert_eq!(status, 200, "{body}");
    }
    // Other bytes on the same connection are verified for themselves, not taken for the key.
    let (status, body) = connection.get(&url, "Bearer svc-key-0123456780").await;
    assert_eq!(status, 407, "{body}");
    assert_eq!(connection.get(&url, &key).await.0, 200);
    // A new connection finds the key verified by the first one; near-misses are still refused.
    let mut other = Connection::open(running.proxy_addr).await;
    assert_eq!(other.get(&url, &key).await.0, 200);
    assert_eq!(other.get(&url, "Bearer svc-key-0123456780").await.0, 407);

    std::fs::write(file.path(), config(&ca, upstream.port, false)).unwrap();
    reload_file(&running.shared, file.path(), &env).unwrap();
    let (status, body) = connection.get(&url, &key).await;
    assert_eq!(status, 407, "the removed key still worked on an open connection: {body}");
    assert!(body.contains("caller_unauthenticated"), "{body}");
    let (status, body) = Connection::open(running.proxy_addr).await.get(&url, &key).await;
    assert_eq!(status, 407, "the removed key still worked on a new connection: {body}");
    assert_eq!(upstream.requests().len(), 4);
}

#[tokio::test]
async fn a_remembered_jwt_stops_working_when_it_expires() {
    let ca = TestCa::new(&["api.test"]);
    let upstream = Upstream::ok(&ca).await;
    let proxy = TestProxy::start(&config(&ca, upstream.port, false)).await;
    let url = format!("https://api.test:{}/x", upstream.port);
    // Expired 28 s ago: still inside the 30 s leeway for about two more seconds.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let token = bearer(&jwt("alice", serde_json::json!({ "exp": now - 28 })));
    let mut connection = Connection::open(proxy.addr()).await;
    let (status, body) = connection.get(&url, &token).await;
    assert_eq!(status, 200, "{body}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (status, body) = connection.get(&url, &token).await;
    assert_eq!(status, 407, "an expired JWT was still accepted on its connection: {body}");
    assert!(body.contains("expired"), "{body}");
    let (status, body) = Connection::open(proxy.addr()).await.get(&url, &token).await;
    assert_eq!(status, 407, "an expired JWT was still accepted on a new connection: {body}");
}
