//! `store`: which token store backs connections, and how Tollgate reaches Redis (its URL,
//! timeouts, and TLS beyond a `rediss://` URL's defaults). The URL is opened here, by the same
//! function the store uses when `serve` builds it, so `check-config` refuses what `serve`
//! could not open.

use std::time::Duration;

use super::env::Environment;
use super::problems::Problems;
use super::raw::{RawStore, RawStoreTls};
use super::{redis_client, RedisTls, StoreBackend, StoreSettings};
use crate::secret::Secret;

pub(crate) fn store(raw: &RawStore, env: &Environment, p: &mut Problems) -> StoreSettings {
    let tls = raw.tls.as_ref().and_then(|t| tls(t, p));
    let backend = match raw.backend.as_deref().unwrap_or("memory") {
        "memory" => StoreBackend::Memory,
        "redis" => match p.secret(env, "store.redis_url", raw.redis_url.as_deref()) {
            Some(url) if url.expose().starts_with("redis://") || url.expose().starts_with("rediss://") => {
                if raw.tls.is_some() && !url.expose().starts_with("rediss://") {
                    p.add("store.tls", "needs a rediss:// URL in store.redis_url");
                } else if let Err(e) = redis_client(url.expose(), tls.as_ref()) {
                    p.add("store.redis_url", e);
                }
                StoreBackend::Redis(url)
            }
            Some(_) => {
                p.add("store.redis_url", "must be a redis:// or rediss:// URL");
                StoreBackend::Memory
            }
            None => {
                if raw.redis_url.is_none() {
                    p.add("store.redis_url", "is required with `backend: redis`, e.g. redis://127.0.0.1:6379");
                }
                StoreBackend::Memory
            }
        },
        other => {
            p.add("store.backend", format!("`{other}` is not a store backend; use `memory` or `redis`"));
            StoreBackend::Memory
        }
    };
    let memory = raw.backend.as_deref().unwrap_or("memory") == "memory";
    if raw.redis_url.is_some() && memory {
        p.add("store.redis_url", "is only used with `backend: redis`");
    }
    if raw.tls.is_some() && memory {
        p.add("store.tls", "is only used with `backend: redis`");
    }
    StoreSettings {
        backend,
        tls,
        timeout: p.duration("store.timeout", raw.timeout.as_deref(), Duration::from_millis(500)),
        cache_ttl: p.duration("store.cache_ttl", raw.cache_ttl.as_deref(), Duration::from_secs(30)),
    }
}

/// `store.tls`: the files read and their PEM checked, so a wrong path or a file that holds no
/// certificate is refused when the config loads. Key material is never shown.
fn tls(raw: &RawStoreTls, p: &mut Problems) -> Option<RedisTls> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let read = |p: &mut Problems, field: &str, path: &str| {
        std::fs::read(path)
            .map_err(|e| p.add(format!("store.tls.{field}"), format!("cannot read {path}: {}", e.kind())))
            .ok()
    };
    let mut out = RedisTls::default();
    if let Some(path) = &raw.ca_file {
        let pem = read(p, "ca_file", path)?;
        if CertificateDer::pem_slice_iter(&pem).next().is_none_or(|c| c.is_err()) {
            p.add("store.tls.ca_file", format!("{path} holds no PEM certificate"));
            return None;
        }
        out.ca_pem = Some(pem);
    }
    match (&raw.cert_file, &raw.key_file) {
        (None, None) => {}
        (Some(cert), Some(key)) => {
            let cert_pem = read(p, "cert_file", cert)?;
            let key_pem = read(p, "key_file", key)?;
            if CertificateDer::pem_slice_iter(&cert_pem).next().is_none_or(|c| c.is_err()) {
                p.add("store.tls.cert_file", format!("{cert} holds no PEM certificate"));
                return None;
            }
            if PrivateKeyDer::from_pem_slice(&key_pem).is_err() {
                p.add("store.tls.key_file", format!("{key} holds no PEM private key"));
                return None;
            }
            let key_text = String::from_utf8(key_pem).unwrap_or_default();
            out.client = Some((cert_pem, Secret::new(key_text)));
        }
        _ => {
            p.add("store.tls", "set both cert_file and key_file (a client certificate and its key), or neither");
            return None;
        }
    }
    Some(out)
}
