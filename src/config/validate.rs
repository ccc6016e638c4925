//! Raw config to validated [`Config`]: addresses parsed, secrets resolved per field, patterns
//! compiled, names checked. Every problem is collected with its field path so the operator
//! fixes the file in one pass.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;

use super::connector::validate_connector;
use super::env::Environment;
use super::jwks::load_jwks;
use super::problems::Problems;
use super::raw::{self, RawCallers, RawConfig};
use super::*;
use crate::domains::{AllowList, Target};

/// Names that route to Tollgate's own endpoints and cannot be connectors or tools.
pub const RESERVED_NAMES: &[&str] =
    &["oauth", "connect", "connections", "console", "console-link", "admin", "tollgate"];

pub(crate) fn validate(text: &str, env: &Environment) -> Result<Config, ConfigError> {
    let raw = super::yaml::parse(text).map_err(|e| ConfigError {
        problems: vec![Problem { path: String::new(), message: e.message, line: e.line }],
    })?;
    let mut p = Problems::default();
    let config = build(raw, env, &mut p);
    match config {
        Some(c) if p.0.is_empty() => Ok(c),
        _ => Err(ConfigError { problems: p.0 }),
    }
}

fn build(raw: RawConfig, env: &Environment, p: &mut Problems) -> Option<Config> {
    let listen = p.addr("listen", &raw.listen);
    let admin_listen = p.addr("admin_listen", &raw.admin_listen);
    let public_listen = raw.public_listen.as_deref().and_then(|a| p.addr("public_listen", a));
    let public_url = public_url(&raw, p);

    let mut admin_tokens: Vec<Secret> = Vec::new();
    for (i, t) in raw.admin_tokens.iter().enumerate() {
        let path = format!("admin_tokens[{i}]");
        if let Some(token) = p.secret(env, &path, Some(t)) {
            if token.expose().trim().len() < 16 {
                p.add(path, "must be at least 16 characters (an empty or short token would open the admin API)");
            } else {
                admin_tokens.push(token);
            }
        }
    }

    let store = super::store::store(&raw.store, env, p);

    let encryption_keys = encryption_keys(&raw.encryption_keys, env, p);

    let upstream = UpstreamSettings {
        extra_ca_pem: raw.upstream.extra_ca_file.as_deref().and_then(|path| {
            std::fs::read(path).map_err(|e| p.add("upstream.extra_ca_file", format!("cannot read {path}: {e}"))).ok()
        }),
        connect_timeout: p.duration(
            "upstream.connect_timeout",
            raw.upstream.connect_timeout.as_deref(),
            Duration::from_secs(5),
        ),
        response_timeout: p.duration(
            "upstream.response_timeout",
            raw.upstream.response_timeout.as_deref(),
            Duration::from_secs(60),
        ),
    };
    let r = &raw.refresh;
    let refresh = RefreshSettings {
        skew: p.duration("refresh.skew", r.skew.as_deref(), Duration::from_secs(60)),
        replay_body_limit: p.size("refresh.replay_body_limit", r.replay_body_limit.as_deref(), 64 << 10),
        token_endpoint_timeout: p.duration(
            "refresh.token_endpoint_timeout",
            r.token_endpoint_timeout.as_deref(),
            Duration::from_secs(10),
        ),
        lock_ttl: p.duration("refresh.lock_ttl", r.lock_ttl.as_deref(), Duration::from_secs(30)),
        retry_backoff: p.duration("refresh.retry_backoff", r.retry_backoff.as_deref(), Duration::from_secs(5)),
        default_lifetime: p.duration(
            "refresh.default_lifetime",
            r.default_lifetime.as_deref(),
            Duration::from_secs(3600),
        ),
    };
    if refresh.lock_ttl <= refresh.token_endpoint_timeout {
        p.add(
            "refresh.lock_ttl",
            format!(
                "must exceed refresh.token_endpoint_timeout ({:?}), or a slow refresh could outlive its lock and race another replica",
                refresh.token_endpoint_timeout
            ),
        );
    }
    let limits = Limits {
        max_header_bytes: p.size("limits.max_header_bytes", raw.limits.max_header_bytes.as_deref(), 32 << 10) as usize,
        max_connections: raw.limits.max_connections.unwrap_or(10_000),
        header_read_timeout: p.duration(
            "limits.header_read_timeout",
            raw.limits.header_read_timeout.as_deref(),
            Duration::from_secs(10),
        ),
    };
    if limits.max_connections == 0 {
        p.add("limits.max_connections", "must be at least 1");
    }
    if limits.max_header_bytes < 1024 {
        p.add("limits.max_header_bytes", "must be at least 1KiB");
    }

    let interception_ca = match (&raw.interception.ca_cert_file, &raw.interception.ca_key_file) {
        (None, None) => None,
        (Some(cert), Some(key)) => {
            let read = |p: &mut Problems, field: &str, path: &str| {
                std::fs::read_to_string(path)
                    .map_err(|e| p.add(field, format!("cannot read {path}: {}", e.kind())))
                    .ok()
            };
            let cert_pem = read(p, "interception.ca_cert_file", cert);
            let key_pem = read(p, "interception.ca_key_file", key);
            cert_pem.zip(key_pem).and_then(|(c, k)| match crate::authority::Authority::from_configured(&c, &k) {
                Ok(_) => Some((c, Secret::new(k))),
                Err(e) => {
                    p.add("interception", e.to_string());
                    None
                }
            })
        }
        _ => {
            p.add("interception", "set both ca_cert_file and ca_key_file, or neither");
            None
        }
    };

    let mut names: HashMap<String, usize> = HashMap::new();
    let mut connectors = Vec::new();
    let mut patterns = Vec::new();
    for (i, rc) in raw.connectors.iter().enumerate() {
        let path = format!("connectors[{i}]");
        check_name(p, &format!("{path}.name"), &rc.name, &names);
        let index = connectors.len();
        if let Some(c) = validate_connector(rc, &path, env, p) {
            patterns.extend(c.patterns.iter().cloned().map(|pat| (index, pat)));
            names.insert(c.name.clone(), index);
            connectors.push(Arc::new(c));
        }
    }
    for (i, tool) in raw.tools.iter().enumerate() {
        let path = format!("tools[{i}]");
        check_name(p, &format!("{path}.name"), &tool.name, &names);
        match connectors.iter().position(|c| c.name == tool.connector) {
            Some(index) => {
                names.insert(tool.name.clone(), index);
            }
            None => p.add(format!("{path}.connector"), format!("no connector is named `{}`", tool.connector)),
        }
    }
    let callers = callers(&raw.callers, env, &names, p);
    let events = super::events::events(&raw.events, env, p);
    let console = super::console::console(&raw.console, env, p);

    let allow_list = match AllowList::build(patterns) {
        Ok(list) => list,
        Err(e) => {
            p.add("connectors", format!("allowed_domains did not compile: {e}"));
            return None;
        }
    };
    Some(Config {
        listen: listen?,
        admin_listen: admin_listen?,
        public_listen,
        public_url,
        admin_tokens,
        store,
        encryption_keys,
        callers,
        upstream,
        refresh,
        limits,
        interception_ca,
        file_connectors: connectors.len(),
        connectors,
        names,
        allow_list,
        events,
        console,
    })
}

