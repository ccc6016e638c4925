//! JWKS documents: the public keys callers' JWTs are checked against, each with the one
//! algorithm its type pins (RS256 for RSA, ES256 for EC P-256). Parsed when the config loads;
//! `caller::jwt` verifies with them.

use std::fmt;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};

/// One public key from a JWKS document, with the algorithm it pins.
#[derive(Clone)]
pub struct PublicKey {
    pub kid: Option<String>,
    pub alg: Algorithm,
    pub(crate) key: DecodingKey,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey").field("kid", &self.kid).field("alg", &self.alg).finish()
    }
}

/// Parses a JWKS document. Keys other than RSA and EC P-256 are skipped (identity providers
/// publish several kinds); a set with none of those is refused.
pub fn load_jwks(text: &str) -> Result<Vec<PublicKey>, String> {
    let set: JwkSet = serde_json::from_str(text).map_err(|e| format!("not a JWKS document: {e}"))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let alg = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => Algorithm::ES256,
            _ => continue,
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("bad key: {e}"))?;
        keys.push(PublicKey { kid: jwk.common.key_id.clone(), alg, key });
    }
    if keys.is_empty() {
        return Err("the JWKS has no RSA (RS256) or EC P-256 (ES256) key".into());
    }
    Ok(keys)
}

/// A JWKS published by the callers' identity provider (`callers.jwt.jwks_url`): the last good
/// key set, when to fetch it again, and the hook that fetches it (installed by the running
/// state, which owns the HTTP client). Verification reads [`RemoteJwks::keys`]; a JWT that
/// names an unknown `kid` may trigger one fetch per [`UNKNOWN_KID_INTERVAL`].
pub struct RemoteJwks {
    pub url: String,
    /// Where the fetch may connect (`callers.jwt.unsafe_allow_ranges`).
    pub addresses: crate::domains::addr::AddressPolicy,
    keys: std::sync::RwLock<std::sync::Arc<Vec<PublicKey>>>,
    times: std::sync::Mutex<Times>,
    fetch: std::sync::OnceLock<Fetch>,
    /// One fetch at a time.
    gate: tokio::sync::Mutex<()>,
}

/// Fetches the document and installs it (or records why not).
pub type Fetch = Box<
    dyn Fn(std::sync::Arc<RemoteJwks>) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send + Sync,
>;

/// A JWT with an unknown `kid` fetches the set again at most this often.
pub const UNKNOWN_KID_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);
/// Without `Cache-Control: max-age`, the set is fetched again after this long; a `max-age`
/// is held within [`MIN_AGE`, `MAX_AGE`].
pub const DEFAULT_AGE: std::time::Duration = std::time::Duration::from_secs(300);
pub const MIN_AGE: std::time::Duration = std::time::Duration::from_secs(30);
pub const MAX_AGE: std::time::Duration = std::time::Duration::from_secs(86_400);

#[derive(Default)]
struct Times {
    fresh_until: Option<std::time::Instant>,
    /// The last fetch asked for by an unknown `kid`.
    last_kid_fetch: Option<std::time::Instant>,
    /// Fetches finished so far (a caller that waited for one in flight does not start another).
    fetches: u64,
    error: Option<String>,
}

impl fmt::Debug for RemoteJwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteJwks").field("url", &self.url).field("keys", &self.keys().len()).finish()
    }
}

impl RemoteJwks {
    pub fn new(url: String, addresses: crate::domains::addr::AddressPolicy) -> RemoteJwks {
        RemoteJwks {
            url,
            addresses,
            keys: Default::default(),
            times: Default::default(),
            fetch: std::sync::OnceLock::new(),
            gate: tokio::sync::Mutex::new(()),
        }
    }

    /// The last good key set (empty until the first fetch succeeds).
    pub fn keys(&self) -> std::sync::Arc<Vec<PublicKey>> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Why the last fetch failed, while the set in use is older than it should be.
    pub fn error(&self) -> Option<String> {
        self.times.lock().unwrap_or_else(|p| p.into_inner()).error.clone()
    }

