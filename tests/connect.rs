//! Connecting an account end to end against a stub authorization server: the connect link
//! from a refusal, the start page, the POST that uses the ticket, the provider redirect with
//! state and PKCE, the callback checks, the code exchange, and the next tool call carrying
//! the token. Plus provider errors, pinned hosts and revocation.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::oauth::TokenEndpoint;
use common::*;

struct World {
    upstream: Upstream,
    endpoint: TokenEndpoint,
    proxy: TestProxy,
    auth: String,
}

use common::browser::{get_field, query};

impl World {
    async fn new(extra_connectors: &str) -> World {
        let ca = TestCa::new(&["api.crm.test", "auth.test", "a.crm.test", "b.crm.test", "eu1.my.salesforce.com"]);
        let upstream = Upstream::ok(&ca).await;
        let endpoint = TokenEndpoint::start(&ca, &[], None).await;
        let (tp, up) = (endpoint.server.port, upstream.port);
        let yaml = format!(
            r#"{base}
connectors:
  - name: crm
    grant: authorization_code
    authorization_endpoint: https://auth.test:{tp}/authorize
    token_endpoint: https://auth.test:{tp}/token
    revocation_endpoint: https://auth.test:{tp}/revoke
    issuer: https://auth.test:{tp}
    client_id: crm-client
    client_secret: crm-secret
    scopes: [crm.read, offline_access]
    resource: https://api.crm.test:{up}/
    authorize_params: {{ prompt: consent, audience: crm }}
    exclude_authorize_params: [audience]
    token_params: {{ tenant: t1 }}
    allowed_domains: ["https://api.crm.test:{up}/*"]
{extra}"#,
            base = base_config(&ca),
            extra = extra_connectors.replace("{tp}", &tp.to_string()).replace("{up}", &up.to_string())
        );
        let proxy = TestProxy::start(&yaml).await;
        World { upstream, endpoint, proxy, auth: bearer(&jwt("alice", serde_json::json!({}))) }
    }

    /// The connect_url of a connection_required refusal, with the public URL replaced by the
    /// proxy listener (which also serves /oauth/*).
    async fn connect_path(&self, url: &str, connector: &str) -> String {
        let answer =
            get(self.proxy.addr(), url, &[("proxy-authorization", &self.auth), ("x-tollgate-connector", connector)])
                .await;
        let json = answer.assert_refused(401, "connection_required");
        json["connect_url"].as_str().unwrap().strip_prefix("https://tollgate.test").unwrap().to_string()
    }

    async fn start(&self, connect_path: &str, host: Option<&str>) -> (String, String) {
        common::browser::start(self.proxy.addr(), connect_path, host).await
    }

    async fn consent(&self, location: &str, cookie: &str, extra: &str) -> Answer {
        common::browser::consent(self.proxy.addr(), &self.endpoint, location, cookie, extra).await
    }
}

#[tokio::test]
async fn connect_then_call() {
    let w = World::new("").await;
    let url = format!("https://api.crm.test:{}/deals", w.upstream.port);
    let path = w.connect_path(&url, "crm").await;
    let page = get(w.proxy.addr(), &path, &[]).await;
    let html = String::from_utf8_lossy(&page.body).to_string();
    assert!(html.contains("alice") && html.contains("crm") && html.contains("method=\"post\""), "{html}");
    assert_eq!(page.headers["x-frame-options"], "DENY");

    let (location, cookie) = w.start(&path, None).await;
    assert!(location.starts_with(&format!("https://auth.test:{}/authorize?", w.endpoint.server.port)));
    let q = query(&location);
    assert_eq!(get_field(&q, "response_type"), Some("code"));
    assert_eq!(get_field(&q, "client_id"), Some("crm-client"));
    assert_eq!(get_field(&q, "redirect_uri"), Some("https://tollgate.test/oauth/callback"));
    assert_eq!(get_field(&q, "code_challenge_method"), Some("S256"));
    assert_eq!(get_field(&q, "code_challenge").map(str::len), Some(43));
    assert_eq!(get_field(&q, "scope"), Some("crm.read offline_access"));
    assert_eq!(get_field(&q, "resource"), Some(format!("https://api.crm.test:{}/", w.upstream.port).as_str()));
    assert_eq!(get_field(&q, "prompt"), Some("consent"));
    assert_eq!(get_field(&q, "audience"), None, "excluded parameters are not sent");
    assert!(get_field(&q, "code_verifier").is_none(), "the verifier never leaves Tollgate");
    assert!(get_field(&q, "state").is_some_and(|s| s.len() >= 43));
    assert!(cookie.starts_with("tollgate_flow_"));

    let iss = format!("&iss=https%3A%2F%2Fauth.test%3A{}", w.endpoint.server.port);
    let done = w.consent(&location, &cookie, &iss).await;
    let html = String::from_utf8_lossy(&done.body).to_string();
    assert_eq!(done.status, 200, "{html}");
    assert!(html.contains("Connected to <strong>crm</strong>") && html.contains("postMessage"), "{html}");
    let form = w.endpoint.state.lock().unwrap().forms.last().unwrap().clone();
    assert_eq!(get_field(&form, "grant_type"), Some("authorization_code"));
    assert_eq!(get_field(&form, "resource"), Some(format!("https://api.crm.test:{}/", w.upstream.port).as_str()));
    assert_eq!(get_field(&form, "tenant"), Some("t1"));

    let call = get(w.proxy.addr(), &url, &[("proxy-authorization", &w.auth)]).await;
    assert_eq!(call.status, 200);
    assert_eq!(w.upstream.requests()[0].headers["authorization"], "Bearer at-2");

    // The ticket was used up by the POST; the flow by the callback.
    let again = common::browser::post_start(w.proxy.addr(), &path, "").await;
    assert_eq!(again.status, 400);
    assert!(String::from_utf8_lossy(&again.body).contains("already used"));
    let state = get_field(&q, "state").unwrap();
    let replay = get(w.proxy.addr(), &format!("/oauth/callback?code=x&state={state}"), &[("cookie", &cookie)]).await;
    assert_eq!(replay.status, 400);
}

