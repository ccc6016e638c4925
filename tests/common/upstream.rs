//! Upstreams on loopback for the proxy under test: a CA and leaf certificates minted per
//! test, a recording upstream over TLS or plain HTTP, and streaming helpers.

use super::*;

/// A CA and a leaf for the given names, minted now.
pub struct TestCa {
    pub ca_pem: String,
    pub ca_file: tempfile::NamedTempFile,
    pub leaf_der: CertificateDer<'static>,
    pub leaf_key: PrivateKeyDer<'static>,
    /// The CA itself, to sign more leaves with.
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
}

impl TestCa {
    pub fn new(names: &[&str]) -> TestCa {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "tollgate test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf_params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
        let ca_file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(ca_file.path(), ca.pem()).unwrap();
        TestCa {
            ca_pem: ca.pem(),
            ca_file,
            leaf_der: leaf.der().clone(),
            leaf_key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
            ca,
            ca_key,
        }
    }

    /// Another leaf signed by this CA (a client certificate, say): its PEM certificate and key
    /// in files, for programs outside Rust and for Tollgate's config.
    pub fn another_leaf(&self, common_name: &str) -> (tempfile::NamedTempFile, tempfile::NamedTempFile) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![common_name.to_string()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, common_name);
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        let (cert_file, key_file) = (tempfile::NamedTempFile::new().unwrap(), tempfile::NamedTempFile::new().unwrap());
        std::fs::write(cert_file.path(), cert.pem()).unwrap();
        std::fs::write(key_file.path(), key.serialize_pem()).unwrap();
        (cert_file, key_file)
    }
}

impl TestCa {
    /// The leaf certificate and key as PEM files, for servers outside Rust.
    /// A TLS acceptor serving the leaf, offering HTTP/1.1 by ALPN.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![self.leaf_der.clone()], self.leaf_key.clone_key())
            .unwrap();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        tokio_rustls::TlsAcceptor::from(Arc::new(tls))
    }

    pub fn leaf_pem_files(&self) -> (tempfile::NamedTempFile, tempfile::NamedTempFile) {
        use base64::Engine;
        let pem = |label: &str, der: &[u8]| {
            let b64 = base64::engine::general_purpose::STANDARD.encode(der);
            let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
            format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
        };
        let cert = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(cert.path(), pem("CERTIFICATE", &self.leaf_der)).unwrap();
        let key = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(key.path(), pem("PRIVATE KEY", self.leaf_key.secret_der())).unwrap();
        (cert, key)
    }
}

/// What the upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub sni: Option<String>,
}

/// A stream an upstream serves: TLS or plain TCP.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

type Handler = Arc<dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> + Send + Sync>;

/// A TLS upstream on loopback that records every request.
pub struct Upstream {
    pub port: u16,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub connections: Arc<Mutex<usize>>,
}

impl Upstream {
    /// Answers 200 `{"ok":true}` to everything.
    pub async fn ok(ca: &TestCa) -> Upstream {
        Self::with(ca, |_req| async { Response::new(full(r#"{"ok":true}"#)) }).await
    }

    pub async fn with<F, Fut>(ca: &TestCa, handler: F) -> Upstream
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        Self::serve(Some(ca.acceptor()), handler).await
    }

    /// The same over plain HTTP (for `unsafe_allow_http` connectors).
    pub async fn plain<F, Fut>(handler: F) -> Upstream
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        Self::serve(None, handler).await
    }

    async fn serve<F, Fut>(acceptor: Option<tokio_rustls::TlsAcceptor>, handler: F) -> Upstream
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |r| Box::pin(handler(r)));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let (seen2, conns2) = (seen.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                *conns2.lock().unwrap() += 1;
                let (acceptor, handler, seen) = (acceptor.clone(), handler.clone(), seen2.clone());
                tokio::spawn(async move {
                    let (io, sni): (Box<dyn Io>, Option<String>) = match acceptor {
                        Some(acceptor) => {
                            let Ok(tls) = acceptor.accept(tcp).await else { return };
                            let sni = tls.get_ref().1.server_name().map(str::to_string);
                            (Box::new(tls), sni)
                        }
                        None => (Box::new(tcp), None),
                    };
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        seen.lock().unwrap().push(Seen {
                            method: req.method().to_string(),
                            path_and_query: req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default(),
                            headers: req.headers().clone(),
                            sni: sni.clone(),
                        });
                        let fut = handler(req);
                        async move { Ok::<_, Infallible>(fut.await) }
                    });
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), service).await;
                });
            }
        });
        Upstream { port, seen, connections }
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// A body fed through a channel, so a test decides when each chunk goes out.
pub struct ChannelBody(pub tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|chunk| chunk.map(|c| Ok(hyper::body::Frame::data(c))))
    }
}

/// A channel and the body it feeds.
pub fn channel_body() -> (tokio::sync::mpsc::Sender<Bytes>, ChannelBody) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    (tx, ChannelBody(rx))
}

/// An upstream that streams two server-sent events and sends the second only after the
/// returned sender fires: a proxy that buffers the answer never delivers the first.
pub async fn two_event_upstream(ca: &TestCa) -> (Upstream, tokio::sync::oneshot::Sender<()>) {
    let (got_first_tx, got_first_rx) = tokio::sync::oneshot::channel::<()>();
    let got_first_rx = Arc::new(tokio::sync::Mutex::new(Some(got_first_rx)));
    let upstream = Upstream::with(ca, move |_req| {
        let got_first_rx = got_first_rx.clone();
        async move {
            let (tx, body) = channel_body();
            tokio::spawn(async move {
                let _ = tx.send(Bytes::from("data: one\n\n")).await;
                if let Some(signal) = got_first_rx.lock().await.take() {
                    let _ = signal.await;
                }
                let _ = tx.send(Bytes::from("data: two\n\n")).await;
            });
            let mut r = Response::new(BodyExt::boxed(body));
            r.headers_mut().insert("content-type", "text/event-stream".parse().unwrap());
            r
        }
    })
    .await;
    (upstream, got_first_tx)
}
