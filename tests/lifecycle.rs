//! The connection lifecycle on a real redis-server: events delivered to a real webhook
//! receiver (Python, verifying signatures with the code docs/events.md shows) that fails the
//! first deliveries, across a Tollgate restart and a Redis outage; revocation through the
//! durable queue when a user disconnects, when an admin deletes a connector, while the
//! provider's revocation endpoint fails and across a restart; refresh-token expiry recorded,
//! counted and announced once.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::oauth::{Mode, TokenEndpoint};
use common::redis_server::RedisServer;
use common::*;
use serde_json::{json, Value};
use tollgate::config::env::Environment;
use tollgate::secret::Secret;
use tollgate::token::events::Event;
use tollgate::token::{Connection, ConnectionKey, Expect};

const HOOK_SECRET: &str = "whsec-test-0123456789";
const ADMIN: (&str, &str) = ("authorization", "Bearer admin-secret-token");

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// The Python receiver, killed when dropped.
struct Receiver {
    child: Child,
    port: u16,
    log: tempfile::NamedTempFile,
}

impl Receiver {
    fn start(secret: &str, fail_first: usize) -> Receiver {
        let log = tempfile::NamedTempFile::new().unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/webhook_receiver.py");
        let mut child = Command::new("python3")
            .args([script, secret, &fail_first.to_string(), &log.path().display().to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 is needed for the webhook receiver (make setup installs it)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| panic!("the receiver did not start: {line:?}"));
        Receiver { child, port, log }
    }

    fn deliveries(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.log.path()).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// Deliveries of `kind`, as (status, event).
    fn of(&self, kind: &str) -> Vec<(u64, Value)> {
        self.deliveries()
            .into_iter()
            .filter(|d| d["type_header"] == kind)
            .map(|d| (d["status"].as_u64().unwrap(), serde_json::from_str(d["body"].as_str().unwrap()).unwrap()))
            .collect()
    }

    async fn wait_for(&self, what: &str, done: impl Fn(&Receiver) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done(self) {
            assert!(Instant::now() < deadline, "waited 30 s for {what}; deliveries: {:#?}", self.deliveries());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(ca: &TestCa, redis: &RedisServer, auth_port: u16, upstream_port: u16, hook_port: u16) -> String {
    format!(
        r#"{base}
store: {{ backend: redis, redis_url: "{redis}" }}
refresh: {{ token_endpoint_timeout: "2s", lock_ttl: "5s", retry_backoff: "1s" }}
events:
  webhooks:
    - url: http://hooks.test:{hook_port}/tollgate
      secret: "{HOOK_SECRET}"
      unsafe_allow_http: true
  retry_backoff: 1s
  retry_max: 2s
  sweep_interval: 1s
connectors:
  - name: crm
    grant: authorization_code
    authorization_endpoint: https://auth.test:{auth_port}/authorize
    token_endpoint: https://auth.test:{auth_port}/token
    revocation_endpoint: https://auth.test:{auth_port}/revoke
    client_id: crm-client
    client_secret: crm-secret
    allowed_domains: ["https://api.crm.test:{upstream_port}/*"]
"#,
        base = base_config(ca),
        redis = redis.url()
    )
}

async fn connect(store: &std::sync::Arc<dyn tollgate::token::TokenStore>, connector: &str, user: &str, expired: bool) {
    let expires = if expired { now() - 10 } else { now() + 3600 };
    let mut c = Connection::new(Secret::new(format!("at-{user}")), Some(expires));
    c.refresh_token = Some(Secret::new(format!("rt-{user}")));
    store.put(&ConnectionKey::new(connector, user), c, Expect::Any, None).await.unwrap();
}

async fn admin_json(admin: std::net::SocketAddr, path: &str) -> Value {
    let answer = get(admin, path, &[ADMIN]).await;
    assert_eq!(answer.status, 200, "{path}: {:?}", answer.body);
    serde_json::from_slice(&answer.body).unwrap()
}

async fn metric(admin: std::net::SocketAddr, series: &str) -> Option<f64> {
    let text = String::from_utf8(get(admin, "/metrics", &[]).await.body.to_vec()).unwrap();
    text.lines().find(|l| l.starts_with(series)).and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_a_failing_receiver_across_a_restart_and_a_redis_outage() {
    let ca = TestCa::new(&["api.crm.test", "auth.test"]);
    let mut redis = RedisServer::start();
    let upstream = Upstream::ok(&ca).await;
    let endpoint = TokenEndpoint::start(&ca, &[], None).await;
    let receiver = Receiver::start(HOOK_SECRET, 2);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), config(&ca, &redis, endpoint.server.port, upstream.port, receiver.port)).unwrap();
    let env = Environment::from_vars([("UNUSED", "x")]);
    let first = start_from_file(file.path(), &env).await;
    connect(first.store(), "crm", "alice", true).await;

    // The provider refuses alice's refresh token for good: connection.needs_reauth.
    endpoint.set_mode(Mode::Refuse("invalid_grant"));
    let url = format!("https://api.crm.test:{}/x", upstream.port);
    let alice = bearer(&jwt("alice", json!({})));
    get(first.proxy_addr, &url, &[("proxy-authorization", &alice)]).await.assert_refused(401, "reauth_required");
    receiver.wait_for("the first attempt", |r| !r.of("connection.needs_reauth").is_empty()).await;
    // Restarted between attempts: the queue is in Redis.
    first.shutdown().await;
    let second = start_from_file(file.path(), &env).await;
    receiver
        .wait_for("the delivery after the restart", |r| r.of("connection.needs_reauth").iter().any(|(s, _)| *s == 200))
        .await;
    let attempts = receiver.of("connection.needs_reauth");
    assert_eq!(attempts.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [503, 503, 200], "{attempts:?}");
    let ids: Vec<&Value> = attempts.iter().map(|(_, e)| &e["id"]).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "every attempt carries the same event id: {ids:?}");
    let event = &attempts[2].1;
    assert_eq!((event["connector"].as_str(), event["principal"].as_str()), (Some("crm"), Some("alice")));
    assert_eq!(event["detail"]["error"], "invalid_grant");
    assert!(event["time"].as_u64().unwrap() + 60 > now());
    assert!(receiver.deliveries().iter().all(|d| d["valid"] == true), "every delivery is signed");
    for secret in ["rt-alice", "at-alice", HOOK_SECRET, "crm-secret"] {
        assert!(!std::fs::read_to_string(receiver.log.path()).unwrap().contains(secret), "{secret} was sent");
    }
    assert_eq!(
        metric(second.admin_addr, r#"tollgate_events_total{result="delivered",type="connection.needs_reauth"}"#).await,
        Some(1.0)
    );
    assert!(admin_json(second.admin_addr, "/admin/jobs").await["jobs"].as_array().unwrap().is_empty());

    // Redis goes down; an event raised meanwhile waits in memory and is delivered once it is back.
    redis.stop();
    let raised = Event::new("connection.created", "crm", Some("bob"), None, now());
    second.state().broker.events().emit(raised.clone());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(receiver.of("connection.created").is_empty());
    redis.restart();
    receiver.wait_for("the event raised during the outage", |r| !r.of("connection.created").is_empty()).await;
    assert_eq!(receiver.of("connection.created")[0].1["id"], raised.id.as_str());
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnecting_and_deleting_a_connector_revoke_through_the_durable_queue() {
    let ca = TestCa::new(&["api.crm.test", "auth.test"]);
    let redis = RedisServer::start();
    let upstream = Upstream::ok(&ca).await;
    let endpoint = TokenEndpoint::start(&ca, &[], None).await;
    let receiver = Receiver::start(HOOK_SECRET, 0);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), config(&ca, &redis, endpoint.server.port, upstream.port, receiver.port)).unwrap();
    let env = Environment::from_vars([("UNUSED", "x")]);
    let first = start_from_file(file.path(), &env).await;
    connect(first.store(), "crm", "alice", false).await;
    endpoint.state.lock().unwrap().revoke_status = 503;

    // Alice disconnects with her own credential; bob has nothing to disconnect.
    let disconnect = |proxy, user: &str| {
        let auth = bearer(&jwt(user, json!({})));
        async move { send(proxy, "DELETE", "/connections/crm", &[("proxy-authorization", &auth)], Bytes::new()).await }
    };
    assert_eq!(disconnect(first.proxy_addr, "alice").await.status, 204);
    disconnect(first.proxy_addr, "bob").await.assert_refused(404, "not_found");
    // Its tokens are gone at once; the record stays as revoked for the user and admins to see.
    let left = first.store().get(&ConnectionKey::new("crm", "alice")).await.unwrap().expect("kept as revoked");
    assert_eq!(left.status, tollgate::token::ConnectionStatus::Revoked);
    assert!(left.refresh_token.is_none() && left.access_token.expose().is_empty());
    let listed = admin_json(first.admin_addr, "/admin/connections?connector=crm&principal=alice").await;
    assert_eq!(listed["connections"][0]["status"], "revoked", "{listed}");
    let url = format!("https://api.crm.test:{}/x", upstream.port);
    let alice = bearer(&jwt("alice", json!({})));
    get(first.proxy_addr, &url, &[("proxy-authorization", &alice)]).await.assert_refused(401, "connection_required");
    // The provider is down: the revocation stays queued, visible with its error, no token shown.
    let deadline = Instant::now() + Duration::from_secs(20);
    let job = loop {
        let jobs = admin_json(first.admin_addr, "/admin/jobs?kind=revocation").await;
        if let Some(job) = jobs["jobs"].as_array().unwrap().first().filter(|j| j["attempts"].as_u64() >= Some(2)) {
            break job.clone();
        }
        assert!(Instant::now() < deadline, "no failed attempts recorded: {jobs}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(job["principals"], json!(["alice"]));
    assert_eq!(job["last_error"], "status 503");
    assert!(!job.to_string().contains("rt-alice"), "{job}");
    first.shutdown().await;

    // Restarted; the provider is back: the revocation completes.
    endpoint.state.lock().unwrap().revoke_status = 200;
    let second = start_from_file(file.path(), &env).await;
    let revoked = |token: &'static str| {
        let state = endpoint.state.clone();
        move || state.lock().unwrap().revocations.iter().filter(|(t, h)| t == token && h == "refresh_token").count()
    };
    let alice_revoked = revoked("rt-alice");
    wait_until("alice's revocation", || alice_revoked() >= 1).await;
    wait_empty(second.admin_addr).await;
    receiver.wait_for("connection.revoked for alice", |r| !r.of("connection.revoked").is_empty()).await;

    // A stored connector is deleted: each of its connections is deleted and revoked.
    let body = json!({
        "grant": "authorization_code",
        "authorization_endpoint": format!("https://auth.test:{}/authorize", endpoint.server.port),
        "token_endpoint": format!("https://auth.test:{}/token", endpoint.server.port),
        "revocation_endpoint": format!("https://auth.test:{}/revoke", endpoint.server.port),
        "client_id": "wiki-client", "client_secret": "wiki-secret",
        "allowed_domains": [format!("https://api.crm.test:{}/wiki/*", upstream.port)],
    });
    let put = send(second.admin_addr, "PUT", "/admin/connectors/wiki", &[ADMIN], Bytes::from(body.to_string())).await;
    assert_eq!(put.status, 201, "{:?}", put.body);
    for user in ["carol", "dan"] {
        connect(second.store(), "wiki", user, false).await;
    }
    let listed = admin_json(second.admin_addr, "/admin/connections?connector=wiki").await;
    assert_eq!(listed["connections"].as_array().unwrap().len(), 2);
    let deleted = send(second.admin_addr, "DELETE", "/admin/connectors/wiki", &[ADMIN], Bytes::new()).await;
    assert_eq!(deleted.status, 204);
    for user in ["carol", "dan"] {
        assert!(second.store().get(&ConnectionKey::new("wiki", user)).await.unwrap().is_none());
    }
    let (carol, dan) = (revoked("rt-carol"), revoked("rt-dan"));
    wait_until("carol's and dan's revocations", || carol() == 1 && dan() == 1).await;
    wait_empty(second.admin_addr).await;
    receiver.wait_for("connection.revoked for carol and dan", |r| r.of("connection.revoked").len() >= 3).await;
    assert_eq!(
        metric(second.admin_addr, r#"tollgate_revocations_total{result="revoked"}"#).await,
        Some(3.0),
        "alice, carol and dan on this process"
    );
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_token_expiry_is_recorded_counted_and_announced_once() {
    let ca = TestCa::new(&["api.crm.test", "auth.test"]);
    let redis = RedisServer::start();
    let upstream = Upstream::ok(&ca).await;
    let endpoint = TokenEndpoint::start(&ca, &[], None).await;
    let receiver = Receiver::start(HOOK_SECRET, 0);
    let yaml = config(&ca, &redis, endpoint.server.port, upstream.port, receiver.port);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), yaml).unwrap();
    let running = start_from_file(file.path(), &Environment::from_vars([("UNUSED", "x")])).await;
    connect(running.store(), "crm", "alice", true).await;
    connect(running.store(), "crm", "bob", false).await;
    // Microsoft-style: the refresh token lives three days (inside the 7-day warning).
    endpoint.set_mode(Mode::Raw(json!({
        "access_token": "at-renewed", "token_type": "Bearer", "expires_in": 3600,
        "refresh_token": "rt-renewed", "refresh_token_expires_in": 3 * 86_400,
    })));
    let url = format!("https://api.crm.test:{}/x", upstream.port);
    let alice = bearer(&jwt("alice", json!({})));
    assert_eq!(get(running.proxy_addr, &url, &[("proxy-authorization", &alice)]).await.status, 200);

    let rows = admin_json(running.admin_addr, "/admin/connections?connector=crm&principal=alice").await;
    let at = rows["connections"][0]["refresh_token_expires_at"].as_u64().expect("recorded");
    assert!(at.abs_diff(now() + 3 * 86_400) < 60, "{rows}");
    receiver
        .wait_for("connection.refresh_token_expiring", |r| !r.of("connection.refresh_token_expiring").is_empty())
        .await;
    let event = &receiver.of("connection.refresh_token_expiring")[0].1;
    assert_eq!(event["principal"], "alice");
    assert_eq!(event["detail"]["refresh_token_expires_at"], at);
    let expiring = r#"tollgate_connections_refresh_expiring{connector="crm"}"#;
    assert_eq!(metric(running.admin_addr, expiring).await, Some(1.0));
    // Alice's refresh worked (healthy); bob has not been used yet (unknown).
    let connected =
        |health: &str| format!(r#"tollgate_connections{{connector="crm",health="{health}",state="connected"}}"#);
    assert_eq!(metric(running.admin_addr, &connected("healthy")).await, Some(1.0));
    assert_eq!(metric(running.admin_addr, &connected("unknown")).await, Some(1.0));
    // Later sweeps do not announce the same refresh token again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(receiver.of("connection.refresh_token_expiring").len(), 1);
    assert_eq!(metric(running.admin_addr, expiring).await, Some(1.0));
    running.shutdown().await;
}

async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "waited 30 s for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_empty(admin: std::net::SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let jobs = admin_json(admin, "/admin/jobs").await;
        if jobs["jobs"].as_array().unwrap().is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "jobs left: {jobs}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
