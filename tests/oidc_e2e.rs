//! End to end against a standards-compliant authorization server: oidc-provider (npm, in
//! tests/e2e/oidc) on loopback over TLS, with the real `curl` binary as the browser. Connect
//! link, login and consent, callback, a tool call with the injected token (checked at the
//! provider's userinfo endpoint), expiry and refresh with rotation, revocation on delete,
//! and client-credentials connectors on the same server, one authenticating with HTTP Basic
//! and one with `client_secret_post` (the provider refuses any other method for it).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::oidc::{free_port, AuthServer};
use common::*;
use tollgate::token::ConnectionKey;

/// curl with a cookie jar, trusting the test CA, resolving auth.test to loopback.
struct Browser {
    jar: tempfile::NamedTempFile,
    ca: PathBuf,
    auth_port: u16,
}

struct Page {
    status: u16,
    url: String,
    body: String,
}

impl Browser {
    fn run(&self, extra: &[&str], url: &str) -> Page {
        let body = tempfile::NamedTempFile::new().unwrap();
        let out = Command::new("curl")
            .args(["--silent", "--show-error", "--location", "--max-redirs", "10", "--noproxy", "*"])
            .args(["--cookie", self.jar.path().to_str().unwrap(), "--cookie-jar", self.jar.path().to_str().unwrap()])
            .args(["--cacert", self.ca.to_str().unwrap()])
            .args(["--resolve", &format!("auth.test:{}:127.0.0.1", self.auth_port)])
            .args(["--output", body.path().to_str().unwrap(), "--write-out", "%{http_code} %{url_effective}"])
            .args(extra)
            .arg(url)
            .output()
            .expect("curl must be installed");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (status, effective) = text.split_once(' ').unwrap_or(("0", ""));
        Page {
            status: status.parse().unwrap_or(0),
            url: effective.to_string(),
            body: std::fs::read_to_string(body.path()).unwrap_or_default(),
        }
    }

    fn get(&self, url: &str) -> Page {
        self.run(&[], url)
    }

    fn post(&self, url: &str, form: &str) -> Page {
        self.run(&["--data", form], url)
    }
}

/// The action of the first form on a page, made absolute against `base`.
fn form_action(page: &Page, base: &str) -> String {
    let start = page.body.find("action=\"").unwrap_or_else(|| panic!("no form on {}: {}", page.url, page.body)) + 8;
    let action = &page.body[start..start + page.body[start..].find('"').unwrap()];
    let action = action.replace("&amp;", "&");
    if action.starts_with("http") {
        action
    } else {
        format!("{base}{action}")
    }
}