pub(crate) fn check_name(p: &mut Problems, path: &str, name: &str, taken: &HashMap<String, usize>) {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.len() <= 64;
    if !valid {
        p.add(path, format!("`{name}` must be lower-case letters, digits, `-` and `_` (at most 64)"));
    } else if RESERVED_NAMES.contains(&name) {
        p.add(path, format!("`{name}` is reserved for Tollgate's own endpoints"));
    } else if taken.contains_key(name) {
        p.add(path, format!("`{name}` is already used by another connector or tool"));
    }
}

fn public_url(raw: &RawConfig, p: &mut Problems) -> Option<String> {
    let url = raw.public_url.as_deref()?;
    let trimmed = url.trim_end_matches('/');
    match Target::parse(trimmed) {
        Ok(t) if t.query.is_none() && t.path == "/" => Some(trimmed.to_string()),
        _ => {
            p.add(
                "public_url",
                format!("`{url}` must be an http(s) origin without path or query, e.g. https://tollgate.example.com"),
            );
            None
        }
    }
}

fn encryption_keys(raw: &[raw::RawKey], env: &Environment, p: &mut Problems) -> Vec<EncryptionKey> {
    if raw.is_empty() {
        p.add("encryption_keys", "at least one key is required (32 random bytes, base64)");
    }
    let mut keys: Vec<EncryptionKey> = Vec::new();
    for (i, k) in raw.iter().enumerate() {
        let path = format!("encryption_keys[{i}]");
        if keys.iter().any(|seen| seen.id == k.id) || k.id.is_empty() {
            p.add(format!("{path}.id"), "key ids must be non-empty and unique");
        }
        let Some(secret) = p.secret(env, &format!("{path}.secret"), Some(&k.secret)) else {
            continue;
        };
        let decoded = base64::engine::general_purpose::STANDARD.decode(secret.expose().trim());
        match decoded.ok().and_then(|bytes| <[u8; 32]>::try_from(bytes).ok()) {
            Some(key) => keys.push(EncryptionKey { id: k.id.clone(), key }),
            None => p.add(format!("{path}.secret"), "must be 32 bytes, base64-encoded (openssl rand -base64 32)"),
        }
    }
    keys
}

