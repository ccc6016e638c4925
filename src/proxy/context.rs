//! The per-request record: filled in as the phases run, then written exactly once as one
//! audit log line and the request metrics, whether the request succeeded or failed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use http::{Method, StatusCode};
use tokio::time::Instant;

use super::error::ProxyError;
use crate::domains::Target;
use crate::metrics::{method_label, status_class, Metrics, NO_CONNECTOR};

/// A process-unique, unguessable-enough request id: a random per-process prefix and a counter.
pub fn next_request_id() -> String {
    static PREFIX: OnceLock<u32> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    let prefix = PREFIX.get_or_init(|| {
        let mut bytes = [0u8; 4];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
        u32::from_be_bytes(bytes)
    });
    format!("{prefix:08x}{:012x}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

#[derive(Debug)]
pub struct Record {
    pub request_id: String,
    pub gateway: bool,
    start: Instant,
    method: Method,
    pub principal: Option<String>,
    pub connector: Option<String>,
    host: Option<String>,
    path: Option<String>,
    /// The target without its query, for error bodies.
    pub url: Option<String>,
    /// Set once the line and metrics are written; a record dropped without it was abandoned.
    finished: bool,
    metrics: Metrics,
}

impl Record {
    pub fn start(method: &Method, metrics: &Metrics) -> Record {
        metrics.inflight.inc();
        Record {
            request_id: next_request_id(),
            gateway: false,
            start: Instant::now(),
            method: method.clone(),
            principal: None,
            connector: None,
            host: None,
            path: None,
            url: None,
            finished: false,
            metrics: metrics.clone(),
        }
    }

    pub fn set_target(&mut self, target: &Target) {
        self.host = Some(target.authority());
        self.path = Some(target.path.clone());
        self.url = Some(target.without_query());
    }

    /// Writes the audit line and the metrics. Consumes the record so it happens once.
    pub fn finish(mut self, status: StatusCode, error: Option<&ProxyError>) {
        self.finished = true;
        let metrics = &self.metrics;
        let connector = self.connector.as_deref().unwrap_or(NO_CONNECTOR);
        let outcome = error.map(|e| e.code().as_str()).unwrap_or("allowed");
        metrics
            .requests
            .with_label_values(&[connector, method_label(&self.method), outcome, status_class(status.as_u16())])
            .inc();
        metrics.request_duration.with_label_values(&[connector]).observe(self.start.elapsed().as_secs_f64());
        if let Some(reason) = error.and_then(|e| e.blocked_reason()) {
            metrics.blocked.with_label_values(&[connector, reason]).inc();
        }
        metrics.inflight.dec();
        self.audit(outcome, status.as_u16());
    }

    /// The one audit line of a request.
    fn audit(&self, decision: &str, status: u16) {
        tracing::info!(
            target: "tollgate::audit",
            request_id = %self.request_id,
            principal = self.principal.as_deref().unwrap_or(""),
            connector = self.connector.as_deref().unwrap_or(""),
            method = %self.method,
            host = self.host.as_deref().unwrap_or(""),
            path = self.path.as_deref().unwrap_or(""),
            decision,
            status,
            duration_ms = self.start.elapsed().as_secs_f64() * 1000.0,
            mode = if self.gateway { "gateway" } else { "forward" },
        );
    }
}

impl Drop for Record {
    /// The caller went away before an answer was ready: hyper dropped the request. The
    /// request may already have reached the upstream, so it is still logged.
    fn drop(&mut self) {
        if !self.finished {
            self.metrics.inflight.dec();
            self.audit("caller_gone", 0);
        }
    }
}
