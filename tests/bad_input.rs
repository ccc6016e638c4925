//! Bad input is refused where it enters, naming the field and never echoing a value: values
//! with control bytes or empty ones, from the admin API and from the environment or a file;
//! admin bodies that name a key twice; and heads over the header limit on every listener.

mod common;

use bytes::Bytes;
use common::*;
use serde_json::json;
use tollgate::config::{Config, Environment};

const ADMIN: (&str, &str) = ("authorization", "Bearer admin-secret-token");

async fn put_raw(proxy: &TestProxy, name: &str, body: &str) -> Answer {
    let target = format!("/admin/connectors/{name}");
    send(proxy.running.admin_addr, "PUT", &target, &[ADMIN], Bytes::from(body.to_string())).await
}

async fn put(proxy: &TestProxy, name: &str, value: serde_json::Value) -> Answer {
    put_raw(proxy, name, &value.to_string()).await
}

fn refused_naming(answer: &Answer, field: &str, why: &str) {
    let body = answer.assert_refused(400, "invalid_request");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains(field) && message.contains(why), "want {field}: {why}, got {message}");
    assert!(!String::from_utf8_lossy(&answer.body).contains("canary"), "a value was echoed: {message}");
}

#[tokio::test]
async fn admin_api_refuses_empty_and_control_byte_values() {
    let ca = TestCa::new(&["api.crm.test"]);
    let proxy = TestProxy::start(&base_config(&ca)).await;
    let domains = json!(["https://api.crm.test/*"]);
    let cases = [
        (
            json!({"grant": "static", "token": "", "allowed_domains": domains}),
            "connectors.crm.token",
            "must not be empty",
        ),
        (
            json!({"grant": "static", "token": "canary-1\r\nX-Evil: 1", "allowed_domains": domains}),
            "connectors.crm.token",
            "control character (CR)",
        ),
        (
            json!({"grant": "static", "token": "canary-2\nmore", "allowed_domains": domains}),
            "connectors.crm.token",
            "control character (LF)",
        ),
        (
            json!({"grant": "client_credentials", "token_endpoint": "https://auth.crm.test/t", "client_id": "c",
                   "client_secret": "canary-3\u{0}", "allowed_domains": domains}),
            "connectors.crm.client_secret",
            "control character (NUL)",
        ),
        (
            json!({"grant": "client_credentials", "token_endpoint": "https://auth.crm.test/t", "client_id": "c\u{1b}x",
                   "client_secret": "s3cret-value", "allowed_domains": domains}),
            "connectors.crm.client_id",
            "control character (0x1b)",
        ),
        (
            json!({"grant": "static", "token": "canary-4-token",
                   "inject": {"header": "X-Api-Key", "format": "Key\t{token}"}, "allowed_domains": domains}),
            "connectors.crm.inject.format",
            "no CR, LF, NUL, tab or other control bytes",
        ),
        (
            json!({"grant": "static", "token": "canary-5-token",
                   "inject": {"header": "X-Api-Key", "format": "{token}\r\nX: y"}, "allowed_domains": domains}),
            "connectors.crm.inject.format",
            "header-safe characters",
        ),
    ];
    for (body, field, why) in cases {
        refused_naming(&put(&proxy, "crm", body).await, field, why);
    }
    // Nothing was stored by any of them.
    let list = get(proxy.running.admin_addr, "/admin/connectors", &[ADMIN]).await.json();
    assert_eq!(list["connectors"], json!([]), "{list}");
    // The same connector with clean values is taken.
    let ok =
        put(&proxy, "crm", json!({"grant": "static", "token": "clean-token-123", "allowed_domains": domains})).await;
    assert_eq!(ok.status, 201, "{:?}", ok.body);
}

