//! `store`: which token store backs connections, and how Tollgate reaches Redis (its URL,
//! timeouts, and TLS beyond a `rediss://` URL's defaults). The URL is opened here, by the same
//! function the store uses when `serve` builds it, so `check-config` refuses what `serve`
//! could not open.

use std::time::Duration;

use super::env::Environment;
use super::problems::Problems;
use super::raw::{RawStore, RawStoreTls};
use super::{redis_client, RedisMode, RedisTls, StoreBackend, StoreSettings};
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
    let redis_only = [
        ("mode", raw.mode.is_some()),
        ("nodes", raw.nodes.is_some()),
        ("sentinel_password", raw.sentinel_password.is_some()),
        ("replica_acks", raw.replica_acks.is_some()),
        ("replica_ack_timeout", raw.replica_ack_timeout.is_some()),
    ];
    for (field, set) in redis_only {
        if set && memory {
            p.add(format!("store.{field}"), "is only used with `backend: redis`");
        }
    }
    let mode = match &backend {
        StoreBackend::Redis(url) => mode(raw, env, url.expose(), p),
        StoreBackend::Memory => RedisMode::Standalone,
    };
    let timeout = p.duration("store.timeout", raw.timeout.as_deref(), Duration::from_millis(500));
    let replica_acks = match raw.replica_acks {
        Some(n) if n > 16 => {
            p.add("store.replica_acks", "must be at most 16");
            0
        }
        Some(n) => n,
        // A failover of an asynchronous replica can lose a rotated refresh token: with
        // sentinels, wait for one replica by default.
        None if matches!(mode, RedisMode::Sentinel { .. }) => 1,
        None => 0,
    };
    let replica_ack_timeout =
        p.duration("store.replica_ack_timeout", raw.replica_ack_timeout.as_deref(), Duration::from_millis(500));
    if replica_ack_timeout.is_zero() {
        p.add("store.replica_ack_timeout", "must be more than 0s (WAIT 0 would wait forever)");
    }
    StoreSettings {
        backend,
        tls,
        timeout,
        cache_ttl: p.duration("store.cache_ttl", raw.cache_ttl.as_deref(), Duration::from_secs(30)),
        mode,
        replica_acks,
        replica_ack_timeout,
    }
}

/// `store.mode` with `store.nodes` and `store.sentinel_password`, against the URL they go with.
fn mode(raw: &RawStore, env: &Environment, url: &str, p: &mut Problems) -> RedisMode {
    let nodes: Vec<(String, u16)> = raw
        .nodes
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, node)| match host_port(node) {
            Some(hp) => Some(hp),
            None => {
                p.add(format!("store.nodes[{i}]"), format!("`{node}` is not host:port (e.g. redis-1.internal:6379)"));
                None
            }
        })
        .collect();
    let info = redis::IntoConnectionInfo::into_connection_info(url).ok();
    let mode = raw.mode.as_deref().unwrap_or("standalone");
    if mode != "sentinel" && raw.sentinel_password.is_some() {
        p.add("store.sentinel_password", "is only used with `mode: sentinel`");
    }
    match mode {
        "standalone" => {
            if raw.nodes.is_some() {
                p.add("store.nodes", "is only used with `mode: cluster` or `mode: sentinel`");
            }
            RedisMode::Standalone
        }
        "cluster" => {
            if info.as_ref().is_some_and(|i| i.redis_settings().db() != 0) {
                p.add("store.redis_url", "names a database; Redis Cluster has only database 0");
            }
            RedisMode::Cluster { seeds: nodes }
        }
        "sentinel" => {
            if raw.nodes.as_ref().is_none_or(|n| n.is_empty()) {
                p.add("store.nodes", "lists the sentinels (host:port) with `mode: sentinel`");
            }
            let master = match info.as_ref().map(|i| i.addr()) {
                Some(redis::ConnectionAddr::Tcp(host, _)) | Some(redis::ConnectionAddr::TcpTls { host, .. }) => {
                    host.clone()
                }
                _ => String::new(),
            };
            let password = p.secret(env, "store.sentinel_password", raw.sentinel_password.as_deref());
            RedisMode::Sentinel { master, sentinels: nodes, password }
        }
        other => {
            p.add("store.mode", format!("`{other}` is not a Redis mode; use `standalone`, `cluster` or `sentinel`"));
            RedisMode::Standalone
        }
    }
}

/// `host:port`, `[v6]:port`.
fn host_port(node: &str) -> Option<(String, u16)> {
    let (host, port) = node.rsplit_once(':')?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    if host.is_empty()
        || host.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b == b'/' || b == b'@')
    {
        return None;
    }
    Some((host.to_string(), port))
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
