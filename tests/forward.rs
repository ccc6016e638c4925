//! Absolute-form forwarding and gateway mode over real sockets to a TLS upstream: what the
//! upstream receives, what the caller gets back, and streaming in both directions.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::Response;
use http_body_util::BodyExt;

fn weather_config(ca: &TestCa, port: u16) -> String {
    format!(
        r#"{}
connectors:
  - name: weather
    grant: static
    token: "weather-key"
    inject: {{ header: X-Api-Key, format: "{{token}}" }}
    allowed_domains: ["https://api.weather.test:{port}/*"]
  - name: platform
    grant: static
    token: "platform-token"
    allowed_domains: ["https://api.platform.test:{port}/v1/*"]
    base_url: "https://api.platform.test:{port}/v1"
"#,
        base_config(ca)
    )
}

#[tokio::test]
async fn static_token_injected_and_caller_headers_cleaned() {
    let ca = TestCa::new(&["api.weather.test"]);
    let upstream = Upstream::ok(&ca).await;
    let proxy = TestProxy::start(&weather_config(&ca, upstream.port)).await;
    let token = jwt("alice", serde_json::json!({}));
    let target = format!("https://API.Weather.TEST.:{}/today/./x?city=a%2Fb&next=/admin", upstream.port);
    let answer = get(
        proxy.addr(),
        &target,
        &[
            ("proxy-authorization", &bearer(&token)),
            ("host", "evil.io"),
            ("authorization", "Bearer caller-own"),
            ("x-api-key", "caller-supplied"),
            ("connection", "keep-alive, x-drop-me"),
            ("x-drop-me", "1"),
            ("x-original-url", "/admin"),
            ("x-rewrite-url", "/admin"),
            ("x-forwarded-prefix", "/admin"),
            ("x-forwarded-for", "1.2.3.4"),
            ("x-user-id", "U2"),
            ("accept", "application/json"),
            ("x-request-id", "r-123"),
            ("user-agent", "agent/1.0"),
        ],
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body, r#"{"ok":true}"#);
    assert_eq!(answer.error_header(), None);
    let seen = upstream.requests();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    assert_eq!(req.path_and_query, "/today/x?city=a%2Fb&next=/admin");
    assert_eq!(req.sni.as_deref(), Some("api.weather.test"));
    let h = &req.headers;
    assert_eq!(h["host"], format!("api.weather.test:{}", upstream.port));
    assert_eq!(h.get_all("x-api-key").iter().collect::<Vec<_>>(), ["weather-key"]);
    for gone in [
        "proxy-authorization",
        "authorization",
        "x-drop-me",
        "x-original-url",
        "x-rewrite-url",
        "x-forwarded-prefix",
        "x-forwarded-for",
        "connection",
    ] {
        assert!(h.get(gone).is_none(), "{gone} reached the upstream");
    }
    assert!(h.get("x-user-id").is_none(), "identity assertions are not forwarded");
    for kept in [("accept", "application/json"), ("x-request-id", "r-123"), ("user-agent", "agent/1.0")] {
        assert_eq!(h[kept.0], kept.1);
    }
    // Only the checked public address was asked for, and only loopback was connected.
    assert!(proxy.dialed().iter().all(|a| a.ip() == PUBLIC_IP));
}

#[tokio::test]
async fn connection_header_cannot_strip_the_injected_credential() {
    let ca = TestCa::new(&["api.platform.test"]);
    let upstream = Upstream::ok(&ca).await;
    let proxy = TestProxy::start(&weather_config(&ca, upstream.port)).await;
    let token = jwt("alice", serde_json::json!({}));
    let answer = get(
        proxy.addr(),
        &format!("https://api.platform.test:{}/v1/x", upstream.port),
        &[("proxy-authorization", &bearer(&token)), ("connection", "Authorization, Proxy-Authorization")],
    )
    .await;
    assert_eq!(answer.status, 200);
    let seen = upstream.requests();
    assert_eq!(seen[0].headers["authorization"], "Bearer platform-token");
    assert!(seen[0].headers.get("proxy-authorization").is_none());
}

#[tokio::test]
async fn redirects_are_relayed_not_followed_and_upstream_errors_carry_no_tollgate_header() {
    let ca = TestCa::new(&["api.platform.test"]);
    let upstream = Upstream::with(&ca, |req| async move {
        let mut r = Response::new(full("upstream says no"));
        if req.uri().path() == "/v1/redirect" {
            *r.status_mut() = http::StatusCode::FOUND;
            r.headers_mut().insert("location", "/admin".parse().unwrap());
        } else {
            *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
            r.headers_mut().insert("x-tollgate-error", "forged".parse().unwrap());
        }
        r
    })
    .await;
    let proxy = TestProxy::start(&weather_config(&ca, upstream.port)).await;
    let auth = bearer(&jwt("alice", serde_json::json!({})));
    let redirect = get(
        proxy.addr(),
        &format!("https://api.platform.test:{}/v1/redirect", upstream.port),
        &[("proxy-authorization", &auth)],
    )
    .await;
    assert_eq!(redirect.status, 302);
    assert_eq!(redirect.headers["location"], "/admin");
    assert_eq!(redirect.error_header(), None);
    let failed = get(
        proxy.addr(),
        &format!("https://api.platform.test:{}/v1/boom", upstream.port),
        &[("proxy-authorization", &auth)],
    )
    .await;
    assert_eq!(failed.status, 500);
    assert_eq!(failed.body, "upstream says no");
    assert_eq!(failed.error_header(), None, "an upstream may not pose as Tollgate");
    let paths: Vec<String> = upstream.requests().iter().map(|s| s.path_and_query.clone()).collect();
    assert_eq!(paths, ["/v1/redirect", "/v1/boom"], "the redirect was followed");
}

#[tokio::test]
async fn gateway_mode_joins_base_url_and_consumes_the_caller_authorization() {
    let ca = TestCa::new(&["api.platform.test"]);
    let upstream = Upstream::ok(&ca).await;
    let proxy = TestProxy::start(&weather_config(&ca, upstream.port)).await;
    let auth = bearer(&jwt("alice", serde_json::json!({})));
    let ok = get(proxy.addr(), "/platform/items/7?full=1", &[("authorization", &auth)]).await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    let seen = upstream.requests();
    assert_eq!(seen[0].path_and_query, "/v1/items/7?full=1");
    assert_eq!(seen[0].headers["authorization"], "Bearer platform-token");
    // Climbing out of the base path is normalized first and then checked like any URL.
    let escaped = get(proxy.addr(), "/platform/../admin", &[("authorization", &auth)]).await;
    escaped.assert_refused(403, "endpoint_not_allowed");
    let anonymous = get(proxy.addr(), "/platform/items", &[]).await;
    anonymous.assert_refused(401, "caller_unauthenticated");
    assert!(anonymous.headers.contains_key("www-authenticate"));
    assert_eq!(upstream.requests().len(), 1);
}

/// The upstream answers once it has 1 MiB of a 50 MiB upload; the client sends the rest only
/// after it has that answer. A proxy that buffers the body never forwards the first MiB
/// and the answer never comes.
#[tokio::test]
async fn uploads_stream_through() {
    let ca = TestCa::new(&["api.platform.test"]);
    let upstream = Upstream::with(&ca, |req| async move {
        let mut body = req.into_body();
        let mut received = 0usize;
        while received < (1 << 20) {
            match body.frame().await {
                Some(Ok(frame)) => received += frame.data_ref().map_or(0, |d| d.len()),
                _ => break,
            }
        }
        // Like a real streaming endpoint, keep reading after answering.
        tokio::spawn(async move { while let Some(Ok(_)) = body.frame().await {} });
        Response::new(full(format!("received {}", received >= (1 << 20))))
    })
    .await;
    let proxy = TestProxy::start(&weather_config(&ca, upstream.port)).await;
    let auth = bearer(&jwt("alice", serde_json::json!({})));
    let (tx, body) = channel_body();
    let stream = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let request = http::Request::post(format!("https://api.platform.test:{}/v1/upload", upstream.port))
        .header("proxy-authorization", &auth)
        .header("content-length", (50u64 << 20).to_string())
        .body(body)
        .unwrap();
    let response = tokio::spawn(async move { sender.send_request(request).await });
    let chunk = Bytes::from(vec![b'x'; 64 << 10]);
    for _ in 0..(2 << 20) / chunk.len() {
        tx.send(chunk.clone()).await.unwrap();
    }
    // Deadlock detector, not a timing budget: a buffering proxy never answers.
    let response = tokio::time::timeout(Duration::from_secs(20), response)
        .await
        .expect("the upload was buffered")
        .unwrap()
        .unwrap();
    let status = response.status();
    let text = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(status, 200, "{text:?}");
    assert_eq!(text, "received true");
    drop(tx);
}

/// The upstream sends its second event only after the client has received the first.
#[tokio::test]
async fn server_sent_events_stream_through() {
    let ca = TestCa::new(&["api.platform.test"]);
    let (upstream, got_first_tx) = two_event_upstream(&ca).await;
    let proxy = TestProxy::start(&weather_config(&ca, upstream.port)).await;
    let auth = bearer(&jwt("alice", serde_json::json!({})));
    let url = format!("https://api.platform.test:{}/v1/events", upstream.port);
    let response = get_streaming(proxy.addr(), &url, &auth).await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    let first = tokio::time::timeout(Duration::from_secs(20), body.frame()).await.expect("first event was held back");
    assert_eq!(first.unwrap().unwrap().into_data().unwrap(), "data: one\n\n");
    got_first_tx.send(()).unwrap();
    let second = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(second, "data: two\n\n");
}
