//! The CONNECT interception families: TLS handshakes inside tunnels and certificates minted.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

/// `tollgate_tunnel_handshakes_total` results.
pub const HANDSHAKE_RESULTS: [&str; 3] = ["full", "resumed", "failed"];

#[derive(Debug, Clone)]
pub struct TunnelMetrics {
    /// TLS handshakes inside CONNECT tunnels: full, resumed (a session ticket), failed.
    handshakes: IntCounterVec,
    /// Leaf certificates signed by the interception CA (one per host until it is re-minted).
    pub minted: IntCounter,
}

impl TunnelMetrics {
    pub fn register(registry: &Registry) -> Result<TunnelMetrics, prometheus::Error> {
        let handshakes = IntCounterVec::new(
            Opts::new(
                "tollgate_tunnel_handshakes_total",
                "TLS handshakes inside CONNECT tunnels by result: full, resumed (session ticket), failed.",
            ),
            &["result"],
        )?;
        registry.register(Box::new(handshakes.clone()))?;
        for result in HANDSHAKE_RESULTS {
            handshakes.with_label_values(&[result]);
        }
        let minted = IntCounter::new(
            "tollgate_tunnel_certificates_minted_total",
            "Leaf certificates the interception CA signed (cached per host, so not one per tunnel).",
        )?;
        registry.register(Box::new(minted.clone()))?;
        Ok(TunnelMetrics { handshakes, minted })
    }

    /// Counts one handshake: `Some(resumed)` when it completed, `None` when it failed.
    pub fn handshake(&self, outcome: Option<bool>) {
        let result = match outcome {
            Some(true) => "resumed",
            Some(false) => "full",
            None => "failed",
        };
        self.handshakes.with_label_values(&[result]).inc();
    }
}