#[tokio::test]
async fn the_callback_refuses_what_it_did_not_start() {
    let w = World::new("").await;
    let url = format!("https://api.crm.test:{}/deals", w.upstream.port);
    assert_eq!(get(w.proxy.addr(), "/oauth/callback?code=c1", &[]).await.status, 400, "no state");
    assert_eq!(get(w.proxy.addr(), "/oauth/callback?code=c1&state=forged", &[]).await.status, 400, "unknown state");

    // Another browser (no or wrong cookie) cannot complete the flow.
    let (location, cookie) = w.start(&w.connect_path(&url, "crm").await, None).await;
    let iss = format!("&iss=https%3A%2F%2Fauth.test%3A{}", w.endpoint.server.port);
    let other = w.consent(&location, "tollgate_flow_0000=not-this-browser", &iss).await;
    assert_eq!(other.status, 400);
    assert!(String::from_utf8_lossy(&other.body).contains("another browser"));
    let _ = cookie;

    // A different issuer in `iss` (mix-up), or none although the server promised one.
    let (location, cookie) = w.start(&w.connect_path(&url, "crm").await, None).await;
    let mixed = w.consent(&location, &cookie, "&iss=https%3A%2F%2Fevil.test").await;
    assert_eq!(mixed.status, 400);
    let (location, cookie) = w.start(&w.connect_path(&url, "crm").await, None).await;
    assert_eq!(w.consent(&location, &cookie, "").await.status, 400);

    // Provider errors say what to fix.
    for (error, hint) in [
        ("access_denied", "Allow"),
        ("redirect_uri_mismatch", "https://tollgate.test/oauth/callback"),
        ("invalid_client", "client_id"),
    ] {
        let (location, cookie) = w.start(&w.connect_path(&url, "crm").await, None).await;
        let state = get_field(&query(&location), "state").unwrap().to_string();
        let page =
            get(w.proxy.addr(), &format!("/oauth/callback?error={error}&state={state}"), &[("cookie", &cookie)]).await;
        assert_eq!(page.status, 400);
        let html = String::from_utf8_lossy(&page.body);
        assert!(html.contains(hint) && html.contains("\"status\":\"failed\""), "{error}: {html}");
    }

    // Two flows in two tabs both finish: each has its own cookie.
    let (loc_a, cookie_a) = w.start(&w.connect_path(&url, "crm").await, None).await;
    let (loc_b, cookie_b) = w.start(&w.connect_path(&url, "crm").await, None).await;
    assert_ne!(cookie_a.split('=').next(), cookie_b.split('=').next());
    assert_eq!(w.consent(&loc_b, &cookie_b, &iss).await.status, 200);
    assert_eq!(w.consent(&loc_a, &cookie_a, &iss).await.status, 200);
    assert!(w.upstream.requests().is_empty());
}

