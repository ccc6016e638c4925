//! Client connections as callers use them, over real sockets: pipelined requests, bodies that
//! come with their head or after it, chunked uploads, `HEAD`, heads sent a few bytes at a
//! time, a head larger than the first read buffer, streamed answers, and a connection that
//! changes from plain requests to one the server reads as a stream (the fast path hands it to
//! hyper for that request, and the connection closes after it).

mod common;

use std::time::Duration;

use common::*;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An upstream that answers `<method> <path> <body>`, and a proxy for it.
async fn echo() -> (Upstream, TestProxy) {
    let ca = TestCa::new(&["api.weather.test"]);
    let upstream = Upstream::with(&ca, |req: http::Request<hyper::body::Incoming>| async move {
        let (parts, body) = req.into_parts();
        let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
        let text = format!("{} {} {}", parts.method, parts.uri.path(), String::from_utf8_lossy(&body));
        http::Response::new(full(text))
    })
    .await;
    let proxy = TestProxy::start(&weather_static_config(&ca, upstream.port)).await;
    (upstream, proxy)
}

/// A request head through the proxy to `path` on the upstream, with `extra` header lines.
fn head(method: &str, port: u16, path: &str, extra: &str) -> String {
    format!(
        "{method} https://api.weather.test:{port}{path} HTTP/1.1\r\nHost: api.weather.test:{port}\r\nProxy-Authorization: {}\r\n{extra}\r\n",
        alice_bearer()
    )
}

/// Reads one answer with a `Content-Length` body; `(head, body)`.
async fn answer(stream: &mut TcpStream) -> (String, String) {
    let head = read_head(stream).await;
    let length = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(|v| v.trim().to_string()))
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or_else(|| panic!("no content-length in {head:?}"));
    let mut body = vec![0; length];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut body)).await.unwrap().unwrap();
    (head, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let (upstream, proxy) = echo().await;
    let port = upstream.port;
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    let mut wire = head("GET", port, "/a", "");
    wire.push_str(&head("POST", port, "/b", "Content-Length: 3\r\n"));
    wire.push_str("xyz");
    wire.push_str(&head("DELETE", port, "/c", "Connection: close\r\n"));
    stream.write_all(wire.as_bytes()).await.unwrap();
    for (expected, last) in [("GET /a ", false), ("POST /b xyz", false), ("DELETE /c ", true)] {
        let (head, body) = answer(&mut stream).await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head:?}");
        assert_eq!(body, expected);
        assert_eq!(head.to_ascii_lowercase().contains("connection: close"), last, "{head:?}");
    }
    // Closed after the answer the caller asked to be the last.
    let rest = read_until_quiet(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(rest, "");
    assert_eq!(upstream.requests().len(), 3);
}

