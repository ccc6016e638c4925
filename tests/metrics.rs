//! /metrics after traffic on every path (allowed, blocked, refreshed, failed): every family
//! the README's Observability section names is exported, `promtool check metrics` accepts the exposition, and no
//! principal, host, path or token appears in any label.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use common::oauth::{Mode, TokenEndpoint};
use common::*;
use tollgate::secret::Secret;
use tollgate::token::{Connection, ConnectionKey, Expect};

/// The metric names the README's Observability section lists (every family of the product
/// specification, and Tollgate's own).
fn spec_families() -> Vec<String> {
    let readme = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = readme.split("## Observability").nth(1).unwrap().split("\n## ").next().unwrap();
    let mut names: Vec<String> = section
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("tollgate_") && w.len() > "tollgate_".len())
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_family_after_traffic_on_every_path() {
    let ca = TestCa::new(&["api.test", "auth.test"]);
    let upstream = Upstream::ok(&ca).await;
    let endpoint = TokenEndpoint::start(&ca, &["rt-refresh-canary"], None).await;
    let yaml = format!(
        "{base}\nconnectors:\n  - name: weather\n    token: \"static-token-canary\"\n    allowed_domains: [\"https://api.test:{up}/*\"]\n  - name: crm\n    grant: authorization_code\n    authorization_endpoint: https://auth.test:{tp}/a\n    token_endpoint: https://auth.test:{tp}/token\n    client_id: c\n    allowed_domains: [\"https://api.test:{up}/crm/*\"]\n",
        base = base_config(&ca),
        up = upstream.port,
        tp = endpoint.server.port
    );
    let proxy = TestProxy::start(&yaml).await;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    for (principal, refresh) in [("principal-canary-a", "rt-refresh-canary"), ("principal-canary-b", "rt-unknown")] {
        let mut c = Connection::new(Secret::new("at-expired-canary"), Some(now - 5));
        c.refresh_token = Some(Secret::new(refresh));
        proxy.running.store().put(&ConnectionKey::new("crm", principal), c, Expect::Any, None).await.unwrap();
    }
    let call = |principal: &str, path: &str, connector: &str| {
        let auth = bearer(&jwt(principal, serde_json::json!({})));
        let url = format!("https://api.test:{}{path}", upstream.port);
        let (addr, connector) = (proxy.addr(), connector.to_string());
        async move { get(addr, &url, &[("proxy-authorization", &auth), ("x-tollgate-connector", &connector)]).await }
    };
    assert_eq!(call("principal-canary-a", "/path-canary", "weather").await.status, 200); // allowed
    call("principal-canary-a", "/crm/x", "weather").await; // allowed by weather's /* too
    get(
        proxy.addr(),
        "https://host-canary.test/x",
        &[("proxy-authorization", &bearer(&jwt("principal-canary-a", serde_json::json!({}))))],
    )
    .await
    .assert_refused(403, "endpoint_not_allowed"); // blocked
    assert_eq!(call("principal-canary-a", "/crm/deals", "crm").await.status, 200); // refreshed
    endpoint.set_mode(Mode::Status(503));
    call("principal-canary-b", "/crm/deals", "crm").await.assert_refused(503, "token_endpoint_unavailable"); // failed

    let scrape = String::from_utf8(get(proxy.running.admin_addr, "/metrics", &[]).await.body.to_vec()).unwrap();
    for family in spec_families() {
        assert!(scrape.contains(&format!("# TYPE {family} ")), "{family} (SPEC section 8) is not exported");
    }
    let series = |prefix: &str| -> f64 {
        scrape.lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
    };
    assert_eq!(series(r#"tollgate_token_refresh_total{connector="crm",result="success"}"#), 1.0);
    assert_eq!(series(r#"tollgate_token_refresh_total{connector="crm",result="transient_failure"}"#), 1.0);
    assert_eq!(series(r#"tollgate_blocked_total{connector="none",reason="not_covered"}"#), 1.0);
    assert!(series("tollgate_refresh_lock_wait_seconds_count") >= 1.0);
    for private in ["canary", "api.test", "host-canary", "/crm", "path-canary"] {
        assert!(!scrape.contains(private), "{private} appears in /metrics");
    }

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is needed (Debian package prometheus)");
    promtool.stdin.take().unwrap().write_all(scrape.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
