//! Caller JWTs checked against the identity provider's published JWKS (`callers.jwt.jwks_url`),
//! served over HTTPS by a local server: the set is fetched at start and honoured by its
//! `Cache-Control`; when the provider rotates its signing key while requests flow, the first
//! JWT with the new `kid` fetches the set again and no request fails; a `kid` the provider
//! never published is refused without fetching again within the interval.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use common::*;
use http::Response;

struct Signer {
    kid: String,
    pair: rcgen::KeyPair,
}

impl Signer {
    fn new(kid: &str) -> Signer {
        Signer { kid: kid.into(), pair: rcgen::KeyPair::generate().unwrap() }
    }

    /// The public half as a JWK (EC P-256: x and y from the uncompressed point).
    fn jwk(&self) -> serde_json::Value {
        let point = self.pair.public_key_raw();
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        serde_json::json!({ "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": self.kid,
                            "x": b64(&point[1..33]), "y": b64(&point[33..65]) })
    }

    fn token(&self, sub: &str) -> String {
        let exp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 600;
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        let key = jsonwebtoken::EncodingKey::from_ec_der(&self.pair.serialize_der());
        jsonwebtoken::encode(&header, &serde_json::json!({ "sub": sub, "aud": "tollgate", "exp": exp }), &key).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_signing_key_is_fetched_once_and_no_request_fails() {
    let ca = TestCa::new(&["idp.test", "api.test"]);
    let (old, new, forged) = (Signer::new("key-1"), Signer::new("key-2"), Signer::new("key-9"));
    let published = Arc::new(Mutex::new(serde_json::json!({ "keys": [old.jwk()] })));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (set, count) = (published.clone(), fetches.clone());
    let idp = Upstream::with(&ca, move |_req| {
        let body = set.lock().unwrap().to_string();
        count.fetch_add(1, Ordering::SeqCst);
        async move {
            let mut r = Response::new(full(body));
            r.headers_mut().insert("content-type", "application/json".parse().unwrap());
            r.headers_mut().insert("cache-control", "public, max-age=3600".parse().unwrap());
            r
        }
    })
    .await;
    let api = Upstream::ok(&ca).await;
    let yaml = format!(
        r#"
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
admin_tokens: ["admin-secret-token"]
encryption_keys: [{{ id: k1, secret: "{KEY}" }}]
callers:
  jwt:
    audience: tollgate
    jwks_url: https://idp.test:{idp}/jwks.json
    unsafe_allow_ranges: ["127.0.0.0/8"]
upstream: {{ extra_ca_file: {ca}, connect_timeout: "2s", response_timeout: "5s" }}
connectors:
  - name: api
    token: api-key-0042
    allowed_domains: ["https://api.test:{port}/*"]
"#,
        idp = idp.port,
        ca = ca.ca_file.path().display(),
        port = api.port
    );
    let proxy = TestProxy::start(&yaml).await;
    let url = format!("https://api.test:{}/x", api.port);
    let addr = proxy.addr();
    let call = move |token: String| {
        let url = url.clone();
        async move { get(addr, &url, &[("proxy-authorization", &format!("Bearer {token}"))]).await.status }
    };

    // The first fetch runs when Tollgate starts.
    let deadline = Instant::now() + Duration::from_secs(10);
    while call(old.token("alice")).await != 200 {
        assert!(Instant::now() < deadline, "the JWKS was never fetched");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 1);

    // Requests flow; the provider publishes key-2 and starts signing with it.
    let use_new = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let tokens = (old.token("alice"), new.token("alice"));
    let flow = {
        let (use_new, stop, call) = (use_new.clone(), stop.clone(), call.clone());
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let token = if use_new.load(Ordering::SeqCst) { tokens.1.clone() } else { tokens.0.clone() };
                statuses.push(call(token).await);
            }
            statuses
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    *published.lock().unwrap() = serde_json::json!({ "keys": [old.jwk(), new.jwk()] });
    use_new.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let statuses = flow.await.unwrap();
    assert!(statuses.len() > 10, "too few requests flowed: {}", statuses.len());
    assert!(statuses.iter().all(|s| *s == 200), "a request failed across the rotation: {statuses:?}");
    assert_eq!(fetches.load(Ordering::SeqCst), 2, "one fetch at start, one for the new kid");

    // A kid the provider never published: refused, and no fetch within the interval.
    for _ in 0..5 {
        assert_eq!(call(forged.token("mallory")).await, 407);
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
    // Both published keys keep working.
    assert_eq!(call(old.token("bob")).await, 200);
    assert_eq!(call(new.token("bob")).await, 200);
}
