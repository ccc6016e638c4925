//! The console over real sockets: sign-in links (an admin's from the admin token, a user's
//! from the platform with the user's own caller credential) that work once; session cookies
//! and CSRF tokens; what each role can see and do; security headers; and no token or secret
//! on any page.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::*;
use serde_json::json;
use tollgate::secret::Secret;
use tollgate::token::{Connection, ConnectionKey, ConnectionStatus, Expect};

const ADMIN: (&str, &str) = ("authorization", "Bearer admin-secret-token");

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A signed-in browser: its cookie and the CSRF value its pages carry.
struct Browser {
    proxy: std::net::SocketAddr,
    cookie: String,
}

impl Browser {
    /// Opens a sign-in link and presses Sign in.
    async fn sign_in(proxy: std::net::SocketAddr, url: &str) -> Browser {
        let path = url.strip_prefix("https://tollgate.test").unwrap();
        let page = get(proxy, path, &[]).await;
        assert_eq!(page.status, 200);
        let token = path.split_once("token=").unwrap().1;
        let form = Bytes::from(format!("token={token}"));
        let signed =
            send(proxy, "POST", "/console/login", &[("content-type", "application/x-www-form-urlencoded")], form).await;
        assert_eq!(signed.status, 303, "{:?}", signed.body);
        let set = signed.headers["set-cookie"].to_str().unwrap().to_string();
        for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console", "Secure"] {
            assert!(set.contains(attribute), "{attribute} missing: {set}");
        }
        // Used once: the same link signs no one in again.
        let again = send(
            proxy,
            "POST",
            "/console/login",
            &[("content-type", "application/x-www-form-urlencoded")],
            Bytes::from(format!("token={token}")),
        )
        .await;
        assert_eq!(again.status, 401);
        Browser { proxy, cookie: set.split(';').next().unwrap().to_string() }
    }

    async fn get(&self, path: &str) -> Answer {
        get(self.proxy, path, &[("cookie", &self.cookie)]).await
    }

    async fn page(&self, path: &str) -> String {
        let answer = self.get(path).await;
        assert_eq!(answer.status, 200, "{path}: {:?}", answer.body);
        String::from_utf8(answer.body.to_vec()).unwrap()
    }

    async fn post(&self, path: &str, form: &str) -> Answer {
        let headers = [("cookie", self.cookie.as_str()), ("content-type", "application/x-www-form-urlencoded")];
        send(self.proxy, "POST", path, &headers, Bytes::from(form.to_string())).await
    }
}

fn csrf(page: &str) -> String {
    common::browser::hidden(page, "csrf")
}

