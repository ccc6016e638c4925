//! A connector whose client credentials are wrong is the connector's failure, not its users':
//! `invalid_client` at refresh marks the connector unhealthy, answers `503
//! connector_misconfigured` naming it, and leaves every user's refresh token in place; once the
//! configuration is fixed (a reload), the same connections refresh with no reconnect. Against
//! a token endpoint that checks the client secret as a real one does, on a real redis-server.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::oauth::TokenEndpoint;
use common::redis_server::RedisServer;
use common::*;
use tollgate::config::env::Environment;
use tollgate::live::reload::reload_file;
use tollgate::secret::Secret;
use tollgate::token::{Connection, ConnectionKey, ConnectionStatus, Expect};

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn config(ca: &TestCa, redis: &RedisServer, token_port: u16, upstream_port: u16, secret: &str) -> String {
    format!(
        r#"{base}
store: {{ backend: redis, redis_url: "{redis}" }}
refresh: {{ token_endpoint_timeout: "2s", lock_ttl: "5s", retry_backoff: "1s" }}
connectors:
  - name: crm
    grant: authorization_code
    authorization_endpoint: https://auth.test:{token_port}/authorize
    token_endpoint: https://auth.test:{token_port}/token
    client_id: crm-client
    client_secret: "{secret}"
    allowed_domains: ["https://api.crm.test:{upstream_port}/*"]
"#,
        base = base_config(ca),
        redis = redis.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_client_secret_marks_the_connector_and_a_fix_repairs_every_user() {
    let ca = TestCa::new(&["api.crm.test", "auth.test"]);
    let redis = RedisServer::start();
    let upstream = Upstream::ok(&ca).await;
    let endpoint = TokenEndpoint::start(&ca, &["rt-alice", "rt-bob"], None).await;
    endpoint.state.lock().unwrap().client_secret = Some("crm-secret-rotated".into());
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), config(&ca, &redis, endpoint.server.port, upstream.port, "crm-secret-old")).unwrap();
    let env = Environment::from_vars([("UNUSED", "x")]);
    let running = start_from_file(file.path(), &env).await;
    let store = running.store().clone();
    for user in ["alice", "bob"] {
        let mut c = Connection::new(Secret::new(format!("at-{user}")), Some(now() - 10));
        c.refresh_token = Some(Secret::new(format!("rt-{user}")));
        store.put(&ConnectionKey::new("crm", user), c, Expect::Any, None).await.unwrap();
    }
    let url = format!("https://api.crm.test:{}/x", upstream.port);
    let call = |user: &'static str| {
        let (addr, url) = (running.proxy_addr, url.clone());
        async move { get(addr, &url, &[("proxy-authorization", &bearer(&jwt(user, serde_json::json!({}))))]).await }
    };
    let metric = |series: &'static str| {
        let admin = running.admin_addr;
        async move {
            let text = String::from_utf8(get(admin, "/metrics", &[]).await.body.to_vec()).unwrap();
            text.lines().find(|l| l.starts_with(series)).and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        }
    };
    assert_eq!(metric(r#"tollgate_connector_healthy{connector="crm"}"#).await, Some(1.0));

    // The endpoint refuses the client: the connector's fault, named in the answer.
    let refused = call("alice").await;
    let body = refused.assert_refused(503, "connector_misconfigured");
    assert!(body["message"].as_str().unwrap().contains("crm"), "{body}");
    assert!(body["message"].as_str().unwrap().contains("invalid_client"), "{body}");
    // Bob's request inside the retry pause does not call the endpoint again.
    call("bob").await.assert_refused(503, "connector_misconfigured");
    assert_eq!(endpoint.calls(), 1);
    // No user was touched: both connections keep their state and refresh token.
    for user in ["alice", "bob"] {
        let stored = store.get(&ConnectionKey::new("crm", user)).await.unwrap().unwrap();
        assert_eq!(stored.status, ConnectionStatus::Connected, "{user}");
        assert_eq!(stored.refresh_token.unwrap().expose(), format!("rt-{user}"));
        assert_eq!(stored.version, 1);
    }
    assert_eq!(metric(r#"tollgate_connector_healthy{connector="crm"}"#).await, Some(0.0));
    assert_eq!(metric(r#"tollgate_reauth_required_total{connector="crm"}"#).await, Some(0.0));
    assert_eq!(
        metric(r#"tollgate_token_refresh_total{connector="crm",result="connector_misconfigured"}"#).await,
        Some(1.0)
    );
    let admin = [("authorization", "Bearer admin-secret-token")];
    let shown = get(running.admin_addr, "/admin/connectors/crm", &admin).await.json();
    assert_eq!(shown["client_health"]["state"], "unhealthy", "{shown}");
    assert_eq!(shown["client_health"]["reason"], "invalid_client");
    let tested = send(running.admin_addr, "POST", "/admin/connectors/crm/test", &admin, Default::default()).await;
    assert_eq!(tested.json()["health"], "unhealthy");

    // The administrator fixes the secret; the same connections refresh, no reconnect.
    std::fs::write(file.path(), config(&ca, &redis, endpoint.server.port, upstream.port, "crm-secret-rotated"))
        .unwrap();
    reload_file(&running.shared, file.path(), &env).unwrap();
    for user in ["alice", "bob"] {
        let answer = call(user).await;
        assert_eq!(answer.status, 200, "{user}: {:?}", answer.body);
        let stored = store.get(&ConnectionKey::new("crm", user)).await.unwrap().unwrap();
        assert_ne!(stored.refresh_token.unwrap().expose(), format!("rt-{user}"), "{user}'s refresh token rotated");
    }
    assert_eq!(endpoint.calls(), 3);
    assert_eq!(metric(r#"tollgate_connector_healthy{connector="crm"}"#).await, Some(1.0));
    let shown = get(running.admin_addr, "/admin/connectors/crm", &admin).await.json();
    assert_eq!(shown["client_health"]["state"], "healthy", "{shown}");
}
