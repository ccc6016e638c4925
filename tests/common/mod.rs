//! Test fixtures: a CA and leaf certificates minted per test, a recording TLS upstream, a
//! resolver that answers DNS itself, a dialer that only ever reaches loopback, Tollgate on
//! port 0, JWT minting and a plain HTTP/1.1 client over real sockets.
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tollgate::app::{start, Deps, Running};
use tollgate::config::{Config, Environment};
use tollgate::net::{Dialer, Resolver};

pub mod browser;
pub mod corpus;
pub mod oauth;
pub mod process;
pub mod redis_server;
pub mod tunnel;

pub type Body = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// The public address every name resolves to unless a test says otherwise. Never dialed:
/// the dialer maps it to loopback after the address check.
pub const PUBLIC_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(52, 32, 0, 10));

pub const CALLER_SECRET: &str = "test-caller-secret-that-is-at-least-32-bytes";
pub const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

pub fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).map_err(|never| match never {}).boxed()
}

/// A CA and a leaf for the given names, minted now.
pub struct TestCa {
    pub ca_pem: String,
    pub ca_file: tempfile::NamedTempFile,
    pub leaf_der: CertificateDer<'static>,
    pub leaf_key: PrivateKeyDer<'static>,
}

impl TestCa {
    pub fn new(names: &[&str]) -> TestCa {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "tollgate test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf_params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
        let ca_file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(ca_file.path(), ca.pem()).unwrap();
        TestCa {
            ca_pem: ca.pem(),
            ca_file,
            leaf_der: leaf.der().clone(),
            leaf_key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        }
    }
}

impl TestCa {
    /// The leaf certificate and key as PEM files, for servers outside Rust.
    /// A TLS acceptor serving the leaf, offering HTTP/1.1 by ALPN.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![self.leaf_der.clone()], self.leaf_key.clone_key())
            .unwrap();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        tokio_rustls::TlsAcceptor::from(Arc::new(tls))
    }

    pub fn leaf_pem_files(&self) -> (tempfile::NamedTempFile, tempfile::NamedTempFile) {
        use base64::Engine;
        let pem = |label: &str, der: &[u8]| {
            let b64 = base64::engine::general_purpose::STANDARD.encode(der);
            let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
            format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
        };
        let cert = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(cert.path(), pem("CERTIFICATE", &self.leaf_der)).unwrap();
        let key = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(key.path(), pem("PRIVATE KEY", self.leaf_key.secret_der())).unwrap();
        (cert, key)
    }
}

/// What the upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub sni: Option<String>,
}

/// A stream an upstream serves: TLS or plain TCP.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

type Handler = Arc<dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> + Send + Sync>;

/// A TLS upstream on loopback that records every request.
pub struct Upstream {
    pub port: u16,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub connections: Arc<Mutex<usize>>,
}

impl Upstream {
    /// Answers 200 `{"ok":true}` to everything.
    pub async fn ok(ca: &TestCa) -> Upstream {
        Self::with(ca, |_req| async { Response::new(full(r#"{"ok":true}"#)) }).await
    }

    pub async fn with<F, Fut>(ca: &TestCa, handler: F) -> Upstream
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        Self::serve(Some(ca.acceptor()), handler).await
    }

    /// The same over plain HTTP (for `unsafe_allow_http` connectors).
    pub async fn plain<F, Fut>(handler: F) -> Upstream
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        Self::serve(None, handler).await
    }

    async fn serve<F, Fut>(acceptor: Option<tokio_rustls::TlsAcceptor>, handler: F) -> Upstream
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |r| Box::pin(handler(r)));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let (seen2, conns2) = (seen.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                *conns2.lock().unwrap() += 1;
                let (acceptor, handler, seen) = (acceptor.clone(), handler.clone(), seen2.clone());
                tokio::spawn(async move {
                    let (io, sni): (Box<dyn Io>, Option<String>) = match acceptor {
                        Some(acceptor) => {
                            let Ok(tls) = acceptor.accept(tcp).await else { return };
                            let sni = tls.get_ref().1.server_name().map(str::to_string);
                            (Box::new(tls), sni)
                        }
                        None => (Box::new(tcp), None),
                    };
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        seen.lock().unwrap().push(Seen {
                            method: req.method().to_string(),
                            path_and_query: req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default(),
                            headers: req.headers().clone(),
                            sni: sni.clone(),
                        });
                        let fut = handler(req);
                        async move { Ok::<_, Infallible>(fut.await) }
                    });
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), service).await;
                });
            }
        });
        Upstream { port, seen, connections }
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Answers DNS from a table; every other name resolves to [`PUBLIC_IP`]. A name with a
/// `sequences` entry answers its first list first and the last list ever after (rebinding).
#[derive(Debug, Default)]
pub struct TestResolver {
    pub answers: HashMap<String, Vec<IpAddr>>,
    pub sequences: HashMap<String, Vec<Vec<IpAddr>>>,
    pub lookups: Mutex<Vec<String>>,
}

