//! Per-connection health on a real redis-server: `unknown` until the first call or test, then
//! what real traffic says (an upstream 401 that a renewal cannot fix is `unhealthy`), written
//! once for many requests (coalesced, not a store write per request); "Test connection" runs
//! the connector's `health_check` with one user's token, by an admin or by the user on the
//! proxy listener; the lifecycle sweep counts connections by state and health.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::oauth::{Mode, TokenEndpoint};
use common::redis_server::RedisServer;
use common::*;
use http::{Response, StatusCode};
use serde_json::{json, Value};
use tollgate::config::env::Environment;
use tollgate::secret::Secret;
use tollgate::token::{Connection, ConnectionKey, Expect};

const ADMIN: (&str, &str) = ("authorization", "Bearer admin-secret-token");

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

async fn admin_json(admin: std::net::SocketAddr, method: &str, path: &str) -> Value {
    let answer = send(admin, method, path, &[ADMIN], Bytes::new()).await;
    assert_eq!(answer.status, 200, "{method} {path}: {:?}", answer.body);
    serde_json::from_slice(&answer.body).unwrap()
}

async fn connection(admin: std::net::SocketAddr, user: &str) -> Value {
    admin_json(admin, "GET", &format!("/admin/connections?connector=crm&principal={user}")).await["connections"][0]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_and_tests_set_each_connections_health() {
    let ca = TestCa::new(&["api.crm.test", "auth.test"]);
    let redis = RedisServer::start();
    // The API takes alice's token only; /user is the health check.
    let api = Upstream::with(&ca, |req| async move {
        let good = req.headers().get("authorization").is_some_and(|v| v == "Bearer at-alice");
        let mut r = Response::new(full(if good { r#"{"login":"alice"}"# } else { r#"{"message":"Bad credentials"}"# }));
        if !good {
            *r.status_mut() = StatusCode::UNAUTHORIZED;
        }
        r
    })
    .await;
    let endpoint = TokenEndpoint::start(&ca, &[], None).await;
    // Renewals fail for now: a refused token stays refused.
    endpoint.set_mode(Mode::Status(503));
    let yaml = format!(
        r#"{base}
store: {{ backend: redis, redis_url: "{redis}" }}
refresh: {{ token_endpoint_timeout: "2s", lock_ttl: "5s", retry_backoff: "1s" }}
events: {{ sweep_interval: 1s }}
connectors:
  - name: crm
    grant: authorization_code
    authorization_endpoint: https://auth.test:{auth}/authorize
    token_endpoint: https://auth.test:{auth}/token
    client_id: crm-client
    client_secret: crm-secret
    allowed_domains: ["https://api.crm.test:{port}/*"]
    health_check: {{ url: "https://api.crm.test:{port}/user" }}
  - name: wiki
    grant: authorization_code
    authorization_endpoint: https://auth.test:{auth}/authorize
    token_endpoint: https://auth.test:{auth}/token
    client_id: wiki-client
    allowed_domains: ["https://api.crm.test:{port}/wiki/*"]
"#,
        base = base_config(&ca),
        redis = redis.url(),
        auth = endpoint.server.port,
        port = api.port
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), yaml).unwrap();
    let running = start_from_file(file.path(), &Environment::from_vars([("UNUSED", "x")])).await;
    let store = running.store().clone();
    for (connector, user) in [("crm", "alice"), ("crm", "bob"), ("wiki", "alice")] {
        let mut c = Connection::new(Secret::new(format!("at-{user}")), Some(now() + 3600));
        c.refresh_token = Some(Secret::new(format!("rt-{user}")));
        store.put(&ConnectionKey::new(connector, user), c, Expect::Any, None).await.unwrap();
    }
    let admin = running.admin_addr;
    assert_eq!(connection(admin, "alice").await["health"], "unknown", "a fresh connection is unknown");

    // Fifty tool calls by alice: one write records them.
    let version = |user: &'static str| {
        let store = store.clone();
        async move { store.get(&ConnectionKey::new("crm", user)).await.unwrap().unwrap().version }
    };
    let before = version("alice").await;
    let url = format!("https://api.crm.test:{}/data", api.port);
    let as_user = |user: &str| bearer(&jwt(user, json!({})));
    for _ in 0..50 {
        let answer = get(running.proxy_addr, &url, &[("proxy-authorization", &as_user("alice"))]).await;
        assert_eq!(answer.status, 200);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while connection(admin, "alice").await["health"] != "healthy" {
        assert!(Instant::now() < deadline, "alice's health was never written: {}", connection(admin, "alice").await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(version("alice").await, before + 1, "fifty requests, one write");
    let alice = connection(admin, "alice").await;
    assert!(alice["last_success_at"].as_u64().unwrap() + 30 > now(), "{alice}");
    // Once recorded healthy, more traffic writes nothing.
    for _ in 0..20 {
        get(running.proxy_addr, &url, &[("proxy-authorization", &as_user("alice"))]).await;
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(version("alice").await, before + 1);

    // Bob's token is refused and cannot be renewed: unhealthy, with the code.
    let refused = get(running.proxy_addr, &url, &[("proxy-authorization", &as_user("bob"))]).await;
    assert_eq!(refused.status, 401, "the upstream's own 401 is relayed");
    let deadline = Instant::now() + Duration::from_secs(15);
    while connection(admin, "bob").await["health"] != "unhealthy" {
        assert!(Instant::now() < deadline, "bob's failure was never written: {}", connection(admin, "bob").await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(connection(admin, "bob").await["last_error"], "upstream_401");

    // Test connection: by an admin for alice, by bob for himself on the proxy listener.
    let tested = admin_json(admin, "POST", "/admin/connections/crm/alice/test").await;
    assert_eq!((tested["health"].as_str(), tested["status"].as_u64()), (Some("healthy"), Some(200)), "{tested}");
    let probes = api.requests().iter().filter(|r| r.path_and_query == "/user").count();
    assert_eq!(probes, 1);
    let own = send(
        running.proxy_addr,
        "POST",
        "/connections/crm/test",
        &[("proxy-authorization", &as_user("bob"))],
        Bytes::new(),
    )
    .await;
    assert_eq!(own.status, 200, "{:?}", own.body);
    let own: Value = serde_json::from_slice(&own.body).unwrap();
    assert_eq!((own["health"].as_str(), own["error"].as_str()), (Some("unhealthy"), Some("upstream_401")), "{own}");
    assert!(!own.to_string().contains("at-bob"), "{own}");
    // Bob's token works again after a reconnect-like change; his test says so at once.
    let mut fixed = Connection::new(Secret::new("at-alice"), Some(now() + 3600));
    fixed.refresh_token = Some(Secret::new("rt-bob-2"));
    store.put(&ConnectionKey::new("crm", "bob"), fixed, Expect::Any, None).await.unwrap();
    // (Every replica's cache hears of the write through Redis.)
    tokio::time::sleep(Duration::from_millis(300)).await;
    let own = send(
        running.proxy_addr,
        "POST",
        "/connections/crm/test",
        &[("proxy-authorization", &as_user("bob"))],
        Bytes::new(),
    )
    .await;
    assert_eq!(serde_json::from_slice::<Value>(&own.body).unwrap()["health"], "healthy");
    assert_eq!(connection(admin, "bob").await["health"], "healthy", "the test's outcome is stored at once");
    // Without a health_check there is nothing to test.
    let wiki = admin_json(admin, "POST", "/admin/connections/wiki/alice/test").await;
    assert_eq!(wiki["health"], "unknown");
    // Someone with no connection gets the refusal a tool call would.
    send(admin, "POST", "/admin/connections/crm/carol/test", &[ADMIN], Bytes::new())
        .await
        .assert_refused(401, "connection_required");

    // The sweep counts connections by state and health.
    let series = r#"tollgate_connections{connector="crm",health="healthy",state="connected"}"#;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = String::from_utf8(get(admin, "/metrics", &[]).await.body.to_vec()).unwrap();
        let value =
            text.lines().find(|l| l.starts_with(series)).and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
        if value == Some(2.0) {
            assert!(text.contains(r#"tollgate_connections{connector="wiki",health="unknown",state="connected"} 1"#));
            break;
        }
        assert!(Instant::now() < deadline, "{series} is {value:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    running.shutdown().await;
}
