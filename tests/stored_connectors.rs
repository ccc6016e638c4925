//! Connectors stored through the admin API: created, changed and deleted with `PUT` and
//! `DELETE /admin/connectors/{name}`, secrets write-only, file connectors read-only, and every
//! change reaching every replica (real redis-server, separate stores) within a second,
//! including the tools that use the connector.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::redis_server::RedisServer;
use common::*;
use serde_json::json;
use tollgate::config::{Config, Environment};

const ADMIN: (&str, &str) = ("authorization", "Bearer admin-secret-token");

fn yaml(ca: &TestCa, store: &str, upstream_port: u16) -> String {
    format!(
        r#"{base}
{store}
connectors:
  - name: weather
    token: "weather-key-file-123456"
    allowed_domains: ["https://api.weather.test:{upstream_port}/*"]
tools:
  - name: forecast
    connector: weather
"#,
        base = base_config(ca)
    )
}

fn body(value: serde_json::Value) -> Bytes {
    Bytes::from(value.to_string())
}

async fn put(proxy: &TestProxy, name: &str, value: serde_json::Value) -> Answer {
    send(proxy.running.admin_addr, "PUT", &format!("/admin/connectors/{name}"), &[ADMIN], body(value)).await
}

async fn delete(proxy: &TestProxy, name: &str) -> Answer {
    send(proxy.running.admin_addr, "DELETE", &format!("/admin/connectors/{name}"), &[ADMIN], Bytes::new()).await
}

/// A tool call through the proxy, naming the tool.
async fn call(proxy: &TestProxy, tool: &str, url: &str) -> Answer {
    let auth = bearer(&jwt("alice", json!({})));
    get(proxy.addr(), url, &[("proxy-authorization", &auth), ("x-tollgate-tool", tool)]).await
}

