//! Every Prometheus family Tollgate exports, in one owned registry (SPEC section 8).
//!
//! Labels come only from closed sets or config names (connector): never principals, hosts,
//! paths or tokens. Closed label combinations are created at zero on start-up so dashboards
//! and alerts see them before the first event.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::proxy::error::ErrorCode;

/// Methods with their own label value; everything else is `OTHER`.
pub const METHODS: [&str; 10] =
    ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE", "OTHER"];

/// `tollgate_blocked_total` reasons.
pub const BLOCKED_REASONS: [&str; 6] =
    ["not_covered", "address_denied", "connector_forbidden", "pinned_host", "upgrade_refused", "echo_method"];

/// The connector label when no connector was chosen.
pub const NO_CONNECTOR: &str = "none";

pub fn method_label(method: &http::Method) -> &'static str {
    METHODS.iter().find(|m| **m == method.as_str()).copied().unwrap_or("OTHER")
}

pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_duration: HistogramVec,
    pub blocked: IntCounterVec,
    pub inflight: IntGauge,
    pub store_up: IntGauge,
    pub build_info: IntGaugeVec,
    pub token_cache: IntCounterVec,
    pub token_refresh: IntCounterVec,
    pub token_refresh_duration: HistogramVec,
    pub refresh_lock_wait: Histogram,
    pub reauth_required: IntCounterVec,
    pub store_errors: IntCounterVec,
    pub discovery_up: IntGaugeVec,
    pub config_reloads: IntCounterVec,
}

/// `tollgate_token_cache_total` label pairs (tier, result).
pub const CACHE_RESULTS: [(&str, &str); 6] = [
    ("memory", "hit"),
    ("memory", "miss"),
    ("memory", "stale"),
    ("store", "hit"),
    ("store", "miss"),
    ("store", "error"),
];

/// `tollgate_token_refresh_total` results.
pub const REFRESH_RESULTS: [&str; 3] = ["success", "permanent_failure", "transient_failure"];

/// `tollgate_store_errors_total` operations.
pub const STORE_OPS: [&str; 9] = ["get", "put", "delete", "lock", "unlock", "ping", "subscribe", "publish", "list"];

const LATENCY_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

