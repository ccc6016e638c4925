//! Runs the durable queue (`token/queue.rs`) on every replica: each round claims the jobs
//! that are due, delivers events to webhooks (signed, `events.retry_backoff` doubling up to
//! `events.retry_max`) and revokes tokens at providers (RFC 7009), then settles them. A round
//! runs every second, and at once when something is queued here. Events that waited in
//! memory while the store was down are queued first. Every fifth round it also writes the
//! connection health noted from traffic (`token/observed.rs`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Shared;
use crate::clock::unix_now;
use crate::config::connector::AuthMethod;
use crate::config::Config;
use crate::domains::addr::{AddressPolicy, IpNet};
use crate::secret::Secret;
use crate::token::endpoint::{revoke, RevokeClient};
use crate::token::events::{event_label, signature};
use crate::token::queue::{backoff, Job, Outcome, Revocation, Work};

/// Jobs claimed per round, and how long a claim holds.
const BATCH: usize = 16;
const LEASE_SECS: u64 = 120;
/// Tokens revoked per job per round (a connector's revocation continues next round).
const GRANTS_PER_ROUND: usize = 50;

/// Connection health noted from traffic is written every this many rounds.
const HEALTH_EVERY: u32 = 5;

pub(crate) async fn run(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut round: u32 = 0;
    loop {
        let events = shared.base.events.clone();
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = events.wake.notified() => {}
            _ = shutdown.changed() => {
                // What traffic said of connections is not lost on a clean stop.
                shared.current().broker.flush_health().await;
                return;
            }
        }
        round = round.wrapping_add(1);
        if round % HEALTH_EVERY == 0 {
            shared.current().broker.flush_health().await;
        }
        events.flush_backlog().await;
        let now = unix_now();
        let jobs = match events.queue().claim(now, LEASE_SECS, BATCH).await {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::debug!(error = %e, "the work queue cannot be read now");
                continue;
            }
        };
        if jobs.is_empty() {
            continue;
        }
        let config = shared.current().config.clone();
        let mut runs = tokio::task::JoinSet::new();
        for job in jobs {
            let (shared, config) = (shared.clone(), config.clone());
            runs.spawn(async move {
                let outcome = run_job(&shared, &config, &job).await;
                (job.id, outcome)
            });
        }
        let mut outcomes = Vec::new();
        while let Some(done) = runs.join_next().await {
            // A job whose task panicked stays claimed; its lease runs out and it runs again.
            if let Ok(outcome) = done {
                outcomes.push(outcome);
            }
        }
        if let Err(e) = events.queue().settle(outcomes).await {
            // The claims run out and the jobs are taken again: at least once.
            tracing::warn!(error = %e, "finished jobs could not be recorded; they will run again");
        }
    }
}

