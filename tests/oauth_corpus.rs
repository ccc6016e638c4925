//! Every case of tests/corpus/oauth-flows.yaml, read from the file and run against the
//! running proxy and stub authorization servers. A case id without a scenario fails the test,
//! so a case added to the corpus cannot go unnoticed.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::browser::{consent, get_field, iss, query, start};
use common::corpus::{Cases, OAuthCase};
use common::oauth::{Mode, TokenEndpoint};
use common::*;
use tollgate::secret::Secret;
use tollgate::token::{Connection, ConnectionKey, Expect};

struct World {
    upstream: Upstream,
    a: TokenEndpoint,
    b: TokenEndpoint,
    proxy: TestProxy,
    auth: String,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

impl World {
    async fn new() -> World {
        let ca = TestCa::new(&["api.crm.test", "b.crm.test", "api.platform.test", "auth.test", "internal.test"]);
        let upstream = Upstream::ok(&ca).await;
        let a = TokenEndpoint::start(&ca, &["rt-1"], None).await;
        let b = TokenEndpoint::start(&ca, &[], None).await;
        let (tp, tb, up) = (a.server.port, b.server.port, upstream.port);
        let key_hash: String = ring::digest::digest(&ring::digest::SHA256, b"machine-key-1")
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let yaml = format!(
            r#"{base}
refresh: {{ retry_backoff: "1s" }}
connectors:
  - name: crm
    grant: authorization_code
    issuer: https://auth.test:{tp}
    client_id: crm-client
    client_secret: crm-secret
    scopes: [crm.read]
    resource: https://api.crm.test:{up}/
    allowed_domains: ["https://api.crm.test:{up}/*"]
  - name: crm-b
    grant: authorization_code
    issuer: https://auth.test:{tb}
    client_id: crm-b-client
    allowed_domains: ["https://b.crm.test:{up}/*"]
  - name: mismatched
    grant: authorization_code
    issuer: https://auth.test:{tp}/other
    client_id: x
    allowed_domains: ["https://m.crm.test/*"]
  - name: internal
    grant: authorization_code
    issuer: https://internal.test:{tp}
    client_id: x
    allowed_domains: ["https://i.crm.test/*"]
  - name: scripted
    grant: authorization_code
    issuer: https://auth.test:{tp}/httpauth
    client_id: x
    allowed_domains: ["https://s.crm.test/*"]
  - name: plain-registration
    grant: authorization_code
    issuer: https://auth.test:{tp}/httpreg
    allowed_domains: ["https://p.crm.test/*"]
  - name: redirect-changed
    grant: authorization_code
    issuer: https://auth.test:{tp}/r1
    allowed_domains: ["https://r.crm.test/*"]
  - name: issuer-one
    grant: authorization_code
    issuer: https://auth.test:{tp}/one
    allowed_domains: ["https://one.crm.test/*"]
  - name: issuer-two
    grant: authorization_code
    issuer: https://auth.test:{tp}/two
    allowed_domains: ["https://two.crm.test/*"]
  - name: user-platform
    grant: authorization_code
    authorization_endpoint: https://auth.test:{tp}/authorize
    token_endpoint: https://auth.test:{tp}/token
    client_id: u
    allowed_domains: ["https://api.platform.test:{up}/*"]
  - name: machine-platform
    grant: client_credentials
    token_endpoint: https://auth.test:{tp}/token
    client_id: m
    client_secret: m-secret
    allowed_domains: ["https://api.platform.test:{up}/*"]
"#,
            base = base_config(&ca).replace(
                "upstream:",
                &format!("  api_keys:\n    - name: worker\n      sha256: {key_hash}\n      connectors: [machine-platform]\nupstream:")
            )
        );
        let mut resolver = TestResolver::default();
        resolver.answers.insert("internal.test".into(), vec!["10.0.0.5".parse().unwrap()]);
        let proxy = TestProxy::start_with(&yaml, resolver).await;
        World { upstream, a, b, proxy, auth: bearer(&jwt("alice", serde_json::json!({}))) }
    }

    fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.upstream.port)
    }

    async fn connect_path(&self, principal: &str, connector: &str) -> String {
        let auth = bearer(&jwt(principal, serde_json::json!({})));
        let body = Bytes::from(format!(r#"{{"connector":"{connector}"}}"#));
        let link = send(self.proxy.addr(), "POST", "/connect", &[("authorization", &auth)], body).await;
        assert_eq!(link.status, 200, "{:?}", link.body);
        link.json()["connect_url"].as_str().unwrap().strip_prefix("https://tollgate.test").unwrap().to_string()
    }

    /// The discovery state of a connector as /readyz reports it, once it is known.
    async fn discovery(&self, connector: &str) -> serde_json::Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let status =
                get(self.proxy.running.admin_addr, "/readyz", &[]).await.json()["discovery"][connector].clone();
            if !status.is_null() {
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "{connector} never reported");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn seed(&self, connector: &str, access: &str, refresh: &str, expires_in: i64) {
        let mut c = Connection::new(Secret::new(access), Some((now() as i64 + expires_in) as u64));
        c.refresh_token = Some(Secret::new(refresh));
        self.proxy.running.store().put(&ConnectionKey::new(connector, "alice"), c, Expect::Any, None).await.unwrap();
    }

    async fn stored(&self, connector: &str) -> Connection {
        self.proxy.running.store().get(&ConnectionKey::new(connector, "alice")).await.unwrap().unwrap()
    }

    async fn call(&self, host: &str, auth: &str) -> Answer {
        get(self.proxy.addr(), &self.url(host, "/x"), &[("proxy-authorization", auth)]).await
    }
}

/// Runs one case; returns the outcome in the corpus's vocabulary.
async fn run(w: &World, id: &str) -> &'static str {
    let p = w.proxy.addr();
    match id {
        "OAUTH-001" => corpus_outcome(get(p, "/oauth/callback?code=c1", &[]).await.status.as_u16()),
        "OAUTH-004" => {
            let (location, _u1_cookie) = start(p, &w.connect_path("alice", "crm").await, None).await;
            let u2_browser = "tollgate_flow_0000000000000000=u2-session";
            corpus_outcome(consent(p, &w.a, &location, u2_browser, &iss(&w.a)).await.status.as_u16())
        }
        "OAUTH-009" => discovery_refused(w, "mismatched", "names issuer").await,
        "OAUTH-011" => {
            let outcome = discovery_refused(w, "internal", "private").await;
            assert!(w.proxy.dialed().iter().all(|a| a.ip().to_string() != "10.0.0.5"), "a denied address was dialed");
            outcome
        }
        "OAUTH-012" => {
            for bad in ["javascript:alert(1)", "data:text/html,x", "file:///etc/passwd", "http://as.example/authorize"]
            {
                let yaml = format!(
                    "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nencryption_keys: [{{ id: k1, secret: \"{KEY}\" }}]\nconnectors:\n  - name: c\n    grant: authorization_code\n    authorization_endpoint: \"{bad}\"\n    token_endpoint: https://as.example/token\n    client_id: x\n    allowed_domains: [\"https://api.example.com/*\"]\n"
                );
                let err =
                    tollgate::config::Config::from_yaml(&yaml, &tollgate::config::Environment::from_vars([("X", "y")]));
                assert!(err.is_err(), "{bad} was accepted as an authorization endpoint");
            }
            discovery_refused(w, "scripted", "https").await
        }
        "OAUTH-013" => {
            let path = w.connect_path("alice", "crm").await;
            let (location, cookie) = start(p, &format!("{path}&return_to=https%3A%2F%2Fevil.io"), None).await;
            assert!(location.starts_with(&format!("https://auth.test:{}/authorize", w.a.server.port)));
            let done = consent(p, &w.a, &location, &cookie, &iss(&w.a)).await;
            assert_eq!(done.status, 200, "the user lands on Tollgate's own page");
            assert!(done.headers.get("location").is_none(), "no caller-supplied redirect is followed");
            w.proxy.running.store().delete(&ConnectionKey::new("crm", "alice")).await.unwrap();
            "block"
        }
        "OAUTH-014" => {
            let (location, cookie) = start(p, &w.connect_path("alice", "crm").await, None).await;
            let q = query(&location);
            assert_eq!(get_field(&q, "code_challenge_method"), Some("S256"));
            assert!(get_field(&q, "code_verifier").is_none());
            assert_eq!(consent(p, &w.a, &location, &cookie, &iss(&w.a)).await.status, 200);
            let form = w.a.state.lock().unwrap().forms.last().unwrap().clone();
            let verifier = form.iter().find(|(k, _)| k == "code_verifier").map(|(_, v)| v.clone()).unwrap();
            assert!((43..=128).contains(&verifier.len()), "verifier length {}", verifier.len());
            allowed(w.call("api.crm.test", &w.auth).await)
        }
        "OAUTH-015" => {
            w.a.set_mode(Mode::Rotate);
            w.seed("crm", "at-old", "rt-1", -5).await;
            let first = w.call("api.crm.test", &w.auth).await;
            let stored = w.stored("crm").await;
            assert_ne!(stored.refresh_token.as_ref().unwrap().expose(), "rt-1", "the rotated refresh token was stored");
            // Expire again: the next refresh uses the rotated token, never the old one.
            let mut expired = stored.clone();
            expired.expires_at = Some(now() - 5);
            w.proxy.running.store().put(&ConnectionKey::new("crm", "alice"), expired, Expect::Any, None).await.unwrap();
            assert_eq!(w.call("api.crm.test", &w.auth).await.status, 200);
            let used = w.a.state.lock().unwrap().used.clone();
            assert!(used.contains("rt-1") && used.len() == 2, "{used:?}");
            allowed(first)
        }
        "OAUTH-016" => {
            w.a.set_mode(Mode::NoExpiresIn { with_refresh: false });
            w.a.state.lock().unwrap().valid.insert("rt-keep".into());
            w.seed("crm", "at-old", "rt-keep", -5).await;
            let answer = w.call("api.crm.test", &w.auth).await;
            assert_eq!(w.stored("crm").await.refresh_token.unwrap().expose(), "rt-keep");
            w.a.set_mode(Mode::Rotate);
            allowed(answer)
        }
        "OAUTH-017" => {
            for bad in [
                serde_json::json!({ "access_token": "ok-token", "token_type": "mac" }),
                serde_json::json!({ "token_type": "Bearer" }),
                serde_json::json!({ "access_token": "bad token\r\nx: y", "token_type": "Bearer" }),
            ] {
                w.a.set_mode(Mode::Raw(bad.clone()));
                w.seed("crm", "at-expired", "rt-x", -5).await;
                tokio::time::sleep(Duration::from_millis(1100)).await; // past the renewal backoff
                let answer = w.call("api.crm.test", &w.auth).await;
                assert_eq!(answer.status, 503, "{bad}");
                assert_eq!(w.stored("crm").await.access_token.expose(), "at-expired", "a malformed token was stored");
            }
            w.a.set_mode(Mode::Rotate);
            "block"
        }
        "OAUTH-018" => {
            w.a.set_mode(Mode::NoExpiresIn { with_refresh: true });
            w.a.state.lock().unwrap().valid.insert("rt-18".into());
            w.seed("crm", "at-old", "rt-18", -5).await;
            tokio::time::sleep(Duration::from_millis(1100)).await;
            let answer = w.call("api.crm.test", &w.auth).await;
            let left = w.stored("crm").await.expires_at.unwrap().saturating_sub(now());
            assert!((3000..=3600).contains(&left), "the default lifetime applies: {left}");
            w.a.set_mode(Mode::Rotate);
            allowed(answer)
        }
        "OAUTH-019" => {
            let (location, cookie) = start(p, &w.connect_path("carol", "crm").await, None).await;
            let resource = w.url("api.crm.test", "/");
            assert_eq!(get_field(&query(&location), "resource"), Some(resource.as_str()));
            assert_eq!(consent(p, &w.a, &location, &cookie, &iss(&w.a)).await.status, 200);
            let form = w.a.state.lock().unwrap().forms.last().unwrap().clone();
            assert!(form.iter().any(|(k, v)| k == "resource" && *v == resource));
            // invalid_target is shown as a configuration problem.
            let (location, cookie) = start(p, &w.connect_path("carol", "crm").await, None).await;
            let state = get_field(&query(&location), "state").unwrap().to_string();
            let page =
                get(p, &format!("/oauth/callback?error=invalid_target&state={state}"), &[("cookie", &cookie)]).await;
            assert!(String::from_utf8_lossy(&page.body).contains("resource"));
            "allow-with-token"
        }
        "OAUTH-020" => {
            let plain = discovery_refused(w, "plain-registration", "https").await;
            let changed = discovery_refused(w, "redirect-changed", "redirect").await;
            assert_eq!(plain, changed);
            plain
        }
        "OAUTH-021" => {
            for c in ["issuer-one", "issuer-two"] {
                let (location, _) = start(p, &w.connect_path("alice", c).await, None).await;
                assert_eq!(get_field(&query(&location), "client_id"), Some("same-client"));
            }
            let store = w.proxy.running.store();
            for (c, issuer) in [("issuer-one", "one"), ("issuer-two", "two")] {
                let key = ConnectionKey::new(
                    "tollgate",
                    format!("registration:{c}:https://auth.test:{}/{issuer}", w.a.server.port),
                );
                assert!(store.get(&key).await.unwrap().is_some(), "registration of {c} is keyed by its issuer");
            }
            "allow-with-token"
        }
        "OAUTH-022" => {
            let (location, cookie) = start(p, &w.connect_path("dave", "crm").await, None).await;
            assert_eq!(consent(p, &w.a, &location, &cookie, &iss(&w.a)).await.status, 200);
            w.a.state.lock().unwrap().revoke_status = 503;
            let admin = w.proxy.running.admin_addr;
            let deleted = send(
                admin,
                "DELETE",
                "/admin/connections/crm/dave",
                &[("authorization", "Bearer admin-secret-token")],
                Bytes::new(),
            )
            .await;
            assert_eq!(deleted.status, 204);
            let dave = bearer(&jwt("dave", serde_json::json!({})));
            let after = w.call("api.crm.test", &dave).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            let revocations = w.a.state.lock().unwrap().revocations.clone();
            assert!(revocations.iter().all(|(_, hint)| hint == "refresh_token") && !revocations.is_empty());
            w.a.state.lock().unwrap().revoke_status = 200;
            corpus_outcome(after.status.as_u16())
        }
        "OAUTH-023" => {
            let user_bound = bearer(&jwt("alice", serde_json::json!({ "connectors": ["user-platform"] })));
            let mut c = Connection::new(Secret::new("user-token"), Some(now() + 3600));
            c.refresh_token = Some(Secret::new("rt-u"));
            w.proxy
                .running
                .store()
                .put(&ConnectionKey::new("user-platform", "alice"), c, Expect::Any, None)
                .await
                .unwrap();
            assert_eq!(w.call("api.platform.test", &user_bound).await.status, 200);
            assert_eq!(w.upstream.requests().last().unwrap().headers["authorization"], "Bearer user-token");
            let answer = w.call("api.platform.test", "Bearer machine-key-1").await;
            let machine = w.upstream.requests().last().unwrap().headers["authorization"].to_str().unwrap().to_string();
            assert_ne!(machine, "Bearer user-token", "a machine caller got the user's token");
            allowed(answer)
        }
        "OAUTH-024" => {
            let before_b = w.b.calls();
            let (location, cookie) = start(p, &w.connect_path("erin", "crm").await, None).await;
            let before_a = w.a.calls();
            assert_eq!(consent(p, &w.a, &location, &cookie, &iss(&w.a)).await.status, 200);
            assert_eq!(w.a.calls(), before_a + 1, "the code went to AS-A");
            assert_eq!(w.b.calls(), before_b, "the code never reached AS-B");
            "allow-with-token"
        }
        "OAUTH-025" => {
            let (la, ca) = start(p, &w.connect_path("frank", "crm").await, None).await;
            let (lb, cb) = start(p, &w.connect_path("frank", "crm").await, None).await;
            assert_eq!(consent(p, &w.a, &lb, &cb, &iss(&w.a)).await.status, 200);
            assert_eq!(consent(p, &w.a, &la, &ca, &iss(&w.a)).await.status, 200);
            "allow-with-token"
        }
        other => panic!("oauth-flows.yaml case {other} has no scenario here: add one"),
    }
}
fn allowed(answer: Answer) -> &'static str {
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    "allow-with-token"
}

/// A connector whose discovery or registration must fail with `why` in its reported message,
/// and whose connect flow is then refused.
async fn discovery_refused(w: &World, connector: &str, why: &str) -> &'static str {
    let status = w.discovery(connector).await;
    assert_eq!(status["state"], "error", "{connector}: {status}");
    assert!(status["message"].as_str().unwrap().contains(why), "{connector}: {status}");
    let path = w.connect_path("alice", connector).await;
    let page = get(w.proxy.addr(), &path, &[]).await;
    assert_eq!(page.status, 200);
    let posted = common::browser::post_start(w.proxy.addr(), &path, "").await;
    assert_eq!(posted.status, 503, "{connector}");
    assert!(posted.headers.get("location").is_none());
    "block"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_oauth_flow_case() {
    let file: Cases<OAuthCase> = common::corpus::read("oauth-flows.yaml");
    assert!(file.cases.len() >= 15);
    let w = World::new().await;
    for case in &file.cases {
        let got = run(&w, &case.id).await;
        assert_eq!(got, case.expected, "{}", case.id);
    }
}