#[tokio::test]
async fn pinned_hosts_from_the_user_or_the_token_answer() {
    let extra = r#"  - name: dbx
    grant: authorization_code
    authorization_endpoint: https://auth.test:{tp}/authorize
    token_endpoint: https://auth.test:{tp}/token
    client_id: dbx
    allowed_domains: ["https://*.crm.test:{up}/*"]
    pin_host: true
  - name: sf
    template: salesforce
    authorization_endpoint: https://auth.test:{tp}/authorize
    token_endpoint: https://auth.test:{tp}/token
    client_id: sf
    client_secret: sf-secret
    allowed_domains: ["https://*.my.salesforce.com:{up}/*"]
"#;
    let w = World::new(extra).await;
    let port = w.upstream.port;
    let a = format!("https://a.crm.test:{port}/x");
    let path = w.connect_path(&a, "dbx").await;
    let page = String::from_utf8_lossy(&get(w.proxy.addr(), &path, &[]).await.body).to_string();
    assert!(page.contains("name=\"host\""), "a pin_host connector asks for the host");
    let outside = common::browser::post_start(w.proxy.addr(), &path, "&host=evil.test").await;
    assert_eq!(outside.status, 400);
    let (location, cookie) = w.start(&w.connect_path(&a, "dbx").await, Some("a.crm.test")).await;
    assert_eq!(w.consent(&location, &cookie, "").await.status, 200);
    let named = |c| [("proxy-authorization", w.auth.clone()), ("x-tollgate-connector", String::from(c))];
    let h = named("dbx");
    let hdrs: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(get(w.proxy.addr(), &a, &hdrs).await.status, 200);
    get(w.proxy.addr(), &format!("https://b.crm.test:{port}/x"), &hdrs)
        .await
        .assert_refused(403, "endpoint_not_allowed");

    // Salesforce: the token answer's instance_url names the host.
    w.endpoint.state.lock().unwrap().instance_url = Some(format!("https://eu1.my.salesforce.com:{port}"));
    let sf = format!("https://eu1.my.salesforce.com:{port}/services/data");
    let (location, cookie) = w.start(&w.connect_path(&sf, "sf").await, None).await;
    assert_eq!(w.consent(&location, &cookie, "").await.status, 200);
    let h = named("sf");
    let hdrs: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(get(w.proxy.addr(), &sf, &hdrs).await.status, 200);
    get(w.proxy.addr(), &format!("https://na1.my.salesforce.com:{port}/x"), &hdrs)
        .await
        .assert_refused(403, "endpoint_not_allowed");
}

