//! Config reload: applied to new requests, never to requests in flight; an invalid file keeps
//! the running config; the file is watched for changes; SIGHUP reloads a running process.

mod common;

use std::time::{Duration, Instant};

use common::process::TollgateProcess;
use common::*;
use tollgate::config::Environment;
use tollgate::live::reload::reload_file;

fn config(ca: &TestCa, port: u16, path_prefix: &str, extra_connector: bool) -> String {
    let extra = if extra_connector {
        "  - name: added\n    token: \"added-token\"\n    allowed_domains: [\"https://added.test/*\"]\n"
    } else {
        ""
    };
    format!(
        "{}\nconnectors:\n  - name: weather\n    token: \"weather-key\"\n    allowed_domains: [\"https://api.test:{port}/{path_prefix}/*\"]\n{extra}",
        base_config(ca)
    )
}

async fn metric(addr: std::net::SocketAddr, series: &str) -> f64 {
    let text = String::from_utf8(get(addr, "/metrics", &[]).await.body.to_vec()).unwrap();
    text.lines().find(|l| l.starts_with(series)).and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(-1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_apply_to_new_requests_only_and_bad_files_change_nothing() {
    let ca = TestCa::new(&["api.test"]);
    // /v1/slow answers after a second, so a request can be in flight across a reload.
    let upstream = Upstream::with(&ca, |req| async move {
        if req.uri().path().ends_with("/slow") {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        http::Response::new(full("ok"))
    })
    .await;
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), config(&ca, upstream.port, "v1", false)).unwrap();
    let env = Environment::from_vars([("UNUSED", "x")]);
    let running = start_from_file(file.path(), &env).await;
    let auth = bearer(&jwt("alice", serde_json::json!({})));
    let url = |p: &str| format!("https://api.test:{}{p}", upstream.port);
    let call = |p: String| {
        let (addr, auth) = (running.proxy_addr, auth.clone());
        async move { get(addr, &p, &[("proxy-authorization", &auth)]).await }
    };
    assert_eq!(call(url("/v1/x")).await.status, 200);
    call(url("/v2/x")).await.assert_refused(403, "endpoint_not_allowed");

    // A request in flight when the config changes finishes on the config it started with.
    let in_flight = tokio::spawn(call(url("/v1/slow")));
    let deadline = Instant::now() + Duration::from_secs(10);
    while upstream.requests().iter().all(|r| r.path_and_query != "/v1/slow") {
        assert!(Instant::now() < deadline, "the slow request never reached the upstream");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    std::fs::write(file.path(), config(&ca, upstream.port, "v2", true)).unwrap();
    reload_file(&running.shared, file.path(), &env).unwrap();
    assert_eq!(in_flight.await.unwrap().status, 200);
    call(url("/v1/x")).await.assert_refused(403, "endpoint_not_allowed");
    assert_eq!(call(url("/v2/x")).await.status, 200);
    let admin = running.admin_addr;
    assert_eq!(metric(admin, r#"tollgate_config_reloads_total{result="success"}"#).await, 1.0);
    assert_eq!(
        metric(
            admin,
            r#"tollgate_requests_total{connector="added",method="GET",outcome="allowed",status_class="2xx"}"#
        )
        .await,
        0.0,
        "a connector added by a reload is exported at zero"
    );

    // A broken file keeps the running config.
    std::fs::write(file.path(), "listen: [not, an, address\n").unwrap();
    let err = reload_file(&running.shared, file.path(), &env).unwrap_err();
    assert!(err.contains("line"), "{err}");
    assert_eq!(call(url("/v2/x")).await.status, 200);
    assert_eq!(metric(admin, r#"tollgate_config_reloads_total{result="failure"}"#).await, 1.0);

    // The watcher notices a changed file by itself.
    let _watch = tollgate::live::reload::watch(running.shared.clone(), file.path().to_path_buf());
    tokio::time::sleep(Duration::from_millis(200)).await;
    std::fs::write(file.path(), config(&ca, upstream.port, "v3", false)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while call(url("/v3/x")).await.status != 200 {
        assert!(Instant::now() < deadline, "the changed file was not picked up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_a_running_process() {
    let ca = TestCa::new(&["127.0.0.1"]);
    let upstream = Upstream::ok(&ca).await;
    let body = |prefix: &str| {
        format!(
            "encryption_keys: [{{ id: k1, secret: \"{KEY}\" }}]\ncallers:\n  jwt: {{ audience: tollgate, hs256_secret: \"{CALLER_SECRET}\" }}\nupstream: {{ extra_ca_file: {} }}\nconnectors:\n  - name: local\n    token: \"t\"\n    unsafe_allow_ranges: [\"127.0.0.0/8\"]\n    allowed_domains: [\"https://127.0.0.1:{}/{prefix}/*\"]\n",
            ca.ca_file.path().display(),
            upstream.port
        )
    };
    let tollgate = TollgateProcess::start(&body("a")).await;
    let auth = bearer(&jwt("alice", serde_json::json!({})));
    let url = |p: &str| format!("https://127.0.0.1:{}{p}", upstream.port);
    assert_eq!(get(tollgate.proxy, &url("/a/x"), &[("proxy-authorization", &auth)]).await.status, 200);
    tollgate.rewrite_config(&body("b"));
    tollgate.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(tollgate.proxy, &url("/b/x"), &[("proxy-authorization", &auth)]).await.status != 200 {
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(tollgate.metric(r#"tollgate_config_reloads_total{result="success"}"#).await, 1.0);
}
