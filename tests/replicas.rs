//! Several Tollgate processes on one real redis-server (and on a real 3-master Redis Cluster):
//! one refresh for a storm of requests across replicas, cache invalidation across processes,
//! surviving a Redis outage, and a Cluster node that is down showing in `/readyz` and metrics.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::oauth::{Hold, TokenEndpoint};
use common::process::TollgateProcess;
use common::redis_server::{RedisCluster, RedisServer};
use common::*;
use tollgate::config::{EncryptionKey, RedisMode, StoreBackend, StoreSettings};
use tollgate::metrics::Metrics;
use tollgate::secret::Secret;
use tollgate::token::crypto::Sealer;
use tollgate::token::store::redis::RedisStore;
use tollgate::token::{Connection, ConnectionKey, Expect, TokenStore};

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// The store as the processes see it (same key), for seeding and inspecting.
fn store(redis: &RedisServer) -> RedisStore {
    store_at(&redis.url(), RedisMode::Standalone)
}

fn store_at(url: &str, mode: RedisMode) -> RedisStore {
    use base64::Engine;
    let key: [u8; 32] = base64::engine::general_purpose::STANDARD.decode(KEY).unwrap().try_into().unwrap();
    let sealer = Sealer::new(&[EncryptionKey { id: "k1".into(), key }]).unwrap();
    let settings = StoreSettings {
        backend: StoreBackend::Memory,
        tls: None,
        timeout: Duration::from_secs(2),
        cache_ttl: Duration::from_secs(30),
        mode,
        replica_acks: 0,
        replica_ack_timeout: Duration::from_millis(500),
    };
    RedisStore::open(url, &settings, sealer, Metrics::new(std::iter::empty()).unwrap()).unwrap()
}

async fn seed(redis: &RedisServer, access: &str, expires_in: i64) {
    seed_into(&store(redis), access, expires_in).await
}

async fn seed_into(store: &RedisStore, access: &str, expires_in: i64) {
    let mut c = Connection::new(Secret::new(access), Some((now() as i64 + expires_in) as u64));
    c.refresh_token = Some(Secret::new("rt-1"));
    store.put(&ConnectionKey::new("crm", "alice"), c, Expect::Any, None).await.unwrap();
}

