//! The real `curl` binary drives Tollgate in absolute form, the way a runtime configured with
//! a proxy URL does, and the upstream checks what it received.

mod common;

use std::process::Command;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_in_absolute_form_gets_the_token_injected() {
    let ca = TestCa::new(&["api.test"]);
    let upstream = Upstream::ok(&ca).await;
    let yaml = format!(
        "{}\nconnectors:\n  - name: github\n    token: \"gh-static-token\"\n    inject: {{ format: \"token {{token}}\" }}\n    allowed_domains: [\"https://api.test:{}/repos/*\"]\n",
        base_config(&ca),
        upstream.port
    );
    let proxy = TestProxy::start(&yaml).await;
    let token = jwt("alice", serde_json::json!({}));
    let port = upstream.port;
    let run = |path: &'static str| {
        let proxy_url = format!("http://127.0.0.1:{}", proxy.addr().port());
        let token = token.clone();
        tokio::task::spawn_blocking(move || {
            Command::new("curl")
                .args(["--silent", "--show-error", "--noproxy", "", "--include"])
                .args(["--proxy", &proxy_url, "--proxy-user", &format!("github:{token}")])
                .args(["--request-target", &format!("https://api.test:{port}{path}")])
                .arg(format!("http://api.test:{port}{path}"))
                .output()
                .expect("curl must be installed (apt-get install curl)")
        })
    };
    let out = run("/repos/tollgate/issues").await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with(r#"{"ok":true}"#), "{text}");
    let seen = upstream.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].headers["authorization"], "token gh-static-token");
    assert_eq!(seen[0].path_and_query, "/repos/tollgate/issues");
    assert!(seen[0].headers.get("proxy-authorization").is_none());

    let blocked = run("/user").await.unwrap();
    let text = String::from_utf8_lossy(&blocked.stdout);
    assert!(text.starts_with("HTTP/1.1 403"), "{text}");
    assert!(text.to_ascii_lowercase().contains("x-tollgate-error: endpoint_not_allowed"), "{text}");
    assert_eq!(upstream.requests().len(), 1);
}
