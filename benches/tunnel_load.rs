//! A load generator for CONNECT interception: `CONNECT host:port` through a proxy, TLS inside
//! the tunnel (trusting the proxy's CA), then HTTP/1.1 requests. Two shapes:
//!
//! - `keepalive`: each connection opens one tunnel and sends requests in it until the time is up;
//! - `per-tunnel`: every request opens a new tunnel (TCP, CONNECT, TLS handshake, one request);
//! - `per-tunnel-full`: the same with resumption off, so every handshake is a full one (a new
//!   process each time, say).
//!
//! The proxy's certificate chain is verified once a minute, not on every handshake (see
//! `ChainCache`); the proxy's handshake signature is checked every time.
//!
//! Otherwise the client keeps rustls' default session cache, so a proxy that offers resumption
//! (TLS 1.3 tickets, or TLS 1.2 session ids) gets resumed handshakes; the summary counts them.
//! That cache holds 8 TLS 1.3 tickets per server: with more tunnels opening at once than
//! that, some handshakes are full whatever the proxy offers.
//!
//! ```text
//! cargo bench --bench tunnel_load -- --proxy 127.0.0.1:8080 --target localhost:8443 \
//!     --ca proxy-ca.pem --auth 'Bearer KEY' --path /small --connections 32 --seconds 5 \
//!     --shape keepalive
//! ```
//!
//! Prints one JSON line: requests, errors, req/s, p50 and p99 in ms, handshakes and how many
//! of them resumed. Loopback only: the proxy address must be a loopback address.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

mod support;
use support::{Argv, Seen};

#[derive(Clone, Copy, PartialEq)]
enum Shape {
    KeepAlive,
    PerTunnel,
    PerTunnelFull,
}

struct Args {
    proxy: SocketAddr,
    target: String,
    host: String,
    ca: String,
    auth: Option<String>,
    path: String,
    connections: usize,
    seconds: f64,
    shape: Shape,
}

const USAGE: &str = "tunnel_load --proxy ADDR --target HOST:PORT --ca FILE [--auth VALUE] [--path /p] \
                     [--connections N] [--seconds S] [--shape keepalive|per-tunnel|per-tunnel-full]";

fn parse_args(mut argv: Argv) -> Result<Args, String> {
    let proxy: SocketAddr =
        argv.take("--proxy").ok_or("--proxy is required")?.parse().map_err(|e| format!("--proxy: {e}"))?;
    if !proxy.ip().is_loopback() {
        return Err("--proxy must be a loopback address".into());
    }
    let target = argv.take("--target").ok_or("--target is required")?;
    let host = match target.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host.to_string(),
        _ => return Err("--target must be HOST:PORT".into()),
    };
    let ca = argv.take("--ca").ok_or("--ca is required")?;
    let auth = argv.take("--auth");
    let path = argv.take("--path").unwrap_or_else(|| "/".into());
    let connections = argv.number("--connections", 32.0)? as usize;
    let seconds = argv.number("--seconds", 5.0)?;
    let shape = match argv.take("--shape").as_deref() {
        None | Some("keepalive") => Shape::KeepAlive,
        Some("per-tunnel") => Shape::PerTunnel,
        Some("per-tunnel-full") => Shape::PerTunnelFull,
        Some(other) => return Err(format!("--shape: `{other}` is not keepalive, per-tunnel or per-tunnel-full")),
    };
    argv.finish()?;
    if connections == 0 || seconds <= 0.0 {
        return Err("--connections and --seconds must be positive".into());
    }
    Ok(Args { proxy, target, host, ca, auth, path, connections, seconds, shape })
}