    /// A fetched set, good for `max_age`.
    pub fn install(&self, keys: Vec<PublicKey>, max_age: Option<std::time::Duration>) {
        let age = max_age.map_or(DEFAULT_AGE, |a| a.clamp(MIN_AGE, MAX_AGE));
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = std::sync::Arc::new(keys);
        let mut times = self.times.lock().unwrap_or_else(|p| p.into_inner());
        times.fresh_until = Some(std::time::Instant::now() + age);
        times.error = None;
    }

    /// A fetch failed: the last good set stays; the next try comes after [`MIN_AGE`].
    pub fn failed(&self, why: String) {
        let mut times = self.times.lock().unwrap_or_else(|p| p.into_inner());
        times.fresh_until = Some(std::time::Instant::now() + MIN_AGE);
        times.error = Some(why);
    }

    /// When the set should be fetched again (now, if never fetched).
    pub fn fresh_until(&self) -> Option<std::time::Instant> {
        self.times.lock().unwrap_or_else(|p| p.into_inner()).fresh_until
    }

    pub fn set_fetch(&self, fetch: Fetch) {
        let _ = self.fetch.set(fetch);
    }

    /// Fetches now (a scheduled fetch: only if the set is due), one at a time. For an unknown `kid` (`unknown_kid`), a caller that waited
    /// while another fetch ran uses that one, and a new fetch starts only if the last one asked
    /// for by an unknown `kid` was at least [`UNKNOWN_KID_INTERVAL`] ago. Returns whether the
    /// key set may have changed since the call began.
    pub async fn refetch(self: &std::sync::Arc<Self>, unknown_kid: bool) -> bool {
        let Some(fetch) = self.fetch.get() else { return false };
        let seen = self.times.lock().unwrap_or_else(|p| p.into_inner()).fetches;
        let _one = self.gate.lock().await;
        {
            let mut times = self.times.lock().unwrap_or_else(|p| p.into_inner());
            if unknown_kid {
                if times.fetches != seen {
                    return true;
                }
                if times.last_kid_fetch.is_some_and(|t| t.elapsed() < UNKNOWN_KID_INTERVAL) {
                    return false;
                }
                if times.fetches > 0 {
                    // (The first fetch is the one every start makes, not a rotation.)
                    times.last_kid_fetch = Some(std::time::Instant::now());
                }
            } else if times.fresh_until.is_some_and(|t| t > std::time::Instant::now()) {
                // A scheduled fetch that another one already made unnecessary.
                return false;
            }
        }
        fetch(self.clone()).await;
        self.times.lock().unwrap_or_else(|p| p.into_inner()).fetches += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use base64::Engine;

    use super::*;

    fn one_key(kid: &str) -> Vec<PublicKey> {
        let pair = rcgen::KeyPair::generate().unwrap();
        let point = pair.public_key_raw();
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let text = serde_json::json!({ "keys": [{ "kty": "EC", "crv": "P-256", "kid": kid,
                   "x": b64(&point[1..33]), "y": b64(&point[33..65]) }] });
        load_jwks(&text.to_string()).unwrap()
    }

    #[tokio::test]
    async fn a_failed_fetch_keeps_the_last_good_set_and_unknown_kids_fetch_once_per_interval() {
        let remote = Arc::new(RemoteJwks::new("https://idp.test/jwks".into(), Default::default()));
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        remote.set_fetch(Box::new(move |remote| {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                match n {
                    0 => remote.install(one_key("a"), None),
                    _ => remote.failed("HTTP 503".into()),
                }
            })
        }));
        assert!(remote.refetch(false).await);
        assert_eq!(remote.keys()[0].kid.as_deref(), Some("a"));
        // Fresh: a scheduled fetch does nothing.
        assert!(!remote.refetch(false).await);
        // An unknown kid fetches; the provider is down; the set stays.
        assert!(remote.refetch(true).await);
        assert_eq!(remote.keys().len(), 1);
        assert_eq!(remote.error().as_deref(), Some("HTTP 503"));
        // Within the interval, another unknown kid does not fetch.
        assert!(!remote.refetch(true).await);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
