//! What the load generators under `benches/` (`tunnel_load`, `paced_load`) share: their
//! command lines, their start, and their percentiles.

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

/// The `p` quantile of `sorted` microseconds, in milliseconds (0 when empty).
pub fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    f64::from(sorted[at]) / 1000.0
}
