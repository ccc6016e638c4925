//! Graceful shutdown of the real binary: on SIGTERM a request in flight is still answered, an
//! idle keep-alive connection is closed at once, and the process exits 0 once it is done,
//! with every log line written out (the last request's audit line comes just before the exit).

mod common;

use std::time::{Duration, Instant};

use common::process::{api_connector_yaml, TollgateProcess};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_the_request_in_flight_closes_idle_connections_and_exits() {
    let ca = TestCa::new(&["127.0.0.1"]);
    let upstream = Upstream::with(&ca, |req| async move {
        if req.uri().path() == "/slow" {
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        http::Response::new(full("done"))
    })
    .await;
    let yaml = api_connector_yaml(&ca, upstream.port, r#"response_timeout: "30s""#);
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut process = TollgateProcess::start_logging(&yaml, Some(log.path())).await;
    let auth = bearer(&jwt("alice", serde_json::json!({})));
    let url = |path: &str| format!("https://127.0.0.1:{}{path}", upstream.port);

    // A keep-alive connection that has been answered once and is now idle.
    let mut idle = TcpStream::connect(process.proxy).await.unwrap();
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nProxy-Authorization: {auth}\r\n\r\n",
        url("/fast"),
        upstream.port
    );
    idle.write_all(request.as_bytes()).await.unwrap();
    let head = read_head(&mut idle).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut body = [0u8; 4];
    idle.read_exact(&mut body).await.unwrap();
    assert_eq!(&body, b"done");

    let slow = {
        let (proxy, auth, target) = (process.proxy, auth.clone(), url("/slow"));
        tokio::spawn(async move { get(proxy, &target, &[("proxy-authorization", &auth)]).await })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while upstream.requests().iter().all(|r| r.path_and_query != "/slow") {
        assert!(Instant::now() < deadline, "the slow request never reached the upstream");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    process.signal("TERM");

    let mut byte = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(1), idle.read(&mut byte)).await;
    assert!(matches!(closed, Ok(Ok(0))), "the idle connection was not closed at shutdown: {closed:?}");
    assert!(!slow.is_finished(), "the request in flight was answered before the upstream did");

    let answer = slow.await.unwrap();
    assert_eq!(
        (answer.status.as_u16(), answer.body.as_ref()),
        (200, b"done".as_ref()),
        "the request in flight was cut off"
    );
    let status = process.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "tollgate exited with {status}");
    assert!(TcpStream::connect(process.proxy).await.is_err(), "still accepting after exit");
    let logs = std::fs::read_to_string(log.path()).unwrap();
    let last = logs.lines().rev().find(|l| l.contains("\"/slow\"")).unwrap_or_else(|| {
        panic!("the audit line of the request answered during shutdown was lost:\n{logs}");
    });
    let line: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(line["status"], 200, "{last}");
}