/// Polls `check` until it holds or a second has passed since `since`.
async fn within_a_second<F, Fut>(since: Instant, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    loop {
        if check().await {
            return;
        }
        assert!(since.elapsed() < Duration::from_secs(1), "{what}: not seen within a second");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn create_change_and_delete_a_stored_connector() {
    let ca = TestCa::new(&["api.crm.test", "api.weather.test"]);
    let upstream = Upstream::ok(&ca).await;
    let port = upstream.port;
    let proxy = TestProxy::start(&yaml(&ca, "", port)).await;
    let admin = proxy.running.admin_addr;
    let v1 = format!("https://api.crm.test:{port}/v1/items");
    let v2 = format!("https://api.crm.test:{port}/v2/items");

    call(&proxy, "crm-notes", &v1).await.assert_refused(400, "connector_unknown");
    let created = put(
        &proxy,
        "crm",
        json!({
            "grant": "static",
            "token": "crm-token-canary-1111",
            "allowed_domains": [format!("https://api.crm.test:{port}/v1/*")],
            "tools": ["crm-notes"],
        }),
    )
    .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert!(!String::from_utf8_lossy(&created.body).contains("crm-token-canary"), "the secret was shown");
    let view = created.json();
    assert_eq!(view["source"], "store");
    assert_eq!(view["token"], "•••• 1111");
    assert_eq!(view["tools"], json!(["crm-notes"]));
    assert_eq!(get(admin, "/admin/connectors/crm-notes", &[ADMIN]).await.json()["name"], "crm");
    assert_eq!(get(admin, "/admin/connectors/weather", &[ADMIN]).await.json()["source"], "file");

    assert_eq!(call(&proxy, "crm-notes", &v1).await.status, 200);
    assert_eq!(upstream.requests().last().unwrap().headers["authorization"], "Bearer crm-token-canary-1111");
    call(&proxy, "crm-notes", &v2).await.assert_refused(403, "endpoint_not_allowed");

    // A change without the token keeps it, and cascades to the tool.
    let changed = put(
        &proxy,
        "crm",
        json!({ "grant": "static", "allowed_domains": [format!("https://api.crm.test:{port}/v2/*")], "tools": ["crm-notes"] }),
    )
    .await;
    assert_eq!(changed.status, 200, "{:?}", changed.body);
    assert_eq!(changed.json()["token"], "•••• 1111");
    call(&proxy, "crm-notes", &v1).await.assert_refused(403, "endpoint_not_allowed");
    assert_eq!(call(&proxy, "crm-notes", &v2).await.status, 200);
    assert_eq!(upstream.requests().last().unwrap().headers["authorization"], "Bearer crm-token-canary-1111");

    // A file reload keeps the stored connectors.
    let file = Config::from_yaml(&yaml(&ca, "", port), &Environment::from_vars([("UNUSED", "x")])).unwrap();
    proxy.running.shared.apply(file).unwrap();
    assert_eq!(call(&proxy, "crm-notes", &v2).await.status, 200);

    // The file's names are read-only, and no stored connector may take them.
    let file_refusal = put(&proxy, "weather", json!({ "token": "x", "allowed_domains": ["https://x.test/*"] })).await;
    file_refusal.assert_refused(409, "conflict");
    put(&proxy, "forecast", json!({})).await.assert_refused(409, "conflict");
    put(&proxy, "crm-notes", json!({})).await.assert_refused(409, "conflict");
    delete(&proxy, "weather").await.assert_refused(409, "conflict");
    let clash = put(
        &proxy,
        "other",
        json!({ "token": "t-123456789012", "allowed_domains": ["https://other.test/*"], "tools": ["forecast"] }),
    )
    .await;
    let refusal = clash.assert_refused(409, "conflict");
    assert!(refusal["message"].as_str().unwrap().contains("connectors.other.tools[0]"), "{refusal}");

    // Invalid bodies are refused with the field that is wrong; nothing is written.
    let unsafe_ranges = put(
        &proxy,
        "risky",
        json!({ "token": "t", "allowed_domains": ["https://r.test/*"], "unsafe_allow_ranges": ["10.0.0.0/8"] }),
    )
    .await;
    let refusal = unsafe_ranges.assert_refused(400, "invalid_request");
    assert!(refusal["message"].as_str().unwrap().contains("connectors.risky.unsafe_allow_ranges"), "{refusal}");
    let bad_pattern = put(&proxy, "bad", json!({ "token": "t", "allowed_domains": ["https://*/*"] })).await;
    let refusal = bad_pattern.assert_refused(400, "invalid_request");
    assert!(refusal["message"].as_str().unwrap().contains("connectors.bad.allowed_domains[0]"), "{refusal}");
    put(&proxy, "Bad%20Name", json!({})).await.assert_refused(400, "invalid_request");
    send(admin, "PUT", "/admin/connectors/bad", &[ADMIN], Bytes::from("not json"))
        .await
        .assert_refused(400, "invalid_request");
    get(admin, "/admin/connectors/risky", &[ADMIN]).await.assert_refused(400, "connector_unknown");
    send(admin, "PUT", "/admin/connectors/crm", &[], body(json!({})))
        .await
        .assert_refused(401, "caller_unauthenticated");

    let listed = get(admin, "/admin/connectors", &[ADMIN]).await;
    assert!(!String::from_utf8_lossy(&listed.body).contains("canary"), "a secret was listed");
    let names: Vec<String> =
        listed.json()["connectors"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().into()).collect();
    assert_eq!(names, ["weather", "crm"]);

    assert_eq!(delete(&proxy, "crm").await.status, 204);
    call(&proxy, "crm-notes", &v2).await.assert_refused(400, "connector_unknown");
    get(admin, "/admin/connectors/crm", &[ADMIN]).await.assert_refused(400, "connector_unknown");
    delete(&proxy, "crm").await.assert_refused(404, "not_found");
    assert_eq!(call(&proxy, "forecast", &format!("https://api.weather.test:{port}/today")).await.status, 200);
}

/// Whether a call through the tool reaches the upstream with `token`.
async fn injected(proxy: &TestProxy, upstream: &Upstream, url: &str, token: &str) -> bool {
    call(proxy, "crm-notes", url).await.status == 200
        && upstream.requests().last().is_some_and(|s| s.headers["authorization"] == format!("Bearer {token}").as_str())
}

async fn refused(proxy: &TestProxy, url: &str) -> bool {
    call(proxy, "crm-notes", url).await.status == 400
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_sees_a_change_within_a_second() {
    let ca = TestCa::new(&["api.crm.test", "api.weather.test"]);
    let redis = RedisServer::start();
    let upstream = Upstream::ok(&ca).await;
    let port = upstream.port;
    let store = format!("store: {{ backend: redis, redis_url: \"{}\", cache_ttl: \"60s\" }}", redis.url());
    let config = yaml(&ca, &store, port);
    let (a, b) = (TestProxy::start(&config).await, TestProxy::start(&config).await);
    let url = format!("https://api.crm.test:{port}/v1/items");
    let spec = |token: &str| json!({ "token": token, "allowed_domains": [format!("https://api.crm.test:{port}/*")], "tools": ["crm-notes"] });
    tokio::time::sleep(Duration::from_millis(300)).await; // both subscribed

    assert_eq!(put(&a, "crm", spec("crm-token-one-111111")).await.status, 201);
    let since = Instant::now();
    within_a_second(since, "creation on B", || injected(&b, &upstream, &url, "crm-token-one-111111")).await;

    assert_eq!(put(&b, "crm", spec("crm-token-two-222222")).await.status, 200);
    let since = Instant::now();
    within_a_second(since, "change on A", || injected(&a, &upstream, &url, "crm-token-two-222222")).await;
    assert_eq!(get(a.running.admin_addr, "/admin/connectors/crm", &[ADMIN]).await.json()["token"], "•••• 2222");

    // A replica started later reads the stored connectors before it serves.
    let c = TestProxy::start(&config).await;
    assert_eq!(call(&c, "crm-notes", &url).await.status, 200);

    assert_eq!(delete(&a, "crm").await.status, 204);
    let since = Instant::now();
    within_a_second(since, "deletion on B", || refused(&b, &url)).await;
    call(&b, "crm-notes", &url).await.assert_refused(400, "connector_unknown");
    within_a_second(since, "deletion on C", || refused(&c, &url)).await;
}