/// What one worker saw.
#[derive(Default)]
struct Tally {
    seen: Seen,
    handshakes: u64,
    resumed: u64,
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

/// TCP, `CONNECT`, the proxy's 200, then TLS and an HTTP/1.1 connection inside the tunnel.
async fn open_tunnel(args: &Args, tls: &TlsConnector, tally: &mut Tally) -> Result<Sender, String> {
    let mut tcp = TcpStream::connect(args.proxy).await.map_err(|e| format!("connect: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
    let mut head = format!("CONNECT {0} HTTP/1.1\r\nHost: {0}\r\n", args.target);
    if let Some(auth) = &args.auth {
        head.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
    }
    head.push_str("\r\n");
    tcp.write_all(head.as_bytes()).await.map_err(|e| format!("write CONNECT: {e}"))?;
    // The proxy sends nothing after its answer until the client's TLS hello, so reading up to
    // the blank line reads exactly the answer.
    let mut answer = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tcp.read(&mut chunk).await.map_err(|e| format!("read CONNECT answer: {e}"))?;
        if n == 0 || answer.len() > 16 * 1024 {
            return Err("the proxy closed or overran before answering CONNECT".into());
        }
        answer.extend_from_slice(&chunk[..n]);
    }
    let status_line =
        String::from_utf8_lossy(&answer[..answer.iter().position(|&b| b == b'\r').unwrap_or(0)]).to_string();
    if status_line.split(' ').nth(1) != Some("200") {
        return Err(format!("CONNECT answered `{status_line}`"));
    }
    let name = ServerName::try_from(args.host.clone()).map_err(|e| format!("server name: {e}"))?;
    let stream: TlsStream<TcpStream> = tls.connect(name, tcp).await.map_err(|e| format!("TLS in the tunnel: {e}"))?;
    tally.handshakes += 1;
    if stream.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
        tally.resumed += 1;
    }
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP/1.1 in the tunnel: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn one_request(args: &Args, sender: &mut Sender) -> Result<(), String> {
    sender.ready().await.map_err(|e| format!("connection: {e}"))?;
    let request = http::Request::get(&args.path)
        .header(http::header::HOST, &args.target)
        .body(Empty::new())
        .map_err(|e| format!("request: {e}"))?;
    let response = sender.send_request(request).await.map_err(|e| format!("request: {e}"))?;
    let status = response.status();
    response.into_body().collect().await.map_err(|e| format!("body: {e}"))?;
    if !status.is_success() {
        return Err(format!("status {status}"));
    }
    Ok(())
}

async fn worker(args: Arc<Args>, tls: TlsConnector, deadline: Instant) -> Tally {
    let mut tally = Tally::default();
    let mut sender: Option<Sender> = None;
    while Instant::now() < deadline {
        let started = Instant::now();
        if sender.is_none() || args.shape != Shape::KeepAlive {
            match open_tunnel(&args, &tls, &mut tally).await {
                Ok(s) => sender = Some(s),
                Err(e) => {
                    tally.seen.error(e);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let Some(s) = sender.as_mut() else { continue };
        match one_request(&args, s).await {
            Ok(()) => tally.seen.answered(started),
            Err(e) => {
                tally.seen.error(e);
                sender = None;
            }
        }
    }
    tally
}

fn client_config(ca: &str, shape: Shape) -> Result<TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| format!("--ca {ca}: {e}"))? {
        roots.add(cert.map_err(|e| format!("--ca {ca}: {e}"))?).map_err(|e| format!("--ca {ca}: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("--ca {ca}: {e}"))?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ChainCache { webpki, verified: Mutex::default() }))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if shape == Shape::PerTunnelFull {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(TlsConnector::from(Arc::new(config)))
}

/// How long a verified certificate chain is taken as verified without checking it again.
const CHAIN_CACHE_FOR: Duration = Duration::from_secs(60);

/// The proxy's certificate chain is verified against `--ca` (name, dates, the CA's signature)
/// once a minute, not on every handshake: a proxy that caches its minted certificate sends
/// the same bytes each time, and TLS clients that open many connections (browsers, Go's and
/// Java's verification caches) keep such results too. Every handshake still checks the
/// proxy's signature over it (CertificateVerify) and makes a key exchange, so what is saved is
/// one signature verification of the client's own per new tunnel, not any work of the proxy.
#[derive(Debug)]
struct ChainCache {
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
    verified: Mutex<HashMap<Vec<u8>, Instant>>,
}

impl ServerCertVerifier for ChainCache {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut key = server_name.to_str().as_bytes().to_vec();
        for cert in std::iter::once(end_entity).chain(intermediates) {
            key.extend_from_slice(&(cert.len() as u32).to_be_bytes());
            key.extend_from_slice(cert);
        }
        let fresh = |at: &Instant| at.elapsed() < CHAIN_CACHE_FOR;
        if self.verified.lock().map(|v| v.get(&key).is_some_and(fresh)).unwrap_or(false) {
            return Ok(ServerCertVerified::assertion());
        }
        let verified = self.webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        if let Ok(mut v) = self.verified.lock() {
            v.insert(key, Instant::now());
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

fn main() {
    let Some((args, runtime)) = support::start("tunnel_load", USAGE, parse_args) else { return };
    let args = Arc::new(args);
    let tls = match client_config(&args.ca, args.shape) {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("tunnel_load: {e}");
            std::process::exit(66);
        }
    };
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.seconds);
    let tallies = runtime.block_on(async {
        let workers: Vec<_> =
            (0..args.connections).map(|_| tokio::spawn(worker(args.clone(), tls.clone(), deadline))).collect();
        let mut tallies = Vec::with_capacity(workers.len());
        for w in workers {
            if let Ok(t) = w.await {
                tallies.push(t);
            }
        }
        tallies
    });
    let elapsed = started.elapsed().as_secs_f64();
    let (mut seen, mut handshakes, mut resumed) = (Seen::default(), 0, 0);
    for t in tallies {
        seen.absorb(t.seen);
        handshakes += t.handshakes;
        resumed += t.resumed;
    }
    let mut line = seen.summary(elapsed);
    line.insert("handshakes".into(), handshakes.into());
    line.insert("resumed".into(), resumed.into());
    println!("{}", serde_json::Value::Object(line));
}
