//! The admin API: the routes served are exactly those in docs/admin-openapi.yaml, secrets are
//! masked, connections are listed without tokens, explain and connector health answer.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::oauth::TokenEndpoint;
use common::*;
use tollgate::secret::Secret;
use tollgate::token::{Connection, ConnectionKey, Expect};

const ADMIN: (&str, &str) = ("authorization", "Bearer admin-secret-token");

fn documented() -> BTreeSet<(String, String)> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/admin-openapi.yaml");
    let doc: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_mapping().unwrap() {
        for method in ["get", "put", "post", "delete", "patch"] {
            if item.get(method).is_some() {
                routes.insert((method.to_uppercase(), path.as_str().unwrap().to_string()));
            }
        }
    }
    routes
}

async fn world() -> (Upstream, TokenEndpoint, TestProxy) {
    let ca = TestCa::new(&["api.test", "auth.test"]);
    let upstream = Upstream::ok(&ca).await;
    let endpoint = TokenEndpoint::start(&ca, &[], None).await;
    let yaml = format!(
        r#"{base}
connectors:
  - name: weather
    token: "weather-key-canary-123456"
    allowed_domains: ["https://api.test:{up}/*"]
  - name: crm
    grant: authorization_code
    authorization_endpoint: https://auth.test:{tp}/authorize
    token_endpoint: https://auth.test:{tp}/token
    client_id: crm-client
    client_secret: crm-secret-canary-987654
    allowed_domains: ["https://crm.test/*"]
  - name: billing
    grant: client_credentials
    token_endpoint: https://auth.test:{tp}/token
    client_id: billing
    client_secret: billing-secret-canary-555555
    allowed_domains: ["https://billing.test/*"]
tools:
  - name: forecast
    connector: weather
"#,
        base = base_config(&ca),
        up = upstream.port,
        tp = endpoint.server.port
    );
    let proxy = TestProxy::start(&yaml).await;
    (upstream, endpoint, proxy)
}

