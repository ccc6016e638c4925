//! The durable work queue: webhook deliveries and revocations that must happen even if this
//! process restarts or the receiver is down. Every job lives in one record of the token store
//! (connector `tollgate`, principal `queue`), sealed like every stored value (a revocation
//! holds refresh tokens) and changed only by compare-and-swap on its version, so replicas
//! share the queue without losing or doubling a change. A replica *claims* due jobs for a
//! lease before running them; a claim that is never settled (the replica died) runs out and
//! the job is taken again: delivery is at least once.
//!
//! One record keeps a poll to one read. It suits the queue's size: jobs are small and leave as
//! soon as they succeed; a revocation of a whole connector is one job however many
//! connections it holds.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::store::{Expect, StoreError, TokenStore};
use super::{Connection, ConnectionKey};
use crate::secret::Secret;

/// A queued piece of work and its retry state.
#[derive(Clone, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub work: Work,
    /// Unix seconds when it was queued.
    pub queued_at: u64,
    /// Failed attempts so far.
    #[serde(default)]
    pub attempts: u32,
    /// Not run before this (Unix seconds).
    #[serde(default)]
    pub next_at: u64,
    /// Claimed by a replica until then (Unix seconds).
    #[serde(default)]
    pub claimed_until: u64,
    /// Why the last attempt failed (never a secret: an HTTP status or error code).
    #[serde(default)]
    pub last_error: Option<String>,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Work {
    /// One event to one webhook (named by URL; its secret comes from the running config).
    Deliver { webhook: String, event: Event },
    /// Tokens to revoke at a provider (RFC 7009).
    Revoke(Revocation),
}

/// Everything a revocation needs, kept with it: the connector may be gone by the time it runs.
#[derive(Clone, Serialize, Deserialize)]
pub struct Revocation {
    pub connector: String,
    pub endpoint: String,
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<String>,
    /// `client_secret_basic`, `client_secret_post` or `none`.
    pub auth_method: String,
    /// The connector's `unsafe_allow_ranges`, for the address the endpoint resolves to.
    #[serde(default)]
    pub allow_ranges: Vec<String>,
    /// What is left to revoke.
    pub grants: Vec<Grant>,
}

/// One connection's token to revoke.
#[derive(Clone, Serialize, Deserialize)]
pub struct Grant {
    pub principal: String,
    pub token: String,
    /// `refresh_token` or `access_token`.
    pub hint: String,
}

impl Job {
    pub fn new(work: Work, now: u64) -> Job {
        Job {
            id: super::store::owner_token(),
            work,
            queued_at: now,
            attempts: 0,
            next_at: now,
            claimed_until: 0,
            last_error: None,
        }
    }

    /// What the admin API shows: no token, no secret.
    pub fn view(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "id": self.id, "queued_at": self.queued_at, "attempts": self.attempts,
            "next_attempt_at": self.next_at, "last_error": self.last_error,
        });
        match &self.work {
            Work::Deliver { webhook, event } => {
                v["kind"] = "event".into();
                v["webhook"] = webhook.as_str().into();
                v["event"] = serde_json::json!({ "id": event.id, "type": event.kind, "connector": event.connector, "principal": event.principal });
            }
            Work::Revoke(r) => {
                v["kind"] = "revocation".into();
                v["connector"] = r.connector.as_str().into();
                v["endpoint"] = r.endpoint.as_str().into();
                v["principals"] = r.grants.iter().map(|g| g.principal.clone()).collect::<Vec<_>>().into();
            }
        }
        v
    }
}

/// What a webhook receives as the JSON body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// Unix seconds.
    pub time: u64,
    pub connector: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// Codes and times only (an error code, when a refresh token expires).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

impl Event {
    pub fn new(
        kind: &str,
        connector: &str,
        principal: Option<&str>,
        detail: Option<serde_json::Value>,
        now: u64,
    ) -> Event {
        Event {
            id: format!("evt_{}", super::store::owner_token()),
            kind: kind.to_string(),
            time: now,
            connector: connector.to_string(),
            principal: principal.map(str::to_string),
            detail,
        }
    }
}

/// How one claimed job ended.
pub enum Outcome {
    /// Done, or dropped for good: it leaves the queue.
    Done,
    /// Failed; try again at `next_at`, with what is left of the work.
    Retry { error: String, next_at: u64, rest: Work },
    /// Part done, nothing failed: the rest runs at the next round.
    Progress { rest: Work },
}

#[derive(Default, Serialize, Deserialize)]
struct Record {
    jobs: Vec<Job>,
}

#[derive(Debug, Clone)]
pub struct Queue {
    store: Arc<dyn TokenStore>,
}

fn key() -> ConnectionKey {
    ConnectionKey::new("tollgate", "queue")
}

impl Queue {
    pub fn new(store: Arc<dyn TokenStore>) -> Queue {
        Queue { store }
    }

    pub fn store(&self) -> &Arc<dyn TokenStore> {
        &self.store
    }

    /// Every job, due or not.
    pub async fn jobs(&self) -> Result<Vec<Job>, StoreError> {
        Ok(self.load().await?.0.jobs)
    }

    /// Adds jobs.
    pub async fn push(&self, jobs: Vec<Job>) -> Result<(), StoreError> {
        if jobs.is_empty() {
            return Ok(());
        }
        self.update(|record| {
            record.jobs.extend(jobs.iter().cloned());
            Some(())
        })
        .await
        .map(|_| ())
    }

