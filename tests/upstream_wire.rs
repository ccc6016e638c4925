//! Tollgate's HTTP/1.1 client against a scripted TLS upstream that writes exact bytes: every
//! way an answer's body can be framed, interim answers, answers Tollgate must refuse rather
//! than guess at, request bodies in both framings, an early answer to an unfinished upload,
//! and a kept connection that the upstream closes just as a request arrives.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::scripted::{Caller, Reply, Scripted};
use common::*;
use tokio::io::AsyncWriteExt;

fn url(port: u16, path: &str) -> String {
    format!("https://api.weather.test:{port}{path}")
}

#[tokio::test]
async fn every_body_framing_reaches_the_caller_and_only_certain_ends_reuse_the_connection() {
    let ca = TestCa::new(&["api.weather.test"]);
    let upstream = Scripted::start(&ca, |_, request| {
        let line = String::from_utf8_lossy(request).lines().next().unwrap_or_default().to_string();
        let reply = |text: &str, piece| Reply::Bytes(text.as_bytes().to_vec(), piece);
        match line.split(' ').nth(1).unwrap_or_default() {
            "/length" => reply("HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-v: 1\r\n\r\nhello", 0),
            "/chunked" => reply(
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nx-t: 1\r\n\r\n",
                3,
            ),
            "/interim" => reply("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </s>\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok", 0),
            "/empty" => reply("HTTP/1.1 204 No Content\r\n\r\n", 0),
            "/until-close" => Reply::ThenClose(b"HTTP/1.0 200 OK\r\n\r\nall of it".to_vec()),
            // Says close but leaves the connection open: Tollgate must take it at its word.
            "/close" => reply("HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 3\r\n\r\nbye", 0),
            _ => reply("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n", 0),
        }
    })
    .await;
    let proxy = TestProxy::start(&weather_static_config(&ca, upstream.port)).await;
    let mut caller = Caller::new(&proxy).await;
    let port = upstream.port;

    // Certain ends: the one connection carries all of these.
    for (path, status, body) in [
        ("/length", 200, "hello"),
        ("/chunked", 200, "hello 0123456789"),
        ("/interim", 201, "ok"),
        ("/empty", 204, ""),
        ("/length", 200, "hello"),
    ] {
        let answer = caller.get(&url(port, path)).await;
        assert_eq!((answer.status.as_u16(), &answer.body[..]), (status, body.as_bytes()), "{path}");
        assert!(answer.headers.get("transfer-encoding").is_none_or(|v| v == "chunked"), "{path}");
    }
    assert_eq!(upstream.connections(), 1, "every answer above ended where its framing said");

    // A body that ends when the connection does (on the connection kept from above), and an
    // answer that asks to close.
    let answer = caller.get(&url(port, "/until-close")).await;
    assert_eq!((answer.status.as_u16(), &answer.body[..]), (200, &b"all of it"[..]));
    let answer = caller.get(&url(port, "/close")).await;
    assert_eq!((answer.status.as_u16(), &answer.body[..]), (200, &b"bye"[..]));
    let answer = caller.get(&url(port, "/length")).await;
    assert_eq!(answer.body, "hello");
    assert_eq!(upstream.connections(), 3, "a closing answer's connection is never reused");
}

