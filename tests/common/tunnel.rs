//! A client's side of an intercepted tunnel: TLS over a CONNECTed stream, trusting the
//! interception CA that the proxy under test serves on `/ca.pem`.

use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::{get, TestProxy};

/// TLS to `host` over `stream` (already answered 200 to its CONNECT), offering `alpn`.
pub async fn intercepted(proxy: &TestProxy, host: &str, stream: TcpStream, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let config = trusting_proxy(proxy, alpn).await;
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).unwrap();
    tokio_rustls::TlsConnector::from(config).connect(name, stream).await.unwrap()
}

/// A client configuration trusting the proxy's CA; one configuration keeps its sessions, so
/// the tunnels it opens later can resume.
#[allow(dead_code)]
pub async fn trusting_proxy(proxy: &TestProxy, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let pem = get(proxy.running.admin_addr, "/ca.pem", &[]).await.body;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}