fn callers(raw: &RawCallers, env: &Environment, names: &HashMap<String, usize>, p: &mut Problems) -> CallerSettings {
    let jwt = raw.jwt.as_ref().and_then(|j| {
        let sources = [j.hs256_secret.is_some(), j.jwks_file.is_some(), j.jwks_url.is_some()];
        if sources.iter().filter(|s| **s).count() != 1 {
            p.add("callers.jwt", "set exactly one of hs256_secret, jwks_file or jwks_url");
            return None;
        }
        if j.unsafe_allow_ranges.is_some() && j.jwks_url.is_none() {
            p.add("callers.jwt.unsafe_allow_ranges", "is only used with jwks_url");
        }
        let key = if let Some(secret) = p.secret(env, "callers.jwt.hs256_secret", j.hs256_secret.as_deref()) {
            if secret.expose().len() < 32 {
                p.add("callers.jwt.hs256_secret", "must be at least 32 bytes");
            }
            JwtKey::Hs256(secret)
        } else if let Some(file) = &j.jwks_file {
            match std::fs::read_to_string(file).map_err(|e| e.to_string()).and_then(|t| load_jwks(&t)) {
                Ok(keys) => JwtKey::Jwks(keys),
                Err(e) => {
                    p.add("callers.jwt.jwks_file", format!("{file}: {e}"));
                    return None;
                }
            }
        } else if let Some(url) = &j.jwks_url {
            let parsed = url.parse::<http::Uri>().ok().filter(|u| u.scheme_str() == Some("https") && u.host().is_some());
            if parsed.is_none() {
                p.add("callers.jwt.jwks_url", "must be an https:// URL, e.g. https://idp.example.com/.well-known/jwks.json");
                return None;
            }
            let mut ranges = Vec::new();
            for (i, r) in j.unsafe_allow_ranges.iter().flatten().enumerate() {
                match r.parse::<crate::domains::addr::IpNet>() {
                    Ok(net) => ranges.push(net),
                    Err(e) => p.add(format!("callers.jwt.unsafe_allow_ranges[{i}]"), e),
                }
            }
            let policy = crate::domains::addr::AddressPolicy::new(ranges);
            JwtKey::Remote(std::sync::Arc::new(crate::config::jwks::RemoteJwks::new(url.clone(), policy)))
        } else {
            return None;
        };
        if j.audience.is_empty() {
            p.add("callers.jwt.audience", "must not be empty");
        }
        const READ: [&str; 6] = ["sub", "exp", "aud", "iss", "connectors", "connector"];
        for name in j.required_claims.keys() {
            if name.is_empty() || READ.contains(&name.as_str()) {
                p.add(
                    format!("callers.jwt.required_claims.{name}"),
                    "names a claim Tollgate already checks (sub, exp, aud, iss, connectors, connector); use audience or issuer",
                );
            }
        }
        let required_claims = j.required_claims.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let admin_claim = j.admin_claim.as_ref().map(|c| (c.name.clone(), c.value.clone()));
        Some(JwtSettings { audience: j.audience.clone(), issuer: j.issuer.clone(), key, required_claims, admin_claim })
    });
    let mut api_keys = Vec::new();
    for (i, k) in raw.api_keys.iter().enumerate() {
        let path = format!("callers.api_keys[{i}]");
        let hash = (k.sha256.len() == 64)
            .then(|| {
                let mut out = [0u8; 32];
                for (j, slot) in out.iter_mut().enumerate() {
                    *slot = u8::from_str_radix(k.sha256.get(2 * j..2 * j + 2)?, 16).ok()?;
                }
                Some(out)
            })
            .flatten();
        let Some(sha256) = hash else {
            p.add(format!("{path}.sha256"), "must be 64 hex digits (sha256sum of the key)");
            continue;
        };
        let mut connectors = Vec::new();
        for (j, name) in k.connectors.iter().enumerate() {
            match names.get(name) {
                Some(index) => connectors.push(*index),
                None => p.add(format!("{path}.connectors[{j}]"), format!("no connector or tool is named `{name}`")),
            }
        }
        api_keys.push(ApiKey { name: k.name.clone(), sha256, connectors, admin: k.admin });
    }
    CallerSettings { jwt, api_keys }
}
