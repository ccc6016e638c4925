//! The token-hygiene and token-lifecycle cases of tests/corpus/wire.yaml, each run as a
//! scenario against the running proxy: the corpus's pattern (`https://*.databricks.com/*`),
//! its target, DNS answered by the test (a public address, dialed on loopback), a stub token
//! endpoint that rotates, refuses or stalls like a real one, and a unique canary token per
//! case. A case id without a scenario fails the test.

mod common;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::oauth::{Hold, Mode, TokenEndpoint};
use common::redis_server::RedisServer;
use common::*;
use http::{Response, StatusCode};
use tollgate::secret::Secret;
use tollgate::token::{Connection, ConnectionKey, ConnectionStatus, Expect, TokenStore};

const HOST: &str = "abc123.databricks.com";

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// How the upstream answers, switchable per case.
#[derive(Clone, Copy, PartialEq)]
enum Behaviour {
    Ok,
    /// 400 with the request's Authorization echoed in the body (and a header).
    Echo,
    /// The same, with the token split across two body chunks.
    EchoSplit,
    /// 401 `invalid_token` to everything.
    Unauthorized,
}

struct World {
    ca: TestCa,
    upstream: Upstream,
    behaviour: Arc<Mutex<Behaviour>>,
    /// Filled once the proxy runs, for checks made while the upstream answers.
    store: Arc<OnceLock<Arc<dyn TokenStore>>>,
    /// The stored refresh token at the moment each upstream request arrived.
    stored_on_arrival: Arc<Mutex<Vec<Option<String>>>>,
    endpoint: TokenEndpoint,
    redis: Option<RedisServer>,
    token: String,
}