/// Config for processes: everything on 127.0.0.1 (no DNS), opted into loopback explicitly.
fn process_config(ca: &TestCa, redis: &RedisServer, token_port: u16, upstream_port: u16) -> String {
    let store = format!(r#"{{ backend: redis, redis_url: "{}", cache_ttl: "60s", timeout: "500ms" }}"#, redis.url());
    config_with_store(ca, &store, token_port, upstream_port)
}

fn config_with_store(ca: &TestCa, store: &str, token_port: u16, upstream_port: u16) -> String {
    format!(
        r#"admin_tokens: ["admin-secret-token"]
encryption_keys: [{{ id: k1, secret: "{KEY}" }}]
store: {store}
callers:
  jwt: {{ audience: tollgate, hs256_secret: "{CALLER_SECRET}" }}
upstream: {{ extra_ca_file: {ca}, response_timeout: "30s" }}
refresh: {{ token_endpoint_timeout: "30s", lock_ttl: "40s" }}
connectors:
  - name: crm
    grant: authorization_code
    authorization_endpoint: https://127.0.0.1:{token_port}/authorize
    token_endpoint: https://127.0.0.1:{token_port}/token
    client_id: crm-client
    client_secret: crm-secret
    unsafe_allow_ranges: ["127.0.0.0/8"]
    allowed_domains: ["https://127.0.0.1:{upstream_port}/*"]
"#,
        ca = ca.ca_file.path().display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_refresh_for_300_requests_across_three_replicas() {
    let redis = RedisServer::start();
    let store_yaml =
        format!(r#"{{ backend: redis, redis_url: "{}", cache_ttl: "60s", timeout: "500ms" }}"#, redis.url());
    storm(&store_yaml, store(&redis)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_refresh_for_300_requests_across_three_replicas_on_a_cluster() {
    let mut cluster = RedisCluster::start(3);
    let store_yaml = format!(
        r#"{{ backend: redis, mode: cluster, redis_url: "{}", nodes: ["127.0.0.1:{}"], cache_ttl: "60s", timeout: "500ms" }}"#,
        cluster.url(),
        cluster.nodes[1].port
    );
    let replicas = storm(&store_yaml, store_at(&cluster.url(), RedisMode::Cluster { seeds: Vec::new() })).await;

    // Every master shows in /readyz and in metrics; one that is down shows as down, and the
    // store as a whole stays up for the keys the others hold.
    let admin = replicas[0].admin;
    let ready = get(admin, "/readyz", &[]).await.json();
    assert_eq!(ready["store"]["mode"], "cluster");
    let nodes = ready["store"]["nodes"].as_array().cloned().unwrap_or_default();
    assert_eq!(nodes.len(), 3, "{ready}");
    assert!(nodes.iter().all(|n| n["up"] == true), "{ready}");
    let victim = format!("127.0.0.1:{}", cluster.nodes[2].port);
    cluster.nodes[2].kill();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let ready = get(admin, "/readyz", &[]).await.json();
        let down = ready["store"]["nodes"]
            .as_array()
            .is_some_and(|n| n.iter().any(|n| n["node"] == victim.as_str() && n["up"] == false));
        if down {
            assert_eq!(ready["store"]["up"], true, "one master down leaves the store up: {ready}");
            break;
        }
        assert!(Instant::now() < deadline, "the dead master never showed in /readyz: {ready}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(replicas[0].metric(&format!("tollgate_store_node_up{{node=\"{victim}\"}}")).await, 0.0);
    let alive = format!("127.0.0.1:{}", cluster.nodes[0].port);
    assert_eq!(replicas[0].metric(&format!("tollgate_store_node_up{{node=\"{alive}\"}}")).await, 1.0);
}

/// 300 concurrent requests on an expired token, over three processes sharing the store that
/// `store_yaml` describes: one call to the token endpoint.
async fn storm(store_yaml: &str, store: RedisStore) -> [TollgateProcess; 3] {
    let ca = TestCa::new(&["127.0.0.1"]);
    let upstream = Upstream::ok(&ca).await;
    let admins: Arc<std::sync::Mutex<Vec<std::net::SocketAddr>>> = Arc::default();
    let held_until_250 = Arc::new(AtomicBool::new(false));
    let (a, flag) = (admins.clone(), held_until_250.clone());
    // The endpoint answers only once 250 of the 300 requests are in flight across the replicas.
    let hold: Hold = Arc::new(move || {
        let (admins, flag) = (a.clone(), flag.clone());
        Box::pin(async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                let addrs = admins.lock().unwrap().clone();
                let mut inflight = 0.0;
                for addr in addrs {
                    let body = get(addr, "/metrics", &[]).await.body;
                    inflight += String::from_utf8_lossy(&body)
                        .lines()
                        .find(|l| l.starts_with("tollgate_inflight_requests "))
                        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                        .unwrap_or(0.0);
                }
                if inflight >= 250.0 {
                    flag.store(true, Ordering::SeqCst);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    });
    let endpoint = TokenEndpoint::start(&ca, &["rt-1"], Some(hold)).await;
    seed_into(&store, "at-1", -30).await;
    let config = config_with_store(&ca, store_yaml, endpoint.server.port, upstream.port);
    let replicas = [
        TollgateProcess::start(&config).await,
        TollgateProcess::start(&config).await,
        TollgateProcess::start(&config).await,
    ];
    admins.lock().unwrap().extend(replicas.iter().map(|r| r.admin));

    let auth = bearer(&jwt("alice", serde_json::json!({})));
    let url = format!("https://127.0.0.1:{}/x", upstream.port);
    let handles: Vec<_> = (0..300)
        .map(|i| {
            let (addr, url, auth) = (replicas[i % 3].proxy, url.clone(), auth.clone());
            tokio::spawn(async move { get(addr, &url, &[("proxy-authorization", &auth)]).await.status })
        })
        .collect();
    let mut statuses = Vec::new();
    for h in handles {
        statuses.push(h.await.unwrap());
    }
    assert!(held_until_250.load(Ordering::SeqCst), "the storm never reached 250 requests in flight");
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(endpoint.calls(), 1, "exactly one call to the token endpoint");
    let seen = upstream.requests();
    assert_eq!(seen.len(), 300);
    assert!(seen.iter().all(|s| s.headers["authorization"] == "Bearer at-2"));
    let stored = store.get(&ConnectionKey::new("crm", "alice")).await.unwrap().unwrap();
    assert_eq!(stored.refresh_token.unwrap().expose(), "rt-2");
    let mut refreshes = 0.0;
    for r in &replicas {
        refreshes += r.metric("tollgate_token_refresh_total{connector=\"crm\",result=\"success\"}").await;
    }
    assert_eq!(refreshes, 1.0);
    replicas
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_through_one_replica_empties_the_others_cache() {
    let ca = TestCa::new(&["127.0.0.1"]);
    let redis = RedisServer::start();
    let upstream = Upstream::ok(&ca).await;
    seed(&redis, "at-cached", 3600).await;
    let config = process_config(&ca, &redis, 1, upstream.port);
    let (a, b) = (TollgateProcess::start(&config).await, TollgateProcess::start(&config).await);
    tokio::time::sleep(Duration::from_millis(300)).await; // let both subscribe
    let auth = bearer(&jwt("alice", serde_json::json!({})));
    let url = format!("https://127.0.0.1:{}/x", upstream.port);
    // The second request is served from B's memory, which the caller's connection key then
    // holds on to as well: both must let go.
    for _ in 0..2 {
        assert_eq!(get(b.proxy, &url, &[("proxy-authorization", &auth)]).await.status, 200);
    }
    // B now holds the token in a cache that stays fresh for 60 s; only invalidation can drop it.
    assert!(b.metric("tollgate_token_cache_total{result=\"hit\",tier=\"store\"}").await >= 1.0);
    assert!(b.metric("tollgate_token_cache_total{result=\"hit\",tier=\"memory\"}").await >= 1.0);

    let deleted = send(
        a.admin,
        "DELETE",
        "/admin/connections/crm/alice",
        &[("authorization", "Bearer admin-secret-token")],
        Default::default(),
    )
    .await;
    assert_eq!(deleted.status, 204, "{:?}", deleted.body);
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let answer = get(b.proxy, &url, &[("proxy-authorization", &auth)]).await;
        if answer.status == 401 {
            answer.assert_refused(401, "connection_required");
            break;
        }
        assert!(Instant::now() < deadline, "B still served the deleted connection after a second");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_keeps_cached_tokens_working_and_recovers() {
    let ca = TestCa::new(&["127.0.0.1"]);
    let mut redis = RedisServer::start();
    let upstream = Upstream::ok(&ca).await;
    seed(&redis, "at-alice", 3600).await;
    let mut c = Connection::new(Secret::new("at-bob"), Some(now() + 3600));
    c.refresh_token = Some(Secret::new("rt-b"));
    store(&redis).put(&ConnectionKey::new("crm", "bob"), c, Expect::Any, None).await.unwrap();
    let tollgate = TollgateProcess::start(&process_config(&ca, &redis, 1, upstream.port)).await;
    let url = format!("https://127.0.0.1:{}/x", upstream.port);
    let alice = bearer(&jwt("alice", serde_json::json!({})));
    let bob = bearer(&jwt("bob", serde_json::json!({})));
    assert_eq!(get(tollgate.proxy, &url, &[("proxy-authorization", &alice)]).await.status, 200);

    redis.stop();
    assert_eq!(
        get(tollgate.proxy, &url, &[("proxy-authorization", &alice)]).await.status,
        200,
        "a cached token must keep working"
    );
    let started = Instant::now();
    get(tollgate.proxy, &url, &[("proxy-authorization", &bob)]).await.assert_refused(503, "token_store_unavailable");
    assert!(started.elapsed() < Duration::from_secs(5), "the store outage must fail fast, not hang");
    assert_eq!(tollgate.metric("tollgate_store_up ").await, 0.0);
    let ready = get(tollgate.admin, "/readyz", &[]).await;
    assert_eq!(ready.status, 200, "a Redis outage never makes a replica not-ready");
    assert_eq!(ready.json()["store"]["up"], false);
    assert!(tollgate.metric("tollgate_store_errors_total{op=\"get\"}").await >= 1.0);

    redis.restart();
    seed(&redis, "at-alice", 3600).await;
    let mut c = Connection::new(Secret::new("at-bob"), Some(now() + 3600));
    c.refresh_token = Some(Secret::new("rt-b"));
    store(&redis).put(&ConnectionKey::new("crm", "bob"), c, Expect::Any, None).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = get(tollgate.proxy, &url, &[("proxy-authorization", &bob)]).await.status;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery after Redis came back (last status {status})");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(upstream.requests().last().unwrap().headers["authorization"], "Bearer at-bob");
    assert_eq!(get(tollgate.admin, "/readyz", &[]).await.json()["store"]["up"], true);
    assert_eq!(tollgate.metric("tollgate_store_up ").await, 1.0);
}