async fn run_job(shared: &Shared, config: &Config, job: &Job) -> Outcome {
    let settings = &config.events;
    let failed = |error: String, rest: Work| {
        let now = unix_now();
        if now.saturating_sub(job.queued_at) >= settings.give_up_after.as_secs() {
            return None;
        }
        let pause = backoff(settings.retry_backoff, settings.retry_max, job.attempts);
        Some(Outcome::Retry { error, next_at: now + pause.as_secs().max(1), rest })
    };
    let metrics = &shared.base.metrics;
    match &job.work {
        Work::Deliver { webhook, event } => {
            let label = event_label(&event.kind);
            let Some(hook) = shared.base.events.webhook(webhook) else {
                tracing::warn!(event = %event.kind, id = %event.id, "the webhook is no longer configured; the event is dropped");
                metrics.events.with_label_values(&[label, "dropped"]).inc();
                return Outcome::Done;
            };
            match deliver(shared, config, &hook.url, &hook.addresses, &hook.secret, event).await {
                Ok(()) => {
                    metrics.events.with_label_values(&[label, "delivered"]).inc();
                    tracing::info!(event = %event.kind, id = %event.id, attempts = job.attempts + 1, "event delivered");
                    Outcome::Done
                }
                Err(error) => {
                    metrics.events.with_label_values(&[label, "failed"]).inc();
                    match failed(error.clone(), job.work.clone()) {
                        Some(retry) => {
                            tracing::warn!(event = %event.kind, id = %event.id, %error, "event delivery failed; retrying");
                            retry
                        }
                        None => {
                            metrics.events.with_label_values(&[label, "dropped"]).inc();
                            tracing::error!(event = %event.kind, id = %event.id, %error, "event delivery gave up after events.give_up_after");
                            Outcome::Done
                        }
                    }
                }
            }
        }
        Work::Revoke(revocation) => {
            let (rest, error) = revoke_some(shared, config, revocation).await;
            match (rest.grants.is_empty(), error) {
                (true, _) => Outcome::Done,
                (false, None) => Outcome::Progress { rest: Work::Revoke(rest) },
                (false, Some(error)) => match failed(error.clone(), Work::Revoke(rest)) {
                    Some(retry) => {
                        tracing::warn!(connector = %revocation.connector, %error, "revocation failed; retrying");
                        retry
                    }
                    None => {
                        metrics.revocations.with_label_values(&["dropped"]).inc();
                        tracing::error!(connector = %revocation.connector, %error, "revocation gave up after events.give_up_after; the provider may still honour the grant");
                        Outcome::Done
                    }
                },
            }
        }
    }
}

async fn deliver(
    shared: &Shared,
    config: &Config,
    url: &str,
    policy: &AddressPolicy,
    secret: &Secret,
    event: &crate::token::events::Event,
) -> Result<(), String> {
    let http = shared.http_client(config, policy.clone())?;
    let body = serde_json::to_vec(event).map_err(|e| e.to_string())?;
    let sent_at = unix_now();
    let request = http::Request::post(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header("tollgate-event-id", event.id.as_str())
        .header("tollgate-event-type", event.kind.as_str())
        .header("tollgate-signature", signature(secret.expose().as_bytes(), sent_at, &body))
        .body(body)
        .map_err(|_| "the webhook URL does not make a request".to_string())?;
    let answer = http.send(0, request).await.map_err(|e| e.to_string())?;
    if answer.status().is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {}", answer.status().as_u16()))
    }
}

/// Revokes up to [`GRANTS_PER_ROUND`] of the revocation's tokens; returns what is left and
/// the last error, if any failed.
async fn revoke_some(shared: &Shared, config: &Config, revocation: &Revocation) -> (Revocation, Option<String>) {
    let mut rest = revocation.clone();
    let ranges = revocation.allow_ranges.iter().filter_map(|r| r.parse::<IpNet>().ok()).collect();
    let http = match shared.http_client(config, AddressPolicy::new(ranges)) {
        Ok(http) => http,
        Err(e) => return (rest, Some(e)),
    };
    let secret = revocation.client_secret.clone().map(Secret::new);
    let revoke_client = RevokeClient {
        endpoint: &revocation.endpoint,
        client_id: &revocation.client_id,
        client_secret: secret.as_ref(),
        auth_method: match revocation.auth_method.as_str() {
            "client_secret_basic" => AuthMethod::ClientSecretBasic,
            "client_secret_post" => AuthMethod::ClientSecretPost,
            _ => AuthMethod::None,
        },
    };
    let metrics = &shared.base.metrics;
    let mut kept = Vec::new();
    let mut error = None;
    let take = rest.grants.len().min(GRANTS_PER_ROUND);
    let later = rest.grants.split_off(take);
    for grant in rest.grants.drain(..) {
        match revoke(&http, 0, &revoke_client, &grant.token, &grant.hint).await {
            Ok(()) => {
                metrics.revocations.with_label_values(&["revoked"]).inc();
                tracing::info!(connector = %revocation.connector, principal = %grant.principal, "token revoked at the provider");
            }
            Err(e) => {
                metrics.revocations.with_label_values(&["failed"]).inc();
                error = Some(e);
                kept.push(grant);
            }
        }
    }
    kept.extend(later);
    rest.grants = kept;
    (rest, error)
}
