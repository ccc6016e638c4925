//! Keeps `callers.jwt.jwks_url` fetched: once when the running state is built, again when the
//! set's `Cache-Control: max-age` runs out (5 minutes without one), and when a JWT names a key
//! the set lacks (`caller/memo.rs` asks; at most once per 30 s). A failed fetch keeps the last
//! good set and is retried after 30 s, so an identity provider that is down does not lock
//! callers out. The fetch goes through the same resolver, dialer, TLS roots and address policy
//! as every upstream call (`callers.jwt.unsafe_allow_ranges` for an identity provider inside
//! the network).

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::config::jwks::{load_jwks, RemoteJwks};
use crate::config::{Config, JwtKey, JwtSettings};
use crate::net::connect::{tls_config, UpstreamConnector};
use crate::net::http::HttpClient;
use crate::net::{Dialer, Resolver};

/// Installs the fetch of `config`'s remote JWKS (if it has one) and starts keeping it fresh.
pub fn start(config: &Config, resolver: Arc<dyn Resolver>, dialer: Arc<dyn Dialer>) -> Result<(), String> {
    let Some(JwtSettings { key: JwtKey::Remote(remote), .. }) = &config.callers.jwt else { return Ok(()) };
    let tls = tokio_rustls::TlsConnector::from(Arc::new(tls_config(config.upstream.extra_ca_pem.as_deref())?));
    let connector = UpstreamConnector {
        resolver,
        dialer,
        policy: remote.addresses.clone(),
        tls,
        timeout: config.upstream.connect_timeout,
    };
    let http = HttpClient::new(vec![connector], config.refresh.token_endpoint_timeout);
    remote.set_fetch(Box::new(move |remote| {
        let http = http.clone();
        Box::pin(async move { fetch(&http, &remote).await })
    }));
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return Ok(()) };
    let weak: Weak<RemoteJwks> = Arc::downgrade(remote);
    runtime.spawn(async move {
        loop {
            // Ends when a reload replaced the config that owned this set.
            let Some(remote) = weak.upgrade() else { return };
            let due = remote.fresh_until().map_or(Duration::ZERO, |t| t.saturating_duration_since(Instant::now()));
            drop(remote);
            tokio::time::sleep(due).await;
            let Some(remote) = weak.upgrade() else { return };
            remote.refetch(false).await;
        }
    });
    Ok(())
}

async fn fetch(http: &HttpClient, remote: &RemoteJwks) {
    let request = http::Request::get(&remote.url).header("accept", "application/json").body(Vec::new());
    let answer = match request {
        Ok(request) => http.send(0, request).await.map_err(|e| e.to_string()),
        Err(_) => Err("the URL does not make a request".to_string()),
    };
    let outcome = answer.and_then(|response| {
        if response.status() != http::StatusCode::OK {
            return Err(format!("HTTP {}", response.status().as_u16()));
        }
        let max_age = max_age(response.headers());
        let text = String::from_utf8(response.into_body()).map_err(|_| "the answer is not UTF-8".to_string())?;
        load_jwks(&text).map(|keys| (keys, max_age))
    });
    match outcome {
        Ok((keys, max_age)) => {
            let before = remote.keys().iter().map(|k| k.kid.clone()).collect::<Vec<_>>();
            let after = keys.iter().map(|k| k.kid.clone()).collect::<Vec<_>>();
            if before != after {
                tracing::info!(url = %remote.url, keys = keys.len(), "the callers' JWKS was fetched; its key ids changed");
            }
            remote.install(keys, max_age);
        }
        Err(why) => {
            tracing::warn!(url = %remote.url, error = %why, "the callers' JWKS could not be fetched; the last good set stays in use");
            remote.failed(why);
        }
    }
}

/// `Cache-Control: max-age=N` (ignored with `no-store` / `no-cache`: fetched at the shortest age).
fn max_age(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get(http::header::CACHE_CONTROL)?.to_str().ok()?.to_ascii_lowercase();
    let mut age = None;
    for directive in value.split(',').map(str::trim) {
        if directive == "no-store" || directive == "no-cache" {
            return Some(Duration::ZERO);
        }
        if let Some(n) = directive.strip_prefix("max-age=") {
            age = n.trim_matches('"').parse::<u64>().ok().map(Duration::from_secs);
        }
    }
    age
}

#[cfg(test)]
mod tests {
    use super::max_age;

    #[test]
    fn cache_control_max_age() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(max_age(&headers), None);
        headers.insert("cache-control", "public, max-age=600".parse().unwrap());
        assert_eq!(max_age(&headers), Some(std::time::Duration::from_secs(600)));
        headers.insert("cache-control", "max-age=600, no-cache".parse().unwrap());
        assert_eq!(max_age(&headers), Some(std::time::Duration::ZERO));
        headers.insert("cache-control", "max-age=soon".parse().unwrap());
        assert_eq!(max_age(&headers), None);
    }
}
