//! The wall clock, read in one place: Unix seconds for token expiry, link expiry and records.
//! Durations and deadlines use `tokio::time` instead, so tests can pause them.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix seconds now; a request reads it once and passes it on.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
