//! Inline renewal against a stub token endpoint that behaves like a real one: rotation,
//! single flight, permanent and transient failures, answers without `expires_in`, and
//! client-credentials tokens. Runs on the memory store and on a real redis-server.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::oauth::{Mode, TokenEndpoint};
use common::redis_server::RedisServer;
use common::*;
use tollgate::secret::Secret;
use tollgate::token::{Connection, ConnectionKey, ConnectionStatus, Expect};

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

struct World {
    upstream: Upstream,
    endpoint: TokenEndpoint,
    proxy: TestProxy,
    auth: String,
    _redis: Option<RedisServer>,
}

impl World {
    async fn new(redis: bool) -> World {
        let ca = TestCa::new(&["api.crm.test", "billing.test", "auth.test"]);
        let upstream = Upstream::ok(&ca).await;
        let endpoint = TokenEndpoint::start(&ca, &["rt-1"], None).await;
        let redis = redis.then(RedisServer::start);
        let store = match &redis {
            Some(r) => format!("store: {{ backend: redis, redis_url: \"{}\" }}\n", r.url()),
            None => String::new(),
        };
        let (tp, up) = (endpoint.server.port, upstream.port);
        let yaml = format!(
            r#"{base}{store}
refresh:
  token_endpoint_timeout: "1s"
  lock_ttl: "3s"
  retry_backoff: "1s"
  default_lifetime: "2h"
connectors:
  - name: crm
    grant: authorization_code
    authorization_endpoint: https://auth.test:{tp}/authorize
    token_endpoint: https://auth.test:{tp}/token
    client_id: crm-client
    client_secret: crm-secret
    allowed_domains: ["https://api.crm.test:{up}/*"]
  - name: gh
    template: github
    token_endpoint: https://auth.test:{tp}/token
    client_id: gh-client
    client_secret: gh-secret
    allowed_domains: ["https://api.crm.test:{up}/gh/*"]
  - name: billing
    grant: client_credentials
    token_endpoint: https://auth.test:{tp}/token
    client_id: billing-agent
    client_secret: billing-secret
    scopes: [billing.read]
    allowed_domains: ["https://billing.test:{up}/*"]
"#,
            base = base_config(&ca)
        );
        let proxy = TestProxy::start(&yaml).await;
        World { upstream, endpoint, proxy, auth: bearer(&jwt("alice", serde_json::json!({}))), _redis: redis }
    }

    async fn seed(&self, connector: &str, access: &str, expires_in: i64) {
        let mut c = Connection::new(Secret::new(access), Some((now() as i64 + expires_in) as u64));
        c.refresh_token = Some(Secret::new("rt-1"));
        c.scopes = vec!["crm.read".into()];
        self.proxy.running.store().put(&ConnectionKey::new(connector, "alice"), c, Expect::Any, None).await.unwrap();
    }

    async fn stored(&self, connector: &str) -> Connection {
        self.proxy.running.store().get(&ConnectionKey::new(connector, "alice")).await.unwrap().unwrap()
    }

    fn url(&self, host_path: &str) -> String {
        let (host, path) = host_path.split_at(host_path.find('/').unwrap());
        format!("https://{host}:{}{path}", self.upstream.port)
    }

    async fn call(&self, host_path: &str) -> Answer {
        get(self.proxy.addr(), &self.url(host_path), &[("proxy-authorization", &self.auth)]).await
    }

    /// `n` concurrent requests on separate connections.
    async fn parallel(&self, host_path: &str, n: usize) -> Vec<Answer> {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let (addr, url, auth) = (self.proxy.addr(), self.url(host_path), self.auth.clone());
                tokio::spawn(async move { get(addr, &url, &[("proxy-authorization", &auth)]).await })
            })
            .collect();
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap());
        }
        out
    }

    fn last_token(&self) -> String {
        self.upstream.requests().last().unwrap().headers["authorization"].to_str().unwrap().to_string()
    }

    async fn metric(&self, series: &str) -> f64 {
        let text = String::from_utf8(get(self.proxy.running.admin_addr, "/metrics", &[]).await.body.to_vec()).unwrap();
        text.lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1.0)
    }
}

