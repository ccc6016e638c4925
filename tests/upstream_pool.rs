//! The upstream connection pool, seen from a real TLS upstream over loopback: connections are
//! reused, a streaming answer never holds up another request, and a connection the upstream
//! closed while idle is replaced without the caller noticing. A client connection keeps the
//! upstream connection its last answer came over, and hands it back when it closes.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[tokio::test]
async fn sequential_requests_share_one_upstream_connection() {
    let ca = TestCa::new(&["api.weather.test"]);
    let upstream = Upstream::ok(&ca).await;
    let proxy = TestProxy::start(&weather_static_config(&ca, upstream.port)).await;
    let auth = alice_bearer();
    for i in 0..5 {
        // Each request comes on its own client connection: reuse is Tollgate's, not the caller's.
        let answer = get(
            proxy.addr(),
            &format!("https://api.weather.test:{}/n/{i}", upstream.port),
            &[("proxy-authorization", &auth)],
        )
        .await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
    }
    assert_eq!(upstream.requests().len(), 5);
    assert_eq!(*upstream.connections.lock().unwrap(), 1, "one TLS connection for five requests");
}

#[tokio::test]
async fn a_streaming_answer_does_not_hold_up_other_requests() {
    let ca = TestCa::new(&["api.weather.test"]);
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let rx = Arc::new(tokio::sync::Mutex::new(Some(rx)));
    let upstream = Upstream::with(&ca, move |req| {
        let rx = rx.clone();
        async move {
            if req.uri().path() == "/stream" {
                let rx = rx.lock().await.take().expect("one stream");
                return http::Response::new(BodyExt::boxed(ChannelBody(rx)));
            }
            http::Response::new(full("plain"))
        }
    })
    .await;
    let proxy = TestProxy::start(&weather_static_config(&ca, upstream.port)).await;
    let auth = alice_bearer();

    let url = format!("https://api.weather.test:{}/stream", upstream.port);
    let mut streaming = get_streaming(proxy.addr(), &url, &auth).await.into_body();
    tx.send(Bytes::from("first")).await.unwrap();
    assert_eq!(streaming.frame().await.unwrap().unwrap().into_data().unwrap(), "first");

    // The streaming answer is still open: the next request needs a connection of its own.
    let url = format!("https://api.weather.test:{}/plain", upstream.port);
    let answer =
        tokio::time::timeout(Duration::from_secs(5), get(proxy.addr(), &url, &[("proxy-authorization", &auth)]))
            .await
            .expect("a request waited behind a streaming answer");
    assert_eq!((answer.status.as_u16(), &answer.body[..]), (200, &b"plain"[..]));
    assert_eq!(*upstream.connections.lock().unwrap(), 2);

    // Once the stream ends, both connections are idle and the next requests reuse them.
    drop(tx);
    assert!(streaming.frame().await.is_none());
    for _ in 0..3 {
        let answer = get(proxy.addr(), &url, &[("proxy-authorization", &auth)]).await;
        assert_eq!(answer.status, 200);
    }
    assert_eq!(*upstream.connections.lock().unwrap(), 2, "no connection was opened once both were idle");
}

/// An upstream (TLS, or plain without `ca`) that answers one request per connection with
/// keep-alive, then closes the connection a moment later, as servers with a short idle
/// timeout do.
async fn closing_upstream(ca: Option<&TestCa>) -> (u16, Arc<std::sync::Mutex<usize>>) {
    let acceptor = ca.map(TestCa::acceptor);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(std::sync::Mutex::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            *counter.lock().unwrap() += 1;
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                match acceptor {
                    Some(acceptor) => {
                        if let Ok(tls) = acceptor.accept(tcp).await {
                            answer_once_then_close(tls).await;
                        }
                    }
                    None => answer_once_then_close(tcp).await,
                }
            });
        }
    });
    (port, accepted)
}

/// Reads one request (head and `content-length` body), answers `ok` and closes 50 ms later.
async fn answer_once_then_close(mut io: impl AsyncReadExt + AsyncWriteExt + Unpin) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if seen.len() >= end + 4 + length {
                break;
            }
        }
        match io.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    let _ = io.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
    let _ = io.flush().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _ = io.shutdown().await;
}