impl Metrics {
    /// Creates every family and exports the closed label combinations of `connectors` at zero.
    pub fn new<'a>(connectors: impl IntoIterator<Item = &'a str>) -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "tollgate_requests_total",
                "Requests handled, by connector, method, outcome (allowed or an error code) and status class.",
            ),
            &["connector", "method", "outcome", "status_class"],
        )?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "tollgate_request_duration_seconds",
                "Time from request received to response headers sent.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["connector"],
        )?;
        let upstream_duration = HistogramVec::new(
            HistogramOpts::new(
                "tollgate_upstream_duration_seconds",
                "Time from request sent upstream to response headers received.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["connector"],
        )?;
        let blocked = IntCounterVec::new(
            Opts::new("tollgate_blocked_total", "Requests refused by policy, by connector and reason."),
            &["connector", "reason"],
        )?;
        let inflight = IntGauge::new("tollgate_inflight_requests", "Requests being handled now.")?;
        let store_up = IntGauge::new("tollgate_store_up", "1 when the token store answers, 0 when it does not.")?;
        let build_info =
            IntGaugeVec::new(Opts::new("tollgate_build_info", "Always 1; the version is a label."), &["version"])?;
        let token_cache = IntCounterVec::new(
            Opts::new("tollgate_token_cache_total", "Token lookups by tier (memory cache, store) and result."),
            &["tier", "result"],
        )?;
        let token_refresh = IntCounterVec::new(
            Opts::new(
                "tollgate_token_refresh_total",
                "Calls to token endpoints (refresh and client credentials) by result.",
            ),
            &["connector", "result"],
        )?;
        let token_refresh_duration = HistogramVec::new(
            HistogramOpts::new("tollgate_token_refresh_duration_seconds", "Time a token endpoint took to answer.")
                .buckets(LATENCY_BUCKETS.to_vec()),
            &["connector"],
        )?;
        let refresh_lock_wait = Histogram::with_opts(
            HistogramOpts::new(
                "tollgate_refresh_lock_wait_seconds",
                "Time spent waiting for a connection's refresh lock.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )?;
        let reauth_required = IntCounterVec::new(
            Opts::new(
                "tollgate_reauth_required_total",
                "Connections marked needs_reauth (transitions, so sums across replicas are right).",
            ),
            &["connector"],
        )?;
        let store_errors = IntCounterVec::new(
            Opts::new("tollgate_store_errors_total", "Token store operations that failed, by operation."),
            &["op"],
        )?;
        let discovery_up = IntGaugeVec::new(
            Opts::new(
                "tollgate_discovery_up",
                "1 when a connector's OAuth metadata (discovery, registration) is usable, 0 when not.",
            ),
            &["connector"],
        )?;
        registry.register(Box::new(discovery_up.clone()))?;
        let config_reloads = IntCounterVec::new(
            Opts::new(
                "tollgate_config_reloads_total",
                "Config reloads by result: success, or failure (the running config stays).",
            ),
            &["result"],
        )?;
        registry.register(Box::new(config_reloads.clone()))?;
        for result in ["success", "failure"] {
            config_reloads.with_label_values(&[result]);
        }
        registry.register(Box::new(token_cache.clone()))?;
        registry.register(Box::new(token_refresh.clone()))?;
        registry.register(Box::new(token_refresh_duration.clone()))?;
        registry.register(Box::new(refresh_lock_wait.clone()))?;
        registry.register(Box::new(reauth_required.clone()))?;
        registry.register(Box::new(store_errors.clone()))?;
        for (tier, result) in CACHE_RESULTS {
            token_cache.with_label_values(&[tier, result]);
        }
        for op in STORE_OPS {
            store_errors.with_label_values(&[op]);
        }
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(request_duration.clone()))?;
        registry.register(Box::new(upstream_duration.clone()))?;
        registry.register(Box::new(blocked.clone()))?;
        registry.register(Box::new(inflight.clone()))?;
        registry.register(Box::new(store_up.clone()))?;
        registry.register(Box::new(build_info.clone()))?;
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        store_up.set(1);
        let metrics = Metrics {
            registry,
            requests,
            request_duration,
            upstream_duration,
            blocked,
            inflight,
            store_up,
            build_info,
            token_cache,
            token_refresh,
            token_refresh_duration,
            refresh_lock_wait,
            reauth_required,
            store_errors,
            discovery_up,
            config_reloads,
        };
        for connector in std::iter::once(NO_CONNECTOR).chain(connectors) {
            metrics.zero(connector);
        }
        Ok(metrics)
    }

    /// Exports the closed label combinations of these connectors at zero (new connectors
    /// after a reload; existing series keep their values).
    pub fn zero_connectors<'a>(&self, connectors: impl IntoIterator<Item = &'a str>) {
        for connector in connectors {
            self.zero(connector);
        }
    }

    fn zero(&self, connector: &str) {
        for method in METHODS {
            for class in ["1xx", "2xx", "3xx", "4xx", "5xx"] {
                self.requests.with_label_values(&[connector, method, "allowed", class]);
            }
            for code in ErrorCode::ALL {
                for gateway in [false, true] {
                    let class = status_class(code.status(gateway).as_u16());
                    self.requests.with_label_values(&[connector, method, code.as_str(), class]);
                }
            }
        }
        for reason in BLOCKED_REASONS {
            self.blocked.with_label_values(&[connector, reason]);
        }
        self.request_duration.with_label_values(&[connector]);
        self.upstream_duration.with_label_values(&[connector]);
        if connector != NO_CONNECTOR {
            for result in REFRESH_RESULTS {
                self.token_refresh.with_label_values(&[connector, result]);
            }
            self.token_refresh_duration.with_label_values(&[connector]);
            self.reauth_required.with_label_values(&[connector]);
        }
    }

    /// The Prometheus text exposition of every family.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if TextEncoder::new().encode(&self.registry.gather(), &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}
