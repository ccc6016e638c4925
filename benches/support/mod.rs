//! What the load generators under `benches/` (`tunnel_load`, `paced_load`) share: their
//! command lines, their start, what their connections saw, and their percentiles.

use std::time::Instant;

/// The command line after the program's name (cargo's own `--bench` left out), taken one flag
/// at a time.
pub struct Argv(Vec<String>);

impl Argv {
    /// `None` when there are no arguments: `cargo bench` runs every bench target that way.
    pub fn from_env() -> Option<Argv> {
        let argv: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
        (!argv.is_empty()).then_some(Argv(argv))
    }

    /// The value after `flag`, taken off the command line.
    pub fn take(&mut self, flag: &str) -> Option<String> {
        let at = self.0.iter().position(|a| a == flag)?;
        let value = self.0.get(at + 1).cloned();
        self.0.drain(at..(at + 2).min(self.0.len()));
        value
    }

    /// The number after `flag`, or `default` when it is not given.
    pub fn number(&mut self, flag: &str, default: f64) -> Result<f64, String> {
        self.take(flag).map_or(Ok(default), |v| v.parse::<f64>().map_err(|e| format!("{flag}: {e}")))
    }

    /// An error naming whatever was not taken.
    pub fn finish(self) -> Result<(), String> {
        if self.0.is_empty() {
            return Ok(());
        }
        Err(format!("unknown arguments: {}", self.0.join(" ")))
    }
}

/// Parses the command line with `parse` and builds a single-threaded runtime. Without
/// arguments (`cargo bench` running every target) it says so and returns `None`; a bad
/// command line or a runtime that cannot start ends the process with the usage.
pub fn start<A>(
    name: &str,
    usage: &str,
    parse: impl FnOnce(Argv) -> Result<A, String>,
) -> Option<(A, tokio::runtime::Runtime)> {
    let Some(argv) = Argv::from_env() else {
        eprintln!("{name}: no target given; usage: {usage}");
        return None;
    };
    let args = match parse(argv) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{name}: {e}\nusage: {usage}");
            std::process::exit(64);
        }
    };
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => Some((args, runtime)),
        Err(e) => {
            eprintln!("{name}: runtime: {e}");
            std::process::exit(70);
        }
    }
}

/// What one connection (or all of a target's) saw: each answer's latency, and the errors.
#[derive(Default)]
pub struct Seen {
    pub latencies_us: Vec<u32>,
    pub errors: u64,
    pub first_error: Option<String>,
}

impl Seen {
    /// An answer to a request sent at `started`.
    pub fn answered(&mut self, started: Instant) {
        self.latencies_us.push(started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
    }

    pub fn error(&mut self, e: String) {
        self.errors += 1;
        self.first_error.get_or_insert(e);
    }

    /// Takes in what another connection saw.
    pub fn absorb(&mut self, other: Seen) {
        self.latencies_us.extend(other.latencies_us);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    /// Requests, errors, req/s over `seconds`, p50 and p99 in ms: the start of each JSON line.
    /// Leaves the latencies sorted, for more percentiles.
    pub fn summary(&mut self, seconds: f64) -> serde_json::Map<String, serde_json::Value> {
        self.latencies_us.sort_unstable();
        let all = &self.latencies_us;
        let serde_json::Value::Object(map) = serde_json::json!({
            "requests": all.len(),
            "errors": self.errors,
            "first_error": self.first_error.clone().unwrap_or_default(),
            "seconds": seconds,
            "rps": all.len() as f64 / seconds,
            "p50_ms": percentile(all, 0.50),
            "p99_ms": percentile(all, 0.99),
        }) else {
            return serde_json::Map::new();
        };
        map
    }
}

/// The `p` quantile of `sorted` microseconds, in milliseconds (0 when empty).
pub fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    f64::from(sorted[at]) / 1000.0
}