#[tokio::test]
async fn a_request_read_as_a_stream_is_the_connections_last_and_a_late_body_is_not() {
    let (upstream, proxy) = echo().await;
    let port = upstream.port;
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    stream.write_all(head("GET", port, "/one", "").as_bytes()).await.unwrap();
    assert_eq!(answer(&mut stream).await.1, "GET /one ");
    // A chunked upload goes to hyper, which serves it and closes: the next head on this
    // connection would be one the fast path never screened.
    let chunked = head("POST", port, "/two", "Transfer-Encoding: chunked\r\n") + "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
    stream.write_all(chunked.as_bytes()).await.unwrap();
    let (two_head, two) = answer(&mut stream).await;
    assert_eq!(two, "POST /two abcde");
    assert!(two_head.to_ascii_lowercase().contains("connection: close"), "{two_head:?}");
    assert_eq!(read_until_quiet(&mut stream, Duration::from_secs(5)).await, "", "closed after it");

    // A body that comes after its head stays on the fast path: the connection goes on.
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    stream.write_all(head("PUT", port, "/four", "Content-Length: 5\r\n").as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stream.write_all(b"he").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    stream.write_all(b"llo").await.unwrap();
    let (four_head, four) = answer(&mut stream).await;
    assert_eq!(four, "PUT /four hello");
    assert!(!four_head.to_ascii_lowercase().contains("connection: close"), "{four_head:?}");
    stream.write_all(head("GET", port, "/five", "").as_bytes()).await.unwrap();
    assert_eq!(answer(&mut stream).await.1, "GET /five ");
    assert_eq!(upstream.requests().len(), 4);
}

#[tokio::test]
async fn head_answers_have_no_body_and_the_connection_stays_in_step() {
    let (upstream, proxy) = echo().await;
    let port = upstream.port;
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    stream.write_all(head("HEAD", port, "/h", "").as_bytes()).await.unwrap();
    let first = read_head(&mut stream).await;
    assert!(first.starts_with("HTTP/1.1 200 OK\r\n"), "{first:?}");
    // The length a GET would get ("HEAD /h " from the echo), and no body after the head.
    assert!(first.to_ascii_lowercase().contains("content-length: 8\r\n"), "{first:?}");
    stream.write_all(head("GET", port, "/g", "").as_bytes()).await.unwrap();
    let (next, body) = answer(&mut stream).await;
    assert!(next.starts_with("HTTP/1.1 200 OK\r\n"), "bytes after a HEAD answer: {next:?}");
    assert_eq!(body, "GET /g ");
}

#[tokio::test]
async fn a_head_sent_a_few_bytes_at_a_time_is_answered() {
    let (upstream, proxy) = echo().await;
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    let wire = head("POST", upstream.port, "/slow", "Content-Length: 2\r\n") + "ok";
    for piece in wire.as_bytes().chunks(7) {
        stream.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(answer(&mut stream).await.1, "POST /slow ok");
}

#[tokio::test]
async fn heads_the_server_refuses_are_answered_400_and_closed() {
    let (upstream, proxy) = echo().await;
    for bad in [
        format!("GET https://api.weather.test:{}/ HTTP/1.1\r\nbad name: v\r\n\r\n", upstream.port),
        "POST / HTTP/1.1\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd".to_string(),
        "GET / HTTP/1.1\r\nx: \x01\r\n\r\n".to_string(),
    ] {
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        stream.write_all(bad.as_bytes()).await.unwrap();
        let got = read_until_quiet(&mut stream, Duration::from_secs(5)).await;
        assert!(got.starts_with("HTTP/1.1 400"), "{bad:?}: {got:?}");
    }
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn an_answer_of_unknown_length_is_sent_chunked_as_it_comes() {
    let ca = TestCa::new(&["api.weather.test"]);
    let (upstream, second) = two_event_upstream(&ca).await;
    let proxy = TestProxy::start(&weather_static_config(&ca, upstream.port)).await;
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    stream.write_all(head("GET", upstream.port, "/events", "").as_bytes()).await.unwrap();
    let head = read_head(&mut stream).await.to_ascii_lowercase();
    assert!(head.contains("transfer-encoding: chunked\r\n"), "{head:?}");
    assert!(!head.contains("content-length"), "{head:?}");
    // The first event arrives before the second is sent.
    let mut buf = vec![0; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await.unwrap().unwrap();
    assert_eq!(&buf[..n], b"b\r\ndata: one\n\n\r\n");
    second.send(()).unwrap();
    let rest = read_until_quiet(&mut stream, Duration::from_millis(500)).await;
    assert_eq!(rest, "b\r\ndata: two\n\n\r\n0\r\n\r\n");
}

#[tokio::test]
async fn a_large_head_sent_in_pieces_is_read_and_the_connection_goes_on() {
    let (upstream, proxy) = echo().await;
    let port = upstream.port;
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    // 20 KiB of fields, under the 32 KiB default limit, past the first read buffer.
    let filler = format!("X-Filler: {}\r\n", "f".repeat(20 * 1024));
    let wire = head("GET", port, "/big", &filler);
    for piece in wire.as_bytes().chunks(3000) {
        stream.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(answer(&mut stream).await.1, "GET /big ");
    stream.write_all(head("GET", port, "/after", "").as_bytes()).await.unwrap();
    assert_eq!(answer(&mut stream).await.1, "GET /after ");
    let seen = upstream.requests();
    assert_eq!(seen.first().and_then(|s| s.headers.get("x-filler")).map(|v| v.len()), Some(20 * 1024));
}
