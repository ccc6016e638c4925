//! Cloud metadata and platform addresses through the running proxy: whatever DNS answers for a
//! covered name, Tollgate never dials one of them (not even Azure's public WireServer) unless
//! the connector names that one address in `unsafe_allow_ranges`.

mod common;

use std::net::IpAddr;

use common::*;
use tollgate::config::{Config, Environment};

const METADATA: [&str; 7] = [
    "169.254.169.254",
    "169.254.170.2",
    "168.63.129.16",
    "100.100.100.200",
    "192.0.0.192",
    "fd00:ec2::254",
    "fd20:ce::254",
];

fn config(ca: &TestCa, port: u16, ranges: &str) -> String {
    format!(
        r#"{}
connectors:
  - name: cloud
    token: "cloud-key-canary-31337"
    allowed_domains: ["https://*.cloud.test:{port}/*"]
    unsafe_allow_ranges: {ranges}
"#,
        base_config(ca)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_addresses_are_refused_whatever_dns_says() {
    let ca = TestCa::new(&["*.cloud.test"]);
    let upstream = Upstream::ok(&ca).await;
    let mut resolver = TestResolver::default();
    for (i, ip) in METADATA.iter().enumerate() {
        resolver.answers.insert(format!("m{i}.cloud.test"), vec![ip.parse().unwrap()]);
    }
    // A public name whose answer mixes a good address with a metadata one is refused too.
    resolver.answers.insert("mixed.cloud.test".into(), vec![PUBLIC_IP, "168.63.129.16".parse().unwrap()]);
    // Opt-ins for wide ranges that hold metadata addresses do not open them.
    let proxy = TestProxy::start_with(
        &config(
            &ca,
            upstream.port,
            r#"["169.254.0.0/16", "168.63.0.0/16", "100.64.0.0/10", "192.0.0.0/24", "fd00::/8"]"#,
        ),
        resolver,
    )
    .await;
    let auth = alice_bearer();
    let mut hosts: Vec<String> = (0..METADATA.len()).map(|i| format!("m{i}.cloud.test")).collect();
    hosts.push("mixed.cloud.test".into());
    for host in &hosts {
        let url = format!("https://{host}:{}/latest/meta-data/iam", upstream.port);
        let answer = get(proxy.addr(), &url, &[("proxy-authorization", &auth)]).await;
        let body = answer.assert_refused(403, "endpoint_not_allowed");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains("cloud metadata address"), "{host}: {message}");
    }
    assert!(proxy.dialed().is_empty(), "dialed {:?}", proxy.dialed());
    assert!(upstream.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn naming_the_one_address_opens_it() {
    let ca = TestCa::new(&["*.cloud.test"]);
    let upstream = Upstream::ok(&ca).await;
    let wire_server: IpAddr = "168.63.129.16".parse().unwrap();
    let mut resolver = TestResolver::default();
    resolver.answers.insert("wire.cloud.test".into(), vec![wire_server]);
    let proxy = TestProxy::start_with(&config(&ca, upstream.port, r#"["168.63.129.16/32"]"#), resolver).await;
    let url = format!("https://wire.cloud.test:{}/machine", upstream.port);
    let answer = get(proxy.addr(), &url, &[("proxy-authorization", &alice_bearer())]).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(proxy.dialed().iter().map(|a| a.ip()).collect::<Vec<_>>(), [wire_server]);
    assert_eq!(upstream.requests().len(), 1);
}

#[test]
fn metadata_literals_in_patterns_are_refused_at_load() {
    let ca = TestCa::new(&["x.test"]);
    for ip in ["168.63.129.16", "100.100.100.200", "[fd00:ec2::254]"] {
        let yaml = format!(
            "{}\nconnectors:\n  - name: meta\n    token: \"k-123456789\"\n    allowed_domains: [\"https://{ip}/*\"]\n    unsafe_allow_ranges: [\"168.63.0.0/16\", \"100.64.0.0/10\", \"fd00::/8\"]\n",
            base_config(&ca)
        );
        let err = Config::from_yaml(&yaml, &Environment::from_vars([("UNUSED", "x")])).unwrap_err().to_string();
        assert!(err.contains("connectors[0].allowed_domains[0]") && err.contains("cloud metadata"), "{ip}: {err}");
    }
}