impl World {
    async fn new(case: &str, redis: bool, hold: Option<Hold>) -> World {
        let ca = TestCa::new(&[HOST, "auth.test"]);
        let behaviour = Arc::new(Mutex::new(Behaviour::Ok));
        let store: Arc<OnceLock<Arc<dyn TokenStore>>> = Arc::default();
        let stored_on_arrival: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
        let (b, st, arrivals) = (behaviour.clone(), store.clone(), stored_on_arrival.clone());
        let upstream = Upstream::with(&ca, move |req| {
            let behaviour = *b.lock().unwrap();
            let (store, arrivals) = (st.get().cloned(), arrivals.clone());
            async move {
                if let Some(store) = store {
                    let stored = store.get(&key()).await.ok().flatten();
                    arrivals.lock().unwrap().push(stored.and_then(|c| c.refresh_token).map(|r| r.expose().to_string()));
                }
                let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                let echo = format!(r#"{{"error":"bad","received_headers":{{"Authorization":"{auth}"}}}}"#);
                let mut r = match behaviour {
                    Behaviour::Ok => Response::new(full(r#"{"ok":true}"#)),
                    Behaviour::Echo => {
                        let mut r = Response::new(full(echo));
                        r.headers_mut().insert("x-echo-authorization", auth.parse().unwrap());
                        r
                    }
                    Behaviour::EchoSplit => {
                        let (tx, body) = channel_body();
                        let cut = echo.find("Bearer ").unwrap() + 12;
                        let (a, b) = echo.split_at(cut);
                        let (a, b) = (Bytes::from(a.to_string()), Bytes::from(b.to_string()));
                        tokio::spawn(async move {
                            let _ = tx.send(a).await;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            let _ = tx.send(b).await;
                        });
                        Response::new(http_body_util::BodyExt::boxed(body))
                    }
                    Behaviour::Unauthorized => {
                        let mut r = Response::new(full(r#"{"error":"invalid_token"}"#));
                        r.headers_mut().insert("www-authenticate", "Bearer error=\"invalid_token\"".parse().unwrap());
                        r
                    }
                };
                if matches!(behaviour, Behaviour::Echo | Behaviour::EchoSplit) {
                    *r.status_mut() = StatusCode::BAD_REQUEST;
                }
                if behaviour == Behaviour::Unauthorized {
                    *r.status_mut() = StatusCode::UNAUTHORIZED;
                }
                r
            }
        })
        .await;
        let endpoint = TokenEndpoint::start(&ca, &["rt-1"], hold).await;
        World {
            ca,
            upstream,
            behaviour,
            store,
            stored_on_arrival,
            endpoint,
            redis: redis.then(RedisServer::start),
            token: format!("tok-U1-{case}-canary"),
        }
    }

    fn yaml(&self) -> String {
        let store = match &self.redis {
            Some(r) => format!("store: {{ backend: redis, redis_url: \"{}\", timeout: \"500ms\" }}\n", r.url()),
            None => String::new(),
        };
        format!(
            r#"{base}{store}
refresh:
  skew: "60s"
  token_endpoint_timeout: "1s"
  lock_ttl: "5s"
  retry_backoff: "1s"
connectors:
  - name: databricks
    grant: authorization_code
    authorization_endpoint: https://auth.test:{tp}/authorize
    token_endpoint: https://auth.test:{tp}/token
    client_id: databricks-client
    token_endpoint_auth_method: none
    allowed_domains: ["https://*.databricks.com/*"]
"#,
            base = base_config(&self.ca),
            tp = self.endpoint.server.port
        )
    }

    /// A proxy that resolves every name to the public test address and dials the upstream
    /// (port 443) on loopback; `https_port` overrides where 443 goes.
    async fn proxy_to(&self, https_port: u16) -> TestProxy {
        let dialer = LoopbackDialer { ports: [(443, https_port)].into_iter().collect(), ..Default::default() };
        let proxy = TestProxy::start_full(&self.yaml(), TestResolver::default(), dialer).await;
        let _ = self.store.set(proxy.running.store().clone());
        proxy
    }

    async fn proxy(&self) -> TestProxy {
        self.proxy_to(self.upstream.port).await
    }

    async fn seed(&self, proxy: &TestProxy, expires_in: i64) {
        let mut c = Connection::new(Secret::new(&self.token), Some((now() as i64 + expires_in) as u64));
        c.refresh_token = Some(Secret::new("rt-1"));
        proxy.running.store().put(&key(), c, Expect::Any, None).await.unwrap();
    }

    fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }

    fn tokens_seen(&self) -> Vec<String> {
        self.upstream.requests().iter().map(|s| s.headers["authorization"].to_str().unwrap().to_string()).collect()
    }
}

fn key() -> ConnectionKey {
    ConnectionKey::new("databricks", "alice")
}

async fn call(proxy: &TestProxy, path: &str) -> Answer {
    let auth = bearer(&jwt("alice", serde_json::json!({})));
    get(proxy.addr(), &format!("https://{HOST}{path}"), &[("proxy-authorization", &auth)]).await
}

async fn metrics(proxy: &TestProxy) -> String {
    String::from_utf8(get(proxy.running.admin_addr, "/metrics", &[]).await.body.to_vec()).unwrap()
}

/// TOKEN-001: the upstream refuses the connection; the 502 and the metrics never show the token.
async fn token_001(case: &str) {
    let world = World::new(case, false, None).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let proxy = world.proxy_to(closed).await;
    world.seed(&proxy, 3600).await;
    let answer = call(&proxy, "/api").await;
    answer.assert_refused(502, "upstream_unreachable");
    let text = format!("{:?}{}", answer.headers, String::from_utf8_lossy(&answer.body));
    assert!(!text.contains(&world.token) && !text.contains("rt-1"), "{case}: the refusal shows a token");
    assert!(!metrics(&proxy).await.contains(&world.token), "{case}: a metric shows the token");
    assert!(world.upstream.requests().is_empty());
}

/// TOKEN-002: an upstream that echoes the request headers never hands the token to the caller.
async fn token_002(case: &str) {
    let world = World::new(case, false, None).await;
    let proxy = world.proxy().await;
    world.seed(&proxy, 3600).await;
    for behaviour in [Behaviour::Echo, Behaviour::EchoSplit] {
        world.set(behaviour);
        let answer = call(&proxy, "/echo").await;
        assert_eq!(answer.status, 400, "{case}: the upstream's answer is relayed");
        assert!(answer.error_header().is_none(), "{case}: not a Tollgate refusal");
        let body = String::from_utf8(answer.body.to_vec()).unwrap();
        assert!(!body.contains(&world.token), "{case}: the echoed token reached the caller: {body}");
        assert!(body.contains("\"Authorization\":\"Bearer [redacted"), "{case}: no marker: {body}");
        let headers = format!("{:?}", answer.headers);
        assert!(!headers.contains(&world.token), "{case}: echoed in a header: {headers}");
        // The upstream really received the token (so the check above could fail).
        assert_eq!(world.tokens_seen().last().unwrap(), &format!("Bearer {}", world.token));
    }
}

/// TOKEN-003: a 401 to a token that looked valid: one renewal, one retry with the new token,
/// and a second 401 goes back to the caller.
async fn token_003(case: &str) {
    let world = World::new(case, false, None).await;
    let proxy = world.proxy().await;
    world.seed(&proxy, 3600).await;
    world.set(Behaviour::Unauthorized);
    let answer = call(&proxy, "/api").await;
    assert_eq!(answer.status, 401);
    assert!(answer.error_header().is_none(), "{case}: the upstream's 401 is relayed");
    assert_eq!(world.endpoint.calls(), 1, "{case}: one forced refresh");
    assert_eq!(world.tokens_seen(), [format!("Bearer {}", world.token), "Bearer at-2".to_string()]);
}

/// TOKEN-004: near expiry the token is renewed inline; the rotated refresh token is stored
/// before the upstream sees the new access token.
async fn token_004(case: &str) {
    let world = World::new(case, false, None).await;
    let proxy = world.proxy().await;
    world.seed(&proxy, 20).await;
    let answer = call(&proxy, "/api").await;
    assert_eq!(answer.status, 200);
    assert_eq!(world.tokens_seen(), ["Bearer at-2"], "{case}: the upstream sees the new token");
    assert_eq!(
        *world.stored_on_arrival.lock().unwrap(),
        [Some("rt-2".to_string())],
        "{case}: the rotated refresh token is stored before the request proceeds"
    );
    let stored = proxy.running.store().get(&key()).await.unwrap().unwrap();
    assert_eq!(stored.access_token.expose(), "at-2");
    assert_eq!(stored.refresh_token.unwrap().expose(), "rt-2");
}

/// TOKEN-005: 50 concurrent requests over 2 replicas inside the refresh window: one refresh.
async fn token_005(case: &str) {
    let world = World::new(case, true, None).await;
    let (a, b) = (world.proxy().await, world.proxy().await);
    world.seed(&a, 30).await;
    let auth = bearer(&jwt("alice", serde_json::json!({})));
    let handles: Vec<_> = (0..50)
        .map(|i| {
            let addr = if i % 2 == 0 { a.addr() } else { b.addr() };
            let auth = auth.clone();
            tokio::spawn(async move {
                get(addr, &format!("https://{HOST}/api"), &[("proxy-authorization", &auth)]).await.status
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.await.unwrap(), 200);
    }
    assert_eq!(world.endpoint.calls(), 1, "{case}: exactly one refresh call");
    let seen = world.tokens_seen();
    assert_eq!(seen.len(), 50);
    assert!(seen.iter().all(|t| t == "Bearer at-2"), "{case}: every request carries the new token");
}

/// TOKEN-006: the store is down and nothing is cached: 503 quickly, nothing forwarded.
async fn token_006(case: &str) {
    let mut world = World::new(case, true, None).await;
    let proxy = world.proxy().await;
    world.seed(&proxy, 3600).await;
    world.redis.as_mut().unwrap().stop();
    let started = Instant::now();
    call(&proxy, "/api").await.assert_refused(503, "token_store_unavailable");
    assert!(started.elapsed() < Duration::from_secs(5), "{case}: the refusal must not hang");
    assert!(world.upstream.requests().is_empty());
}

/// TOKEN-007: `invalid_grant` marks the connection and stops further refresh attempts.
async fn token_007(case: &str) {
    let world = World::new(case, false, None).await;
    world.endpoint.set_mode(Mode::Refuse("invalid_grant"));
    let proxy = world.proxy().await;
    world.seed(&proxy, -30).await;
    call(&proxy, "/api").await.assert_refused(401, "reauth_required");
    call(&proxy, "/api").await.assert_refused(401, "reauth_required");
    assert_eq!(world.endpoint.calls(), 1, "{case}: no retry of a dead refresh token");
    let stored = proxy.running.store().get(&key()).await.unwrap().unwrap();
    assert_eq!(stored.status, ConnectionStatus::NeedsReauth);
    assert!(world.upstream.requests().is_empty());
}

/// TOKEN-009: the token endpoint times out while the token is still valid: the current token
/// is used, and the refresh is tried again later.
async fn token_009(case: &str) {
    let hold: Hold = Arc::new(|| Box::pin(tokio::time::sleep(Duration::from_secs(3))));
    let world = World::new(case, false, Some(hold)).await;
    let proxy = world.proxy().await;
    world.seed(&proxy, 40).await;
    assert_eq!(call(&proxy, "/api").await.status, 200);
    assert_eq!(world.tokens_seen(), [format!("Bearer {}", world.token)]);
    assert_eq!(world.endpoint.calls(), 1);
    tokio::time::sleep(Duration::from_millis(1200)).await; // past refresh.retry_backoff
    assert_eq!(call(&proxy, "/api").await.status, 200);
    assert_eq!(world.endpoint.calls(), 2, "{case}: the refresh is retried later");
    assert!(world.tokens_seen().iter().all(|t| *t == format!("Bearer {}", world.token)));
}

/// TOKEN-011: a stored record that fails decryption is no token: connect again, counted.
async fn token_011(case: &str) {
    let world = World::new(case, true, None).await;
    let proxy = world.proxy().await;
    world.seed(&proxy, 3600).await;
    // Seal the same record under another key: the proxy's keys cannot open it.
    let other = {
        use base64::Engine;
        let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        tollgate::token::crypto::Sealer::new(&[tollgate::config::EncryptionKey {
            id: "k1".into(),
            key: base64::engine::general_purpose::STANDARD.decode(key).unwrap().try_into().unwrap(),
        }])
        .unwrap()
    };
    let foreign = tollgate::token::store::redis::RedisStore::new(
        &world.redis.as_ref().unwrap().url(),
        other,
        Duration::from_secs(2),
        tollgate::metrics::Metrics::new(std::iter::empty()).unwrap(),
    )
    .unwrap();
    let c = Connection::new(Secret::new(&world.token), Some(now() + 3600));
    foreign.put(&key(), c, Expect::Any, None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await; // the invalidation empties the cache
    let refusal = call(&proxy, "/api").await.assert_refused(401, "connection_required");
    assert!(refusal["connect_url"].as_str().is_some());
    assert!(world.upstream.requests().is_empty(), "{case}: nothing forwarded");
    let text = metrics(&proxy).await;
    assert!(text.lines().any(|l| l.starts_with("tollgate_store_errors_total{op=\"get\"}") && !l.ends_with(" 0")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_cases_of_the_wire_corpus() {
    let corpus: serde_yaml::Value = common::corpus::read("wire.yaml");
    let mut ran = Vec::new();
    for case in corpus["cases"].as_sequence().unwrap() {
        let category = case["category"].as_str().unwrap_or_default();
        if !category.starts_with("token-") {
            continue;
        }
        let id = case["id"].as_str().unwrap();
        assert_eq!(case["allowed_patterns"][0].as_str(), Some("https://*.databricks.com/*"), "{id}");
        assert_eq!(case["request"]["target"].as_str().map(|t| t.starts_with(&format!("https://{HOST}/"))), Some(true));
        match id {
            "TOKEN-001" => token_001(id).await,
            "TOKEN-002" => token_002(id).await,
            "TOKEN-003" => token_003(id).await,
            "TOKEN-004" => token_004(id).await,
            "TOKEN-005" => token_005(id).await,
            "TOKEN-006" => token_006(id).await,
            "TOKEN-007" => token_007(id).await,
            "TOKEN-009" => token_009(id).await,
            "TOKEN-011" => token_011(id).await,
            other => panic!("{other} has no scenario in tests/wire_token.rs"),
        }
        ran.push(id.to_string());
    }
    assert!(ran.len() >= 9, "the corpus's token cases were not found: {ran:?}");
}
