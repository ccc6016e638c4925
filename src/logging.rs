//! Structured JSON logs on stdout: one object per line. The level comes from `TOLLGATE_LOG`
//! (`error`, `warn`, `info`, `debug`, `trace`; default `info`).

use tracing::level_filters::LevelFilter;

pub fn init() {
    let level =
        std::env::var("TOLLGATE_LOG").ok().and_then(|v| v.parse::<LevelFilter>().ok()).unwrap_or(LevelFilter::INFO);
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_max_level(level)
        .try_init();
}
