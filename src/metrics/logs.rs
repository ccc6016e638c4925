//! `tollgate_log_lines_dropped_total`: log lines dropped because stdout did not keep up
//! (crate::logging keeps the count; this collector reads it on each scrape).

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, Registry};

/// Reads [`crate::logging::dropped_lines`] when scraped.
struct DroppedLines {
    counter: IntCounter,
}

impl Collector for DroppedLines {
    fn desc(&self) -> Vec<&Desc> {
        self.counter.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let total = crate::logging::dropped_lines();
        let seen = self.counter.get();
        if total > seen {
            self.counter.inc_by(total - seen);
        }
        self.counter.collect()
    }
}

pub fn register(registry: &Registry) -> Result<(), prometheus::Error> {
    let counter = IntCounter::new(
        "tollgate_log_lines_dropped_total",
        "Log lines dropped because stdout did not take them fast enough (the buffer was full).",
    )?;
    registry.register(Box::new(DroppedLines { counter }))
}
