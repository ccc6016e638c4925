//! The invalidation feed: every replica subscribes to the channel its writes announce on
//! ([`CHANNEL`]) and drops what another replica changed from its own cache.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_core::Stream;

use super::link::Link;
use super::CHANNEL;
use crate::metrics::Metrics;
use crate::token::store::{Invalidation, InvalidationSink};

/// Follows the feed for as long as the process runs, subscribing again (with backoff) after
/// every interruption.
pub(super) fn follow(link: Arc<Link>, metrics: Metrics, sink: InvalidationSink) {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            match subscribe(&link).await {
                Some(mut stream) => {
                    backoff = Duration::from_millis(100);
                    // Messages may have been missed while unsubscribed: drop every cached entry.
                    sink(Invalidation::All);
                    while let Some(msg) = std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)).await {
                        if let Ok(id) = msg.get_payload::<String>() {
                            sink(Invalidation::Connection(id));
                        }
                    }
                    tracing::warn!("the token store invalidation feed was interrupted; reconnecting");
                }
                None => metrics.store_errors.with_label_values(&["subscribe"]).inc(),
            }
            // Cached tokens keep serving while Redis is away; the flush above runs when the
            // feed is back.
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    });
}

/// The invalidation feed from the first node that takes the subscription (any node of a
/// Cluster, the current primary under Sentinel).
async fn subscribe(link: &Link) -> Option<Pin<Box<redis::aio::PubSubStream>>> {
    for client in link.feed_clients() {
        let attempt = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(CHANNEL).await?;
            redis::RedisResult::Ok(pubsub)
        };
        if let Ok(Ok(pubsub)) = tokio::time::timeout(Duration::from_secs(2), attempt).await {
            return Some(Box::pin(pubsub.into_on_message()));
        }
    }
    None
}
