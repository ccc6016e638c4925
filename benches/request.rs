//! The per-request costs besides matching: a token lookup that hits the in-process cache, and
//! one whole request through a running Tollgate (caller check, target, allowed domains, token
//! from the cache, injection, forwarding, the answer streamed back) over loopback sockets.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tollgate::app::{start, Deps, Running};
use tollgate::config::{Config, Environment};
use tollgate::secret::Secret;
use tollgate::token::cache::{Cached, TokenCache};
use tollgate::token::Principal;
use tollgate::token::{Connection, ConnectionKey, Expect};

const TOKEN: &str = "bench-access-token-0123456789";
const CALLER_KEY: &str = "bench-caller-key-0123456789";

fn cache_hit(c: &mut Criterion) {
    let cache = TokenCache::new(Duration::from_secs(3600));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
    let _guard = runtime.enter();
    for i in 0..10_000 {
        let key = ConnectionKey::new("crm", format!("user-{i}@example.com"));
        cache.put(&key.id(), &Connection::new(Secret::new(format!("token-{i}")), None));
    }
    // As on the request path: the caller's principal gives the connection key (hashed on
    // first use only), which holds the cache entry it last found.
    let principal = Principal::new("user-4242@example.com");
    let at = tokio::time::Instant::now();
    c.bench_function("token_lookup_cache_hit", |b| {
        b.iter(|| match principal.keyed(black_box(0), black_box("crm")).cached(&cache, at) {
            Cached::Fresh(c) => c.version,
            _ => unreachable!("the entry is fresh"),
        })
    });
}

/// An upstream that answers 200 only with the injected token.
async fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let ok =
                        req.headers().get("authorization").is_some_and(|v| v == format!("Bearer {TOKEN}").as_str());
                    let mut r = Response::new(Full::new(Bytes::from_static(br#"{"ok":true}"#)));
                    if !ok {
                        *r.status_mut() = http::StatusCode::UNAUTHORIZED;
                    }
                    Ok::<_, Infallible>(r)
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
            });
        }
    });
    addr
}

async fn tollgate(upstream: SocketAddr) -> Running {
    let sha: String = ring::digest::digest(&ring::digest::SHA256, CALLER_KEY.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let yaml = format!(
        r#"
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
encryption_keys: [{{ id: k1, secret: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=" }}]
store: {{ backend: memory, cache_ttl: "1h" }}
callers:
  api_keys:
    - {{ name: bench, sha256: {sha}, connectors: [crm] }}
connectors:
  - name: crm
    grant: authorization_code
    authorization_endpoint: https://auth.example.com/authorize
    token_endpoint: https://auth.example.com/token
    client_id: crm
    unsafe_allow_http: true
    unsafe_allow_ranges: ["127.0.0.0/8"]
    allowed_domains: ["http://127.0.0.1:{port}/*"]
"#,
        port = upstream.port()
    );
    let config = Config::from_yaml(&yaml, &Environment::from_vars([("UNUSED", "x")])).expect("bench config");
    let running = start(config, Deps::default()).await.expect("start");
    let connection = Connection::new(Secret::new(TOKEN), None);
    running.store().put(&ConnectionKey::new("crm", "apikey:bench"), connection, Expect::Any, None).await.expect("seed");
    running
}

fn pipeline(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let (running, target, mut sender) = runtime.block_on(async {
        let upstream = upstream().await;
        let running = tollgate(upstream).await;
        let stream = TcpStream::connect(running.proxy_addr).await.expect("connect");
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
        tokio::spawn(conn);
        (running, format!("http://{upstream}/items"), sender)
    });
    let auth = format!("Bearer {CALLER_KEY}");
    // One request first, so a misconfiguration fails with the answer rather than mid-benchmark.
    runtime.block_on(async {
        sender.ready().await.expect("ready");
        let request = Request::get(target.as_str())
            .header("proxy-authorization", auth.as_str())
            .body(Empty::<Bytes>::new())
            .expect("request");
        let response = sender.send_request(request).await.expect("send");
        let status = response.status();
        let body = response.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    });
    c.bench_function("pipeline_one_request", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let request = Request::get(target.as_str())
                    .header("proxy-authorization", auth.as_str())
                    .body(Empty::<Bytes>::new())
                    .expect("request");
                sender.ready().await.expect("ready");
                let response = sender.send_request(request).await.expect("send");
                assert_eq!(response.status(), 200, "the token was not injected");
                response.into_body().collect().await.expect("body").to_bytes().len()
            })
        })
    });
    runtime.block_on(running.shutdown());
}

criterion_group!(benches, cache_hit, pipeline);
criterion_main!(benches);
