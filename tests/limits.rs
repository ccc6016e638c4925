//! Limits that keep a slow or hostile client from exhausting the proxy: clients that dribble
//! their headers are disconnected after `limits.header_read_timeout`, and while they hang on,
//! other callers are served normally; idle keep-alive connections are closed after the same
//! timeout; connections past `limits.max_connections` are closed.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An upstream and a proxy with one static connector for it and this header read timeout.
async fn with_header_read_timeout(timeout: &str) -> (Upstream, TestProxy) {
    let ca = TestCa::new(&["api.test"]);
    let upstream = Upstream::ok(&ca).await;
    let yaml = format!(
        "{}\nlimits: {{ header_read_timeout: \"{timeout}\" }}\nconnectors:\n  - name: weather\n    token: \"k\"\n    allowed_domains: [\"https://api.test:{}/*\"]\n",
        base_config(&ca),
        upstream.port
    );
    let proxy = TestProxy::start(&yaml).await;
    (upstream, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_clients_are_cut_off_and_others_unaffected() {
    let (upstream, proxy) = with_header_read_timeout("1s").await;
    let addr = proxy.addr();
    // Fifty clients each send one header byte every 200 ms and never finish.
    let slow: Vec<_> = (0..50)
        .map(|_| {
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(addr).await.unwrap();
                let started = Instant::now();
                let line = b"GET https://api.test/x HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
                for byte in line.iter() {
                    if stream.write_all(&[*byte]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let mut probe = [0u8; 1];
                    if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(1), stream.read(&mut probe)).await {
                        break;
                    }
                }
                started.elapsed()
            })
        })
        .collect();
    // Meanwhile a normal caller is served, repeatedly.
    let auth = bearer(&jwt("alice", serde_json::json!({})));
    let url = format!("https://api.test:{}/x", upstream.port);
    for _ in 0..10 {
        assert_eq!(get(addr, &url, &[("proxy-authorization", &auth)]).await.status, 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for handle in slow {
        // Cut off well before the 12 s the whole header line would take (a deadlock guard, not
        // a timing budget: the exact moment depends on the 1 s timeout and scheduling).
        let held = handle.await.unwrap();
        assert!(held < Duration::from_secs(8), "a slow client was held for {held:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_are_closed_and_room_is_made_again() {
    let ca = TestCa::new(&["api.test"]);
    let upstream = Upstream::ok(&ca).await;
    let yaml = format!(
        "{}\nlimits: {{ max_connections: 3 }}\nconnectors:\n  - name: weather\n    token: \"k\"\n    allowed_domains: [\"https://api.test:{}/*\"]\n",
        base_config(&ca),
        upstream.port
    );
    let proxy = TestProxy::start(&yaml).await;
    let addr = proxy.addr();
    // Three idle connections take every slot.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"G").await.unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut fourth = TcpStream::connect(addr).await.unwrap();
    let _ = fourth.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").await;
    let mut buf = [0u8; 64];
    let closed =
        matches!(tokio::time::timeout(Duration::from_secs(5), fourth.read(&mut buf)).await, Ok(Ok(0)) | Ok(Err(_)));
    assert!(closed, "a connection past the limit was served");
    // Freeing a slot lets the next caller in.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let auth = bearer(&jwt("alice", serde_json::json!({})));
    assert_eq!(
        get(addr, &format!("https://api.test:{}/x", upstream.port), &[("proxy-authorization", &auth)]).await.status,
        200
    );
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let (upstream, proxy) = with_header_read_timeout("2s").await;
    let auth = bearer(&jwt("alice", serde_json::json!({})));
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    let request = format!(
        "GET https://api.test:{}/x HTTP/1.1\r\nHost: api.test\r\nProxy-Authorization: {auth}\r\n\r\n",
        upstream.port
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // Drain the small body, then stay silent on the kept-alive connection.
    let mut rest = [0u8; 64];
    let _ = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut rest)).await;
    let idle_since = Instant::now();
    let mut probe = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut probe)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "the idle connection was not closed: {closed:?}");
    // The timer that bounds reading a request's headers also runs while the connection
    // waits for the next request: idle connections go after `limits.header_read_timeout`.
    assert!(idle_since.elapsed() >= Duration::from_millis(1500), "closed before the idle timeout");
}

#[tokio::test]
async fn an_answer_streaming_longer_than_the_header_timeout_is_not_cut() {
    let ca = TestCa::new(&["api.test"]);
    let (upstream, second) = two_event_upstream(&ca).await;
    let yaml = format!(
        "{}\nlimits: {{ header_read_timeout: \"1s\" }}\nconnectors:\n  - name: weather\n    token: \"k\"\n    allowed_domains: [\"https://api.test:{}/*\"]\n",
        base_config(&ca),
        upstream.port
    );
    let proxy = TestProxy::start(&yaml).await;
    let auth = bearer(&jwt("alice", serde_json::json!({})));
    let url = format!("https://api.test:{}/events", upstream.port);
    let mut body = get_streaming(proxy.addr(), &url, &auth).await.into_body();
    let first = http_body_util::BodyExt::frame(&mut body).await.and_then(|f| f.ok()).and_then(|f| f.into_data().ok());
    assert_eq!(first.as_deref(), Some(&b"data: one\n\n"[..]));
    // The header timeout bounds waiting for a request head, not an answer in flight.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    second.send(()).unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), http_body_util::BodyExt::frame(&mut body)).await;
    let next = next.ok().flatten().and_then(|f| f.ok()).and_then(|f| f.into_data().ok());
    assert_eq!(next.as_deref(), Some(&b"data: two\n\n"[..]), "the stream was cut while it was answering");
}

#[tokio::test]
async fn a_caller_that_half_closes_after_its_request_still_gets_the_answer() {
    let ca = TestCa::new(&["api.weather.test"]);
    // The answer comes after the caller has shut its sending side, so the proxy sees the
    // end of the caller's stream while the request is in flight.
    let upstream = Upstream::with(&ca, |_req| async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        http::Response::new(full(r#"{"ok":true}"#))
    })
    .await;
    let proxy = TestProxy::start(&weather_static_config(&ca, upstream.port)).await;
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    let head = format!(
        "GET https://api.weather.test:{}/x HTTP/1.1\r\nHost: api.weather.test:{}\r\nProxy-Authorization: {}\r\nConnection: close\r\n\r\n",
        upstream.port,
        upstream.port,
        alice_bearer()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.shutdown().await.unwrap();
    let answer = read_until_quiet(&mut stream, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "no answer after a half-close: {answer:?}");
    assert!(answer.ends_with(r#"{"ok":true}"#), "{answer:?}");
    assert_eq!(upstream.requests().len(), 1);
}
