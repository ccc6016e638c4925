//! Caller identity: JWTs from a JWKS file (ES256, algorithm pinned by the key), issuer and
//! required-claim checks, API keys, the Basic username and the JWT `connector` claim choosing a connector.

mod common;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use common::*;

fn connectors(port: u16) -> String {
    format!(
        r#"
connectors:
  - name: weather
    token: "weather-key"
    allowed_domains: ["https://api.shared.test:{port}/*"]
  - name: weather2
    token: "weather2-key"
    allowed_domains: ["https://api.shared.test:{port}/*"]
"#
    )
}

fn es256_keys() -> (jsonwebtoken::EncodingKey, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let raw = key.public_key_raw();
    assert_eq!(raw.len(), 65, "uncompressed P-256 point");
    let jwks = serde_json::json!({ "keys": [{
        "kty": "EC", "crv": "P-256", "kid": "caller-1", "use": "sig", "alg": "ES256",
        "x": URL_SAFE_NO_PAD.encode(&raw[1..33]), "y": URL_SAFE_NO_PAD.encode(&raw[33..]),
    }]});
    (jsonwebtoken::EncodingKey::from_ec_der(&key.serialize_der()), jwks.to_string())
}

fn sign(
    alg: jsonwebtoken::Algorithm,
    kid: Option<&str>,
    claims: serde_json::Value,
    key: &jsonwebtoken::EncodingKey,
) -> String {
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

fn exp() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 600
}

