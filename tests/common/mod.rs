//! Test fixtures: Tollgate on port 0 with a resolver that answers DNS itself and a dialer that
//! only ever reaches loopback, test configs and caller JWTs; upstreams and certificates
//! (`upstream.rs`), a plain HTTP/1.1 client (`client.rs`), the corpus (`corpus.rs`), a
//! scripted token endpoint (`oauth.rs`), real redis-server processes (`redis_server.rs`).
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
mod client;
pub mod corpus;
pub mod oauth;
pub mod oidc;
pub mod process;
pub mod redis_server;
pub mod scripted;
pub mod tunnel;
mod upstream;

pub use client::*;
pub use upstream::*;

pub type Body = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// The public address every name resolves to unless a test says otherwise. Never dialed:
/// the dialer maps it to loopback after the address check.
pub const PUBLIC_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(52, 32, 0, 10));

pub const CALLER_SECRET: &str = "test-caller-secret-that-is-at-least-32-bytes";
pub const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

pub fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).map_err(|never| match never {}).boxed()
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

/// Tollgate started from a config file (so a test can reload it), with test DNS and dialing.
pub async fn start_from_file(path: &std::path::Path, env: &Environment) -> Running {
    let deps =
        Deps { resolver: Arc::new(TestResolver::default()), dialer: Arc::new(LoopbackDialer::default()), store: None };
    start(tollgate::config::load_file(path, env).unwrap(), deps).await.unwrap()
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
