//! Every refusal Tollgate makes itself: the JSON body of SPEC section 7, `X-Tollgate-Error`,
//! and no request reaching the upstream.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use tollgate::secret::Secret;
use tollgate::token::{Connection, ConnectionKey, ConnectionStatus, Expect};

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn config(ca: &TestCa, port: u16, extra: &str) -> String {
    format!(
        r#"{}
limits:
  max_header_bytes: "2KiB"
connectors:
  - name: crm
    grant: authorization_code
    authorization_endpoint: https://auth.crm.test/authorize
    token_endpoint: https://auth.crm.test/token
    client_id: crm-client
    allowed_domains: ["https://*.crm.test:{port}/*"]
    pin_host: true
  - name: weather
    token: "weather-key"
    allowed_domains: ["https://api.weather.test:{port}/*", "https://api.shared.test:{port}/*", "https://api.private.test:{port}/*"]
  - name: weather2
    token: "weather2-key"
    allowed_domains: ["https://api.shared.test:{port}/*"]
{extra}"#,
        base_config(ca)
    )
}

struct Fixture {
    upstream: Upstream,
    proxy: TestProxy,
    auth: String,
}

impl Fixture {
    async fn new() -> Fixture {
        Self::with(TestResolver::default(), "").await
    }

    async fn with(resolver: TestResolver, extra: &str) -> Fixture {
        let ca = TestCa::new(&["api.weather.test", "api.shared.test", "a.crm.test", "b.crm.test", "api.private.test"]);
        let upstream = Upstream::ok(&ca).await;
        let proxy = TestProxy::start_with(&config(&ca, upstream.port, extra), resolver).await;
        // The CA file must outlive config loading only; the upstream keeps its own copy.
        drop(ca);
        Fixture { upstream, proxy, auth: bearer(&jwt("alice", serde_json::json!({}))) }
    }

    fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.upstream.port)
    }

    async fn get(&self, host: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut all = vec![("proxy-authorization", self.auth.as_str())];
        all.extend_from_slice(headers);
        get(self.proxy.addr(), &self.url(host, path), &all).await
    }

    async fn store(&self, principal: &str, token: &str, expires_in: i64, host: Option<&str>) {
        let mut c = Connection::new(Secret::new(token), Some((now() as i64 + expires_in) as u64));
        c.pinned_host = host.map(str::to_string);
        self.proxy.running.store().put(&ConnectionKey::new("crm", principal), c, Expect::Any, None).await.unwrap();
    }
}

#[tokio::test]
async fn connection_required_carries_a_signed_connect_url() {
    let f = Fixture::new().await;
    let answer = f.get("a.crm.test", "/x", &[]).await;
    let json = answer.assert_refused(401, "connection_required");
    assert_eq!(json["connector"], "crm");
    assert_eq!(json["url"], f.url("a.crm.test", "/x"));
    let link = json["connect_url"].as_str().unwrap();
    let ticket = link.strip_prefix("https://tollgate.test/oauth/start?ticket=").expect(link);
    let verified = f.proxy.running.state().broker.links().verify(ticket, now()).unwrap();
    assert_eq!((verified.connector.as_str(), verified.principal.as_str()), ("crm", "alice"));
    assert!(f.upstream.requests().is_empty());
}

#[tokio::test]
async fn the_principal_comes_only_from_the_credential() {
    let f = Fixture::new().await;
    f.store("alice", "tok-alice", 3600, Some("a.crm.test")).await;
    f.store("bob", "tok-bob", 3600, Some("a.crm.test")).await;
    let answer = f
        .get("a.crm.test", "/x", &[("x-user-id", "bob"), ("x-forwarded-user", "bob"), ("x-tollgate-principal", "bob")])
        .await;
    assert_eq!(answer.status, 200);
    let seen = f.upstream.requests();
    assert_eq!(seen[0].headers["authorization"], "Bearer tok-alice");
    assert!(seen[0].headers.get("x-tollgate-principal").is_none());
}