#[tokio::test]
async fn served_routes_match_the_openapi_document() {
    let (_u, _e, proxy) = world().await;
    let doc = documented();
    let served: BTreeSet<(String, String)> =
        tollgate::admin::api::ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    let doc_admin: BTreeSet<(String, String)> = doc.iter().filter(|(_, p)| p.starts_with("/admin/")).cloned().collect();
    assert_eq!(served, doc_admin, "ROUTES and docs/admin-openapi.yaml disagree");
    for (method, template) in &doc {
        let path =
            template.replace("{name}", "weather").replace("{connector}", "weather").replace("{principal}", "nobody");
        let body = if path == "/admin/explain" { Bytes::from(r#"{"url":"https://x.test/"}"#) } else { Bytes::new() };
        let answer =
            send(proxy.running.admin_addr, method, &path, &[ADMIN, ("content-type", "application/json")], body).await;
        let text = String::from_utf8_lossy(&answer.body);
        assert!(!text.contains("is not an admin route"), "{method} {path} is documented but not served: {text}");
    }
    let unknown = send(proxy.running.admin_addr, "GET", "/admin/nothing", &[ADMIN], Bytes::new()).await;
    unknown.assert_refused(404, "not_found");
}

#[tokio::test]
async fn connectors_connections_explain_and_health() {
    let (_u, endpoint, proxy) = world().await;
    let admin = proxy.running.admin_addr;
    let list = get(admin, "/admin/connectors", &[ADMIN]).await;
    assert_eq!(list.status, 200);
    let text = String::from_utf8_lossy(&list.body).to_string();
    for canary in ["weather-key-canary-123456", "crm-secret-canary-987654", "billing-secret-canary-555555"] {
        assert!(!text.contains(canary), "{canary} shown by the admin API");
    }
    let json = list.json();
    let weather = json["connectors"].as_array().unwrap().iter().find(|c| c["name"] == "weather").unwrap().clone();
    assert_eq!(weather["token"], "•••• 3456");
    assert_eq!(weather["tools"], serde_json::json!(["forecast"]));
    assert_eq!(get(admin, "/admin/connectors/forecast", &[ADMIN]).await.json()["name"], "weather", "tools resolve");
    assert_eq!(get(admin, "/admin/connectors/crm", &[ADMIN]).await.json()["client_secret"], "•••• 7654");
    get(admin, "/admin/connectors/nope", &[ADMIN]).await.assert_refused(400, "connector_unknown");
    send(admin, "PUT", "/admin/connectors/crm", &[ADMIN], Bytes::new()).await.assert_refused(409, "conflict");

    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    for principal in ["alice@example.com", "bob@example.com"] {
        let mut c = Connection::new(Secret::new(format!("at-canary-{principal}")), Some(now + 600));
        c.refresh_token = Some(Secret::new("rt-canary"));
        proxy.running.store().put(&ConnectionKey::new("crm", principal), c, Expect::Any, None).await.unwrap();
    }
    let rows = get(admin, "/admin/connections?connector=crm", &[ADMIN]).await;
    assert!(!String::from_utf8_lossy(&rows.body).contains("canary"), "tokens listed");
    let rows = rows.json()["connections"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["status"], "connected");
    assert_eq!(rows[0]["has_refresh_token"], true);
    let alice = get(admin, "/admin/connections?principal=alice%40example.com", &[ADMIN]).await.json();
    assert_eq!(alice["connections"].as_array().unwrap().len(), 1);
    let deleted = send(admin, "DELETE", "/admin/connections/crm/bob%40example.com", &[ADMIN], Bytes::new()).await;
    assert_eq!(deleted.status, 204);
    // Bob's stays listed as revoked, without tokens; deleting it again removes it.
    let listed = get(admin, "/admin/connections", &[ADMIN]).await.json()["connections"].as_array().unwrap().clone();
    let bob = listed.iter().find(|c| c["principal"] == "bob@example.com").expect("bob is listed");
    assert_eq!((bob["status"].as_str(), bob["has_refresh_token"].as_bool()), (Some("revoked"), Some(false)));
    let again = send(admin, "DELETE", "/admin/connections/crm/bob%40example.com", &[ADMIN], Bytes::new()).await;
    assert_eq!(again.status, 204);
    assert_eq!(get(admin, "/admin/connections", &[ADMIN]).await.json()["connections"].as_array().unwrap().len(), 1);
    let gone = send(admin, "DELETE", "/admin/connections/crm/bob%40example.com", &[ADMIN], Bytes::new()).await;
    assert_eq!(gone.status, 404);

    let explained =
        send(admin, "POST", "/admin/explain", &[ADMIN], Bytes::from(r#"{"url":"https://CRM.test./x/../y"}"#))
            .await
            .json();
    assert_eq!(explained["decision"], "allow");
    assert_eq!(explained["connector"], "crm");
    assert_eq!(explained["url"], "https://crm.test/y");
    let blocked =
        send(admin, "POST", "/admin/explain", &[ADMIN], Bytes::from(r#"{"url":"https://evil.test/"}"#)).await.json();
    assert_eq!(blocked["decision"], "block");

    let health = |name: &'static str| async move {
        send(admin, "POST", &format!("/admin/connectors/{name}/test"), &[ADMIN], Bytes::new()).await.json()
    };
    assert_eq!(health("weather").await["health"], "unknown");
    assert_eq!(health("billing").await["health"], "healthy");
    assert_eq!(endpoint.state.lock().unwrap().grant_types, ["client_credentials"]);
    endpoint.set_mode(common::oauth::Mode::Status(503));
    let sick = health("billing").await;
    assert_eq!(sick["health"], "unhealthy", "{sick}");
}

/// `PUT /admin/connections/{connector}/{principal}`: a grant made elsewhere serves the proxy
/// path at once, is never echoed, and is refused where it cannot be a per-user connection.
#[tokio::test]
async fn imported_connections_serve_requests_without_a_connect_flow() {
    let ca = TestCa::new(&["api.test", "auth.test"]);
    let upstream = Upstream::ok(&ca).await;
    let yaml = format!(
        r#"{base}
connectors:
  - name: crm
    grant: authorization_code
    authorization_endpoint: https://auth.test/authorize
    token_endpoint: https://auth.test/token
    client_id: crm-client
    client_secret: crm-secret-000000
    scopes: [read]
    allowed_domains: ["https://api.test:{up}/*"]
  - name: weather
    token: "weather-key-000000"
    allowed_domains: ["https://weather.test/*"]
  - name: pinned
    grant: authorization_code
    authorization_endpoint: https://auth.test/authorize
    token_endpoint: https://auth.test/token
    client_id: pinned
    pin_host: true
    allowed_domains: ["https://*.pinned.test/*"]
"#,
        base = base_config(&ca),
        up = upstream.port
    );
    let proxy = TestProxy::start(&yaml).await;
    let admin = proxy.running.admin_addr;
    let url = format!("https://api.test:{}/me", upstream.port);
    let before = get(proxy.running.proxy_addr, &url, &[("proxy-authorization", &alice_bearer())]).await;
    assert_eq!(before.status, 401, "no connection yet: {}", String::from_utf8_lossy(&before.body));

    let put = |path: &'static str, body: &'static str| async move {
        send(admin, "PUT", path, &[ADMIN, ("content-type", "application/json")], Bytes::from(body)).await
    };
    let created = put(
        "/admin/connections/crm/alice",
        r#"{"access_token":"imported-at-canary-1","refresh_token":"imported-rt-canary-1","expires_in":3600}"#,
    )
    .await;
    assert_eq!(created.status, 201, "{}", String::from_utf8_lossy(&created.body));
    assert!(!String::from_utf8_lossy(&created.body).contains("canary"), "a token echoed");
    assert_eq!(created.json()["principal"], "alice");
    let answer = get(proxy.running.proxy_addr, &url, &[("proxy-authorization", &alice_bearer())]).await;
    assert_eq!(answer.status, 200);
    let seen = upstream.requests();
    assert_eq!(seen.last().unwrap().headers["authorization"], "Bearer imported-at-canary-1");
    let replaced = put("/admin/connections/crm/alice", r#"{"access_token":"imported-at-canary-2"}"#).await;
    assert_eq!(replaced.status, 200, "a second import replaces the first");
    get(proxy.running.proxy_addr, &url, &[("proxy-authorization", &alice_bearer())]).await;
    assert_eq!(upstream.requests().last().unwrap().headers["authorization"], "Bearer imported-at-canary-2");

    let listed = get(admin, "/admin/connections?connector=crm", &[ADMIN]).await;
    assert!(!String::from_utf8_lossy(&listed.body).contains("canary"), "tokens listed");
    let row = listed.json()["connections"][0].clone();
    assert_eq!((row["principal"].as_str(), row["scopes"].clone()), (Some("alice"), serde_json::json!(["read"])));
    let stored = proxy.running.store().get(&ConnectionKey::new("crm", "alice")).await.unwrap().unwrap();
    assert!(stored.refresh_token.is_none() && stored.expires_at.is_none(), "the second import stands whole");

    put("/admin/connections/weather/alice", r#"{"access_token":"x"}"#).await.assert_refused(400, "invalid_request");
    put("/admin/connections/pinned/alice", r#"{"access_token":"x"}"#).await.assert_refused(400, "invalid_request");
    put("/admin/connections/nope/alice", r#"{"access_token":"x"}"#).await.assert_refused(400, "connector_unknown");
    let bad = put("/admin/connections/crm/bob", r#"{"access_token":"has space-canary-3"}"#).await;
    bad.assert_refused(400, "invalid_request");
    let unknown = put("/admin/connections/crm/bob", r#"{"access_token":"ok","tokn":"typo-canary-4"}"#).await;
    unknown.assert_refused(400, "invalid_request");
    for refused in [&bad, &unknown] {
        assert!(!String::from_utf8_lossy(&refused.body).contains("canary"), "a refusal echoed a token");
    }
    let unauthenticated =
        send(admin, "PUT", "/admin/connections/crm/bob", &[], Bytes::from(r#"{"access_token":"x"}"#)).await;
    assert_eq!(unauthenticated.status, 401);
    assert!(proxy.running.store().get(&ConnectionKey::new("crm", "bob")).await.unwrap().is_none());
}
