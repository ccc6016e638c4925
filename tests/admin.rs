//! The admin listener: health, readiness, metrics after traffic, admin-token checks.

mod common;

use common::*;

#[tokio::test]
async fn health_readiness_and_metrics_after_traffic() {
    let ca = TestCa::new(&["api.weather.test"]);
    let upstream = Upstream::ok(&ca).await;
    let yaml = format!(
        "{}\nconnectors:\n  - name: weather\n    token: \"weather-key-canary-4242\"\n    allowed_domains: [\"https://api.weather.test:{}/*\"]\n",
        base_config(&ca),
        upstream.port
    );
    let proxy = TestProxy::start(&yaml).await;
    let admin = proxy.running.admin_addr;
    let auth = bearer(&jwt("alice-principal", serde_json::json!({})));
    let allowed = format!("https://api.weather.test:{}/secret-path?q=1", upstream.port);
    assert_eq!(get(proxy.addr(), &allowed, &[("proxy-authorization", &auth)]).await.status, 200);
    get(proxy.addr(), "https://blocked-host.test/other-path", &[("proxy-authorization", &auth)])
        .await
        .assert_refused(403, "endpoint_not_allowed");
    get(proxy.addr(), &allowed, &[]).await.assert_refused(407, "caller_unauthenticated");

    let health = get(admin, "/healthz", &[]).await;
    assert_eq!(health.status, 200);
    let ready = get(admin, "/readyz", &[]).await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["store"]["backend"], "memory");
    assert_eq!(ready.json()["ready"], true);

    let metrics = String::from_utf8(get(admin, "/metrics", &[]).await.body.to_vec()).unwrap();
    let line = |prefix: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no series {prefix}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let series = |labels: &str| format!("tollgate_requests_total{{{labels}}} ");
    assert_eq!(line(&series(r#"connector="weather",method="GET",outcome="allowed",status_class="2xx""#)), 1.0);
    assert_eq!(
        line(&series(r#"connector="none",method="GET",outcome="endpoint_not_allowed",status_class="4xx""#)),
        1.0
    );
    assert_eq!(
        line(&series(r#"connector="none",method="GET",outcome="caller_unauthenticated",status_class="4xx""#)),
        1.0
    );
    // Closed combinations exist at zero before any such event.
    assert_eq!(
        line(&series(r#"connector="weather",method="DELETE",outcome="upstream_timeout",status_class="5xx""#)),
        0.0
    );
    assert_eq!(line(r#"tollgate_blocked_total{connector="none",reason="not_covered"} "#), 1.0);
    assert_eq!(line(r#"tollgate_blocked_total{connector="weather",reason="address_denied"} "#), 0.0);
    assert_eq!(line("tollgate_upstream_duration_seconds_count{connector=\"weather\"} "), 1.0);
    assert_eq!(line("tollgate_store_up "), 1.0);
    assert!(metrics.contains("tollgate_build_info{version="));
    for private in ["alice-principal", "api.weather.test", "blocked-host", "secret-path", "weather-key-canary-4242"] {
        assert!(!metrics.contains(private), "{private} appears in /metrics");
    }

    get(admin, "/admin/connectors", &[]).await.assert_refused(401, "caller_unauthenticated");
    get(admin, "/admin/connectors", &[("authorization", "Bearer wrong")])
        .await
        .assert_refused(401, "caller_unauthenticated");
    get(admin, "/admin/nothing", &[("authorization", "Bearer admin-secret-token")])
        .await
        .assert_refused(404, "not_found");
}