#[async_trait]
impl Resolver for TestResolver {
    async fn resolve(&self, host: &str) -> io::Result<Vec<IpAddr>> {
        let asked_before = {
            let mut lookups = self.lookups.lock().unwrap();
            let n = lookups.iter().filter(|h| *h == host).count();
            lookups.push(host.to_string());
            n
        };
        if let Some(sequence) = self.sequences.get(host) {
            return Ok(sequence[asked_before.min(sequence.len() - 1)].clone());
        }
        Ok(self.answers.get(host).cloned().unwrap_or_else(|| vec![PUBLIC_IP]))
    }
}

/// Dials 127.0.0.1 on the requested port whatever address was asked for, and records the
/// addresses Tollgate asked for. Nothing but loopback is ever connected.
#[derive(Debug, Default)]
pub struct LoopbackDialer {
    pub asked: Mutex<Vec<SocketAddr>>,
    /// Requested port to loopback port (e.g. 443 to a test server's port).
    pub ports: HashMap<u16, u16>,
}

#[async_trait]
impl Dialer for LoopbackDialer {
    async fn dial(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        self.asked.lock().unwrap().push(addr);
        let port = self.ports.get(&addr.port()).copied().unwrap_or(addr.port());
        TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await
    }
}

/// Tollgate started on port 0 with test DNS and dialing.
pub struct TestProxy {
    pub running: Running,
    pub resolver: Arc<TestResolver>,
    pub dialer: Arc<LoopbackDialer>,
}

/// The common head of a test config: listeners on port 0, the HS256 caller secret, the CA.
pub fn base_config(ca: &TestCa) -> String {
    format!(
        r#"
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
public_url: https://tollgate.test
admin_tokens: ["admin-secret-token"]
encryption_keys: [{{ id: k1, secret: "{KEY}" }}]
callers:
  jwt:
    audience: tollgate
    hs256_secret: "{CALLER_SECRET}"
upstream:
  extra_ca_file: {}
  connect_timeout: "2s"
  response_timeout: "5s"
"#,
        ca.ca_file.path().display()
    )
}

impl TestProxy {
    pub async fn start(yaml: &str) -> TestProxy {
        Self::start_with(yaml, TestResolver::default()).await
    }

    pub async fn start_with(yaml: &str, resolver: TestResolver) -> TestProxy {
        Self::start_full(yaml, resolver, LoopbackDialer::default()).await
    }

    pub async fn start_full(yaml: &str, resolver: TestResolver, dialer: LoopbackDialer) -> TestProxy {
        let config = Config::from_yaml(yaml, &Environment::from_vars([("UNUSED", "x")]))
            .unwrap_or_else(|e| panic!("test config:\n{e}"));
        let resolver = Arc::new(resolver);
        let dialer = Arc::new(dialer);
        let deps = Deps { resolver: resolver.clone(), dialer: dialer.clone(), store: None };
        let running = start(config, deps).await.unwrap();
        TestProxy { running, resolver, dialer }
    }

    pub fn addr(&self) -> SocketAddr {
        self.running.proxy_addr
    }

    /// Every address Tollgate asked the dialer for.
    pub fn dialed(&self) -> Vec<SocketAddr> {
        self.dialer.asked.lock().unwrap().clone()
    }
}

/// A test config with one static connector, `weather`, for `https://api.weather.test:{port}/*`.
pub fn weather_static_config(ca: &TestCa, port: u16) -> String {
    format!(
        r#"{}
connectors:
  - name: weather
    grant: static
    token: "weather-key"
    allowed_domains: ["https://api.weather.test:{port}/*"]
"#,
        base_config(ca)
    )
}

/// `Bearer <JWT for alice>`, the caller of most tests.
pub fn alice_bearer() -> String {
    bearer(&jwt("alice", serde_json::json!({})))
}