#[tokio::test]
async fn sessions_roles_csrf_and_no_secrets() {
    let ca = TestCa::new(&["api.crm.test", "auth.test"]);
    let upstream = Upstream::ok(&ca).await;
    let yaml = format!(
        r#"{}connectors:
  - name: crm
    grant: authorization_code
    authorization_endpoint: https://auth.test/authorize
    token_endpoint: https://auth.test/token
    client_id: crm-client
    client_secret: crm-client-secret-4242
    allowed_domains: ["https://api.crm.test:{}/*"]
  - name: wiki
    grant: static
    token: wiki-static-key-9999
    allowed_domains: ["https://wiki.test/*"]
"#,
        base_config(&ca),
        upstream.port
    );
    let proxy = TestProxy::start(&yaml).await;
    let (admin, addr) = (proxy.running.admin_addr, proxy.addr());
    for user in ["alice", "bob"] {
        let mut c = Connection::new(Secret::new(format!("at-{user}-secret")), Some(now() + 3600));
        c.refresh_token = Some(Secret::new(format!("rt-{user}-secret")));
        proxy.running.store().put(&ConnectionKey::new("crm", user), c, Expect::Any, None).await.unwrap();
    }

    // No session: nothing but the sign-in explanation.
    assert_eq!(get(addr, "/console/connectors", &[]).await.status, 401);
    assert_eq!(get(addr, "/console/connectors", &[("cookie", "tollgate_console=forged")]).await.status, 401);
    // Links need the admin token, or a caller credential.
    assert_eq!(send(admin, "POST", "/admin/console/links", &[], Bytes::new()).await.status, 401);
    send(addr, "POST", "/console-link", &[], Bytes::new()).await.assert_refused(401, "caller_unauthenticated");

    let link = send(admin, "POST", "/admin/console/links", &[ADMIN], Bytes::from(r#"{"name":"ops-ana"}"#)).await;
    assert_eq!(link.status, 201, "{:?}", link.body);
    let ops = Browser::sign_in(addr, link.json()["url"].as_str().unwrap()).await;
    let answer = ops.get("/console/connectors").await;
    assert_eq!(answer.status, 200);
    let csp = answer.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(answer.headers["x-frame-options"], "DENY");
    assert_eq!(answer.headers["cache-control"], "no-store");
    let connectors = String::from_utf8(answer.body.to_vec()).unwrap();
    assert!(connectors.contains("https://tollgate.test/oauth/callback"), "the redirect URI to register");
    assert!(connectors.contains("crm") && connectors.contains("wiki") && connectors.contains("ops-ana"));
    let connections = ops.page("/console/connections?connector=crm").await;
    assert!(connections.contains("alice") && connections.contains("bob"));

    // A form without the session's CSRF value does nothing.
    let forged = ops.post("/console/connections/revoke", "connector=crm&principal=bob&csrf=guess").await;
    assert_eq!(forged.status, 403);
    let missing = ops.post("/console/connections/revoke", "connector=crm&principal=bob").await;
    assert_eq!(missing.status, 403);
    let store = proxy.running.store();
    let bob = ConnectionKey::new("crm", "bob");
    assert_eq!(store.get(&bob).await.unwrap().unwrap().status, ConnectionStatus::Connected);
    // With it, the admin revokes bob's connection.
    let revoked = ops
        .post("/console/connections/revoke", &format!("connector=crm&principal=bob&csrf={}", csrf(&connections)))
        .await;
    assert_eq!(revoked.status, 303);
    assert_eq!(store.get(&bob).await.unwrap().unwrap().status, ConnectionStatus::Revoked);
    // Every admin change is on the audit page: who, through what, from where, what, on what.
    let deleted = send(admin, "DELETE", "/admin/connections/crm/bob", &[ADMIN], Bytes::new()).await;
    assert_eq!(deleted.status, 204);
    let audit = ops.page("/console/audit").await;
    for expected in
        ["console.sign_in", "connection.revoke", "crm/bob", "ops-ana", "admin token 1", "admin-api", "127.0.0.1"]
    {
        assert!(audit.contains(expected), "{expected} is not on the audit page: {audit}");
    }
    let filtered = ops.page("/console/audit?q=admin-api").await;
    assert!(filtered.contains("admin token 1") && !filtered.contains("console.sign_in"), "{filtered}");
    let explained = ops.page("/console/explain?url=https%3A%2F%2Fwiki.test%2Fpage").await;
    assert!(explained.contains("allow") && explained.contains("https://wiki.test/*"), "{explained}");

    // Alice's platform mints her link with her own credential: she sees her connections only.
    let alice_jwt = bearer(&jwt("alice", json!({})));
    let link = send(addr, "POST", "/console-link", &[("proxy-authorization", &alice_jwt)], Bytes::new()).await;
    assert_eq!(link.status, 200, "{:?}", link.body);
    let alice = Browser::sign_in(addr, link.json()["url"].as_str().unwrap()).await;
    let me = alice.page("/console/me").await;
    assert!(me.contains("crm") && me.contains("Disconnect"), "{me}");
    assert!(!me.contains("wiki"), "a static connector has nothing to connect");
    // Admin pages are not hers; another user's connection is out of reach.
    assert_eq!(alice.get("/console/connectors").await.status, 404);
    assert_eq!(alice.get("/console/connections").await.status, 404);
    let token = csrf(&me);
    let other = alice.post("/console/connections/revoke", &format!("connector=crm&principal=carol&csrf={token}")).await;
    assert_eq!(other.status, 404);
    // Her session's CSRF value does not work in the admin's session, nor the reverse.
    assert_eq!(
        ops.post("/console/connections/revoke", &format!("connector=crm&principal=alice&csrf={token}")).await.status,
        403
    );
    // She disconnects her own: revoked, bob's record untouched by her.
    assert_eq!(alice.post("/console/me/disconnect", &format!("connector=crm&csrf={token}")).await.status, 303);
    assert_eq!(
        store.get(&ConnectionKey::new("crm", "alice")).await.unwrap().unwrap().status,
        ConnectionStatus::Revoked
    );
    assert!(alice.page("/console/me").await.contains("Connect"));

    // No page holds a token, a refresh token or a secret.
    let pages = [
        ops.page("/console/connectors").await,
        ops.page("/console/connections").await,
        alice.page("/console/me").await,
    ];
    for page in &pages {
        for secret in [
            "at-alice-secret",
            "rt-alice-secret",
            "at-bob-secret",
            "crm-client-secret-4242",
            "wiki-static-key-9999",
            "admin-secret-token",
        ] {
            assert!(!page.contains(secret), "{secret} on a page");
        }
    }
    // Signing out ends the session.
    let logout = alice.post("/console/logout", &format!("csrf={token}")).await;
    assert_eq!(logout.status, 303);
    assert_eq!(alice.get("/console/me").await.status, 401);
}

#[tokio::test]
async fn connectors_are_created_checked_edited_and_deleted_in_the_console() {
    let ca = TestCa::new(&["api.crm.test", "auth.test"]);
    let endpoint = common::oauth::TokenEndpoint::start(&ca, &[], None).await;
    let proxy = TestProxy::start(&base_config(&ca)).await;
    let (admin, addr) = (proxy.running.admin_addr, proxy.addr());
    let link = send(admin, "POST", "/admin/console/links", &[ADMIN], Bytes::new()).await;
    let ops = Browser::sign_in(addr, link.json()["url"].as_str().unwrap()).await;
    let new = ops.page("/console/connectors/new").await;
    assert!(new.contains("github") && new.contains("salesforce"), "the template gallery");
    assert!(new.contains("https://tollgate.test/oauth/callback"), "the redirect URI on the form");
    let token = csrf(&new);
    let enc = |s: &str| s.replace(':', "%3A").replace('/', "%2F").replace(' ', "+").replace('\n', "%0A");

    // The same validator as the file: the error sits next to its field.
    let bad = ops
        .post(
            "/console/connectors/save",
            &format!(
                "csrf={token}&creating=1&name=crm&grant=static&token=k-1234567890&allowed_domains={}",
                enc("ftp://x")
            ),
        )
        .await;
    assert_eq!(bad.status, 400);
    let bad = String::from_utf8(bad.body.to_vec()).unwrap();
    assert!(bad.contains(r#"id="err-allowed_domains""#), "{bad}");

    // Check reads the issuer's metadata and fills the endpoints.
    let issuer = format!("https://auth.test:{}", endpoint.server.port);
    let checked = ops
        .post("/console/connectors/check", &format!("csrf={token}&creating=1&name=crm&issuer={}", enc(&issuer)))
        .await;
    let checked = String::from_utf8(checked.body.to_vec()).unwrap();
    assert!(
        checked.contains(&format!("{issuer}/authorize")) && checked.contains(&format!("{issuer}/token")),
        "{checked}"
    );
    assert!(checked.contains("registers clients"), "{checked}");

    // Saved from scratch; the secret is write-only.
    let form = format!(
        "csrf={token}&creating=1&name=crm&grant=authorization_code&description=CRM+notes&client_id=crm-client&client_secret=s3cret-crm-9876&authorization_endpoint={}&token_endpoint={}&scopes=read+write&allowed_domains={}",
        enc(&format!("{issuer}/authorize")),
        enc(&format!("{issuer}/token")),
        enc("https://api.crm.test/*")
    );
    assert_eq!(ops.post("/console/connectors/save", &form).await.status, 303);
    let shown = get(admin, "/admin/connectors/crm", &[ADMIN]).await.json();
    assert_eq!(shown["client_secret"], "•••• 9876");
    assert_eq!(shown["description"], "CRM notes");
    let edit = ops.page("/console/connectors/edit?name=crm").await;
    assert!(edit.contains("•••• 9876") && !edit.contains("s3cret-crm-9876"), "write-only secret");
    // A blank secret keeps it; other fields change.
    let form = format!(
        "csrf={token}&creating=0&name=crm&grant=authorization_code&description=CRM&client_id=crm-client&authorization_endpoint={}&token_endpoint={}&allowed_domains={}",
        enc(&format!("{issuer}/authorize")),
        enc(&format!("{issuer}/token")),
        enc("https://api.crm.test/*\nhttps://files.crm.test/*")
    );
    assert_eq!(ops.post("/console/connectors/save", &form).await.status, 303);
    let shown = get(admin, "/admin/connectors/crm", &[ADMIN]).await.json();
    assert_eq!((shown["client_secret"].as_str(), shown["description"].as_str()), (Some("•••• 9876"), Some("CRM")));
    assert_eq!(shown["allowed_domains"].as_array().unwrap().len(), 2);

    // Delete says how many connections it revokes, then does it.
    let mut c = Connection::new(Secret::new("at-dana"), Some(now() + 3600));
    c.refresh_token = Some(Secret::new("rt-dana"));
    proxy.running.store().put(&ConnectionKey::new("crm", "dana"), c, Expect::Any, None).await.unwrap();
    let confirm = ops.page("/console/connectors/delete?name=crm").await;
    assert!(confirm.contains("1 connection") && confirm.contains("Delete crm and revoke 1"), "{confirm}");
    assert_eq!(ops.post("/console/connectors/delete", &format!("csrf={token}&name=crm")).await.status, 303);
    get(admin, "/admin/connectors/crm", &[ADMIN]).await.assert_refused(400, "connector_unknown");
    assert!(proxy.running.store().get(&ConnectionKey::new("crm", "dana")).await.unwrap().is_none());
    let audit = ops.page("/console/audit?q=connector").await;
    for action in ["connector.create", "connector.update", "connector.delete"] {
        assert!(audit.contains(action), "{action}: {audit}");
    }
}
