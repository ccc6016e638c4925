//! Strict framing on every listener, over real sockets (RFC 9112 sections 2.2, 5.2, 6.1, 6.3):
//! a request head whose body two readers could end in different places, or whose lines do not
//! all end in CRLF, or that folds a field, is answered `400 malformed_request` and the
//! connection closed, on the proxy, admin and public listeners and inside a CONNECT tunnel,
//! before any of it reaches an upstream. (Upstream answers: tests/upstream_wire.rs.)

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Heads no listener may act on, with what the refusal must say. `{target}` is the request
/// target and `{auth}` a valid caller credential line.
const REFUSED: &[(&str, &str)] = &[
    (
        "POST {target} HTTP/1.1\r\nhost: x\r\n{auth}content-length: 5\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "both Content-Length and Transfer-Encoding",
    ),
    (
        "POST {target} HTTP/1.1\r\nhost: x\r\n{auth}transfer-encoding: chunked\r\ncontent-length: 5\r\n\r\nhello",
        "both Content-Length and Transfer-Encoding",
    ),
    (
        "POST {target} HTTP/1.1\r\nhost: x\r\n{auth}transfer-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        "more than one Transfer-Encoding",
    ),
    (
        "POST {target} HTTP/1.1\r\nhost: x\r\n{auth}transfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        "not a single chunked",
    ),
    ("POST {target} HTTP/1.1\r\nhost: x\r\n{auth}transfer-encoding: identity\r\n\r\n", "not a single chunked"),
    ("POST {target} HTTP/1.0\r\nhost: x\r\n{auth}transfer-encoding: chunked\r\n\r\n0\r\n\r\n", "HTTP/1.0"),
    ("GET {target} HTTP/1.1\nhost: x\r\n{auth}\r\n", "CRLF"),
    ("GET {target} HTTP/1.1\r\nhost: x\n{auth}\r\n", "CRLF"),
    ("GET {target} HTTP/1.1\r\nhost: x\r\n{auth}x-a: 1\rx-b: 2\r\n\r\n", "malformed"),
    ("GET {target} HTTP/1.1\r\nhost: x\r\n{auth}x-a: 1\r\n folded\r\n\r\n", "malformed"),
    ("POST {target} HTTP/1.1\r\nhost: x\r\n{auth}content-length: 5\r\ncontent-length: 5\r\n\r\nhello", "more than one Content-Length"),
];

/// Everything the peer sends until it closes (or goes quiet for 5 s, which fails the caller).
async fn until_closed(stream: &mut (impl AsyncRead + Unpin)) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return String::from_utf8_lossy(&out).into_owned(),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the connection stayed open after: {}", String::from_utf8_lossy(&out)),
        }
    }
}

/// Writes `head` and checks that the answer is the refusal naming `why`, then the close.
async fn refused<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, head: &str, why: &str, before: &str) {
    stream.write_all(head.as_bytes()).await.unwrap();
    let all = until_closed(stream).await;
    let answer = all.strip_prefix(before).unwrap_or_else(|| panic!("{head:?}: expected {before:?} first: {all}"));
    let lower = answer.to_ascii_lowercase();
    assert!(answer.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head:?}: {answer}");
    assert!(lower.contains("x-tollgate-error: malformed_request\r\n"), "{head:?}: {answer}");
    assert!(lower.contains("connection: close\r\n"), "{head:?}: {answer}");
    assert!(answer.contains(why), "{head:?}: want {why:?} in {answer}");
    assert!(answer.contains("\"request_id\""), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listener_refuses_ambiguous_or_malformed_heads() {
    let ca = TestCa::new(&["api.weather.test"]);
    let upstream = Upstream::ok(&ca).await;
    let yaml = weather_static_config(&ca, upstream.port).replace("upstream:", "public_listen: 127.0.0.1:0\nupstream:");
    let proxy = TestProxy::start(&yaml).await;
    let auth = format!("proxy-authorization: {}\r\n", alice_bearer());
    let proxied = format!("https://api.weather.test:{}/x", upstream.port);
    let public = proxy.running.public_addr.expect("public listener");
    let listeners = [
        (proxy.addr(), proxied.as_str()),
        (proxy.addr(), "/weather/x"),
        (proxy.running.admin_addr, "/healthz"),
        (public, "/oauth/start?ticket=x"),
    ];
    for (addr, target) in listeners {
        for (head, why) in REFUSED {
            let head = head.replace("{target}", target).replace("{auth}", &auth);
            let mut stream = TcpStream::connect(addr).await.unwrap();
            refused(&mut stream, &head, why, "").await;
        }
    }
    assert!(upstream.requests().is_empty(), "a refused head reached the upstream");

    // A refused head after good ones on one connection: the good ones are answered, then the
    // refusal, then the close; nothing of the refused request moves.
    let good = format!("GET {proxied} HTTP/1.1\r\nhost: x\r\n{auth}\r\n");
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    stream.write_all(good.as_bytes()).await.unwrap();
    let first = read_head(&mut stream).await;
    assert!(first.starts_with("HTTP/1.1 200 OK\r\n"), "{first}");
    let mut body = [0u8; 11];
    stream.read_exact(&mut body).await.unwrap();
    let (head, why) = REFUSED[0];
    refused(&mut stream, &head.replace("{target}", &proxied).replace("{auth}", &auth), why, "").await;
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_inside_a_tunnel_are_held_to_the_same_rules() {
    let ca = TestCa::new(&["api.weather.test"]);
    let upstream = Upstream::ok(&ca).await;
    let dialer = LoopbackDialer { ports: [(443, upstream.port)].into_iter().collect(), ..Default::default() };
    let yaml = weather_static_config(&ca, upstream.port).replace(&format!(":{}/*", upstream.port), "/*");
    let proxy = TestProxy::start_full(&yaml, TestResolver::default(), dialer).await;
    let connect = format!(
        "CONNECT api.weather.test:443 HTTP/1.1\r\nhost: api.weather.test:443\r\nproxy-authorization: {}\r\n\r\n",
        alice_bearer()
    );
    for (head, why) in REFUSED {
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        stream.write_all(connect.as_bytes()).await.unwrap();
        assert!(read_head(&mut stream).await.starts_with("HTTP/1.1 200"), "the tunnel did not open");
        let mut tls = common::tunnel::intercepted(&proxy, "api.weather.test", stream, &[b"http/1.1"]).await;
        // A good request first: the refusal comes after its answer, on the same connection.
        tls.write_all(b"GET /ok HTTP/1.1\r\nhost: api.weather.test\r\n\r\n").await.unwrap();
        let ok = read_head(&mut tls).await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        let mut body = [0u8; 11];
        tls.read_exact(&mut body).await.unwrap();
        let head = head.replace("{target}", "/x").replace("{auth}", "").replace("host: x", "host: api.weather.test");
        refused(&mut tls, &head, why, "").await;
    }
    let seen: Vec<String> = upstream.requests().iter().map(|s| s.path_and_query.clone()).collect();
    assert_eq!(seen, vec!["/ok".to_string(); REFUSED.len()], "only the good requests reached the upstream");
}