/// Calls the provider's userinfo endpoint with a token (as a resource server would).
fn userinfo(browser: &Browser, token: &str) -> u16 {
    let url = format!("https://auth.test:{}/me", browser.auth_port);
    browser.run(&["--header", &format!("Authorization: Bearer {token}")], &url).status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_call_refresh_revoke_and_client_credentials_against_oidc_provider() {
    let ca = TestCa::new(&["auth.test", "api.e2e.test"]);
    let upstream = Upstream::ok(&ca).await;
    let public_port = free_port();
    let redirect = format!("http://127.0.0.1:{public_port}/oauth/callback");
    let (server, _pem) = AuthServer::start(&ca, &redirect);
    let (ap, up) = (server.port, upstream.port);
    let yaml = base_config(&ca).replace(
        "public_url: https://tollgate.test",
        &format!("public_url: http://127.0.0.1:{public_port}\npublic_listen: 127.0.0.1:{public_port}"),
    ) + &format!(
        r#"refresh: {{ skew: "60s" }}
connectors:
  - name: e2e
    grant: authorization_code
    issuer: https://auth.test:{ap}
    client_id: tollgate
    client_secret: tollgate-client-secret
    scopes: [openid, offline_access]
    authorize_params: {{ prompt: consent }}
    allowed_domains: ["https://api.e2e.test:{up}/user/*"]
  - name: machine
    grant: client_credentials
    issuer: https://auth.test:{ap}
    client_id: machine
    client_secret: machine-client-secret
    scopes: ["api:read"]
    allowed_domains: ["https://api.e2e.test:{up}/service/*"]
  - name: machine-post
    grant: client_credentials
    issuer: https://auth.test:{ap}
    client_id: machine-post
    client_secret: machine-post-client-secret
    token_endpoint_auth_method: client_secret_post
    scopes: ["api:read"]
    allowed_domains: ["https://api.e2e.test:{up}/batch/*"]
"#
    );
    let proxy = TestProxy::start(&yaml).await;
    let browser =
        Browser { jar: tempfile::NamedTempFile::new().unwrap(), ca: ca.ca_file.path().to_path_buf(), auth_port: ap };
    let auth = bearer(&jwt("alice", serde_json::json!({})));
    let call = |path: &'static str| {
        let (addr, auth) = (proxy.addr(), auth.clone());
        async move { get(addr, &format!("https://api.e2e.test:{up}{path}"), &[("proxy-authorization", &auth)]).await }
    };

    // 1. The tool call needs a connection; its refusal carries the connect link.
    let refused = call("/user/repos").await;
    let link = refused.assert_refused(401, "connection_required")["connect_url"].as_str().unwrap().to_string();

    // 2. The user opens it, continues, signs in and consents at the provider.
    let b = tokio::task::spawn_blocking(move || {
        let start = browser.get(&link);
        assert_eq!(start.status, 200, "{}", start.body);
        let ticket = link.split_once("ticket=").unwrap().1;
        let base = format!("https://auth.test:{ap}");
        let csrf = common::browser::hidden(&start.body, "csrf");
        let login = browser
            .post(&format!("http://127.0.0.1:{public_port}/oauth/start"), &format!("ticket={ticket}&csrf={csrf}"));
        assert_eq!(login.status, 200, "login page: {}", login.body);
        let consent = browser.post(&form_action(&login, &base), "prompt=login&login=alice&password=anything");
        assert_eq!(consent.status, 200, "consent page: {}", consent.body);
        let done = browser.post(&form_action(&consent, &base), "prompt=consent");
        assert!(done.url.starts_with(&format!("http://127.0.0.1:{public_port}/oauth/callback")), "{}", done.url);
        assert_eq!(done.status, 200, "{}", done.body);
        assert!(done.body.contains("Connected to <strong>e2e</strong>"), "{}", done.body);
        browser
    });
    let browser = b.await.unwrap();

    // 3. The next tool call carries a token the provider accepts.
    assert_eq!(call("/user/repos").await.status, 200);
    let first = upstream.requests().last().unwrap().headers["authorization"]
        .to_str()
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap()
        .to_string();
    assert_eq!(userinfo(&browser, &first), 200, "the injected token is valid at the provider");
    let store = proxy.running.store();
    let key = ConnectionKey::new("e2e", "alice");
    let connected = store.get(&key).await.unwrap().unwrap();
    let first_refresh = connected.refresh_token.clone().expect("offline_access gives a refresh token");

    // 4. The access token (20 s) is inside the 60 s skew: the next call refreshes, with rotation.
    assert_eq!(call("/user/repos").await.status, 200);
    let second = upstream.requests().last().unwrap().headers["authorization"]
        .to_str()
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap()
        .to_string();
    assert_ne!(second, first, "the token was refreshed");
    let refreshed = store.get(&key).await.unwrap().unwrap();
    assert_ne!(refreshed.refresh_token.as_ref().unwrap().expose(), first_refresh.expose(), "the refresh token rotated");
    assert_eq!(userinfo(&browser, &second), 200);

    // 5. Deleting the connection revokes the grant at the provider.
    let deleted = send(
        proxy.running.admin_addr,
        "DELETE",
        "/admin/connections/e2e/alice",
        &[("authorization", "Bearer admin-secret-token")],
        Default::default(),
    )
    .await;
    assert_eq!(deleted.status, 204);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match userinfo(&browser, &second) {
            401 => break,
            200 => assert!(Instant::now() < deadline, "the provider still accepts the token after revocation"),
            other => panic!("the provider answered {other} to userinfo"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    call("/user/repos").await.assert_refused(401, "connection_required");

    // 6. A client-credentials connector on the same server.
    let service = call("/service/status").await;
    assert_eq!(service.status, 200, "{:?}", service.body);
    let machine = upstream.requests().last().unwrap().headers["authorization"].to_str().unwrap().to_string();
    assert!(machine.starts_with("Bearer ") && machine.len() > 20);
    let introspected = browser.run(
        &[
            "--user",
            "machine:machine-client-secret",
            "--data",
            &format!("token={}", machine.trim_start_matches("Bearer ")),
        ],
        &format!("https://auth.test:{ap}/token/introspection"),
    );
    assert!(introspected.body.contains("\"active\":true"), "{}", introspected.body);

    // 7. client_secret_post: the provider accepts this client's secret only in the form body.
    let batch = call("/batch/run").await;
    assert_eq!(batch.status, 200, "{:?}", batch.body);
    let posted = upstream.requests().last().unwrap().headers["authorization"].to_str().unwrap().to_string();
    assert_ne!(posted, machine, "its own token");
    let introspected = browser.run(
        &[
            "--data",
            &format!(
                "client_id=machine-post&client_secret=machine-post-client-secret&token={}",
                posted.trim_start_matches("Bearer ")
            ),
        ],
        &format!("https://auth.test:{ap}/token/introspection"),
    );
    assert!(introspected.body.contains("\"active\":true"), "{}", introspected.body);
    assert!(introspected.body.contains("\"client_id\":\"machine-post\""), "{}", introspected.body);
    drop(server);
}
