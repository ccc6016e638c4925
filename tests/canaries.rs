//! Secrets never leak: every error path is driven with unique canary secrets (static token,
//! client secret, stored and refreshed tokens, refresh tokens, caller JWT and its signing
//! secret, API key, admin token, encryption key) through a real tollgate process on Redis,
//! and none appears in its logs (at debug level), /metrics, error bodies or admin answers.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use bytes::Bytes;
use common::oauth::{Mode, TokenEndpoint};
use common::process::TollgateProcess;
use common::redis_server::RedisServer;
use common::*;
use tollgate::config::EncryptionKey;
use tollgate::metrics::Metrics;
use tollgate::secret::Secret;
use tollgate::token::crypto::Sealer;
use tollgate::token::store::redis::RedisStore;
use tollgate::token::{Connection, ConnectionKey, Expect, TokenStore};

const CALLER_CANARY: &str = "CANARY-caller-signing-secret-0123456789";

fn canary_jwt(sub: &str) -> String {
    let exp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({ "sub": sub, "aud": "tollgate", "exp": exp }),
        &jsonwebtoken::EncodingKey::from_secret(CALLER_CANARY.as_bytes()),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_logs_metrics_errors_or_admin_answers() {
    let ca = TestCa::new(&["127.0.0.1"]);
    let redis = RedisServer::start();
    let upstream = Upstream::ok(&ca).await;
    let endpoint = TokenEndpoint::start(&ca, &["CANARY-refresh-good"], None).await;
    endpoint.set_mode(Mode::Raw(serde_json::json!({
        "access_token": "CANARY-issued-access", "refresh_token": "CANARY-issued-refresh", "token_type": "Bearer", "expires_in": 3600
    })));
    let key_bytes = [0x5au8; 32];
    let key_b64 = base64::engine::general_purpose::STANDARD.encode(key_bytes);
    let api_key = "CANARY-api-key-for-a-service";
    let api_hash: String = ring::digest::digest(&ring::digest::SHA256, api_key.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let (tp, up) = (endpoint.server.port, upstream.port);
    let yaml = format!(
        r#"admin_tokens: ["CANARY-admin-token"]
encryption_keys: [{{ id: k1, secret: "{key_b64}" }}]
store: {{ backend: redis, redis_url: "{redis}" }}
limits: {{ max_header_bytes: "2KiB" }}
callers:
  jwt: {{ audience: tollgate, hs256_secret: "{CALLER_CANARY}" }}
  api_keys: [{{ name: svc, sha256: {api_hash}, connectors: [weather] }}]
upstream: {{ extra_ca_file: {ca}, response_timeout: "2s" }}
refresh: {{ retry_backoff: "1s" }}
connectors:
  - name: weather
    token: "CANARY-static-token"
    unsafe_allow_ranges: ["127.0.0.0/8"]
    allowed_domains: ["https://127.0.0.1:{up}/weather/*", "https://127.0.0.1:1/weather/*"]
  - name: crm
    grant: authorization_code
    authorization_endpoint: https://127.0.0.1:{tp}/authorize
    token_endpoint: https://127.0.0.1:{tp}/token
    client_id: crm
    client_secret: "CANARY-client-secret"
    unsafe_allow_ranges: ["127.0.0.0/8"]
    allowed_domains: ["https://127.0.0.1:{up}/crm/*"]
"#,
        redis = redis.url(),
        ca = ca.ca_file.path().display()
    );
    // Stored connections with canary tokens: one to refresh, one refused, one missing.
    let store = RedisStore::new(
        &redis.url(),
        Sealer::new(&[EncryptionKey { id: "k1".into(), key: key_bytes }]).unwrap(),
        Duration::from_secs(2),
        Metrics::new(std::iter::empty()).unwrap(),
    )
    .unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    for (principal, refresh) in [("alice", "CANARY-refresh-good"), ("bob", "CANARY-refresh-bad")] {
        let mut c = Connection::new(Secret::new(format!("CANARY-stored-access-{principal}")), Some(now - 5));
        c.refresh_token = Some(Secret::new(refresh));
        store.put(&ConnectionKey::new("crm", principal), c, Expect::Any, None).await.unwrap();
    }
    let log = tempfile::NamedTempFile::new().unwrap();
    let tollgate = TollgateProcess::start_logging(&yaml, Some(log.path())).await;
    let (p, admin) = (tollgate.proxy, tollgate.admin);
    let alice = bearer(&canary_jwt("alice"));
    let bob = bearer(&canary_jwt("bob"));
    let forged = format!("Bearer {}x", &canary_jwt("alice")[..40]);
    let url = |path: &str| format!("https://127.0.0.1:{up}{path}");
    let mut seen = String::new();
    let mut record = |a: Answer| {
        seen.push_str(&format!("{:?}\n{}\n", a.headers, String::from_utf8_lossy(&a.body)));
        a
    };

    // Allowed, with a refresh that rotates to new canary tokens.
    assert_eq!(
        record(get(p, &url("/crm/x"), &[("proxy-authorization", &alice), ("x-tollgate-connector", "crm")]).await)
            .status,
        200
    );
    assert_eq!(
        record(get(p, &url("/weather/x"), &[("proxy-authorization", &format!("Bearer {api_key}"))]).await).status,
        200
    );
    // Every refusal.
    endpoint.set_mode(Mode::Refuse("invalid_grant"));
    record(get(p, &url("/crm/x"), &[("proxy-authorization", &bob), ("x-tollgate-connector", "crm")]).await)
        .assert_refused(401, "reauth_required");
    record(
        get(
            p,
            &url("/crm/x"),
            &[("proxy-authorization", &bearer(&canary_jwt("carol"))), ("x-tollgate-connector", "crm")],
        )
        .await,
    )
    .assert_refused(401, "connection_required");
    record(get(p, &url("/weather/x"), &[("proxy-authorization", &forged)]).await)
        .assert_refused(407, "caller_unauthenticated");
    record(get(p, &url("/weather/x"), &[("proxy-authorization", "Bearer CANARY-wrong-api-key")]).await)
        .assert_refused(407, "caller_unauthenticated");
    record(
        get(
            p,
            &url("/crm/x"),
            &[("proxy-authorization", &format!("Bearer {api_key}")), ("x-tollgate-connector", "crm")],
        )
        .await,
    )
    .assert_refused(403, "connector_forbidden");
    record(get(p, &url("/x"), &[("proxy-authorization", &alice), ("x-tollgate-connector", "nope")]).await)
        .assert_refused(400, "connector_unknown");
    record(get(p, "https://elsewhere.test/?token=CANARY-query", &[("proxy-authorization", &alice)]).await)
        .assert_refused(403, "endpoint_not_allowed");
    record(get(p, &url("/weather/%2e%2e/x"), &[("proxy-authorization", &alice)]).await)
        .assert_refused(400, "bad_target");
    record(
        get(
            p,
            &url("/weather/ws"),
            &[("proxy-authorization", &alice), ("upgrade", "websocket"), ("connection", "Upgrade")],
        )
        .await,
    )
    .assert_refused(400, "upgrade_refused");
    record(get(p, &url("/weather/x"), &[("proxy-authorization", &alice), ("x-pad", &"CANARY-".repeat(400))]).await)
        .assert_refused(431, "headers_too_large");
    record(get(p, "https://127.0.0.1:1/weather/x", &[("proxy-authorization", &alice)]).await)
        .assert_refused(502, "upstream_unreachable");
    record(get(p, "/nowhere", &[]).await).assert_refused(400, "proxy_request_expected");
    record(send(p, "CONNECT", "elsewhere.test:443", &[("proxy-authorization", &alice)], Bytes::new()).await)
        .assert_refused(403, "endpoint_not_allowed");
    // Admin answers.
    let token = ("authorization", "Bearer CANARY-admin-token");
    for path in ["/admin/connectors", "/admin/connectors/crm", "/admin/connections", "/readyz", "/ca.pem"] {
        assert_eq!(record(get(admin, path, &[token]).await).status, 200, "{path}");
    }
    record(
        send(
            admin,
            "POST",
            "/admin/explain",
            &[token],
            Bytes::from(r#"{"url":"https://127.0.0.1/x?key=CANARY-in-query"}"#),
        )
        .await,
    );
    // Stored connectors: written, changed (secret kept), refused, listed, deleted.
    let headers = [token];
    let stored = |body: &'static str| send(admin, "PUT", "/admin/connectors/vault", &headers, Bytes::from(body));
    let created = record(
        stored(r#"{"grant":"client_credentials","token_endpoint":"https://127.0.0.1:1/token","client_id":"v","client_secret":"CANARY-stored-secret","allowed_domains":["https://vault.test/*"]}"#).await,
    );
    assert_eq!(created.status, 201, "{:?}", created.body);
    let changed = record(
        stored(r#"{"grant":"client_credentials","token_endpoint":"https://127.0.0.1:1/token","client_id":"v","allowed_domains":["https://vault.test/v2/*"]}"#).await,
    );
    assert_eq!(changed.status, 200, "{:?}", changed.body);
    record(stored(r#"{"grant":"static","token":"CANARY-stored-bad","allowed_domains":["https://*/*"]}"#).await)
        .assert_refused(400, "invalid_request");
    record(stored(r#"{"grant":"static","token":12345678987654321,"allowed_domains":["https://v.test/*"]}"#).await)
        .assert_refused(400, "invalid_request");
    assert_eq!(record(get(admin, "/admin/connectors/vault", &[token]).await).json()["client_secret"], "•••• cret");
    assert_eq!(record(send(admin, "DELETE", "/admin/connectors/vault", &[token], Bytes::new()).await).status, 204);
    record(get(admin, "/admin/connectors", &[("authorization", "Bearer CANARY-wrong-admin")]).await)
        .assert_refused(401, "caller_unauthenticated");
    let metrics = String::from_utf8(get(admin, "/metrics", &[]).await.body.to_vec()).unwrap();
    // Give the logger a moment, then read everything it wrote.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let logs = std::fs::read_to_string(log.path()).unwrap();
    assert!(logs.contains("\"decision\":\"reauth_required\""), "the audit log was captured");
    assert!(seen.contains("x-tollgate-error"), "refusals were captured");

    // The pad header is the caller's own text echoed nowhere; every other canary is a secret.
    let secrets = [
        "CANARY-static-token",
        "CANARY-client-secret",
        "CANARY-stored-access",
        "CANARY-refresh-good",
        "CANARY-refresh-bad",
        "CANARY-issued-access",
        "CANARY-issued-refresh",
        CALLER_CANARY,
        api_key,
        "CANARY-wrong-api-key",
        "CANARY-admin-token",
        "CANARY-wrong-admin",
        "CANARY-stored-secret",
        "CANARY-stored-bad",
        "12345678987654321",
        "CANARY-query",
        "CANARY-in-query",
        &key_b64,
        &alice[7..],
        &bob[7..],
        &forged[7..],
    ];
    for secret in secrets {
        for (name, text) in [("logs", &logs), ("metrics", &metrics), ("responses", &seen)] {
            assert!(!text.contains(secret), "{secret} leaked into {name}");
        }
    }
    // The issued tokens really were used upstream (so the test would notice them leaking).
    assert!(upstream.requests().iter().any(|r| r.headers["authorization"] == "Bearer CANARY-issued-access"));
}
