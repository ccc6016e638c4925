//! The store's health is kept by a background probe (token/store/health.rs), not by traffic:
//! `tollgate_store_up` follows a real redis-server going away and coming back with nothing
//! but Prometheus scrapes, and while the store is known down a request whose token is cached
//! is served from the cache and one whose token is not fails with `503` (without waiting for
//! a store timeout: `make bench-load outage` measures that).

mod common;

use std::time::{Duration, Instant};

use common::process::TollgateProcess;
use common::redis_server::RedisServer;
use common::*;
use tollgate::secret::Secret;
use tollgate::token::{Connection, ConnectionKey, Expect, TokenStore};

fn config(ca: &TestCa, redis: &RedisServer, upstream_port: u16) -> String {
    format!(
        r#"admin_tokens: ["admin-secret-token"]
encryption_keys: [{{ id: k1, secret: "{KEY}" }}]
store: {{ backend: redis, redis_url: "{redis}", cache_ttl: "1s", timeout: "2s" }}
callers:
  jwt: {{ audience: tollgate, hs256_secret: "{CALLER_SECRET}" }}
upstream: {{ extra_ca_file: {ca} }}
connectors:
  - name: crm
    grant: authorization_code
    authorization_endpoint: https://127.0.0.1:1/authorize
    token_endpoint: https://127.0.0.1:1/token
    client_id: crm-client
    unsafe_allow_ranges: ["127.0.0.0/8"]
    allowed_domains: ["https://127.0.0.1:{upstream_port}/*"]
"#,
        redis = redis.url(),
        ca = ca.ca_file.path().display()
    )
}

/// Scrapes until `tollgate_store_up` reads `want`, within `within`.
async fn store_up_becomes(tollgate: &TollgateProcess, want: f64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let up = tollgate.metric("tollgate_store_up ").await;
        if up == want {
            return;
        }
        assert!(Instant::now() < deadline, "tollgate_store_up stayed {up}, want {want}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_up_follows_redis_with_scrapes_alone() {
    let ca = TestCa::new(&["127.0.0.1"]);
    let mut redis = RedisServer::start();
    let tollgate = TollgateProcess::start(&config(&ca, &redis, 1)).await;
    store_up_becomes(&tollgate, 1.0, Duration::from_secs(5)).await;
    redis.stop();
    // No request, no /readyz: only the probe (every 5 s while up) can notice.
    store_up_becomes(&tollgate, 0.0, Duration::from_secs(15)).await;
    redis.restart();
    store_up_becomes(&tollgate, 1.0, Duration::from_secs(10)).await;
    assert_eq!(tollgate.metric("tollgate_requests_total{").await, 0.0, "no request was made");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_store_is_down_cached_tokens_serve_and_the_rest_fail_fast() {
    let ca = TestCa::new(&["127.0.0.1"]);
    let mut redis = RedisServer::start();
    let upstream = Upstream::ok(&ca).await;
    let store = tollgate::token::store::redis::RedisStore::new(
        &redis.url(),
        tollgate::token::crypto::Sealer::new(&[tollgate::config::EncryptionKey {
            id: "k1".into(),
            key: base64::Engine::decode(&base64::engine::general_purpose::STANDARD, KEY).unwrap().try_into().unwrap(),
        }])
        .unwrap(),
        Duration::from_secs(2),
        tollgate::metrics::Metrics::new(std::iter::empty()).unwrap(),
    )
    .unwrap();
    let expires = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600;
    store
        .put(
            &ConnectionKey::new("crm", "alice"),
            Connection::new(Secret::new("at-alice"), Some(expires)),
            Expect::Any,
            None,
        )
        .await
        .unwrap();
    let tollgate = TollgateProcess::start(&config(&ca, &redis, upstream.port)).await;
    let url = format!("https://127.0.0.1:{}/x", upstream.port);
    let (alice, bob) = (bearer(&jwt("alice", serde_json::json!({}))), bearer(&jwt("bob", serde_json::json!({}))));
    assert_eq!(get(tollgate.proxy, &url, &[("proxy-authorization", &alice)]).await.status, 200);

    redis.stop();
    // Past the cache TTL (1 s), every request asks the store first; the first failure marks
    // it down, and from then on the store is not waited for.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for _ in 0..20 {
        assert_eq!(get(tollgate.proxy, &url, &[("proxy-authorization", &alice)]).await.status, 200);
    }
    let refused = get(tollgate.proxy, &url, &[("proxy-authorization", &bob)]).await;
    let message =
        refused.assert_refused(503, "token_store_unavailable")["message"].as_str().unwrap_or_default().to_string();
    assert!(message.contains("down"), "{message}");
    assert_eq!(tollgate.metric("tollgate_store_up ").await, 0.0);
    assert_eq!(upstream.requests().len(), 21);

    redis.restart();
    store_up_becomes(&tollgate, 1.0, Duration::from_secs(10)).await;
    // The store is read again: alice's record is gone with the restarted (empty) Redis.
    let deadline = Instant::now() + Duration::from_secs(5);
    while get(tollgate.proxy, &url, &[("proxy-authorization", &alice)]).await.status != 401 {
        assert!(Instant::now() < deadline, "the store was not read again after it came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
