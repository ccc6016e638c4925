//! Config loading on arbitrary YAML: every input either loads or answers problems with field
//! paths; none panics, and a problem never quotes a secret the environment holds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::config::{Config, Environment};

const SECRET: &str = "FUZZ-SECRET-VALUE-0123456789abcdef0123456789";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let env = Environment::from_vars([
        ("TOLLGATE_ADMIN_TOKEN", SECRET),
        ("TOLLGATE_KEY_K1", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="),
        ("TOLLGATE_CALLER_SECRET", SECRET),
        ("GITHUB_CLIENT_ID", SECRET),
        ("GITHUB_CLIENT_SECRET", SECRET),
    ]);
    if let Err(e) = Config::from_yaml(text, &env) {
        let message = e.to_string();
        if !text.contains(SECRET) {
            assert!(!message.contains(SECRET), "a config error quoted a secret: {message}");
        }
    }
});
