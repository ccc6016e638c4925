//! The caller credential parsers on arbitrary header values: Bearer/Basic parsing, JWT
//! verification and API-key lookup. None panics; nothing but a valid credential authenticates.
#![no_main]

use std::sync::OnceLock;

use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use tollgate::caller::{authenticate, parse_credential};
use tollgate::config::{Config, Environment};

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let yaml = r#"
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
encryption_keys: [{ id: k1, secret: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=" }]
callers:
  jwt: { audience: tollgate, issuer: https://issuer.test, hs256_secret: "fuzz-caller-secret-that-is-at-least-32-bytes" }
  api_keys:
    - { name: worker, sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08, connectors: [weather] }
connectors:
  - { name: weather, token: "w", allowed_domains: ["https://api.weather.test/*"] }
  - { name: crm, token: "c", allowed_domains: ["https://crm.test/*"] }
"#;
        Config::from_yaml(yaml, &Environment::from_vars([("UNUSED", "x")]))
            .unwrap_or_else(|e| panic!("fuzz config: {e}"))
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = HeaderValue::from_bytes(data) else { return };
    let Ok(presented) = parse_credential(&value) else { return };
    let secret = presented.secret.expose().to_string();
    if let Ok(caller) = authenticate(presented, config()) {
        // The only API key configured is "test" (its SHA-256 is in the config); a JWT needs
        // the HS256 secret, which the fuzzer cannot forge. Anything else is a bypass.
        assert_eq!(secret, "test", "authenticated without a valid credential: {caller:?}");
    }
});
