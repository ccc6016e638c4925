//! MCP servers publish their RFC 9728 metadata in different places; Tollgate finds it at the
//! path-suffixed well-known URL, else the root one, else through the `resource_metadata` of
//! the MCP endpoint's 401 challenge, and refuses metadata that names another resource. A
//! connector may drop default authorization parameters (`scope`, `resource`, a template's),
//! never state, PKCE or the redirect URI.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::browser::{get_field, query, start};
use common::oauth::TokenEndpoint;
use common::*;
use http::{Response, StatusCode};
use serde_json::json;
use tollgate::config::env::Environment;
use tollgate::config::Config;

/// One server for every MCP host: what each publishes depends on the `Host` it is asked as.
async fn mcp_servers(ca: &TestCa, issuer: String) -> Upstream {
    Upstream::with(ca, move |req| {
        let host = req.headers().get("host").and_then(|h| h.to_str().ok()).unwrap_or_default().to_string();
        let path = req.uri().path().to_string();
        let issuer = issuer.clone();
        async move {
            let name = host.split('.').next().unwrap_or_default().to_string();
            let metadata = |resource: String| {
                let mut r =
                    Response::new(full(json!({ "resource": resource, "authorization_servers": [issuer] }).to_string()));
                r.headers_mut().insert("content-type", "application/json".parse().unwrap());
                r
            };
            match (name.as_str(), path.as_str()) {
                ("suffixed", "/.well-known/oauth-protected-resource/mcp") => metadata(format!("https://{host}/mcp")),
                ("root", "/.well-known/oauth-protected-resource") => metadata(format!("https://{host}")),
                ("challenge", "/mcp") => {
                    let mut r = Response::new(full(r#"{"error":"invalid_token"}"#));
                    *r.status_mut() = StatusCode::UNAUTHORIZED;
                    let value = format!(r#"Bearer error="invalid_token", resource_metadata="https://{host}/meta/prm""#);
                    r.headers_mut().insert("www-authenticate", value.parse().unwrap());
                    r
                }
                ("challenge", "/meta/prm") => metadata(format!("https://{host}/mcp")),
                // Metadata for someone else's resource.
                ("impostor", "/.well-known/oauth-protected-resource") => {
                    metadata("https://suffixed.mcp.test/mcp".into())
                }
                _ => {
                    let mut r = Response::new(full("not found"));
                    *r.status_mut() = StatusCode::NOT_FOUND;
                    r
                }
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_is_found_where_servers_publish_it() {
    let hosts = ["suffixed.mcp.test", "root.mcp.test", "challenge.mcp.test", "impostor.mcp.test", "auth.test"];
    let ca = TestCa::new(&hosts);
    let endpoint = TokenEndpoint::start(&ca, &[], None).await;
    let issuer = format!("https://auth.test:{}", endpoint.server.port);
    let mcp = mcp_servers(&ca, issuer.clone()).await;
    let port = mcp.port;
    let connector = |name: &str, extra: &str| {
        format!(
            r#"  - name: {name}
    grant: authorization_code
    mcp_url: https://{name}.mcp.test:{port}/mcp
    client_id: mcp-client
    scopes: [tools]
    allowed_domains: ["https://{name}.mcp.test:{port}/*"]
{extra}"#
        )
    };
    let yaml = format!(
        "{}connectors:\n{}{}{}{}",
        base_config(&ca),
        connector("suffixed", ""),
        connector("root", "    authorize_params: { prompt: consent, audience: tools }\n    exclude_authorize_params: [scope, resource, prompt]\n"),
        connector("challenge", ""),
        connector("impostor", ""),
    );
    let proxy = TestProxy::start(&yaml).await;
    let admin = proxy.running.admin_addr;
    let deadline = Instant::now() + Duration::from_secs(15);
    let discovery = loop {
        let ready = get(admin, "/readyz", &[]).await.json();
        let d = ready["discovery"].clone();
        if ["suffixed", "root", "challenge", "impostor"].iter().all(|n| d[n]["state"] != "pending" && !d[n].is_null()) {
            break d;
        }
        assert!(Instant::now() < deadline, "discovery did not settle: {ready}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for name in ["suffixed", "root", "challenge"] {
        assert_eq!(discovery[name]["state"], "ok", "{name}: {discovery}");
    }
    assert_eq!(discovery["impostor"]["state"], "error");
    assert!(discovery["impostor"]["message"].as_str().unwrap().contains("names resource"), "{discovery}");

    // Each connects through the authorization server the metadata named.
    let auth = bearer(&jwt("alice", json!({})));
    for name in ["suffixed", "root", "challenge"] {
        let body = Bytes::from(json!({ "connector": name }).to_string());
        let link = send(proxy.addr(), "POST", "/connect", &[("authorization", &auth)], body).await;
        assert_eq!(link.status, 200, "{:?}", link.body);
        let path =
            link.json()["connect_url"].as_str().unwrap().strip_prefix("https://tollgate.test").unwrap().to_string();
        let (location, _) = start(proxy.addr(), &path, None).await;
        assert!(location.starts_with(&format!("{issuer}/authorize?")), "{name}: {location}");
        let q = query(&location);
        for kept in ["state", "code_challenge", "code_challenge_method", "redirect_uri", "client_id", "response_type"] {
            assert!(get_field(&q, kept).is_some(), "{name}: {kept} is always sent: {location}");
        }
        if name == "root" {
            // Excluded: scope, resource and prompt; its own audience is sent.
            for dropped in ["scope", "resource", "prompt"] {
                assert_eq!(get_field(&q, dropped), None, "{dropped} was excluded: {location}");
            }
            assert_eq!(get_field(&q, "audience"), Some("tools"));
        } else {
            assert_eq!(get_field(&q, "scope"), Some("tools"));
            assert_eq!(get_field(&q, "resource"), Some(format!("https://{name}.mcp.test:{port}/mcp").as_str()));
        }
    }
}

#[test]
fn state_pkce_and_the_redirect_are_never_excluded_or_overridden() {
    let base = r#"
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
encryption_keys: [{ id: k1, secret: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" }]
connectors:
  - name: crm
    grant: authorization_code
    authorization_endpoint: https://auth.crm.example/authorize
    token_endpoint: https://auth.crm.example/token
    client_id: crm
    allowed_domains: ["https://api.crm.example/*"]
"#;
    let env = Environment::from_vars([("UNUSED", "x")]);
    for (extra, field) in [
        ("    exclude_authorize_params: [state]\n", "connectors[0].exclude_authorize_params[0]"),
        ("    exclude_authorize_params: [prompt, code_challenge]\n", "connectors[0].exclude_authorize_params[1]"),
        ("    exclude_authorize_params: [redirect_uri]\n", "connectors[0].exclude_authorize_params[0]"),
        ("    authorize_params: { state: fixed }\n", "connectors[0].authorize_params.state"),
        ("    authorize_params: { scope: admin }\n", "connectors[0].authorize_params.scope"),
    ] {
        let error = Config::from_yaml(&format!("{base}{extra}"), &env).unwrap_err().to_string();
        assert!(error.contains(field), "{extra}: {error}");
    }
    Config::from_yaml(&format!("{base}    exclude_authorize_params: [scope, resource, prompt]\n"), &env).unwrap();
}
