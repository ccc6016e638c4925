//! The interception CA as a value: made from an operator's certificate and key, or from one
//! Tollgate generated (kept in the token store by `live::ca`, so every replica presents the
//! same CA), and the leaf certificates minted from it on the fly per CONNECT host (a DNS name
//! or an IP literal in the SAN), cached. Pure: no store, no network; the config loader uses it
//! to judge a configured CA.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};
use rustls::ServerConfig;

const CA_NAME: &str = "Tollgate interception CA";
/// Leaf certificates are re-minted well before they expire.
const LEAF_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
const LEAF_REUSE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Leaf configurations kept at most; past that the cache starts over.
const MAX_LEAVES: usize = 10_000;
/// TLS 1.2 sessions kept for resumption by id, across every host's configuration.
const SESSION_CACHE: usize = 4096;

/// A CA that cannot be made or used; the text names what is wrong, never key material.
#[derive(Debug, thiserror::Error)]
#[error("the interception CA could not be created or read: {0}")]
pub struct CaError(pub String);

fn ca_params() -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| CaError(e.to_string()))?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.distinguished_name.push(DnType::OrganizationName, "Tollgate");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let now = SystemTime::now();
    params.not_before = (now - Duration::from_secs(24 * 3600)).into();
    params.not_after = (now + Duration::from_secs(10 * 365 * 24 * 3600)).into();
    Ok(params)
}

struct Leaf {
    config: Arc<ServerConfig>,
    minted: SystemTime,
}

/// The CA and its cache of per-host TLS configurations.
pub struct Authority {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    /// The CA re-signed from the same name and key: what leaf certificates name as issuer.
    signer: rcgen::Certificate,
    key: KeyPair,
    leaves: Mutex<HashMap<String, Leaf>>,
    /// Session tickets (TLS 1.3 and 1.2), shared by every leaf: a client resumes whichever host
    /// it tunnels to. Stateless (the key rotates every 6 hours, rustls' `Ticketer`), so no
    /// cache evicts them under load; TLS 1.3 resumption still runs an ECDHE exchange.
    ticketer: Arc<dyn ProducesTickets>,
    sessions: Arc<dyn StoresServerSessions>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

impl Authority {
    /// A new CA: (certificate PEM, private key PEM).
    pub fn generate() -> Result<(String, String), CaError> {
        let key = KeyPair::generate().map_err(|e| CaError(e.to_string()))?;
        let cert = ca_params()?.self_signed(&key).map_err(|e| CaError(e.to_string()))?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// A CA created by Tollgate, from its certificate and key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Authority, CaError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| CaError(e.to_string()))?;
        let signer = ca_params()?.self_signed(&key).map_err(|e| CaError(e.to_string()))?;
        Authority::new(cert_pem, signer, key)
    }

    fn new(cert_pem: &str, signer: rcgen::Certificate, key: KeyPair) -> Result<Authority, CaError> {
        use rustls::pki_types::pem::PemObject;
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| CaError(e.to_string()))?;
        let ticketer = rustls::crypto::ring::Ticketer::new().map_err(|e| CaError(e.to_string()))?;
        Ok(Authority {
            cert_pem: cert_pem.to_string(),
            cert_der,
            signer,
            key,
            leaves: Mutex::default(),
            ticketer,
            sessions: ServerSessionMemoryCache::new(SESSION_CACHE),
        })
    }

    /// An operator's CA (any subject). The certificate must be a CA; leaf certificates name
    /// its subject as issuer and are signed with its key.
    pub fn from_configured(cert_pem: &str, key_pem: &str) -> Result<Authority, CaError> {
        let invalid = |e: rcgen::Error| CaError(e.to_string());
        let key = KeyPair::from_pem(key_pem).map_err(invalid)?;
        let params = CertificateParams::from_ca_cert_pem(cert_pem).map_err(invalid)?;
        if !matches!(params.is_ca, IsCa::Ca(_)) {
            return Err(CaError("the interception certificate is not a CA".into()));
        }
        let signer = params.self_signed(&key).map_err(invalid)?;
        Authority::new(cert_pem, signer, key)
    }

    /// The CA certificate runtimes must trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A TLS server configuration presenting a leaf for `host` (HTTP/2 and HTTP/1.1 by ALPN),
    /// and whether its certificate was signed just now (else it came from the cache).
    pub fn server_config(&self, host: &str) -> Result<(Arc<ServerConfig>, bool), CaError> {
        let mut leaves = self.leaves.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(leaf) = leaves.get(host) {
            if leaf.minted.elapsed().unwrap_or(LEAF_REUSE) < LEAF_REUSE {
                return Ok((leaf.config.clone(), false));
            }
        }
        let config = Arc::new(self.mint(host)?);
        // Hosts come from callers (any name under a wildcard): keep the cache bounded.
        if leaves.len() >= MAX_LEAVES {
            leaves.clear();
        }
        leaves.insert(host.to_string(), Leaf { config: config.clone(), minted: SystemTime::now() });
        Ok((config, true))
    }

    fn mint(&self, host: &str) -> Result<ServerConfig, CaError> {
        let invalid = |e: rcgen::Error| CaError(e.to_string());
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(invalid)?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        params.subject_alt_names = vec![match bare.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(bare.try_into().map_err(invalid)?),
        }];
        params.distinguished_name.push(DnType::CommonName, bare);
        let now = SystemTime::now();
        params.not_before = (now - Duration::from_secs(3600)).into();
        params.not_after = (now + LEAF_LIFETIME).into();
        let leaf_key = KeyPair::generate().map_err(invalid)?;
        let leaf = params.signed_by(&leaf_key, &self.signer, &self.key).map_err(invalid)?;
        let chain = vec![leaf.der().clone(), self.cert_der.clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| CaError(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| CaError(e.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config.ticketer = self.ticketer.clone();
        config.session_storage = self.sessions.clone();
        Ok(config)
    }
}