    /// Claims up to `max` due jobs, unclaimed or whose claim ran out, until `now + lease`.
    pub async fn claim(&self, now: u64, lease: u64, max: usize) -> Result<Vec<Job>, StoreError> {
        let claimed = self
            .update(|record| {
                let mut claimed = Vec::new();
                for job in record.jobs.iter_mut().filter(|j| j.next_at <= now && j.claimed_until <= now).take(max) {
                    job.claimed_until = now + lease;
                    claimed.push(job.clone());
                }
                (!claimed.is_empty()).then_some(claimed)
            })
            .await?;
        Ok(claimed.unwrap_or_default())
    }

    /// Records how claimed jobs ended.
    pub async fn settle(&self, outcomes: Vec<(String, Outcome)>) -> Result<(), StoreError> {
        let outcomes = std::sync::Mutex::new(Some(outcomes));
        self.update(|record| {
            let guard = outcomes.lock().unwrap_or_else(|p| p.into_inner());
            let outcomes = guard.as_ref()?;
            for (id, outcome) in outcomes {
                let Some(at) = record.jobs.iter().position(|j| &j.id == id) else { continue };
                match outcome {
                    Outcome::Done => {
                        record.jobs.remove(at);
                    }
                    Outcome::Retry { error, next_at, rest } => {
                        let job = &mut record.jobs[at];
                        job.attempts += 1;
                        job.next_at = *next_at;
                        job.claimed_until = 0;
                        job.last_error = Some(error.clone());
                        job.work = rest.clone();
                    }
                    Outcome::Progress { rest } => {
                        let job = &mut record.jobs[at];
                        job.claimed_until = 0;
                        job.work = rest.clone();
                    }
                }
            }
            Some(())
        })
        .await
        .map(|_| ())
    }

    async fn load(&self) -> Result<(Record, u64), StoreError> {
        match self.store.get(&key()).await? {
            None => Ok((Record::default(), 0)),
            Some(stored) => {
                let record = serde_json::from_str(stored.access_token.expose())
                    .map_err(|e| StoreError::Corrupt(format!("the work queue: {e}")))?;
                Ok((record, stored.version))
            }
        }
    }

    /// Reads the record, lets `change` edit it (`None`: nothing to write), and writes it back
    /// if no one else changed it meanwhile; retried when someone did.
    async fn update<T>(&self, mut change: impl FnMut(&mut Record) -> Option<T>) -> Result<Option<T>, StoreError> {
        for _ in 0..16 {
            let (mut record, version) = self.load().await?;
            let Some(out) = change(&mut record) else { return Ok(None) };
            let text = serde_json::to_string(&record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let expect = if version == 0 { Expect::Absent } else { Expect::Version(version) };
            match self.store.put(&key(), Connection::new(Secret::new(text), None), expect, None).await {
                Ok(_) => return Ok(Some(out)),
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Unavailable("the work queue kept changing under this write".into()))
    }
}

/// The pause before attempt `attempts + 1`: `base` doubled per failed attempt, up to `max`.
pub fn backoff(base: std::time::Duration, max: std::time::Duration, attempts: u32) -> std::time::Duration {
    base.saturating_mul(1u32 << attempts.min(20)).min(max)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::token::store::memory::MemoryStore;

    fn delivery(n: u64) -> Work {
        let event = Event::new("connection.created", "github", Some("alice"), None, n);
        Work::Deliver { webhook: "https://hooks.test/x".into(), event }
    }

    #[tokio::test]
    async fn claims_are_leased_and_settled() {
        let queue = Queue::new(Arc::new(MemoryStore::default()));
        queue.push(vec![Job::new(delivery(1), 100), Job::new(delivery(2), 100)]).await.unwrap();
        let first = queue.claim(100, 30, 1).await.unwrap();
        assert_eq!(first.len(), 1);
        // The other job is still free; the claimed one is not, until its lease runs out.
        let second = queue.claim(100, 30, 8).await.unwrap();
        assert_eq!(second.len(), 1);
        assert_ne!(first[0].id, second[0].id);
        assert!(queue.claim(129, 30, 8).await.unwrap().is_empty());
        assert_eq!(queue.claim(130, 30, 8).await.unwrap().len(), 2, "expired leases are taken again");
        let rest = delivery(1);
        queue
            .settle(vec![
                (first[0].id.clone(), Outcome::Retry { error: "HTTP 503".into(), next_at: 200, rest }),
                (second[0].id.clone(), Outcome::Done),
            ])
            .await
            .unwrap();
        let jobs = queue.jobs().await.unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!((jobs[0].attempts, jobs[0].next_at, jobs[0].claimed_until), (1, 200, 0));
        assert!(queue.claim(199, 30, 8).await.unwrap().is_empty());
        assert_eq!(queue.claim(200, 30, 8).await.unwrap().len(), 1);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let (base, max) = (Duration::from_secs(1), Duration::from_secs(600));
        assert_eq!(backoff(base, max, 0), Duration::from_secs(1));
        assert_eq!(backoff(base, max, 3), Duration::from_secs(8));
        assert_eq!(backoff(base, max, 40), max);
    }
}
