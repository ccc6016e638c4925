//! `tollgate keys status` and `tollgate keys rewrap`: finishing a key rotation
//! (`token/store/redis/rewrap.rs` does the work). Rotation, end to end: put the new key first
//! in `encryption_keys` and roll the replicas (new values are sealed with it, old ones still
//! open); run `keys rewrap`; when `keys status` shows no record under the old key, remove it.

use std::path::Path;
use std::process::ExitCode;

use super::{load_for, redis_store};

/// `keys status`: one JSON object, the stored values counted by key id.
pub async fn status(file: &Path) -> ExitCode {
    let config = match load_for("keys status", file) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let census = async { redis_store(&config)?.key_census().await.map_err(|e| e.to_string()) }.await;
    match census {
        Ok(census) => {
            let configured: Vec<&str> = config.encryption_keys.iter().map(|k| k.id.as_str()).collect();
            let body = serde_json::json!({
                "current_key": configured.first(),
                "configured_keys": configured,
                "records": census.records,
                "transient": census.transient,
                "unreadable": census.unreadable,
            });
            println!("{body}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tollgate keys status: {e}");
            ExitCode::from(1)
        }
    }
}

/// `keys rewrap`: progress on stderr, the totals as JSON on stdout; exit 1 if a record could
/// not be re-sealed (its key is missing from the config: keep that key until it is fixed).
pub async fn rewrap(file: &Path, batch: usize) -> ExitCode {
    let config = match load_for("keys rewrap", file) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let done = async {
        let store = redis_store(&config)?;
        store
            .rewrap(batch, |so_far| {
                eprintln!(
                    "rewrapped {} (already current {}, changed meanwhile {}, failed {})",
                    so_far.rewrapped, so_far.current, so_far.skipped, so_far.failed
                )
            })
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    match done {
        Ok(done) => {
            println!("{}", serde_json::json!(done));
            if done.failed > 0 {
                eprintln!(
                    "tollgate keys rewrap: {} records could not be re-sealed (their key is not in encryption_keys, or they do not open); keep the old keys",
                    done.failed
                );
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tollgate keys rewrap: {e}");
            ExitCode::from(1)
        }
    }
}