#[tokio::test]
async fn es256_from_a_jwks_file_with_the_algorithm_pinned() {
    let ca = TestCa::new(&["api.shared.test"]);
    let upstream = Upstream::ok(&ca).await;
    let (key, jwks) = es256_keys();
    let jwks_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(jwks_file.path(), &jwks).unwrap();
    let yaml = base_config(&ca).replace(
        &format!("    hs256_secret: \"{CALLER_SECRET}\""),
        &format!(
            "    jwks_file: {}\n    issuer: https://agents.test\n    required_claims: {{ tenant: acme, scope: tools }}",
            jwks_file.path().display()
        ),
    ) + &connectors(upstream.port);
    let proxy = TestProxy::start(&yaml).await;
    let url = format!("https://api.shared.test:{}/x", upstream.port);
    let claims = serde_json::json!({ "sub": "alice", "aud": "tollgate", "exp": exp(), "iss": "https://agents.test",
                                     "connector": "weather2", "tenant": "acme", "scope": ["read", "tools"] });
    let good = sign(jsonwebtoken::Algorithm::ES256, Some("caller-1"), claims.clone(), &key);
    let ok = get(proxy.addr(), &url, &[("proxy-authorization", &bearer(&good))]).await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    assert_eq!(upstream.requests()[0].headers["authorization"], "Bearer weather2-key", "the connector claim chose");

    // HS256 keyed with the public JWKS text: the classic algorithm-confusion forgery.
    let confused = sign(
        jsonwebtoken::Algorithm::HS256,
        Some("caller-1"),
        claims.clone(),
        &jsonwebtoken::EncodingKey::from_secret(jwks.as_bytes()),
    );
    let mut wrong_issuer = claims.clone();
    wrong_issuer["iss"] = "https://elsewhere.test".into();
    let wrong_issuer = sign(jsonwebtoken::Algorithm::ES256, Some("caller-1"), wrong_issuer, &key);
    let unknown_kid = sign(jsonwebtoken::Algorithm::ES256, Some("other"), claims.clone(), &key);
    // Required claims: a different tenant, a scope list without "tools", no tenant at all.
    let mut other_tenant = claims.clone();
    other_tenant["tenant"] = "globex".into();
    let mut narrow_scope = claims.clone();
    narrow_scope["scope"] = serde_json::json!(["read"]);
    let mut no_tenant = claims.clone();
    no_tenant.as_object_mut().unwrap().remove("tenant");
    let [other_tenant, narrow_scope, no_tenant] = [other_tenant, narrow_scope, no_tenant]
        .map(|c| sign(jsonwebtoken::Algorithm::ES256, Some("caller-1"), c, &key));
    for bad in [confused, wrong_issuer, unknown_kid, other_tenant, narrow_scope, no_tenant] {
        get(proxy.addr(), &url, &[("proxy-authorization", &bearer(&bad))])
            .await
            .assert_refused(407, "caller_unauthenticated");
    }
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test]
async fn api_keys_basic_usernames_and_claims_choose_and_limit_connectors() {
    let ca = TestCa::new(&["api.shared.test"]);
    let upstream = Upstream::ok(&ca).await;
    let key_hash: String = ring::digest::digest(&ring::digest::SHA256, b"svc-key-0123456789")
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let yaml = base_config(&ca).replace(
        "upstream:",
        &format!(
            "  api_keys:\n    - name: billing-worker\n      sha256: {key_hash}\n      connectors: [weather]\nupstream:"
        ),
    ) + &connectors(upstream.port);
    let proxy = TestProxy::start(&yaml).await;
    let url = format!("https://api.shared.test:{}/x", upstream.port);

    // The API key may use weather only, so the shared host is not ambiguous for it.
    let ok = get(proxy.addr(), &url, &[("proxy-authorization", "Bearer svc-key-0123456789")]).await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    let named = get(
        proxy.addr(),
        &url,
        &[("proxy-authorization", "Bearer svc-key-0123456789"), ("x-tollgate-connector", "weather2")],
    )
    .await;
    named.assert_refused(403, "connector_forbidden");
    get(proxy.addr(), &url, &[("proxy-authorization", "Bearer svc-key-wrong")])
        .await
        .assert_refused(407, "caller_unauthenticated");

    // Basic: the username names the connector, the password is the JWT.
    let token = jwt("alice", serde_json::json!({}));
    let basic = format!("Basic {}", STANDARD.encode(format!("weather2:{token}")));
    assert_eq!(get(proxy.addr(), &url, &[("proxy-authorization", &basic)]).await.status, 200);
    let anonymous_user = format!("Basic {}", STANDARD.encode(format!(":{token}")));
    get(proxy.addr(), &url, &[("proxy-authorization", &anonymous_user)])
        .await
        .assert_refused(400, "connector_ambiguous");
    // The username and the claim disagree.
    let claimed = jwt("alice", serde_json::json!({ "connector": "weather" }));
    let disagree = format!("Basic {}", STANDARD.encode(format!("weather2:{claimed}")));
    get(proxy.addr(), &url, &[("proxy-authorization", &disagree)]).await.assert_refused(400, "connector_ambiguous");

    let seen: Vec<String> =
        upstream.requests().iter().map(|s| s.headers["authorization"].to_str().unwrap().to_string()).collect();
    assert_eq!(seen, ["Bearer weather-key", "Bearer weather2-key"]);
}

