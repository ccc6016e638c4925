//! Finishing a key rotation: which key each stored value is sealed under (`tollgate keys
//! status`), and re-sealing every record under the first configured key (`tollgate keys
//! rewrap`) so an old key can be removed from the config.
//!
//! Rewrap runs online, beside replicas serving requests. It reads records in `SCAN` batches
//! (every master of a Cluster), opens each value sealed under an older key and writes it back
//! sealed under the current one with a compare-and-swap on the sealed value itself: a record
//! that a replica wrote in between is left alone (that write was sealed under the key the
//! writer uses) and counted as skipped. The version does not change and nothing is announced:
//! the plaintext is the same, so no cache needs to drop it. Rerunning resumes: records already
//! under the current key are not touched. Short-lived values (OAuth flow state, used tickets)
//! expire within minutes and are only counted.

use std::collections::BTreeMap;

use redis::Script;

use super::RedisStore;
use crate::token::crypto::Sealer;
use crate::token::store::StoreError;

/// Replaces the sealed value only if it is still the one that was read.
const REWRAP_SCRIPT: &str = r#"
if redis.call("HGET", KEYS[1], "d") ~= ARGV[1] then return 0 end
redis.call("HSET", KEYS[1], "d", ARGV[2])
return 1
"#;

/// How many stored values are sealed under each key id.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyCensus {
    /// Connection records (and Tollgate's own records), by key id.
    pub records: BTreeMap<String, u64>,
    /// Short-lived values, by key id; they expire by themselves.
    pub transient: BTreeMap<String, u64>,
    /// Values not in the sealed format.
    pub unreadable: u64,
}

/// What a rewrap did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rewrapped {
    /// Re-sealed under the current key.
    pub rewrapped: u64,
    /// Already under the current key.
    pub current: u64,
    /// Changed by someone else between the read and the write (already re-sealed by them).
    pub skipped: u64,
    /// Sealed under a key id the config no longer has, or not openable: left as they are.
    pub failed: u64,
}

impl RedisStore {
    /// Counts stored values by the key id they are sealed under.
    pub async fn key_census(&self) -> Result<KeyCensus, StoreError> {
        let mut census = KeyCensus::default();
        let records = self.run("list", self.link.scan("tollgate:{*}:conn")).await?;
        let mut conn = self.conn("list")?;
        for record in records {
            let sealed: Option<String> =
                self.run("list", redis::cmd("HGET").arg(&record).arg("d").query_async(&mut conn)).await?;
            match sealed.as_deref().and_then(Sealer::key_id_of) {
                Some(id) => *census.records.entry(id.to_string()).or_default() += 1,
                None => census.unreadable += 1,
            }
        }
        for name in self.run("list", self.link.scan("tollgate:transient:*")).await? {
            let sealed: Option<String> = self.run("list", redis::cmd("GET").arg(&name).query_async(&mut conn)).await?;
            match sealed.as_deref().and_then(Sealer::key_id_of) {
                Some(id) => *census.transient.entry(id.to_string()).or_default() += 1,
                // Expired between the scan and the read.
                None if sealed.is_none() => {}
                None => census.unreadable += 1,
            }
        }
        Ok(census)
    }

    /// Re-seals every record under the current key, `batch` records between progress calls.
    pub async fn rewrap(&self, batch: usize, mut progress: impl FnMut(&Rewrapped)) -> Result<Rewrapped, StoreError> {
        let script = Script::new(REWRAP_SCRIPT);
        let current = self.sealer.current_key_id().to_string();
        let records = self.run("list", self.link.scan("tollgate:{*}:conn")).await?;
        let mut conn = self.conn("put")?;
        let mut done = Rewrapped::default();
        for (i, record) in records.iter().enumerate() {
            let sealed: Option<String> =
                self.run("get", redis::cmd("HGET").arg(record).arg("d").query_async(&mut conn)).await?;
            let Some(sealed) = sealed else { continue };
            if Sealer::key_id_of(&sealed) == Some(current.as_str()) {
                done.current += 1;
                continue;
            }
            let resealed = match self.sealer.open(record, &sealed).and_then(|plain| self.sealer.seal(record, &plain)) {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(record = %record, error = %e, "a record could not be re-sealed; left as it is");
                    done.failed += 1;
                    continue;
                }
            };
            let mut invocation = script.key(record);
            invocation.arg(&sealed).arg(&resealed);
            let swapped: i64 = self.run("put", invocation.invoke_async(&mut conn)).await?;
            if swapped == 1 {
                done.rewrapped += 1;
            } else {
                done.skipped += 1;
            }
            if (i + 1) % batch.max(1) == 0 {
                progress(&done);
            }
        }
        Ok(done)
    }
}