/// An HS256 caller JWT with `sub` and extra claims, valid for an hour.
pub fn jwt(sub: &str, extra: serde_json::Value) -> String {
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600;
    let mut claims = serde_json::json!({ "sub": sub, "aud": "tollgate", "exp": exp });
    if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(CALLER_SECRET.as_bytes()),
    )
    .unwrap()
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A collected response.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| panic!("not JSON: {:?}", self.body))
    }

    /// The `X-Tollgate-Error` header, if any.
    pub fn error_header(&self) -> Option<&str> {
        self.headers.get("x-tollgate-error").and_then(|v| v.to_str().ok())
    }

    /// Asserts a Tollgate refusal: status, code in body and header, request id present.
    pub fn assert_refused(&self, status: u16, code: &str) -> serde_json::Value {
        assert_eq!(self.status.as_u16(), status, "body: {:?}", self.body);
        assert_eq!(self.error_header(), Some(code));
        let json = self.json();
        assert_eq!(json["error"], code);
        assert!(json["request_id"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(json["message"].as_str().is_some_and(|s| !s.is_empty()));
        json
    }
}

/// Sends one request over a fresh connection; `target` goes on the request line as is.
pub async fn send(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)], body: Bytes) -> Answer {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let mut builder = Request::builder().method(method).uri(target);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let response = sender.send_request(builder.body(Full::new(body)).unwrap()).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    Answer { status: parts.status, headers: parts.headers, body }
}

pub async fn get(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> Answer {
    send(addr, "GET", target, headers, Bytes::new()).await
}

/// A GET through the proxy whose answer is returned as soon as its head arrives, so a test can
/// read the body frame by frame.
pub async fn get_streaming(addr: SocketAddr, target: &str, proxy_authorization: &str) -> Response<Incoming> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let request = Request::get(target)
        .header("proxy-authorization", proxy_authorization)
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    sender.send_request(request).await.unwrap()
}

/// Tollgate started from a config file (so a test can reload it), with test DNS and dialing.
pub async fn start_from_file(path: &std::path::Path, env: &Environment) -> Running {
    let deps =
        Deps { resolver: Arc::new(TestResolver::default()), dialer: Arc::new(LoopbackDialer::default()), store: None };
    start(tollgate::config::load_file(path, env).unwrap(), deps).await.unwrap()
}

/// A body fed through a channel, so a test decides when each chunk goes out.
pub struct ChannelBody(pub tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|chunk| chunk.map(|c| Ok(hyper::body::Frame::data(c))))
    }
}

/// A channel and the body it feeds.
pub fn channel_body() -> (tokio::sync::mpsc::Sender<Bytes>, ChannelBody) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    (tx, ChannelBody(rx))
}

/// An upstream that streams two server-sent events and sends the second only after the
/// returned sender fires: a proxy that buffers the answer never delivers the first.
pub async fn two_event_upstream(ca: &TestCa) -> (Upstream, tokio::sync::oneshot::Sender<()>) {
    let (got_first_tx, got_first_rx) = tokio::sync::oneshot::channel::<()>();
    let got_first_rx = Arc::new(tokio::sync::Mutex::new(Some(got_first_rx)));
    let upstream = Upstream::with(ca, move |_req| {
        let got_first_rx = got_first_rx.clone();
        async move {
            let (tx, body) = channel_body();
            tokio::spawn(async move {
                let _ = tx.send(Bytes::from("data: one\n\n")).await;
                if let Some(signal) = got_first_rx.lock().await.take() {
                    let _ = signal.await;
                }
                let _ = tx.send(Bytes::from("data: two\n\n")).await;
            });
            let mut r = Response::new(BodyExt::boxed(body));
            r.headers_mut().insert("content-type", "text/event-stream".parse().unwrap());
            r
        }
    })
    .await;
    (upstream, got_first_tx)
}

/// The corpus outcome a status code stands for (the corpus conventions: 400, 411, 413, 414,
/// 431 and 501 are `reject-400`; other refusals are `block`).
pub fn corpus_outcome(status: u16) -> &'static str {
    match status {
        200..=399 => "allow-with-token",
        400 | 411 | 413 | 414 | 431 | 501 => "reject-400",
        _ => "block",
    }
}

/// Everything a peer sends until it closes or falls silent for `idle`.
pub async fn read_until_quiet(
    stream: &mut (impl tokio::io::AsyncReadExt + Unpin),
    idle: std::time::Duration,
) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(Ok(n)) = tokio::time::timeout(idle, stream.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).to_string()
}

/// One HTTP/1.1 response head, read byte by byte so nothing after it is consumed.
pub async fn read_head(stream: &mut (impl tokio::io::AsyncReadExt + Unpin)) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => buf.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&buf).to_string()
}
