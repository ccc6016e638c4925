//! The `connect` cases of tests/corpus/wire.yaml, read from the file and sent as raw
//! bytes to the running proxy (with the default caller credential inserted, as the corpus
//! says). An allowed CONNECT must lead to an intercepted tunnel in which `GET /api` is
//! checked and injected; every other case must reach no upstream.

mod common;

use common::corpus::{cases, Case, Cases};
use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn status(head: &str) -> u16 {
    head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_cases_of_the_wire_corpus() {
    let file = Cases { cases: cases("wire.yaml") };
    let cases: Vec<&Case> = file.cases.iter().filter(|c| c.category == "connect").collect();
    assert!(cases.len() >= 4, "the corpus lost its connect cases");
    for case in cases {
        let host = case.request.target.split(':').next().unwrap().to_string();
        let ca = TestCa::new(&[host.as_str()]);
        let upstream = Upstream::ok(&ca).await;
        let patterns: Vec<String> = case.allowed_patterns.iter().map(|p| format!("\"{p}\"")).collect();
        let yaml = format!(
            "{}\nconnectors:\n  - name: platform\n    token: \"tok-U1\"\n    allowed_domains: [{}]\n",
            base_config(&ca),
            patterns.join(", ")
        );
        let dialer = LoopbackDialer { ports: [(443, upstream.port)].into_iter().collect(), ..Default::default() };
        let proxy = TestProxy::start_full(&yaml, TestResolver::default(), dialer).await;
        let auth = format!("Proxy-Authorization: {}\r\n", bearer(&jwt("U1", serde_json::json!({}))));
        let raw = case.request.raw.clone().unwrap();
        let (line, rest) = raw.split_once("\r\n").unwrap();
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        stream.write_all(format!("{line}\r\n{auth}{rest}").as_bytes()).await.unwrap();
        let head = read_head(&mut stream).await;
        let got = match status(&head) {
            200 if case.request.raw.as_deref().is_some_and(|r| r.starts_with("CONNECT")) => {
                // Inside the tunnel: TLS with Tollgate's CA, then GET /api.
                let mut tls = common::tunnel::intercepted(&proxy, &host, stream, &[]).await;
                let request = format!("GET /api HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer caller-own\r\nConnection: close\r\n\r\n");
                tls.write_all(request.as_bytes()).await.unwrap();
                let inner = read_head(&mut tls).await;
                assert_eq!(status(&inner), 200, "{}: {inner}", case.id);
                let seen = upstream.requests();
                assert_eq!(seen.len(), 1, "{}", case.id);
                assert_eq!(seen[0].headers.get_all("authorization").iter().collect::<Vec<_>>(), ["Bearer tok-U1"]);
                assert_eq!(seen[0].path_and_query, "/api");
                "allow-with-token"
            }
            s if s >= 400 => corpus_outcome(s),
            s => panic!("{}: unexpected status {s}: {head}", case.id),
        };
        assert_eq!(got, case.expected, "{}: {head}", case.id);
        if got != "allow-with-token" {
            assert!(upstream.requests().is_empty(), "{}: something reached the upstream", case.id);
            assert!(proxy.dialed().is_empty(), "{}: a connection was opened", case.id);
        }
    }
}
