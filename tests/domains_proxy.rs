//! Every absolute-form case of tests/corpus/allowed-domains.yaml through the running proxy
//! over real sockets, each with its own canary token: an allowed case reaches exactly one
//! upstream request, at the normalized path, carrying exactly its canary; every other case
//! reaches no upstream at all. (`api-field` cases cannot be written on a request line; the
//! corpus runs them through the library and `tollgate explain`, see tests/corpus.rs.)

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::corpus::{cases, Case, Cases};
use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tollgate::secret::Secret;
use tollgate::token::{Connection, ConnectionKey, Expect};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_cases_through_the_running_proxy() {
    let file = Cases { cases: cases("allowed-domains.yaml") };
    let cases: Vec<&Case> = file.cases.iter().filter(|c| c.request.transport == "absolute-form").collect();
    assert!(cases.len() > 40, "the corpus lost its absolute-form cases");
    for case in cases {
        let id = case.id.as_str();
        // The host an allowed request must reach, from the library's own verdict.
        let verdict = tollgate::explain::with_patterns(&case.allowed_patterns, &case.request.target).unwrap();
        let normalized = tollgate::domains::Target::parse(&verdict.url).ok();
        let host = normalized
            .as_ref()
            .map(|t| t.host.to_string().trim_matches(['[', ']']).to_string())
            .unwrap_or_else(|| "unused.test".into());
        let ca = TestCa::new(&[host.as_str()]);
        let upstream = Upstream::ok(&ca).await;
        let patterns: Vec<String> = case.allowed_patterns.iter().map(|p| format!("\"{p}\"")).collect();
        let yaml = format!(
            "{}\nconnectors:\n  - name: platform\n    grant: authorization_code\n    authorization_endpoint: https://as.test/a\n    token_endpoint: https://as.test/t\n    client_id: c\n    allowed_domains: [{}]\n",
            base_config(&ca),
            patterns.join(", ")
        );
        let ports = [(443, upstream.port), (80, upstream.port), (8443, upstream.port)].into_iter().collect();
        let proxy =
            TestProxy::start_full(&yaml, TestResolver::default(), LoopbackDialer { ports, ..Default::default() }).await;
        let canary = format!("canary-{}", id.to_ascii_lowercase());
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let mut c = Connection::new(Secret::new(&canary), Some(now + 3600));
        c.refresh_token = Some(Secret::new("rt"));
        proxy.running.store().put(&ConnectionKey::new("platform", "U1"), c, Expect::Any, None).await.unwrap();
        let auth = bearer(&jwt("U1", serde_json::json!({})));
        let request = format!(
            "{} {} HTTP/1.1\r\nHost: ignored.test\r\nProxy-Authorization: {auth}\r\nConnection: close\r\n\r\n",
            case.request.method, case.request.target
        );
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let answer = read_until_quiet(&mut stream, Duration::from_millis(500)).await;
        let status: u16 = answer.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        assert_ne!(status, 0, "{id}: no answer");
        let got = corpus_outcome(status);
        assert!(
            case.accepts(got),
            "{id}: got {got} ({status}) for {}, expected {} {:?}\n{answer}",
            case.request.target,
            case.expected,
            case.acceptable
        );
        let seen = upstream.requests();
        if got == "allow-with-token" {
            let target = normalized.unwrap_or_else(|| panic!("{id}: allowed but not normalizable"));
            assert_eq!(seen.len(), 1, "{id}");
            assert_eq!(
                seen[0].headers.get_all("authorization").iter().collect::<Vec<_>>(),
                [format!("Bearer {canary}").as_str()],
                "{id}"
            );
            assert_eq!(
                seen[0].path_and_query,
                target.path_and_query(),
                "{id}: the matched path is the path on the wire"
            );
            assert_eq!(seen[0].headers["host"], target.authority(), "{id}: Host is the canonical authority");
        } else {
            assert!(seen.is_empty(), "{id}: the canary reached an upstream");
            assert!(proxy.dialed().is_empty(), "{id}: a connection was opened for a refused request");
        }
        assert!(!answer.contains(&canary), "{id}: the canary appears in the answer");
    }
}