/// An RSA key minted by the `openssl` binary (ring cannot generate RSA keys): its PEM and the
/// modulus for the JWKS.
fn rsa_keys() -> (jsonwebtoken::EncodingKey, String) {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("rsa.pem");
    let status = std::process::Command::new("openssl")
        .args(["genpkey", "-quiet", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out"])
        .arg(&key)
        .status()
        .expect("the openssl binary is needed to mint an RSA test key");
    assert!(status.success());
    let modulus =
        std::process::Command::new("openssl").args(["rsa", "-noout", "-modulus", "-in"]).arg(&key).output().unwrap();
    let hex = String::from_utf8(modulus.stdout).unwrap().trim().strip_prefix("Modulus=").unwrap().to_string();
    let n: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
    let jwks =
        serde_json::json!({ "keys": [{ "kty": "RSA", "kid": "rsa-1", "n": URL_SAFE_NO_PAD.encode(n), "e": "AQAB" }] });
    let der = dir.path().join("rsa.der");
    let status = std::process::Command::new("openssl")
        .args(["rsa", "-traditional", "-outform", "DER", "-in"])
        .arg(&key)
        .arg("-out")
        .arg(&der)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    (jsonwebtoken::EncodingKey::from_rsa_der(&std::fs::read(&der).unwrap()), jwks.to_string())
}

#[tokio::test]
async fn rs256_from_a_jwks_file() {
    let ca = TestCa::new(&["api.shared.test"]);
    let upstream = Upstream::ok(&ca).await;
    let (key, jwks) = rsa_keys();
    let jwks_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(jwks_file.path(), &jwks).unwrap();
    let yaml = base_config(&ca).replace(
        &format!("    hs256_secret: \"{CALLER_SECRET}\""),
        &format!("    jwks_file: {}", jwks_file.path().display()),
    ) + &connectors(upstream.port);
    let proxy = TestProxy::start(&yaml).await;
    let url = format!("https://api.shared.test:{}/x", upstream.port);
    let claims = serde_json::json!({ "sub": "svc", "aud": "tollgate", "exp": exp(), "connectors": ["weather"] });
    let good = sign(jsonwebtoken::Algorithm::RS256, Some("rsa-1"), claims.clone(), &key);
    assert_eq!(get(proxy.addr(), &url, &[("proxy-authorization", &bearer(&good))]).await.status, 200);
    // Same key, another RSA algorithm: the key pins RS256.
    let other_alg = sign(jsonwebtoken::Algorithm::RS512, Some("rsa-1"), claims, &key);
    get(proxy.addr(), &url, &[("proxy-authorization", &bearer(&other_alg))])
        .await
        .assert_refused(407, "caller_unauthenticated");
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test]
async fn private_connectors_serve_admin_callers_only() {
    let ca = TestCa::new(&["api.open.test", "api.ops.test"]);
    let upstream = Upstream::ok(&ca).await;
    let hash = |key: &str| -> String {
        ring::digest::digest(&ring::digest::SHA256, key.as_bytes())
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let yaml = base_config(&ca)
        .replace(
            &format!("    hs256_secret: \"{CALLER_SECRET}\""),
            &format!("    hs256_secret: \"{CALLER_SECRET}\"\n    admin_claim: {{ name: roles, value: tollgate-admin }}"),
        )
        .replace(
            "upstream:",
            &format!(
                "  api_keys:\n    - {{ name: ops-bot, sha256: {}, connectors: [ops], admin: true }}\n    - {{ name: worker, sha256: {}, connectors: [ops] }}\nupstream:",
                hash("ops-key-0123456789"),
                hash("worker-key-0123456789")
            ),
        )
        + &format!(
            r#"connectors:
  - name: open
    token: open-key
    allowed_domains: ["https://api.open.test:{port}/*"]
  - name: ops
    token: ops-key
    access: private
    allowed_domains: ["https://api.ops.test:{port}/*"]
"#,
            port = upstream.port
        );
    let proxy = TestProxy::start(&yaml).await;
    let ops = format!("https://api.ops.test:{}/deploy", upstream.port);
    let open = format!("https://api.open.test:{}/x", upstream.port);
    let call = |url: String, credential: String| {
        let addr = proxy.addr();
        async move { get(addr, &url, &[("proxy-authorization", &credential)]).await }
    };
    let user = bearer(&jwt("alice", serde_json::json!({ "roles": ["reader"] })));
    let admin = bearer(&jwt("ana", serde_json::json!({ "roles": ["reader", "tollgate-admin"] })));
    // Everyone may use the public connector; only admins the private one.
    assert_eq!(call(open.clone(), user.clone()).await.status, 200);
    call(ops.clone(), user).await.assert_refused(403, "endpoint_not_allowed");
    assert_eq!(call(ops.clone(), admin).await.status, 200);
    assert_eq!(upstream.requests().last().unwrap().headers["authorization"], "Bearer ops-key");
    assert_eq!(call(ops.clone(), "Bearer ops-key-0123456789".into()).await.status, 200, "an admin API key");
    // A key limited to the private connector is still not an admin.
    call(ops, "Bearer worker-key-0123456789".into()).await.assert_refused(403, "endpoint_not_allowed");
    let shown =
        get(proxy.running.admin_addr, "/admin/connectors/ops", &[("authorization", "Bearer admin-secret-token")]).await;
    assert_eq!(shown.json()["access"], "private");
}