#[tokio::test]
async fn expired_and_revoked_tokens_are_never_injected() {
    let f = Fixture::new().await;
    f.store("alice", "tok-expired", -5, Some("a.crm.test")).await;
    let json = f.get("a.crm.test", "/x", &[]).await.assert_refused(401, "reauth_required");
    assert!(json["connect_url"].as_str().unwrap().contains("/oauth/start?ticket="));
    let key = ConnectionKey::new("crm", "alice");
    let mut c = Connection::new(Secret::new("tok-revoked"), Some(now() + 3600));
    c.status = ConnectionStatus::NeedsReauth;
    f.proxy.running.store().put(&key, c, Expect::Any, None).await.unwrap();
    f.get("a.crm.test", "/x", &[]).await.assert_refused(401, "reauth_required");
    f.proxy.running.store().delete(&key).await.unwrap();
    f.get("a.crm.test", "/x", &[]).await.assert_refused(401, "connection_required");
    assert!(f.upstream.requests().is_empty());
}

#[tokio::test]
async fn a_pinned_token_is_refused_for_another_host_on_the_same_wildcard() {
    let f = Fixture::new().await;
    f.store("alice", "tok-alice", 3600, Some("a.crm.test")).await;
    f.get("b.crm.test", "/x", &[]).await.assert_refused(403, "endpoint_not_allowed");
    assert_eq!(f.get("a.crm.test", "/x", &[]).await.status, 200);
    assert_eq!(f.upstream.requests().len(), 1);
}

