//! Every Prometheus family Tollgate exports, in one owned registry (SPEC section 8).
//!
//! Labels come only from closed sets or config names (connector): never principals, hosts,
//! paths or tokens. Closed label combinations are created at zero on start-up so dashboards
//! and alerts see them before the first event.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::error_code::ErrorCode;

mod logs;
mod sched;
mod tunnel;
pub use tunnel::TunnelMetrics;

/// Methods with their own label value; everything else is `OTHER`.
pub const METHODS: [&str; 10] =
    ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE", "OTHER"];

/// `tollgate_blocked_total` reasons.
pub const BLOCKED_REASONS: [&str; 6] =
    ["not_covered", "address_denied", "connector_forbidden", "pinned_host", "upgrade_refused", "echo_method"];

/// The connector label when no connector was chosen.
pub const NO_CONNECTOR: &str = "none";

/// Status classes, in the order [`status_class_index`] numbers them.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

pub fn method_label(method: &http::Method) -> &'static str {
    METHODS[method_index(method)]
}

/// The position of the method's label in [`METHODS`].
pub fn method_index(method: &http::Method) -> usize {
    METHODS.iter().position(|m| *m == method.as_str()).unwrap_or(METHODS.len() - 1)
}

pub fn status_class(status: u16) -> &'static str {
    STATUS_CLASSES[status_class_index(status)]
}

/// The position of the status's class in [`STATUS_CLASSES`].
pub fn status_class_index(status: u16) -> usize {
    match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    }
}

/// The series an allowed request of one connector updates, looked up once per config rather
/// than by label on every request.
#[derive(Debug, Clone)]
pub struct ConnectorSeries {
    /// `tollgate_requests_total{outcome="allowed"}`, by method then status class.
    allowed: Vec<IntCounter>,
    pub request_duration: Histogram,
    pub upstream_duration: Histogram,
}

impl ConnectorSeries {
    /// The allowed-requests counter for a method and status (see [`method_index`]).
    pub fn allowed(&self, method: usize, status: u16) -> Option<&IntCounter> {
        self.allowed.get(method * STATUS_CLASSES.len() + status_class_index(status))
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
    /// Redis Cluster: each master node's answer to the store's probe.
    pub store_node_up: IntGaugeVec,
    /// Writes holding a refresh token whose replica acknowledgements did not all come in time.
    pub store_replica_ack_timeouts: IntCounter,
    pub discovery_up: IntGaugeVec,
    /// 0 while a connector's client credentials are refused by its token endpoint.
    pub connector_healthy: IntGaugeVec,
    /// Webhook deliveries by event type and result (queued, delivered, failed, dropped).
    pub events: IntCounterVec,
    /// Revocations at providers by result (revoked, failed, dropped).
    pub revocations: IntCounterVec,
    /// Stored connections by connector and state, counted by the lifecycle sweep.
    pub connections: IntGaugeVec,
    /// Connections whose refresh token expires within `events.refresh_token_warning`.
    pub refresh_expiring: IntGaugeVec,
    pub config_reloads: IntCounterVec,
    pub tunnel: TunnelMetrics,
    /// `tollgate_token_cache_total{tier="memory",result="hit"}`, the common case.
    pub memory_hits: IntCounter,
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
pub const REFRESH_RESULTS: [&str; 4] = ["success", "permanent_failure", "connector_misconfigured", "transient_failure"];

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
        let store_node_up = IntGaugeVec::new(
            Opts::new(
                "tollgate_store_node_up",
                "Redis Cluster mode: 1 when a master node answers the store's probe, 0 when not.",
            ),
            &["node"],
        )?;
        registry.register(Box::new(store_node_up.clone()))?;
        let store_replica_ack_timeouts = IntCounter::new(
            "tollgate_store_replica_ack_timeouts_total",
            "Writes holding a refresh token that fewer replicas than store.replica_acks acknowledged in time.",
        )?;
        registry.register(Box::new(store_replica_ack_timeouts.clone()))?;
        let discovery_up = IntGaugeVec::new(
            Opts::new(
                "tollgate_discovery_up",
                "1 when a connector's OAuth metadata (discovery, registration) is usable, 0 when not.",
            ),
            &["connector"],
        )?;
        registry.register(Box::new(discovery_up.clone()))?;
        let connector_healthy = IntGaugeVec::new(
            Opts::new(
                "tollgate_connector_healthy",
                "0 while a connector's token endpoint refuses its client credentials (invalid_client), else 1.",
            ),
            &["connector"],
        )?;
        registry.register(Box::new(connector_healthy.clone()))?;
        let events = IntCounterVec::new(
            Opts::new(
                "tollgate_events_total",
                "Webhook deliveries by event type and result: queued, delivered, failed (retried), dropped (gave up).",
            ),
            &["type", "result"],
        )?;
        registry.register(Box::new(events.clone()))?;
        for kind in crate::config::events::EVENT_TYPES {
            for result in ["queued", "delivered", "failed", "dropped"] {
                events.with_label_values(&[kind, result]);
            }
        }
        let revocations = IntCounterVec::new(
            Opts::new(
                "tollgate_revocations_total",
                "Tokens revoked at providers (RFC 7009) by result: revoked, failed (retried), dropped (gave up).",
            ),
            &["result"],
        )?;
        registry.register(Box::new(revocations.clone()))?;
        for result in ["revoked", "failed", "dropped"] {
            revocations.with_label_values(&[result]);
        }
        let connections = IntGaugeVec::new(
            Opts::new(
                "tollgate_connections",
                "Stored connections by connector, state (connected, needs_reauth, revoked) and health (healthy, unhealthy, unknown), counted by the lifecycle sweep.",
            ),
            &["connector", "state", "health"],
        )?;
        registry.register(Box::new(connections.clone()))?;
        let refresh_expiring = IntGaugeVec::new(
            Opts::new(
                "tollgate_connections_refresh_expiring",
                "Connections whose refresh token expires within events.refresh_token_warning (7 days by default).",
            ),
            &["connector"],
        )?;
        registry.register(Box::new(refresh_expiring.clone()))?;
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
        let memory_hits = token_cache.with_label_values(&["memory", "hit"]);
        let tunnel = TunnelMetrics::register(&registry)?;
        logs::register(&registry)?;
        sched::register(&registry)?;
        let metrics = Metrics {
            memory_hits,
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
            store_node_up,
            store_replica_ack_timeouts,
            discovery_up,
            connector_healthy,
            events,
            revocations,
            connections,
            refresh_expiring,
            config_reloads,
            tunnel,
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

    /// The per-connector series of `connector` (created at zero if new).
    pub fn series(&self, connector: &str) -> ConnectorSeries {
        let allowed = METHODS
            .iter()
            .flat_map(|method| {
                STATUS_CLASSES
                    .iter()
                    .map(move |class| self.requests.with_label_values(&[connector, method, "allowed", class]))
            })
            .collect();
        ConnectorSeries {
            allowed,
            request_duration: self.request_duration.with_label_values(&[connector]),
            upstream_duration: self.upstream_duration.with_label_values(&[connector]),
        }
    }

    fn zero(&self, connector: &str) {
        for method in METHODS {
            for class in STATUS_CLASSES {
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
            self.connections.with_label_values(&[connector, "connected", "unknown"]);
            self.refresh_expiring.with_label_values(&[connector]);
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