#[tokio::test]
async fn admin_bodies_that_name_a_key_twice_are_refused() {
    let ca = TestCa::new(&["api.crm.test"]);
    let proxy = TestProxy::start(&base_config(&ca)).await;
    // Which `token` would be stored depends on the reader; Tollgate takes neither.
    let twice = r#"{"grant": "static", "token": "canary-first-1", "allowed_domains": ["https://api.crm.test/*"], "token": "canary-second-2"}"#;
    refused_naming(&put_raw(&proxy, "crm", twice).await, "`token`", "given twice");
    let nested = r#"{"grant": "static", "token": "t-123456789", "allowed_domains": ["https://api.crm.test/*"], "inject": {"header": "X-A", "header": "X-B"}}"#;
    refused_naming(&put_raw(&proxy, "crm", nested).await, "`header`", "given twice");
    let list = get(proxy.running.admin_addr, "/admin/connectors", &[ADMIN]).await.json();
    assert_eq!(list["connectors"], json!([]));
    let explain = send(
        proxy.running.admin_addr,
        "POST",
        "/admin/explain",
        &[ADMIN],
        Bytes::from(r#"{"url": "https://api.crm.test/x", "url": "https://evil.test/"}"#),
    )
    .await;
    explain.assert_refused(400, "invalid_request");
}

#[tokio::test]
async fn every_listener_has_the_proxy_header_limit() {
    let ca = TestCa::new(&["api.weather.test"]);
    let yaml = weather_static_config(&ca, 443)
        .replace("upstream:", "public_listen: 127.0.0.1:0\nlimits:\n  max_header_bytes: \"2KiB\"\nupstream:");
    let proxy = TestProxy::start(&yaml).await;
    let big = "x".repeat(3000);
    let public = proxy.running.public_addr.expect("public listener");
    for (addr, target) in [
        (proxy.running.admin_addr, "/admin/connectors"),
        (proxy.running.admin_addr, "/healthz"),
        (proxy.running.admin_addr, "/metrics"),
        (public, "/oauth/start?ticket=x"),
        (proxy.addr(), "/oauth/start?ticket=x"),
        (proxy.addr(), "/connect"),
        (proxy.addr(), "https://api.weather.test/x"),
    ] {
        let answer = get(addr, target, &[ADMIN, ("x-big", &big)]).await;
        answer.assert_refused(431, "headers_too_large");
    }
    // Under the limit, the same requests are served.
    assert_eq!(get(proxy.running.admin_addr, "/admin/connectors", &[ADMIN, ("x-small", "y")]).await.status, 200);
    // More than 100 fields is refused on the admin listener as on the proxy listener.
    let many: Vec<(String, String)> = (0..120).map(|i| (format!("x-f{i}"), "v".to_string())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    for addr in [proxy.running.admin_addr, proxy.addr()] {
        assert_eq!(raw_status(addr, "/healthz", &many).await, 431, "{addr}");
        assert_ne!(raw_status(addr, "/healthz", &many[..90]).await, 431, "{addr}");
    }
}

/// The status line's code for a request written by hand (hyper's client would refuse to send
/// some of what these tests send).
async fn raw_status(addr: std::net::SocketAddr, target: &str, headers: &[(&str, &str)]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!("GET {target} HTTP/1.1\r\nhost: x\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 64];
    let n = stream.read(&mut buf).await.unwrap();
    let line = String::from_utf8_lossy(&buf[..n]).to_string();
    line.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("no status line: {line}"))
}

#[test]
fn values_from_the_environment_and_files_are_judged_like_literals() {
    let ca = TestCa::new(&["x.test"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    // A trailing newline is the file's end, not the value's; one inside the value is refused.
    std::fs::write(&file, "canary-file\nsecond-line\n").unwrap();
    let yaml = format!(
        "{}\nconnectors:\n  - name: a\n    token: ${{A_TOKEN}}\n    allowed_domains: [\"https://a.x.test/*\"]\n  - name: b\n    token: \"file:{}\"\n    allowed_domains: [\"https://b.x.test/*\"]\n",
        base_config(&ca),
        file.display()
    );
    let env = Environment::from_vars([("A_TOKEN", "canary-env\r\n")]);
    let err = Config::from_yaml(&yaml, &env).unwrap_err().to_string();
    assert!(err.contains("connectors[0].token: holds a control character (CR)"), "{err}");
    assert!(err.contains("connectors[1].token: holds a control character (LF)"), "{err}");
    assert!(!err.contains("canary"), "{err}");
}