async fn rotation_is_stored_and_shared(redis: bool) {
    let w = World::new(redis).await;
    w.seed("crm", "at-1", -10).await;
    let answers = w.parallel("api.crm.test/x", 40).await;
    assert!(answers.iter().all(|a| a.status == 200), "{:?}", answers.iter().map(|a| a.status).collect::<Vec<_>>());
    assert_eq!(w.endpoint.calls(), 1, "concurrent requests must share one refresh");
    assert!(
        w.upstream.requests().iter().all(|s| s.headers["authorization"] == "Bearer at-2"),
        "an old token was injected"
    );
    let stored = w.stored("crm").await;
    assert_eq!(stored.access_token.expose(), "at-2");
    assert_eq!(stored.refresh_token.as_ref().unwrap().expose(), "rt-2", "the rotated refresh token was not stored");
    assert_eq!(stored.scopes, ["crm.read"]);
    assert!(stored.expires_at.unwrap() > now() + 3500);
    assert_eq!(w.metric(r#"tollgate_token_refresh_total{connector="crm",result="success"}"#).await, 1.0);
}

#[tokio::test]
async fn rotation_memory() {
    rotation_is_stored_and_shared(false).await;
}

#[tokio::test]
async fn rotation_redis() {
    rotation_is_stored_and_shared(true).await;
}

#[tokio::test]
async fn permanent_failure_marks_needs_reauth_once() {
    let w = World::new(true).await;
    w.seed("crm", "at-1", -10).await;
    w.endpoint.set_mode(Mode::Refuse("invalid_grant"));
    let json = w.call("api.crm.test/x").await.assert_refused(401, "reauth_required");
    assert!(json["connect_url"].as_str().unwrap().contains("/oauth/start?ticket="));
    assert_eq!(w.stored("crm").await.status, ConnectionStatus::NeedsReauth);
    w.call("api.crm.test/x").await.assert_refused(401, "reauth_required");
    assert_eq!(w.endpoint.calls(), 1, "a connection needing re-auth must not hit the endpoint again");
    assert_eq!(w.metric(r#"tollgate_reauth_required_total{connector="crm"}"#).await, 1.0);
    assert!(w.upstream.requests().is_empty());
}

#[tokio::test]
async fn template_declared_permanent_errors_in_a_200_answer() {
    let w = World::new(false).await;
    w.seed("gh", "at-1", -10).await;
    w.endpoint.set_mode(Mode::OkError("bad_refresh_token"));
    let named = [("proxy-authorization", w.auth.as_str()), ("x-tollgate-connector", "gh")];
    get(w.proxy.addr(), &w.url("api.crm.test/gh/user"), &named).await.assert_refused(401, "reauth_required");
    assert_eq!(w.stored("gh").await.status, ConnectionStatus::NeedsReauth);
    // The same answer for a connector without that template is transient.
    w.seed("crm", "at-1", -10).await;
    w.call("api.crm.test/x").await.assert_refused(503, "token_endpoint_unavailable");
    assert_eq!(w.stored("crm").await.status, ConnectionStatus::Connected);
    // GitHub's way of saying the client secret is wrong is the connector's failure: the
    // connection is left as it is.
    w.seed("gh", "at-1", -10).await;
    w.endpoint.set_mode(Mode::OkError("incorrect_client_credentials"));
    get(w.proxy.addr(), &w.url("api.crm.test/gh/user"), &named).await.assert_refused(503, "connector_misconfigured");
    let stored = w.stored("gh").await;
    assert_eq!((stored.status, stored.refresh_token.unwrap().expose()), (ConnectionStatus::Connected, "rt-1"));
}

#[tokio::test]
async fn transient_failures_keep_valid_tokens_and_mark_nothing() {
    let w = World::new(false).await;
    for mode in [Mode::Status(503), Mode::Status(429), Mode::Status(500), Mode::OkError("temporarily_unavailable")] {
        w.endpoint.set_mode(mode.clone());
        // Inside the 60 s skew but not expired: the current token is still used.
        w.seed("crm", "at-still-valid", 30).await;
        assert_eq!(w.call("api.crm.test/x").await.status, 200, "{mode:?}");
        assert_eq!(w.last_token(), "Bearer at-still-valid");
        // Expired: 503 with Retry-After, and the connection is left as it was.
        w.seed("crm", "at-expired", -1).await;
        tokio::time::sleep(Duration::from_millis(1100)).await; // past the retry backoff
        let answer = w.call("api.crm.test/x").await;
        answer.assert_refused(503, "token_endpoint_unavailable");
        assert!(answer.headers["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
        let stored = w.stored("crm").await;
        assert_eq!((stored.status, stored.access_token.expose()), (ConnectionStatus::Connected, "at-expired"));
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    assert!(w.metric(r#"tollgate_token_refresh_total{connector="crm",result="transient_failure"}"#).await >= 4.0);
    assert_eq!(w.metric(r#"tollgate_reauth_required_total{connector="crm"}"#).await, 0.0);
}

#[tokio::test]
async fn answers_without_expires_in() {
    let w = World::new(false).await;
    w.endpoint.set_mode(Mode::NoExpiresIn { with_refresh: true });
    w.seed("crm", "at-1", -10).await;
    assert_eq!(w.call("api.crm.test/x").await.status, 200);
    let stored = w.stored("crm").await;
    let lifetime = stored.expires_at.unwrap() - now();
    assert!((7100..=7200).contains(&lifetime), "default_lifetime (2h) applies: {lifetime}");

    let w = World::new(false).await;
    w.endpoint.set_mode(Mode::NoExpiresIn { with_refresh: false });
    w.seed("crm", "at-1", -10).await;
    assert_eq!(w.call("api.crm.test/x").await.status, 200);
    let stored = w.stored("crm").await;
    assert_eq!(stored.expires_at, None, "without a refresh token the token lives until a 401");
    assert_eq!(stored.refresh_token.unwrap().expose(), "rt-1", "the refresh token must never be dropped");
}

#[tokio::test]
async fn client_credentials_fetched_once_and_cached() {
    let w = World::new(true).await;
    let answers = w.parallel("billing.test/v1/invoices", 20).await;
    assert!(answers.iter().all(|a| a.status == 200));
    assert_eq!(w.endpoint.calls(), 1);
    assert_eq!(w.endpoint.state.lock().unwrap().grant_types, ["client_credentials"]);
    assert!(w.upstream.requests().iter().all(|s| s.headers["authorization"] == "Bearer at-2"));
    let key = ConnectionKey::new("billing", "client_credentials:billing.read");
    assert!(w.proxy.running.store().get(&key).await.unwrap().is_some(), "shared through the store");
}

#[tokio::test]
async fn a_slow_token_endpoint_is_transient() {
    let ca = TestCa::new(&["api.crm.test", "auth.test"]);
    let upstream = Upstream::ok(&ca).await;
    let hold: common::oauth::Hold = Arc::new(|| Box::pin(tokio::time::sleep(Duration::from_secs(3))));
    let endpoint = TokenEndpoint::start(&ca, &["rt-1"], Some(hold)).await;
    let yaml = format!(
        "{}\nrefresh: {{ token_endpoint_timeout: \"500ms\", lock_ttl: \"2s\" }}\nconnectors:\n  - name: crm\n    grant: authorization_code\n    authorization_endpoint: https://auth.test:{tp}/a\n    token_endpoint: https://auth.test:{tp}/token\n    client_id: c\n    allowed_domains: [\"https://api.crm.test:{up}/*\"]\n",
        base_config(&ca),
        tp = endpoint.server.port,
        up = upstream.port
    );
    let proxy = TestProxy::start(&yaml).await;
    let mut c = Connection::new(Secret::new("at-1"), Some(now() - 5));
    c.refresh_token = Some(Secret::new("rt-1"));
    proxy.running.store().put(&ConnectionKey::new("crm", "alice"), c, Expect::Any, None).await.unwrap();
    let auth = bearer(&jwt("alice", serde_json::json!({})));
    let answer =
        get(proxy.addr(), &format!("https://api.crm.test:{}/x", upstream.port), &[("proxy-authorization", &auth)])
            .await;
    answer.assert_refused(503, "token_endpoint_unavailable");
    assert_eq!(
        proxy.running.store().get(&ConnectionKey::new("crm", "alice")).await.unwrap().unwrap().status,
        ConnectionStatus::Connected
    );
}

#[tokio::test]
async fn an_upstream_401_renews_once_and_retries_replayable_requests() {
    let ca = TestCa::new(&["api.crm.test", "auth.test"]);
    // The provider revoked at-1 early: the upstream refuses it although it has not expired.
    let upstream = Upstream::with(&ca, |req| async move {
        let refused = req.headers()["authorization"] == "Bearer at-1";
        let body = http_body_util::BodyExt::collect(req.into_body()).await.unwrap().to_bytes();
        let mut r = http::Response::new(full(body));
        if refused {
            *r.status_mut() = http::StatusCode::UNAUTHORIZED;
        }
        r
    })
    .await;
    let endpoint = TokenEndpoint::start(&ca, &["rt-1"], None).await;
    let yaml = format!(
        "{}\nconnectors:\n  - name: crm\n    grant: authorization_code\n    authorization_endpoint: https://auth.test:{tp}/a\n    token_endpoint: https://auth.test:{tp}/token\n    client_id: c\n    allowed_domains: [\"https://api.crm.test:{up}/*\"]\n",
        base_config(&ca),
        tp = endpoint.server.port,
        up = upstream.port
    );
    let proxy = TestProxy::start(&yaml).await;
    let mut c = Connection::new(Secret::new("at-1"), Some(now() + 3600));
    c.refresh_token = Some(Secret::new("rt-1"));
    proxy.running.store().put(&ConnectionKey::new("crm", "alice"), c, Expect::Any, None).await.unwrap();
    let auth = bearer(&jwt("alice", serde_json::json!({})));
    let url = format!("https://api.crm.test:{}/items", upstream.port);

    // Ten concurrent refused requests: one renewal, every request retried once and answered.
    let handles: Vec<_> = (0..10)
        .map(|i| {
            let (addr, url, auth) = (proxy.addr(), url.clone(), auth.clone());
            tokio::spawn(async move {
                let body = bytes::Bytes::from(format!("payload-{i}"));
                send(addr, "POST", &url, &[("proxy-authorization", &auth), ("content-type", "text/plain")], body).await
            })
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let answer = h.await.unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, format!("payload-{i}"), "the replayed body must be the same bytes");
    }
    assert_eq!(endpoint.calls(), 1, "requests refused with the same token version share one renewal");
    let tokens: Vec<String> =
        upstream.requests().iter().map(|s| s.headers["authorization"].to_str().unwrap().to_string()).collect();
    assert_eq!(tokens.iter().filter(|t| *t == "Bearer at-2").count(), 10);
    assert!(tokens.len() <= 20);

    // A streamed body (no Content-Length) is never replayed: the 401 goes back as it came.
    proxy
        .running
        .store()
        .put(
            &ConnectionKey::new("crm", "alice"),
            {
                let mut c = Connection::new(Secret::new("at-1"), Some(now() + 3600));
                c.refresh_token = Some(Secret::new("rt-2"));
                c
            },
            Expect::Any,
            None,
        )
        .await
        .unwrap();
    let before = upstream.requests().len();
    let stream = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let (tx, body) = channel_body();
    let request = http::Request::post(&url).header("proxy-authorization", &auth).body(body).unwrap();
    let pending = tokio::spawn(async move { sender.send_request(request).await });
    tx.send(bytes::Bytes::from("streamed")).await.unwrap();
    // Keep the body open until the head has gone out, so it is sent as a stream (chunked).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while upstream.requests().len() == before {
        assert!(std::time::Instant::now() < deadline, "a streamed body was held back instead of forwarded");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(tx);
    let response = pending.await.unwrap().unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.headers().get("x-tollgate-error").is_none(), "the upstream's own 401 is relayed");
    assert_eq!(upstream.requests().len(), before + 1);
    assert_eq!(endpoint.calls(), 1);
}
