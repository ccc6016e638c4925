//! The upstream connector: resolve once, check every answer against the connector's address
//! policy, dial only a checked address, then TLS with SNI set to the checked name. Each
//! connector has its own connections (the proxy's pools, and hyper-util's client for token
//! endpoints), so a connection made under one connector's policy is never reused under another's.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::resolve::{Dialer, Resolver};
use crate::domains::addr::{AddressPolicy, DeniedRange};
use crate::domains::target::parse_host;
use crate::domains::Host;

/// Why a connection could not be made. `Denied` is a policy refusal, the rest are failures.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{0} addresses are refused")]
    Denied(DeniedRange),
    #[error("DNS lookup failed: {0}")]
    Resolve(io::Error),
    #[error("no address found")]
    NoAddress,
    #[error("connection failed: {0}")]
    Connect(io::Error),
    #[error("TLS handshake failed: {0}")]
    Tls(io::Error),
    #[error("connecting took longer than {0:?}")]
    Timeout(Duration),
    #[error("the URL has no usable host")]
    BadUri,
}

/// A connector bound to one address policy.
#[derive(Clone)]
pub struct UpstreamConnector {
    pub resolver: Arc<dyn Resolver>,
    pub dialer: Arc<dyn Dialer>,
    pub policy: AddressPolicy,
    pub tls: TlsConnector,
    pub timeout: Duration,
}

impl std::fmt::Debug for UpstreamConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamConnector")
            .field("policy", &self.policy)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl tower_service::Service<Uri> for UpstreamConnector {
    type Response = UpstreamIo;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<UpstreamIo, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let host = parse_host(uri.host().ok_or(ConnectError::BadUri)?).map_err(|_| ConnectError::BadUri)?;
            let https = uri.scheme_str() == Some("https");
            let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
            this.open(&host, port, https).await
        })
    }
}

impl UpstreamConnector {
    /// A connection to `host:port` (TLS when `https`), within the connect timeout.
    pub async fn open(&self, host: &Host, port: u16, https: bool) -> Result<UpstreamIo, ConnectError> {
        self.open_stream(host, port, https).await.map(|s| UpstreamIo(TokioIo::new(s)))
    }

    /// The same connection as [`UpstreamConnector::open`], as a tokio stream.
    pub async fn open_stream(&self, host: &Host, port: u16, https: bool) -> Result<Stream, ConnectError> {
        let timeout = self.timeout;
        tokio::time::timeout(timeout, self.connect(host, port, https))
            .await
            .unwrap_or(Err(ConnectError::Timeout(timeout)))
    }

    async fn connect(&self, host: &Host, port: u16, https: bool) -> Result<Stream, ConnectError> {
        let addrs: Vec<IpAddr> = match host {
            Host::V4(ip) => vec![IpAddr::V4(*ip)],
            Host::V6(ip) => vec![IpAddr::V6(*ip)],
            Host::Name(name) => self.resolver.resolve(name).await.map_err(ConnectError::Resolve)?,
        };
        if addrs.is_empty() {
            return Err(ConnectError::NoAddress);
        }
        // Refuse if any answer is denied: a name that points partly inside is not trusted.
        for ip in &addrs {
            self.policy.check(*ip).map_err(ConnectError::Denied)?;
        }
        let mut last_error = None;
        let mut tcp = None;
        for ip in addrs {
            match self.dialer.dial(SocketAddr::new(ip, port)).await {
                Ok(stream) => {
                    tcp = Some(stream);
                    break;
                }
                Err(e) => last_error = Some(e),
            }
        }
        let tcp = match tcp {
            Some(t) => t,
            None => {
                return Err(ConnectError::Connect(last_error.unwrap_or_else(|| io::ErrorKind::NotConnected.into())))
            }
        };
        if !https {
            return Ok(Stream::Plain(tcp));
        }
        let name = match host {
            Host::Name(n) => ServerName::try_from(n.clone()).map_err(|_| ConnectError::BadUri)?,
            Host::V4(ip) => ServerName::IpAddress(IpAddr::V4(*ip).into()),
            Host::V6(ip) => ServerName::IpAddress(IpAddr::V6(*ip).into()),
        };
        let tls = self.tls.connect(name, tcp).await.map_err(ConnectError::Tls)?;
        Ok(Stream::Tls(Box::new(tls)))
    }
}

/// Plain TCP (only for `unsafe_allow_http` connectors) or TLS.
#[derive(Debug)]
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// The connection handed to hyper.
#[derive(Debug)]
pub struct UpstreamIo(TokioIo<Stream>);

impl Connection for UpstreamIo {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for UpstreamIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

/// The rustls client config: webpki roots plus the operator's extra CAs, HTTP/1.1 ALPN.
pub fn tls_config(extra_ca_pem: Option<&[u8]>) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = extra_ca_pem {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| format!("upstream.extra_ca_file: {e}"))?;
            roots.add(cert).map_err(|e| format!("upstream.extra_ca_file: {e}"))?;
            added += 1;
        }
        if added == 0 {
            return Err("upstream.extra_ca_file holds no PEM certificate".into());
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
