//! The console in a real browser (Debian's Chromium driven by Playwright, tests/e2e/console)
//! against a running Tollgate on a real redis-server and the real OpenID provider
//! (oidc-provider): a user opens a session link, connects through the provider's consent in a
//! popup and tests the connection (healthy); a tool call through the proxy carries the token
//! the provider accepts; an admin signs in, copies the redirect URI, creates a connector from
//! the provider's issuer with Check, edits it (the secret shown as its last four, kept when
//! left blank), finds the user's connection and revokes it; the user sees it revoked. axe-core finds no serious accessibility violation on
//! any page; each page is saved as a screenshot under target/console-screenshots.

mod common;

use std::path::PathBuf;
use std::process::Command;

use bytes::Bytes;
use common::oidc::{free_port, AuthServer};
use common::redis_server::RedisServer;
use common::*;
use serde_json::json;
use tollgate::token::{ConnectionKey, ConnectionStatus};

/// Runs one phase of the browser script; panics with its output when it fails.
async fn phase(name: &'static str, env: Vec<(&'static str, String)>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/console");
    assert!(
        dir.join("node_modules/playwright-core").exists() && PathBuf::from("/usr/bin/chromium").exists(),
        "Playwright and Chromium are needed: run scripts/setup as root (make test does)"
    );
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .current_dir(&dir)
            .arg("console.test.mjs")
            .arg(name)
            .envs(env)
            .output()
            .expect("node is needed for the browser tests")
    })
    .await
    .unwrap();
    let (out, err) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "browser phase {name} failed\nstdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains(r#""ok":true"#), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_connects_tests_and_an_admin_revokes_in_the_browser() {
    let ca = TestCa::new(&["auth.test"]);
    let redis = RedisServer::start();
    let public_port = free_port();
    let console = format!("http://127.0.0.1:{public_port}");
    let (server, _pem) = AuthServer::start(&ca, &format!("{console}/oauth/callback"));
    let ap = server.port;
    let yaml = base_config(&ca).replace(
        "public_url: https://tollgate.test",
        &format!("public_url: {console}\npublic_listen: 127.0.0.1:{public_port}"),
    ) + &format!(
        r#"store: {{ backend: redis, redis_url: "{redis}" }}
console:
  oidc:
    issuer: https://auth.test:{ap}
    client_id: tollgate-console
    client_secret: tollgate-console-secret
    scopes: [openid, groups]
    admin_claim: {{ name: groups, value: tollgate-admins }}
connectors:
  - name: e2e
    grant: authorization_code
    issuer: https://auth.test:{ap}
    client_id: tollgate
    client_secret: tollgate-client-secret
    scopes: [openid, offline_access]
    authorize_params: {{ prompt: consent }}
    allowed_domains: ["https://auth.test:{ap}/me"]
    health_check: {{ url: "https://auth.test:{ap}/me" }}
"#,
        redis = redis.url()
    );
    let proxy = TestProxy::start(&yaml).await;
    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots");
    let state = tempfile::NamedTempFile::new().unwrap();
    let env = |link: &str| {
        vec![
            ("CONSOLE", console.clone()),
            ("LINK", link.to_string()),
            ("AUTH_PORT", ap.to_string()),
            ("STATE", state.path().display().to_string()),
            ("SHOTS", shots.display().to_string()),
        ]
    };

    // The platform mints alice's session link with her own credential.
    let alice = bearer(&jwt("alice", json!({})));
    let link = send(proxy.addr(), "POST", "/console-link", &[("proxy-authorization", &alice)], Bytes::new()).await;
    assert_eq!(link.status, 200, "{:?}", link.body);
    phase("connect", env(link.json()["url"].as_str().unwrap())).await;

    // A tool call through the proxy carries the token the provider issued her.
    let me = get(proxy.addr(), &format!("https://auth.test:{ap}/me"), &[("proxy-authorization", &alice)]).await;
    assert_eq!(me.status, 200, "{:?}", me.body);
    assert_eq!(me.json()["sub"], "alice");
    let key = ConnectionKey::new("e2e", "alice");
    let stored = proxy.running.store().get(&key).await.unwrap().unwrap();
    assert_eq!(stored.health.state(), "healthy", "the browser's Test was stored");

    // An admin revokes it in the browser.
    let admin_link = send(
        proxy.running.admin_addr,
        "POST",
        "/admin/console/links",
        &[("authorization", "Bearer admin-secret-token")],
        Bytes::from(r#"{"name":"ops-ana"}"#),
    )
    .await;
    assert_eq!(admin_link.status, 201);
    phase("admin", env(admin_link.json()["url"].as_str().unwrap())).await;
    // The connector the admin created with Check, then edited with the secret left blank.
    let wiki =
        get(proxy.running.admin_addr, "/admin/connectors/wiki", &[("authorization", "Bearer admin-secret-token")])
            .await;
    let wiki = wiki.json();
    assert_eq!(
        (wiki["client_secret"].as_str(), wiki["description"].as_str()),
        (Some("•••• 5678"), Some("The team wiki"))
    );
    assert_eq!(wiki["token_endpoint"], format!("https://auth.test:{ap}/token"), "filled by Check");
    assert_eq!(proxy.running.store().get(&key).await.unwrap().unwrap().status, ConnectionStatus::Revoked);
    get(proxy.addr(), &format!("https://auth.test:{ap}/me"), &[("proxy-authorization", &alice)])
        .await
        .assert_refused(401, "connection_required");

    // The user sees it revoked.
    phase("revoked", env("")).await;
    // Admins (and users) sign in with the organization's identity provider.
    phase("oidc", env("")).await;
    let audit = tollgate::audit::read(proxy.running.store().as_ref()).await.unwrap();
    assert!(audit.iter().any(|e| e.actor == "admin-ana" && e.action == "console.sign_in"), "{audit:?}");
    drop(server);
}
