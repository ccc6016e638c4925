//! The per-request record: filled in as the phases run, then written exactly once as one
//! audit log line and the request metrics, whether the request succeeded or failed.

use std::sync::Arc;

use http::{Method, StatusCode};
use tokio::time::Instant;

use super::error::ProxyError;
use super::State;
use crate::caller::Caller;
use crate::domains::Target;
use crate::metrics::{method_index, method_label, status_class, NO_CONNECTOR};
pub use crate::request_id::{next_request_id, RequestId};

#[derive(Debug)]
pub struct Record {
    pub request_id: RequestId,
    pub gateway: bool,
    start: Instant,
    method: Method,
    pub caller: Option<Arc<Caller>>,
    /// The chosen connector, as an index into the state's connectors.
    pub connector: Option<usize>,
    target: Option<Arc<Target>>,
    /// Set once the line and metrics are written; a record dropped without it was abandoned.
    finished: bool,
    state: Arc<State>,
}

impl Record {
    /// When the request started: the one monotonic clock read its phases share.
    pub fn started(&self) -> Instant {
        self.start
    }

    pub fn start(method: &Method, state: &Arc<State>) -> Record {
        state.metrics.inflight.inc();
        Record {
            request_id: next_request_id(),
            gateway: false,
            start: Instant::now(),
            method: method.clone(),
            caller: None,
            connector: None,
            target: None,
            finished: false,
            state: state.clone(),
        }
    }

    /// Keeps the normalized target for the audit line and error bodies; returns it shared.
    pub fn set_target(&mut self, target: Target) -> Arc<Target> {
        let target = Arc::new(target);
        self.target = Some(target.clone());
        target
    }

    pub fn connector_name(&self) -> Option<&str> {
        self.connector.and_then(|i| self.state.config.connectors.get(i)).map(|c| c.name.as_str())
    }

    /// The target without its query, for error bodies.
    pub fn url(&self) -> Option<String> {
        self.target.as_ref().map(|t| t.without_query())
    }

    /// Writes the audit line and the metrics. Consumes the record so it happens once.
    pub fn finish(mut self, status: StatusCode, error: Option<&ProxyError>) {
        self.finished = true;
        let metrics = &self.state.metrics;
        let series = self.connector.and_then(|i| self.state.series.get(i));
        let allowed = match (error, series) {
            (None, Some(series)) => series.allowed(method_index(&self.method), status.as_u16()),
            _ => None,
        };
        let connector = self.connector_name().unwrap_or(NO_CONNECTOR);
        let outcome = error.map(|e| e.code().as_str()).unwrap_or("allowed");
        match allowed {
            Some(counter) => counter.inc(),
            None => metrics
                .requests
                .with_label_values(&[connector, method_label(&self.method), outcome, status_class(status.as_u16())])
                .inc(),
        }
        let elapsed = self.start.elapsed().as_secs_f64();
        match series {
            Some(series) => series.request_duration.observe(elapsed),
            None => metrics.request_duration.with_label_values(&[connector]).observe(elapsed),
        }
        if let Some(reason) = error.and_then(|e| e.blocked_reason()) {
            metrics.blocked.with_label_values(&[connector, reason]).inc();
        }
        metrics.inflight.dec();
        self.audit(outcome, status.as_u16());
    }

    /// The one audit line of a request.
    fn audit(&self, decision: &str, status: u16) {
        if !tracing::enabled!(target: "tollgate::audit", tracing::Level::INFO) {
            return;
        }
        let host = self.target.as_ref().map(|t| t.authority());
        tracing::info!(
            target: "tollgate::audit",
            request_id = %self.request_id,
            principal = self.caller.as_ref().map_or("", |c| c.principal.name.as_str()),
            connector = self.connector_name().unwrap_or(""),
            method = %self.method,
            host = host.unwrap_or(""),
            path = self.target.as_ref().map_or("", |t| t.path.as_str()),
            decision,
            status,
            duration_ms = self.start.elapsed().as_secs_f64() * 1000.0,
            mode = if self.gateway { "gateway" } else { "forward" },
        );
    }
}

impl Drop for Record {
    /// The request was dropped before an answer was ready: its connection was torn down
    /// (a caller that merely stops sending is still answered, see `server::serve`). The
    /// request may already have reached the upstream, so it is still logged.
    fn drop(&mut self) {
        if !self.finished {
            self.state.metrics.inflight.dec();
            self.audit("caller_gone", 0);
        }
    }
}