#[tokio::test]
async fn caller_unauthenticated_is_407_with_proxy_authenticate() {
    let f = Fixture::new().await;
    let url = f.url("api.weather.test", "/x");
    let none = get(f.proxy.addr(), &url, &[]).await;
    none.assert_refused(407, "caller_unauthenticated");
    assert!(none.headers["proxy-authenticate"].to_str().unwrap().contains("Basic"));
    let expired = jwt("alice", serde_json::json!({ "exp": now() - 120 }));
    let wrong_aud = jwt("alice", serde_json::json!({ "aud": "someone-else" }));
    let forged = {
        let t = jwt("alice", serde_json::json!({}));
        let (head, _) = t.rsplit_once('.').unwrap();
        format!("{head}.AAAA")
    };
    // alg "none" with the same claims must never pass.
    let unsigned = {
        use base64::Engine;
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let claims = serde_json::json!({"sub": "alice", "aud": "tollgate", "exp": now() + 600});
        format!("{}.{}.", e.encode(r#"{"alg":"none","typ":"JWT"}"#), e.encode(claims.to_string()))
    };
    for bad in [expired, wrong_aud, forged, unsigned, "not-a-key".to_string()] {
        get(f.proxy.addr(), &url, &[("proxy-authorization", &bearer(&bad))])
            .await
            .assert_refused(407, "caller_unauthenticated");
    }
    assert!(f.upstream.requests().is_empty());
}

#[tokio::test]
async fn connector_selection_refusals() {
    let f = Fixture::new().await;
    let limited = bearer(&jwt("alice", serde_json::json!({ "connectors": ["weather"] })));
    let crm = f.url("a.crm.test", "/x");
    let forbidden =
        get(f.proxy.addr(), &crm, &[("proxy-authorization", &limited), ("x-tollgate-connector", "crm")]).await;
    forbidden.assert_refused(403, "connector_forbidden");
    get(f.proxy.addr(), &crm, &[("proxy-authorization", &limited)]).await.assert_refused(403, "endpoint_not_allowed");
    f.get("api.weather.test", "/x", &[("x-tollgate-connector", "nope")]).await.assert_refused(400, "connector_unknown");
    let json = f.get("api.shared.test", "/x", &[]).await.assert_refused(400, "connector_ambiguous");
    assert!(json["message"].as_str().unwrap().contains("weather, weather2"));
    f.get("api.shared.test", "/x", &[("x-tollgate-connector", "weather"), ("x-tollgate-tool", "weather2")])
        .await
        .assert_refused(400, "connector_ambiguous");
    assert!(f.upstream.requests().is_empty());
    let named = f.get("api.shared.test", "/x", &[("x-tollgate-connector", "weather2")]).await;
    assert_eq!(named.status, 200);
    assert_eq!(f.upstream.requests()[0].headers["authorization"], "Bearer weather2-key");
}

#[tokio::test]
async fn endpoint_not_allowed_by_pattern_and_by_address() {
    let mut resolver = TestResolver::default();
    resolver
        .answers
        .insert("api.private.test".into(), vec!["52.32.0.11".parse().unwrap(), "10.0.0.5".parse().unwrap()]);
    let f = Fixture::with(resolver, "").await;
    let json = f.get("evil.test", "/x", &[]).await.assert_refused(403, "endpoint_not_allowed");
    assert!(json["message"].as_str().unwrap().contains("https://evil.test:"));
    let json = f.get("api.private.test", "/x", &[]).await.assert_refused(403, "endpoint_not_allowed");
    assert!(json["message"].as_str().unwrap().contains("private"), "{json}");
    assert!(f.proxy.dialed().is_empty(), "a denied answer was dialed");
    assert!(f.upstream.requests().is_empty());
}

#[tokio::test]
async fn bad_targets_and_upgrades_are_refused() {
    let f = Fixture::new().await;
    for path in ["/v1/%2e%2e/admin", "/a%2Fb", "/..", "/a/..;/b"] {
        f.get("api.weather.test", path, &[]).await.assert_refused(400, "bad_target");
    }
    let with_userinfo = format!("https://user:pw@api.weather.test:{}/x", f.upstream.port);
    get(f.proxy.addr(), &with_userinfo, &[("proxy-authorization", &f.auth)]).await.assert_refused(400, "bad_target");
    let ws = [
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("sec-websocket-version", "13"),
    ];
    f.get("api.weather.test", "/ws", &ws).await.assert_refused(400, "upgrade_refused");
    let h2c =
        [("connection", "Upgrade, HTTP2-Settings"), ("upgrade", "h2c"), ("http2-settings", "AAMAAABkAAQAoAAAAAIAAAAA")];
    f.get("api.weather.test", "/", &h2c).await.assert_refused(400, "upgrade_refused");
    assert!(f.upstream.requests().is_empty());
}

#[tokio::test]
async fn not_a_proxy_request_headers_too_large_and_connect() {
    let f = Fixture::new().await;
    // What the proxy listener takes, said whenever a request is none of it.
    let expected = |r: &Answer| {
        r.assert_refused(400, "proxy_request_expected");
        let message = r.json()["message"].as_str().unwrap_or_default().to_string();
        assert!(message.contains("absolute-form") && message.contains("gateway paths"), "{message}");
        message
    };
    assert!(expected(&get(f.proxy.addr(), "/nowhere", &[]).await).contains("/nowhere"));
    assert!(expected(&get(f.proxy.addr(), "/", &[]).await).contains("the path /"));
    assert!(expected(&send(f.proxy.addr(), "OPTIONS", "*", &[], Default::default()).await).contains("`OPTIONS *`"));
    // weather has no base_url, so it is not a gateway prefix; said as for an unknown name.
    let weather = expected(&get(f.proxy.addr(), "/weather/x", &[("authorization", &f.auth)]).await);
    assert_eq!(
        weather,
        expected(&get(f.proxy.addr(), "/unknown-name/x", &[]).await).replace("/unknown-name/", "/weather/")
    );
    let big = "x".repeat(3000);
    f.get("api.weather.test", "/x", &[("x-big", &big)]).await.assert_refused(431, "headers_too_large");
    // CONNECT opens no tunnel to a host no connector covers.
    let connect =
        send(f.proxy.addr(), "CONNECT", "evil.test:443", &[("proxy-authorization", &f.auth)], Default::default()).await;
    connect.assert_refused(403, "endpoint_not_allowed");
    assert!(f.upstream.requests().is_empty());
}

#[tokio::test]
async fn upstream_unreachable_and_timeout() {
    let ca = TestCa::new(&["api.slow.test"]);
    let slow = Upstream::with(&ca, |_req| async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        http::Response::new(full("late"))
    })
    .await;
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let yaml = format!(
        r#"{}
connectors:
  - name: slow
    token: "slow-key"
    allowed_domains: ["https://api.slow.test:*/*", "https://api.gone.test:*/*"]
"#,
        base_config(&ca).replace(r#"response_timeout: "5s""#, r#"response_timeout: "500ms""#)
    );
    let proxy = TestProxy::start(&yaml).await;
    let auth = bearer(&jwt("alice", serde_json::json!({})));
    let gone =
        get(proxy.addr(), &format!("https://api.gone.test:{closed_port}/x"), &[("proxy-authorization", &auth)]).await;
    gone.assert_refused(502, "upstream_unreachable");
    let late =
        get(proxy.addr(), &format!("https://api.slow.test:{}/x", slow.port), &[("proxy-authorization", &auth)]).await;
    late.assert_refused(504, "upstream_timeout");
}