#[tokio::test]
async fn deleting_a_connection_revokes_it_even_when_the_provider_is_down() {
    let w = World::new("").await;
    let url = format!("https://api.crm.test:{}/deals", w.upstream.port);
    let (location, cookie) = w.start(&w.connect_path(&url, "crm").await, None).await;
    let iss = format!("&iss=https%3A%2F%2Fauth.test%3A{}", w.endpoint.server.port);
    assert_eq!(w.consent(&location, &cookie, &iss).await.status, 200);
    w.endpoint.state.lock().unwrap().revoke_status = 503;
    let admin = w.proxy.running.admin_addr;
    let deleted = send(
        admin,
        "DELETE",
        "/admin/connections/crm/alice",
        &[("authorization", "Bearer admin-secret-token")],
        Bytes::new(),
    )
    .await;
    assert_eq!(deleted.status, 204);
    // Deleted locally at once, whatever the provider says.
    get(w.proxy.addr(), &url, &[("proxy-authorization", &w.auth)]).await.assert_refused(401, "connection_required");
    // Revocation is retried in the background with the refresh token.
    tokio::time::sleep(Duration::from_millis(300)).await;
    w.endpoint.state.lock().unwrap().revoke_status = 200;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while w.endpoint.state.lock().unwrap().revocations.len() < 2 {
        assert!(std::time::Instant::now() < deadline, "revocation was not retried");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let revocations = w.endpoint.state.lock().unwrap().revocations.clone();
    assert!(revocations.iter().all(|(token, hint)| token == "rt-2" && hint == "refresh_token"), "{revocations:?}");
}

#[tokio::test]
async fn discovery_and_registration_for_an_mcp_server() {
    let extra = r#"  - name: docs-mcp
    grant: authorization_code
    mcp_url: https://auth.test:{tp}/mcp
    allowed_domains: ["https://auth.test:{tp}/mcp*"]
  - name: bad
    grant: authorization_code
    issuer: https://auth.test:{tp}/other
    client_id: x
    allowed_domains: ["https://bad.test/*"]
"#;
    let w = World::new(extra).await;
    let tp = w.endpoint.server.port;
    let mcp = format!("https://auth.test:{tp}/mcp");
    for principal in ["alice", "bob"] {
        let auth = bearer(&jwt(principal, serde_json::json!({})));
        let link = send(
            w.proxy.addr(),
            "POST",
            "/connect",
            &[("authorization", &auth)],
            Bytes::from(r#"{"connector":"docs-mcp"}"#),
        )
        .await;
        assert_eq!(link.status, 200, "{:?}", link.body);
        let path =
            link.json()["connect_url"].as_str().unwrap().strip_prefix("https://tollgate.test").unwrap().to_string();
        let (location, cookie) = w.start(&path, None).await;
        // Endpoints and client come from RFC 9728 -> RFC 8414 -> RFC 7591.
        assert!(location.starts_with(&format!("https://auth.test:{tp}/authorize?")), "{location}");
        let q = query(&location);
        assert_eq!(get_field(&q, "client_id"), Some("registered-1"));
        assert_eq!(get_field(&q, "resource"), Some(mcp.as_str()), "MCP servers get the resource indicator");
        let iss = format!("&iss=https%3A%2F%2Fauth.test%3A{tp}");
        assert_eq!(w.consent(&location, &cookie, &iss).await.status, 200);
    }
    let registrations = w.endpoint.state.lock().unwrap().registrations.clone();
    assert_eq!(registrations.len(), 1, "one registration per connector, reused");
    assert_eq!(registrations[0]["redirect_uris"], serde_json::json!(["https://tollgate.test/oauth/callback"]));
    let stored =
        w.proxy.running.store().get(&tollgate::token::ConnectionKey::new("docs-mcp", "alice")).await.unwrap().unwrap();
    assert_eq!(stored.access_token.expose(), "at-2", "alice connected first");

    // Metadata that names another issuer is refused, and reported without failing readiness.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ready = get(w.proxy.running.admin_addr, "/readyz", &[]).await;
        assert_eq!(ready.status, 200);
        let json = ready.json();
        if json["discovery"]["bad"]["state"] == "error" {
            assert!(json["discovery"]["bad"]["message"].as_str().unwrap().contains("names issuer"), "{json}");
            assert_eq!(json["discovery"]["docs-mcp"]["state"], "ok");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the bad connector was never reported: {json}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = String::from_utf8(get(w.proxy.running.admin_addr, "/metrics", &[]).await.body.to_vec()).unwrap();
    assert!(metrics.contains("tollgate_discovery_up{connector=\"bad\"} 0"));
    assert!(metrics.contains("tollgate_discovery_up{connector=\"docs-mcp\"} 1"));
}

#[tokio::test]
async fn continue_is_bound_to_the_browser_that_loaded_the_page() {
    let w = World::new("").await;
    let url = format!("https://api.crm.test:{}/deals", w.upstream.port);
    let path = w.connect_path(&url, "crm").await;
    let page = get(w.proxy.addr(), &path, &[]).await;
    let body = String::from_utf8_lossy(&page.body).to_string();
    let set_cookie = page.headers["set-cookie"].to_str().unwrap().to_string();
    assert!(set_cookie.contains("SameSite=Strict") && set_cookie.contains("HttpOnly"), "{set_cookie}");
    let csrf = common::browser::hidden(&body, "csrf");
    let ticket = path.split_once("ticket=").unwrap().1;
    let form = Bytes::from(format!("ticket={ticket}&csrf={csrf}"));
    // A cross-site auto-submitted form carries no Strict cookie (login CSRF).
    let forged = send(w.proxy.addr(), "POST", "/oauth/start", &[], form.clone()).await;
    assert_eq!(forged.status, 403);
    let wrong = send(w.proxy.addr(), "POST", "/oauth/start", &[("cookie", "tollgate_start=other")], form.clone()).await;
    assert_eq!(wrong.status, 403);
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let foreign = send(
        w.proxy.addr(),
        "POST",
        "/oauth/start",
        &[("cookie", &cookie), ("origin", "https://evil.example")],
        form.clone(),
    )
    .await;
    assert_eq!(foreign.status, 403);
    // None of those used the ticket up: the real browser still continues.
    let real =
        send(w.proxy.addr(), "POST", "/oauth/start", &[("cookie", &cookie), ("origin", "https://tollgate.test")], form)
            .await;
    assert_eq!(real.status, 303, "{:?}", real.body);
}
