//! The token store on Redis over TLS, against a real redis-server listening with TLS (Debian's
//! is built with it) and certificates minted per test: a private CA file, client certificates
//! (mutual TLS), the system's roots (here: `SSL_CERT_FILE`, which they honour), and a wrong CA,
//! which fails with a message that says so.

mod common;

use std::time::Duration;

use common::process::TollgateProcess;
use common::redis_server::RedisServer;
use common::*;
use tollgate::secret::Secret;
use tollgate::token::{Connection, ConnectionKey, Expect};

/// A test config on `url` with `tls` (YAML for `store.tls`, or nothing).
fn config(ca: &TestCa, url: &str, tls: &str) -> String {
    format!(
        "{}\nstore: {{ backend: redis, redis_url: \"{url}\", timeout: \"2s\"{tls} }}\nconnectors:\n  - {{ name: crm, token: \"crm-key-123456\", allowed_domains: [\"https://api.crm.test/*\"] }}\n",
        base_config(ca)
    )
}

/// The store's answer to a ping, as the running proxy sees it.
async fn ping(proxy: &TestProxy) -> Result<(), String> {
    proxy.running.store().ping().await.map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_ca_and_a_client_certificate() {
    let ca = TestCa::new(&["127.0.0.1"]);
    let (redis, _files) = RedisServer::start_tls(&ca, true);
    let (cert, key) = ca.another_leaf("tollgate");
    let tls = format!(
        ", tls: {{ ca_file: {}, cert_file: {}, key_file: {} }}",
        ca.ca_file.path().display(),
        cert.path().display(),
        key.path().display()
    );
    let proxy = TestProxy::start(&config(&ca, &redis.tls_url(), &tls)).await;
    assert_eq!(ping(&proxy).await, Ok(()));
    let key_of = ConnectionKey::new("crm", "alice");
    let mut connection = Connection::new(Secret::new("at-over-tls"), None);
    connection.refresh_token = Some(Secret::new("rt-over-tls"));
    proxy.running.store().put(&key_of, connection, Expect::Any, None).await.unwrap();
    let read = proxy.running.store().get(&key_of).await.unwrap().unwrap();
    assert_eq!(read.access_token.expose(), "at-over-tls");
    // It went to this Redis (read back on its plain port), sealed.
    let mut raw = redis.connection();
    let record = tollgate::token::store::redis::record_key(&key_of);
    let dump: Vec<String> = redis::cmd("HVALS").arg(&record).query(&mut raw).unwrap();
    assert_eq!(dump.len(), 2, "the record is in this Redis");
    assert!(!dump.concat().contains("at-over-tls"));
    let ready = get(proxy.running.admin_addr, "/readyz", &[]).await.json();
    assert_eq!(ready["store"]["up"], true, "{ready}");

    // The same server, without the client certificate: refused by the server.
    let without = format!(", tls: {{ ca_file: {} }}", ca.ca_file.path().display());
    let refused = TestProxy::start(&config(&ca, &redis.tls_url(), &without)).await;
    assert!(ping(&refused).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_fails_and_says_so() {
    let ca = TestCa::new(&["127.0.0.1"]);
    let (redis, _files) = RedisServer::start_tls(&ca, false);
    let other = TestCa::new(&["127.0.0.1"]);
    let tls = format!(", tls: {{ ca_file: {} }}", other.ca_file.path().display());
    let proxy = TestProxy::start(&config(&ca, &redis.tls_url(), &tls)).await;
    let error = ping(&proxy).await.expect_err("a server whose certificate the CA did not sign");
    assert!(error.contains("certificate") && error.contains("store.tls.ca_file"), "{error}");
    // With the right CA the same server answers.
    let tls = format!(", tls: {{ ca_file: {} }}", ca.ca_file.path().display());
    let right = TestProxy::start(&config(&ca, &redis.tls_url(), &tls)).await;
    assert_eq!(ping(&right).await, Ok(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_the_system_roots() {
    let ca = TestCa::new(&["127.0.0.1"]);
    let (redis, _files) = RedisServer::start_tls(&ca, false);
    let yaml = format!(
        "admin_tokens: [\"admin-secret-token\"]\nencryption_keys: [{{ id: k1, secret: \"{KEY}\" }}]\nstore: {{ backend: redis, redis_url: \"{}\" }}\n",
        redis.tls_url()
    );
    // rustls-native-certs reads SSL_CERT_FILE as the system's roots.
    let ca_path = ca.ca_file.path().display().to_string();
    let tollgate = TollgateProcess::start_with(&yaml, None, &[("SSL_CERT_FILE", &ca_path)]).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ready = get(tollgate.admin, "/readyz", &[]).await.json();
        if ready["store"]["up"] == true {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the store never came up: {ready}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Without the CA among its roots, the same server is not trusted.
    let untrusted = TollgateProcess::start_with(&yaml, None, &[("SSL_CERT_FILE", "/dev/null")]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(get(untrusted.admin, "/readyz", &[]).await.json()["store"]["up"], false);
}
