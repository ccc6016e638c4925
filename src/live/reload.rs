//! Config reload: on SIGHUP and whenever the file's contents change (checked every two
//! seconds, so it works on ConfigMap volumes whose symlinks are swapped). A file that does not
//! load keeps the running config; the error is logged and counted
//! (`tollgate_config_reloads_total{result="failure"}`). Requests in flight finish on the
//! config they started with. A reload (parsing, validating, compiling) runs on the blocking
//! pool, so a large config never holds up a thread that serves requests.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::Shared;
use crate::config::{load_file, Environment};

/// How often the file is checked for changes.
const POLL: Duration = Duration::from_secs(2);

/// Loads the file and applies it; `Err` says why the running config stays.
pub fn reload_file(shared: &Shared, path: &Path, env: &Environment) -> Result<(), String> {
    let result = load_file(path, env)
        .map_err(|e| e.to_string())
        .and_then(|config| shared.apply(config).map_err(|e| e.to_string()));
    shared.count_reload(result.is_ok());
    match &result {
        Ok(()) => tracing::info!(path = %path.display(), "configuration reloaded"),
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "configuration reload failed; the running configuration stays")
        }
    }
    result
}

fn digest(path: &Path) -> Option<Vec<u8>> {
    let bytes = std::fs::read(path).ok()?;
    Some(ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref().to_vec())
}

/// Watches `path` for changes and SIGHUP until the process ends.
pub fn watch(shared: Arc<Shared>, path: PathBuf) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut last = digest(&path);
        loop {
            let signalled = async {
                match hangup.as_mut() {
                    Some(h) => h.recv().await.is_some(),
                    None => std::future::pending().await,
                }
            };
            let by_signal = tokio::select! {
                _ = signalled => true,
                _ = tokio::time::sleep(POLL) => false,
            };
            // The check reads and hashes a file of a few KiB; parsing and compiling a large
            // config take milliseconds, so a reload runs on the blocking pool, never on a
            // thread that serves requests.
            let now = digest(&path);
            if by_signal || (now.is_some() && now != last) {
                last = now;
                let (shared, path) = (shared.clone(), path.clone());
                let _ = tokio::task::spawn_blocking(move || reload_file(&shared, &path, &Environment::process())).await;
            }
        }
    })
}