#[tokio::test]
async fn a_connection_the_upstream_closed_while_idle_is_replaced() {
    let ca = TestCa::new(&["api.weather.test"]);
    let (port, accepted) = closing_upstream(Some(&ca)).await;
    let proxy = TestProxy::start(&weather_static_config(&ca, port)).await;
    let auth = alice_bearer();
    let url = format!("https://api.weather.test:{port}/x");
    for _ in 0..3 {
        let answer = get(proxy.addr(), &url, &[("proxy-authorization", &auth)]).await;
        assert_eq!((answer.status.as_u16(), &answer.body[..]), (200, &b"ok"[..]));
        // Past the upstream's idle close.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(*accepted.lock().unwrap(), 3, "each request needed a new connection");
}

/// A POST is never sent twice, so it only succeeds after an upstream's idle close if the
/// closed connection is seen to be closed before it is used: over plain TCP and over TLS,
/// from one client connection (its kept upstream connection) and from fresh ones (the pool).
#[tokio::test]
async fn a_post_never_goes_to_a_connection_the_upstream_closed() {
    let ca = TestCa::new(&["api.weather.test"]);
    for tls in [false, true] {
        let (port, accepted) = closing_upstream(tls.then_some(&ca)).await;
        let scheme = if tls { "https" } else { "http" };
        let yaml = format!(
            "{}\nconnectors:\n  - name: weather\n    grant: static\n    token: \"weather-key\"\n    unsafe_allow_http: true\n    allowed_domains: [\"{scheme}://api.weather.test:{port}/*\"]\n",
            base_config(&ca)
        );
        let proxy = TestProxy::start(&yaml).await;
        let auth = alice_bearer();
        let url = format!("{scheme}://api.weather.test:{port}/x");
        let host = format!("api.weather.test:{port}");
        let mut kept = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
        for round in 0..3 {
            let request = format!(
                "POST {url} HTTP/1.1\r\nHost: {host}\r\nProxy-Authorization: {auth}\r\ncontent-length: 4\r\n\r\nping"
            );
            kept.write_all(request.as_bytes()).await.unwrap();
            let head = read_head(&mut kept).await;
            assert!(head.starts_with("HTTP/1.1 200"), "{scheme} round {round}, kept connection: {head}");
            let mut body = [0u8; 2];
            kept.read_exact(&mut body).await.unwrap();
            let fresh = send(proxy.addr(), "POST", &url, &[("proxy-authorization", &auth)], Bytes::from("ping")).await;
            assert_eq!((fresh.status.as_u16(), &fresh.body[..]), (200, &b"ok"[..]), "{scheme} round {round}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(*accepted.lock().unwrap(), 6, "{scheme}: each POST needed a new connection");
    }
}

/// One GET on an open keep-alive connection; the answer must be 200 `{"ok":true}`.
async fn get_on(stream: &mut tokio::net::TcpStream, url: &str, host: &str, auth: &str) {
    let request = format!("GET {url} HTTP/1.1\r\nHost: {host}\r\nProxy-Authorization: {auth}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let head = read_head(stream).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut body = [0u8; 11];
    stream.read_exact(&mut body).await.unwrap();
    assert_eq!(&body, br#"{"ok":true}"#);
}

#[tokio::test]
async fn each_client_connection_keeps_its_upstream_connection_and_hands_it_back_when_it_closes() {
    let ca = TestCa::new(&["api.weather.test"]);
    let upstream = Upstream::ok(&ca).await;
    let proxy = TestProxy::start(&weather_static_config(&ca, upstream.port)).await;
    let auth = alice_bearer();
    let host = format!("api.weather.test:{}", upstream.port);
    let url = format!("https://{host}/x");
    let mut a = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    let mut b = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    for _ in 0..3 {
        get_on(&mut a, &url, &host, &auth).await;
        get_on(&mut b, &url, &host, &auth).await;
    }
    assert_eq!(upstream.requests().len(), 6);
    assert_eq!(*upstream.connections.lock().unwrap(), 2, "one upstream connection per open client connection");

    // Closing `a` hands its upstream connection back: a new client connection reuses it.
    a.shutdown().await.unwrap();
    let mut rest = Vec::new();
    a.read_to_end(&mut rest).await.unwrap();
    let mut c = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    get_on(&mut c, &url, &host, &auth).await;
    get_on(&mut b, &url, &host, &auth).await;
    assert_eq!(upstream.requests().len(), 8);
    assert_eq!(*upstream.connections.lock().unwrap(), 2, "the closed client's upstream connection was not reused");
}
