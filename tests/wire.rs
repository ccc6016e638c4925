//! The network-edge cases of tests/corpus/wire.yaml, read from the file and sent over real
//! sockets to the running proxy: DNS answers pointing inside (and rebinding), redirects,
//! caller authorization, header injection, hop-by-hop abuse, request smuggling. Each case runs
//! with user U1's stored token "tok-U1", the DNS answers it lists (resolved by the test, dialed
//! only on loopback) and the upstream answer it describes. CONNECT cases run in
//! tests/wire_connect.rs; token-lifecycle cases in the refresh tests.

mod common;

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::corpus::{cases, Case, Cases};
use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tollgate::secret::Secret;
use tollgate::token::{Connection, ConnectionKey, Expect};

const CATEGORIES: &[&str] = &[
    "must-allow",
    "dns-private-ip",
    "redirect",
    "caller-authorization",
    "header-injection",
    "hop-by-hop",
    "request-smuggling",
];

/// Answers as written; the proxy's own address is loopback here.
fn ips(list: &[String]) -> Vec<IpAddr> {
    list.iter()
        .map(|a| if a.starts_with("<the proxy's own") { "127.0.0.1".parse().unwrap() } else { a.parse().unwrap() })
        .collect()
}
/// The status of every response in order.
fn statuses(text: &str) -> Vec<u16> {
    text.split("\r\n")
        .filter(|l| l.starts_with("HTTP/1."))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
        .collect()
}
async fn run(case: &Case) {
    let id = case.id.as_str();
    let host =
        case.request.target.split("://").nth(1).unwrap_or("").split(['/', ':', ' ', '?']).next().unwrap().to_string();
    let ca = TestCa::new(&[host.as_str(), "abc123.databricks.com", "api.platform.com"]);
    let answer = case.upstream_response.clone();
    let upstream = Upstream::with(&ca, move |_req| {
        let answer = answer.clone();
        async move {
            let mut r = http::Response::new(full(r#"{"ok":true}"#));
            if let Some(a) = answer {
                *r.status_mut() = http::StatusCode::from_u16(a.status).unwrap();
                for (k, v) in a.headers {
                    r.headers_mut().append(http::HeaderName::try_from(k).unwrap(), v.parse().unwrap());
                }
            }
            r
        }
    })
    .await;
    let patterns: Vec<String> = case.allowed_patterns.iter().map(|p| format!("\"{p}\"")).collect();
    let mut yaml = format!(
        "{}\nconnectors:\n  - name: platform\n    grant: authorization_code\n    authorization_endpoint: https://as.test/a\n    token_endpoint: https://as.test/t\n    client_id: c\n    allowed_domains: [{}]\n",
        base_config(&ca),
        patterns.join(", ")
    );
    if id == "AUTH-008" {
        yaml.push_str("  - name: dbx\n    token: \"tok-dbx\"\n    allowed_domains: [\"https://*.databricks.com/*\"]\n");
    }
    let mut resolver = TestResolver::default();
    for d in &case.dns {
        if d.sequence.is_empty() {
            resolver.answers.insert(d.name.clone(), ips(&d.answers));
        } else {
            resolver.sequences.insert(d.name.clone(), d.sequence.iter().map(|s| ips(s)).collect());
        }
    }
    let dialer = LoopbackDialer {
        ports: [(443, upstream.port), (80, upstream.port)].into_iter().collect(),
        ..Default::default()
    };
    let proxy = TestProxy::start_full(&yaml, resolver, dialer).await;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    for (user, token) in [("U1", "tok-U1"), ("U2", "tok-U2")] {
        if id == "AUTH-009" && user == "U1" {
            continue; // never completed consent
        }
        let mut c = Connection::new(Secret::new(token), Some(now + 3600));
        c.refresh_token = Some(Secret::new(format!("rt-{user}")));
        proxy.running.store().put(&ConnectionKey::new("platform", user), c, Expect::Any, None).await.unwrap();
    }
    if id == "AUTH-013" {
        // Disconnected after the token was stored (and cached).
        let admin = ("authorization", "Bearer admin-secret-token");
        assert_eq!(
            send(proxy.running.admin_addr, "DELETE", "/admin/connections/platform/U1", &[admin], Default::default())
                .await
                .status,
            204
        );
    }
    let credential = match id {
        "AUTH-005" => None,
        "AUTH-006" => Some(jwt("U1", serde_json::json!({ "exp": now - 3600 }))),
        "AUTH-008" => Some(jwt("U1", serde_json::json!({ "connectors": ["platform"] }))),
        _ => Some(jwt("U1", serde_json::json!({}))),
    };
    let auth_line = credential.as_ref().map(|c| format!("Proxy-Authorization: Bearer {c}\r\n")).unwrap_or_default();
    let bytes = match &case.request.raw {
        Some(raw) => {
            let (line, rest) = raw.split_once("\r\n").unwrap();
            format!("{line}\r\n{auth_line}{rest}")
        }
        None => {
            let mut text = format!("{} {} HTTP/1.1\r\n", case.request.method, case.request.target);
            let has = |name: &str| case.request.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
            if !has("host") {
                text.push_str(&format!("Host: {host}\r\n"));
            }
            for (k, v) in &case.request.headers {
                let v = v.replace("<valid caller credential>", credential.as_deref().unwrap_or(""));
                text.push_str(&format!("{k}: {v}\r\n"));
            }
            if !has("proxy-authorization") {
                text.push_str(&auth_line);
            }
            text.push_str("\r\n");
            text
        }
    };
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    stream.write_all(bytes.as_bytes()).await.unwrap();
    let answer = read_until_quiet(&mut stream, Duration::from_millis(700)).await;
    let all = statuses(&answer);
    let first = *all.first().unwrap_or_else(|| panic!("{id}: no response: {answer:?}"));
    // A pipelined case is judged by its second request; the first must be allowed.
    let judged = if id == "SMUG-011" { all.get(1).copied().unwrap_or(0) } else { first };
    let got = corpus_outcome(judged);
    assert!(case.accepts(got), "{id}: got {got} ({first}), expected {} {:?}\n{answer}", case.expected, case.acceptable);
    let seen = upstream.requests();
    if id == "SMUG-011" {
        assert_eq!(corpus_outcome(first), "allow-with-token", "{id}: the first pipelined request is allowed: {answer}");
        assert_eq!(seen.len(), 1, "{id}: only the first reached the upstream");
        assert_eq!(seen[0].headers["authorization"], "Bearer tok-U1");
    } else if got == "allow-with-token" {
        assert_eq!(seen.len(), 1, "{id}: exactly one upstream request (redirects are never followed)");
        let auths: Vec<_> = seen[0].headers.get_all("authorization").iter().collect();
        assert_eq!(auths, ["Bearer tok-U1"], "{id}: exactly U1's token");
        for forbidden in [
            "proxy-authorization",
            "x-forwarded-user",
            "x-user-id",
            "x-original-url",
            "x-rewrite-url",
            "upgrade",
            "http2-settings",
        ] {
            assert!(seen[0].headers.get(forbidden).is_none(), "{id}: {forbidden} was forwarded");
        }
        let connection =
            seen[0].headers.get("connection").map(|v| v.to_str().unwrap().to_ascii_lowercase()).unwrap_or_default();
        assert!(!connection.contains("authorization"), "{id}: Connection names the injected header");
        assert_eq!(seen[0].sni.as_deref(), Some(host.as_str()), "{id}: SNI is the canonical host");
        assert!(proxy.dialed().iter().all(|a| a.ip().to_string() != "127.0.0.1"), "{id}: a loopback answer was dialed");
        if id == "DNS-016" {
            let lookups = proxy.resolver.lookups.lock().unwrap().iter().filter(|h| **h == host).count();
            assert_eq!(lookups, 1, "{id}: exactly one resolution");
        }
        if id == "ALLOW-019" {
            for (k, v) in &case.request.headers {
                assert_eq!(seen[0].headers[k.as_str()], v.as_str(), "{id}: {k} must be forwarded unchanged");
            }
        }
    } else {
        assert!(seen.is_empty(), "{id}: a refused request reached the upstream");
        assert!(proxy.dialed().is_empty() || got != "reject-400", "{id}: a rejected request opened a connection");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_edge_cases_of_the_wire_corpus() {
    let file = Cases { cases: cases("wire.yaml") };
    let mut counted: HashMap<&str, usize> = HashMap::new();
    for case in file.cases.iter().filter(|c| CATEGORIES.contains(&c.category.as_str())) {
        run(case).await;
        *counted.entry(case.category.as_str()).or_default() += 1;
    }
    for category in CATEGORIES {
        assert!(counted.get(category).copied().unwrap_or(0) > 0, "no {category} case ran");
    }
}