#[tokio::test]
async fn answers_whose_framing_cannot_be_trusted_are_refused() {
    let ca = TestCa::new(&["api.weather.test"]);
    let upstream = Scripted::start(&ca, |_, request| {
        let line = String::from_utf8_lossy(request).lines().next().unwrap_or_default().to_string();
        let bytes = match line.split(' ').nth(1).unwrap_or_default() {
            "/two-lengths" => b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!".to_vec(),
            "/signed-length" => b"HTTP/1.1 200 OK\r\ncontent-length: +5\r\n\r\nhello".to_vec(),
            "/not-http" => b"SSH-2.0-OpenSSH_9.2\r\n\r\n".to_vec(),
            "/huge-head" => {
                let mut head = b"HTTP/1.1 200 OK\r\nx-big: ".to_vec();
                head.resize(70 * 1024, b'a');
                head.extend_from_slice(b"\r\ncontent-length: 0\r\n\r\n");
                head
            }
            "/switch" => {
                b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n".to_vec()
            }
            // Framing two readers could take differently (RFC 9112 section 6.3).
            "/both" => b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_vec(),
            "/two-codings" => b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_vec(),
            "/gzip-chunked" => b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_vec(),
            "/identity" => b"HTTP/1.1 200 OK\r\ntransfer-encoding: identity\r\n\r\nhello".to_vec(),
            "/bare-lf" => b"HTTP/1.1 200 OK\ncontent-length: 5\r\n\r\nhello".to_vec(),
            "/bare-cr" => b"HTTP/1.1 200 OK\r\nx-a: 1\rx-b: 2\r\ncontent-length: 5\r\n\r\nhello".to_vec(),
            "/obs-fold" => b"HTTP/1.1 200 OK\r\nx-a: 1\r\n 2\r\ncontent-length: 5\r\n\r\nhello".to_vec(),
            _ => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(),
        };
        Reply::Bytes(bytes, 0)
    })
    .await;
    let proxy = TestProxy::start(&weather_static_config(&ca, upstream.port)).await;
    let mut caller = Caller::new(&proxy).await;
    let refused = [
        "/two-lengths",
        "/signed-length",
        "/not-http",
        "/huge-head",
        "/switch",
        "/both",
        "/two-codings",
        "/gzip-chunked",
        "/identity",
        "/bare-lf",
        "/bare-cr",
        "/obs-fold",
    ];
    for path in refused {
        let answer = caller.get(&url(upstream.port, path)).await;
        answer.assert_refused(502, "upstream_unreachable");
        assert!(!answer.body.windows(5).any(|w| w == b"hello"), "{path}: the upstream's body leaked");
    }
    assert_eq!(upstream.connections(), refused.len(), "a connection whose answer was refused is never reused");
    let answer = caller.get(&url(upstream.port, "/fine")).await;
    assert_eq!((answer.status.as_u16(), &answer.body[..]), (200, &b"ok"[..]));
    assert_eq!(upstream.connections(), refused.len() + 1);
}

