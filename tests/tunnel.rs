//! CONNECT with TLS interception, driven by unmodified clients through `HTTPS_PROXY`: the
//! real `curl` binary trusting Tollgate's CA (from `GET /ca.pem`), against a TLS upstream.

mod common;

use std::process::Command;

use common::*;

struct World {
    upstream: Upstream,
    proxy: TestProxy,
    ca_file: tempfile::NamedTempFile,
    token: String,
}

impl World {
    async fn new() -> World {
        Self::with("").await
    }

    async fn with(extra: &str) -> World {
        let ca = TestCa::new(&["api.test"]);
        let upstream = Upstream::ok(&ca).await;
        let yaml = format!(
            "{}{extra}\nconnectors:\n  - name: weather\n    token: \"weather-key\"\n    inject: {{ header: X-Api-Key, format: \"{{token}}\" }}\n    allowed_domains: [\"https://api.test:{}/v1/*\"]\n",
            base_config(&ca),
            upstream.port
        );
        let proxy = TestProxy::start(&yaml).await;
        let pem = get(proxy.running.admin_addr, "/ca.pem", &[]).await;
        assert_eq!(pem.status, 200);
        assert!(String::from_utf8_lossy(&pem.body).starts_with("-----BEGIN CERTIFICATE-----"));
        let ca_file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(ca_file.path(), &pem.body).unwrap();
        World { upstream, proxy, ca_file, token: jwt("alice", serde_json::json!({})) }
    }

    /// curl through HTTPS_PROXY with `user` as the proxy username (connector) and the JWT.
    async fn curl(&self, user: Option<&str>, args: &[&str], url: &str) -> (String, String) {
        let proxy = match user {
            Some(u) => format!("http://{u}:{}@127.0.0.1:{}", self.token, self.proxy.addr().port()),
            None => format!("http://127.0.0.1:{}", self.proxy.addr().port()),
        };
        let mut cmd = Command::new("curl");
        cmd.env_clear()
            .env("HTTPS_PROXY", proxy)
            .args(["--silent", "--show-error", "--include", "--cacert"])
            .arg(self.ca_file.path())
            .args(["--write-out", "\n%{http_connect} %{http_version}"])
            .args(args)
            .arg(url);
        let out = tokio::task::spawn_blocking(move || cmd.output().expect("curl must be installed")).await.unwrap();
        (String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string())
    }

    fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.upstream.port)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_through_https_proxy_gets_the_token_injected() {
    let w = World::new().await;
    for version in ["--http1.1", "--http2"] {
        let (out, err) = w.curl(Some("weather"), &[version], &w.url("api.test", "/v1/forecast?city=x")).await;
        assert!(out.starts_with("HTTP/"), "{version}: {out} {err}");
        assert!(out.contains(r#"{"ok":true}"#), "{out}");
        let tail = out.lines().last().unwrap();
        assert!(tail.starts_with("200 "), "the CONNECT answer: {tail}");
        let expected = if version == "--http2" { "2" } else { "1.1" };
        assert!(tail.ends_with(expected), "{version} inside the tunnel: {tail}");
    }
    let seen = w.upstream.requests();
    assert_eq!(seen.len(), 2);
    for req in &seen {
        assert_eq!(req.headers["x-api-key"], "weather-key");
        assert_eq!(req.path_and_query, "/v1/forecast?city=x");
        assert!(req.headers.get("proxy-authorization").is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_are_refused_or_checked_inside() {
    let w = World::new().await;
    // No tunnel for a host no connector covers.
    let (out, _) = w.curl(Some("weather"), &[], &w.url("evil.test", "/v1/x")).await;
    assert!(out.lines().last().unwrap().starts_with("403"), "{out}");
    assert!(out.to_ascii_lowercase().contains("x-tollgate-error: endpoint_not_allowed"), "{out}");
    // No tunnel without a caller credential.
    let (out, _) = w.curl(None, &[], &w.url("api.test", "/v1/x")).await;
    assert!(out.lines().last().unwrap().starts_with("407"), "{out}");
    // Inside the tunnel, every request is checked like any other.
    let (out, _) = w.curl(Some("weather"), &[], &w.url("api.test", "/admin")).await;
    assert!(inner_status(&out, "403") && out.contains("endpoint_not_allowed"), "{out}");
    // The inner Host must be the CONNECT target.
    let (out, _) = w.curl(Some("weather"), &["--header", "Host: other.test"], &w.url("api.test", "/v1/x")).await;
    assert!(inner_status(&out, "400") && out.contains("bad_target"), "{out}");
    assert!(w.upstream.requests().is_empty());
}

/// Whether the response inside the tunnel (HTTP/1.1 or HTTP/2) has this status.
fn inner_status(out: &str, status: &str) -> bool {
    out.lines().skip(1).any(|l| l.starts_with("HTTP/") && l.split_whitespace().nth(1) == Some(status))
}

/// Runs a client script with only the environment a runtime would set.
async fn client(program: &str, script: &str, env: Vec<(&'static str, String)>, url: String) -> (String, String) {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/clients");
    let mut cmd = Command::new(program);
    cmd.current_dir(&dir).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).arg(script).arg(url);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let name = program.to_string();
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap_or_else(|e| panic!("{name} is needed: {e}")))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (status, body) = text.split_once('\n').unwrap_or((text.as_str(), ""));
    (status.trim().to_string(), format!("{body}{}", String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_requests_and_node_fetch_through_https_proxy() {
    let w = World::new().await;
    assert!(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/clients/node_modules/undici").exists(),
        "undici is not installed: run `npm ci --prefix tests/e2e/clients` (make test does)"
    );
    let proxy = format!("http://weather:{}@127.0.0.1:{}", w.token, w.proxy.addr().port());
    let ca = w.ca_file.path().display().to_string();
    let python_env = || vec![("HTTPS_PROXY", proxy.clone()), ("REQUESTS_CA_BUNDLE", ca.clone())];
    let node_env = || vec![("HTTPS_PROXY", proxy.clone()), ("NODE_EXTRA_CA_CERTS", ca.clone())];

    let (status, body) = client("python3", "requests_get.py", python_env(), w.url("api.test", "/v1/python")).await;
    assert_eq!(status, "200", "{body}");
    let (status, body) = client("node", "fetch.mjs", node_env(), w.url("api.test", "/v1/node")).await;
    assert_eq!(status, "200", "{body}");
    let seen = w.upstream.requests();
    let paths: Vec<&str> = seen.iter().map(|s| s.path_and_query.as_str()).collect();
    assert_eq!(paths, ["/v1/python", "/v1/node"]);
    assert!(seen
        .iter()
        .all(|s| s.headers["x-api-key"] == "weather-key" && s.headers.get("proxy-authorization").is_none()));

    // Outside the allowed domains: no tunnel (403 on the CONNECT), or refused inside it.
    let (status, body) = client("python3", "requests_get.py", python_env(), w.url("evil.test", "/v1/x")).await;
    assert_eq!(status, "proxy-error", "{body}");
    assert!(body.contains("403"), "{body}");
    // undici reports a refused CONNECT only as a failed request; Tollgate's counter shows the 403.
    let (status, body) = client("node", "fetch.mjs", node_env(), w.url("evil.test", "/v1/x")).await;
    assert_eq!(status, "error", "{body}");
    let metrics = String::from_utf8(get(w.proxy.running.admin_addr, "/metrics", &[]).await.body.to_vec()).unwrap();
    assert!(
        metrics.contains(r#"tollgate_requests_total{connector="none",method="CONNECT",outcome="endpoint_not_allowed",status_class="4xx"} 2"#),
        "both tunnels were refused with 403"
    );
    let (status, body) = client("python3", "requests_get.py", python_env(), w.url("api.test", "/admin")).await;
    assert_eq!(status, "403", "{body}");
    let (status, body) = client("node", "fetch.mjs", node_env(), w.url("api.test", "/admin")).await;
    assert_eq!(status, "403", "{body}");
    assert!(body.contains("endpoint_not_allowed"));
    assert_eq!(w.upstream.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_supplied_ca() {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, "Operator Test CA");
    let cert = params.self_signed(&key).unwrap();
    let (cert_file, key_file) = (tempfile::NamedTempFile::new().unwrap(), tempfile::NamedTempFile::new().unwrap());
    std::fs::write(cert_file.path(), cert.pem()).unwrap();
    std::fs::write(key_file.path(), key.serialize_pem()).unwrap();
    let extra = format!(
        "interception: {{ ca_cert_file: {}, ca_key_file: {} }}\n",
        cert_file.path().display(),
        key_file.path().display()
    );
    let w = World::with(&extra).await;
    assert_eq!(std::fs::read_to_string(w.ca_file.path()).unwrap(), cert.pem(), "/ca.pem serves the operator's CA");
    let (out, err) = w.curl(Some("weather"), &[], &w.url("api.test", "/v1/x")).await;
    assert!(out.contains(r#"{"ok":true}"#), "{out} {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events_stream_through_the_tunnel() {
    use bytes::Bytes;
    use http_body_util::BodyExt;
    let ca = TestCa::new(&["api.test"]);
    let (upstream, got_first_tx) = two_event_upstream(&ca).await;
    let yaml = format!(
        "{}\nconnectors:\n  - name: weather\n    token: \"weather-key\"\n    allowed_domains: [\"https://api.test:{}/*\"]\n",
        base_config(&ca),
        upstream.port
    );
    let proxy = TestProxy::start(&yaml).await;
    let pem = get(proxy.running.admin_addr, "/ca.pem", &[]).await.body;
    // CONNECT, then TLS with Tollgate's CA, then a streaming GET inside.
    let mut stream = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    let auth = bearer(&jwt("alice", serde_json::json!({})));
    let connect = format!(
        "CONNECT api.test:{p} HTTP/1.1\r\nHost: api.test:{p}\r\nProxy-Authorization: {auth}\r\n\r\n",
        p = upstream.port
    );
    tokio::io::AsyncWriteExt::write_all(&mut stream, connect.as_bytes()).await.unwrap();
    let mut head = [0u8; 1024];
    let n = tokio::io::AsyncReadExt::read(&mut stream, &mut head).await.unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200"));
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("api.test").unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)).connect(name, stream).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let request = http::Request::get("/events")
        .header("host", format!("api.test:{}", upstream.port))
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let first = tokio::time::timeout(std::time::Duration::from_secs(20), body.frame())
        .await
        .expect("the first event was held back");
    assert_eq!(first.unwrap().unwrap().into_data().unwrap(), "data: one\n\n");
    got_first_tx.send(()).unwrap();
    assert_eq!(body.frame().await.unwrap().unwrap().into_data().unwrap(), "data: two\n\n");
    assert_eq!(upstream.requests()[0].headers["authorization"], "Bearer weather-key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_literal_hosts_get_an_ip_san() {
    // The upstream's own certificate names the IP; Tollgate's minted leaf must too, or curl
    // (verifying against Tollgate's CA) refuses the tunnel's TLS.
    let ca = TestCa::new(&["52.32.0.10"]);
    let upstream = Upstream::ok(&ca).await;
    let yaml = format!(
        "{}\nconnectors:\n  - name: ip\n    token: \"ip-token\"\n    allowed_domains: [\"https://52.32.0.10:{}/*\"]\n",
        base_config(&ca),
        upstream.port
    );
    let proxy = TestProxy::start(&yaml).await;
    let pem = get(proxy.running.admin_addr, "/ca.pem", &[]).await.body;
    let ca_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca_file.path(), &pem).unwrap();
    let w = World { upstream, proxy, ca_file, token: jwt("alice", serde_json::json!({})) };
    let (out, err) = w.curl(Some("ip"), &[], &w.url("52.32.0.10", "/x")).await;
    assert!(out.contains(r#"{"ok":true}"#), "{out} {err}");
    assert_eq!(w.upstream.requests()[0].headers["authorization"], "Bearer ip-token");
    assert!(
        w.proxy.dialed().iter().all(|a| a.ip().to_string() == "52.32.0.10"),
        "the checked address was asked for; loopback was dialed"
    );
}

/// The generated CA lives in the token store: with Redis down at start, CONNECT answers 503
/// (not a tunnel without a CA), and once Redis is back the CA is loaded without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ca_is_loaded_once_the_store_returns() {
    use tokio::io::AsyncWriteExt;
    let ca = TestCa::new(&["api.test"]);
    let upstream = Upstream::ok(&ca).await;
    let mut redis = common::redis_server::RedisServer::start();
    redis.stop();
    let yaml = format!(
        "{}store: {{ backend: redis, redis_url: \"{}\", timeout: \"300ms\" }}\nconnectors:\n  - name: weather\n    token: \"weather-key\"\n    allowed_domains: [\"https://api.test:{}/v1/*\"]\n",
        base_config(&ca),
        redis.url(),
        upstream.port
    );
    let proxy = TestProxy::start(&yaml).await;
    let auth = bearer(&jwt("alice", serde_json::json!({})));
    let connect = |addr: std::net::SocketAddr, auth: String, port: u16| async move {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head =
            format!("CONNECT api.test:{port} HTTP/1.1\r\nHost: api.test:{port}\r\nProxy-Authorization: {auth}\r\n\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        read_head(&mut stream).await
    };
    let refused = connect(proxy.addr(), auth.clone(), upstream.port).await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.to_ascii_lowercase().contains("x-tollgate-error: token_store_unavailable"), "{refused}");
    get(proxy.running.admin_addr, "/ca.pem", &[]).await.assert_refused(404, "not_found");

    redis.restart();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let head = connect(proxy.addr(), auth.clone(), upstream.port).await;
        if head.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the CA was not loaded after Redis returned: {head}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(get(proxy.running.admin_addr, "/ca.pem", &[]).await.status, 200);
}

/// Tunnels to one host share one minted certificate, and a client that keeps its TLS sessions
/// resumes them (a session ticket) on its next tunnel; the counters say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_share_a_certificate_and_resume_sessions() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ca = TestCa::new(&["api.weather.test"]);
    let upstream = Upstream::ok(&ca).await;
    let dialer = LoopbackDialer { ports: [(443, upstream.port)].into_iter().collect(), ..Default::default() };
    let yaml = weather_static_config(&ca, upstream.port).replace(&format!(":{}/*", upstream.port), "/*");
    let proxy = TestProxy::start_full(&yaml, TestResolver::default(), dialer).await;
    let kept = common::tunnel::trusting_proxy(&proxy, &[b"http/1.1"]).await;
    let tunnel = |config: std::sync::Arc<rustls::ClientConfig>| {
        let addr = proxy.addr();
        async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let connect = format!(
                "CONNECT api.weather.test:443 HTTP/1.1\r\nhost: api.weather.test:443\r\nproxy-authorization: {}\r\n\r\n",
                alice_bearer()
            );
            stream.write_all(connect.as_bytes()).await.unwrap();
            assert!(read_head(&mut stream).await.starts_with("HTTP/1.1 200"), "the tunnel did not open");
            let name = rustls::pki_types::ServerName::try_from("api.weather.test").unwrap();
            let mut tls = tokio_rustls::TlsConnector::from(config).connect(name, stream).await.unwrap();
            let resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
            tls.write_all(b"GET /ok HTTP/1.1\r\nhost: api.weather.test\r\n\r\n").await.unwrap();
            assert!(read_head(&mut tls).await.starts_with("HTTP/1.1 200"));
            let mut body = [0u8; 11];
            tls.read_exact(&mut body).await.unwrap(); // the session tickets came before it
            resumed
        }
    };
    let kinds = [tunnel(kept.clone()).await, tunnel(kept.clone()).await, tunnel(kept).await];
    assert_eq!(kinds, [false, true, true], "a kept session resumes");
    let fresh = common::tunnel::trusting_proxy(&proxy, &[b"http/1.1"]).await;
    assert!(!tunnel(fresh).await, "a client without a session makes a full handshake");
    let metrics = String::from_utf8(get(proxy.running.admin_addr, "/metrics", &[]).await.body.to_vec()).unwrap();
    for line in [
        "tollgate_tunnel_handshakes_total{result=\"full\"} 2",
        "tollgate_tunnel_handshakes_total{result=\"resumed\"} 2",
        "tollgate_tunnel_handshakes_total{result=\"failed\"} 0",
        "tollgate_tunnel_certificates_minted_total 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing `{line}` in:\n{metrics}");
    }
    assert_eq!(upstream.requests().len(), 4);
}
