//! Revocation follows the connector's `unsafe_allow_http` opt-in like its token endpoint: a
//! deleted connection is revoked (RFC 7009) at an `http://` revocation endpoint with the
//! client's credentials, not silently skipped.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use common::oauth::url_decode_form;
use common::*;
use http::Response;
use http_body_util::BodyExt;
use tollgate::secret::Secret;
use tollgate::token::{Connection, ConnectionKey, Expect};

/// One revocation request as the provider saw it: path, Authorization, form.
type Seen = (String, Option<String>, Vec<(String, String)>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_connection_revokes_it_over_http_when_the_connector_allows_http() {
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let record = seen.clone();
    let provider = Upstream::plain(move |req| {
        let record = record.clone();
        async move {
            let path = req.uri().path().to_string();
            let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
            let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let form = url_decode_form(&body);
            record.lock().unwrap().push((path, auth, form));
            Response::new(full(""))
        }
    })
    .await;
    let ca = TestCa::new(&["api.crm.test"]);
    let port = provider.port;
    let yaml = format!(
        r#"{base}
connectors:
  - name: crm
    grant: authorization_code
    authorization_endpoint: http://auth.test:{port}/authorize
    token_endpoint: http://auth.test:{port}/token
    revocation_endpoint: http://auth.test:{port}/revoke
    client_id: "crm client"
    client_secret: "s3cret:with&marks"
    unsafe_allow_http: true
    allowed_domains: ["https://api.crm.test/*"]
"#,
        base = base_config(&ca)
    );
    let proxy = TestProxy::start(&yaml).await;
    let mut connection = Connection::new(Secret::new("at-1"), None);
    connection.refresh_token = Some(Secret::new("rt-to-revoke"));
    proxy.running.store().put(&ConnectionKey::new("crm", "alice"), connection, Expect::Any, None).await.unwrap();

    let admin = ("authorization", "Bearer admin-secret-token");
    let deleted =
        send(proxy.running.admin_addr, "DELETE", "/admin/connections/crm/alice", &[admin], Bytes::new()).await;
    assert_eq!(deleted.status, 204, "{:?}", deleted.body);

    let deadline = Instant::now() + Duration::from_secs(5);
    while seen.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no revocation reached the http endpoint");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let (path, auth, form) = &seen[0];
    assert_eq!(path, "/revoke");
    let pair = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(pair("token"), Some("rt-to-revoke"));
    assert_eq!(pair("token_type_hint"), Some("refresh_token"));
    assert_eq!(pair("client_secret"), None, "client_secret_basic keeps the secret out of the form");
    // RFC 6749 2.3.1: the id and secret are form-encoded before Basic encoding.
    let expected = base64::engine::general_purpose::STANDARD.encode("crm+client:s3cret%3Awith%26marks");
    assert_eq!(auth.as_deref(), Some(format!("Basic {expected}").as_str()));
    // The provider was only ever asked to revoke.
    assert!(proxy.dialed().iter().all(|a| a.port() == port));
}