#[tokio::test]
async fn a_chunked_body_cut_short_or_malformed_aborts_the_callers_answer() {
    let ca = TestCa::new(&["api.weather.test"]);
    let upstream = Scripted::start(&ca, |_, request| {
        let line = String::from_utf8_lossy(request).lines().next().unwrap_or_default().to_string();
        match line.split(' ').nth(1).unwrap_or_default() {
            "/bad-size" => Reply::Bytes(
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nmore\r\n0\r\n\r\n".to_vec(),
                0,
            ),
            "/cut" => Reply::ThenClose(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial".to_vec()),
            _ => Reply::Bytes(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(), 0),
        }
    })
    .await;
    let proxy = TestProxy::start(&weather_static_config(&ca, upstream.port)).await;
    for path in ["/bad-size", "/cut"] {
        // The head may or may not have left before the break; either way the caller must
        // not see a clean end.
        let mut caller = Caller::new(&proxy).await;
        let request = http::Request::get(url(upstream.port, path))
            .header("proxy-authorization", &caller.auth)
            .body(http_body_util::Full::new(Bytes::new()))
            .unwrap();
        let outcome = async {
            let response = caller.sender.send_request(request).await?;
            http_body_util::BodyExt::collect(response.into_body()).await
        };
        assert!(outcome.await.is_err(), "{path}: the caller must see the answer break");
    }
    let answer = Caller::new(&proxy).await.get(&url(upstream.port, "/fine")).await;
    assert_eq!(answer.body, "ok");
    assert_eq!(upstream.connections(), 3, "a broken body's connection is never reused");
}

#[tokio::test]
async fn request_bodies_go_out_in_their_framing() {
    let ca = TestCa::new(&["api.weather.test"]);
    let upstream =
        Scripted::start(&ca, |_, _| Reply::Bytes(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(), 0)).await;
    let proxy = TestProxy::start(&weather_static_config(&ca, upstream.port)).await;
    let auth = alice_bearer();
    let host = format!("api.weather.test:{}", upstream.port);

    // A body with a length goes with that length.
    let answer =
        send(proxy.addr(), "POST", &url(upstream.port, "/a"), &[("proxy-authorization", &auth)], Bytes::from("12345"))
            .await;
    assert_eq!(answer.status, 200);

    // A chunked upload stays chunked, re-encoded by Tollgate; the caller's own framing and
    // extensions do not pass through.
    let mut client = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: {host}\r\nProxy-Authorization: {auth}\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        url(upstream.port, "/b")
    );
    client.write_all(request.as_bytes()).await.unwrap();
    let head = read_head(&mut client).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    // A bodyless GET carries no framing header at all.
    let answer = get(proxy.addr(), &url(upstream.port, "/c"), &[("proxy-authorization", &auth)]).await;
    assert_eq!(answer.status, 200);

    let seen = upstream.requests();
    assert_eq!(seen.len(), 3);
    assert!(seen[0].starts_with("POST /a HTTP/1.1\r\n"), "{}", seen[0]);
    assert!(seen[0].contains("\r\ncontent-length: 5\r\n") && seen[0].ends_with("\r\n\r\n12345"), "{}", seen[0]);
    assert!(seen[0].contains("\r\nauthorization: Bearer weather-key\r\n"), "{}", seen[0]);
    assert!(!seen[0].to_lowercase().contains("proxy-authorization"), "{}", seen[0]);
    assert!(seen[1].contains("\r\ntransfer-encoding: chunked\r\n"), "{}", seen[1]);
    assert!(seen[1].ends_with("\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), "{}", seen[1]);
    assert!(!seen[1].contains("content-length"), "{}", seen[1]);
    assert!(seen[2].starts_with("GET /c HTTP/1.1\r\n"), "{}", seen[2]);
    assert!(!seen[2].contains("content-length") && !seen[2].contains("transfer-encoding"), "{}", seen[2]);
}

#[tokio::test]
async fn an_early_answer_to_an_unfinished_upload_reaches_the_caller() {
    let ca = TestCa::new(&["api.weather.test"]);
    let upstream = Scripted::start(&ca, |_, _| {
        Reply::ThenClose(
            b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 8\r\nconnection: close\r\n\r\ntoo big!".to_vec(),
        )
    })
    .await;
    let proxy = TestProxy::start(&weather_static_config(&ca, upstream.port)).await;
    let auth = alice_bearer();
    let host = format!("api.weather.test:{}", upstream.port);
    let mut client = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    // The upstream answers after the head; the caller has sent only part of its body.
    let request = format!(
        "PUT {} HTTP/1.1\r\nHost: {host}\r\nProxy-Authorization: {auth}\r\nX-No-Read-Body: 1\r\nContent-Length: 1000000\r\n\r\nfirst part",
        url(upstream.port, "/upload")
    );
    client.write_all(request.as_bytes()).await.unwrap();
    let head = tokio::time::timeout(Duration::from_secs(5), read_head(&mut client)).await.expect("an answer");
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
}

#[tokio::test]
async fn a_kept_connection_closed_as_a_request_arrives_is_retried_only_when_that_is_safe() {
    let ca = TestCa::new(&["api.weather.test"]);
    // Requests alternate between answered (even) and dropped without a word (odd), in
    // arrival order: with one request at a time, first and second on each connection. The
    // hang-up is the race of an upstream's idle timeout against a new request.
    let upstream = Scripted::start(&ca, |n, _| match n % 2 {
        0 => Reply::Bytes(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(), 0),
        _ => Reply::Hang,
    })
    .await;
    let proxy = TestProxy::start(&weather_static_config(&ca, upstream.port)).await;
    let mut caller = Caller::new(&proxy).await;

    // Warm: one connection, kept.
    let answer = caller.get(&url(upstream.port, "/warm")).await;
    assert_eq!(answer.body, "ok");
    // A GET on the kept connection meets the hang-up and goes again on a new connection.
    let answer = caller.get(&url(upstream.port, "/get")).await;
    assert_eq!((answer.status.as_u16(), &answer.body[..]), (200, &b"ok"[..]));
    assert_eq!(upstream.connections(), 2);
    let seen = upstream.requests();
    assert_eq!(seen.len(), 3, "the GET was sent twice: once into the hang-up, once answered");

    // A POST is not repeated on its own: the caller gets the failure.
    let answer = caller.send("POST", &url(upstream.port, "/post"), "x").await;
    answer.assert_refused(502, "upstream_unreachable");
    let posts = upstream.requests().iter().filter(|r| r.starts_with("POST")).count();
    assert_eq!(posts, 1, "a POST must never be sent twice by Tollgate");
}
