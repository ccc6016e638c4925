//! A log collector that stops reading does not stop the proxy: the real binary, its stdout a
//! pipe nobody reads (a pipe holds 64 KiB, a few hundred audit lines), serves thousands of
//! requests, and once the pipe is read again every audit line is there.

mod common;

use std::io::Read;
use std::time::Duration;

use common::process::{api_connector_yaml, TollgateProcess};
use common::*;

const REQUESTS: usize = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_go_on_while_stdout_is_not_read() {
    let ca = TestCa::new(&["127.0.0.1"]);
    let upstream = Upstream::ok(&ca).await;
    let yaml = api_connector_yaml(&ca, upstream.port, "");
    let (process, mut stdout) = TollgateProcess::start_piped(&yaml).await;
    let auth = bearer(&jwt("alice", serde_json::json!({})));
    let stream = tokio::net::TcpStream::connect(process.proxy).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    for i in 0..REQUESTS {
        let request = http::Request::builder()
            .uri(format!("https://127.0.0.1:{}/logged/{i}", upstream.port))
            .header("proxy-authorization", &auth)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        sender.ready().await.unwrap_or_else(|e| panic!("the connection closed before request {i}: {e}"));
        let answer = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
            .await
            .unwrap_or_else(|_| panic!("request {i} waited for stdout to be read"))
            .unwrap();
        assert_eq!(answer.status(), 200, "request {i}");
        http_body_util::BodyExt::collect(answer.into_body()).await.unwrap();
    }
    assert_eq!(process.metric("tollgate_log_lines_dropped_total").await, 0.0, "under 4 MiB, nothing is dropped");

    // The collector reads again: every request's audit line comes out, in order.
    let reader = tokio::task::spawn_blocking(move || {
        let (mut text, mut buf) = (String::new(), vec![0u8; 64 * 1024]);
        while !text.contains(&format!("\"path\":\"/logged/{}\"", REQUESTS - 1)) {
            let n = stdout.read(&mut buf).unwrap();
            assert!(n > 0, "stdout closed early");
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        text
    });
    let text =
        tokio::time::timeout(Duration::from_secs(30), reader).await.expect("the audit lines never came").unwrap();
    let paths: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|l| l["path"].as_str().filter(|p| p.starts_with("/logged/")).map(str::to_string))
        .collect();
    let expected: Vec<String> = (0..REQUESTS).map(|i| format!("/logged/{i}")).collect();
    assert_eq!(paths, expected);
}
