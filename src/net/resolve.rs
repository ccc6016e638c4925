//! The resolver and dialer interfaces. Production uses the system resolver and plain TCP;
//! tests answer DNS themselves and dial only loopback. The address check sits between the
//! two (in `connect.rs`), so whatever a resolver answers, only checked addresses are dialed.

use std::fmt::Debug;
use std::io;
use std::net::{IpAddr, SocketAddr};

use async_trait::async_trait;
use tokio::net::TcpStream;

/// Turns a host name into addresses. Called once per new upstream connection.
#[async_trait]
pub trait Resolver: Send + Sync + Debug {
    async fn resolve(&self, host: &str) -> io::Result<Vec<IpAddr>>;
}

/// Opens a TCP connection to an address that already passed the address policy.
#[async_trait]
pub trait Dialer: Send + Sync + Debug {
    async fn dial(&self, addr: SocketAddr) -> io::Result<TcpStream>;
}

/// The operating system's resolver (getaddrinfo through tokio).
#[derive(Debug, Default)]
pub struct SystemResolver;

#[async_trait]
impl Resolver for SystemResolver {
    async fn resolve(&self, host: &str) -> io::Result<Vec<IpAddr>> {
        let addrs = tokio::net::lookup_host((host, 0)).await?;
        Ok(addrs.map(|a| a.ip()).collect())
    }
}

/// Plain TCP with `TCP_NODELAY`.
#[derive(Debug, Default)]
pub struct TcpDialer;

#[async_trait]
impl Dialer for TcpDialer {
    async fn dial(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}
