//! A scripted TLS upstream that writes exact bytes (for framing Tollgate must read, or refuse,
//! byte for byte), and a caller that keeps one connection to the proxy.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::{alice_bearer, Answer, TestCa, TestProxy};

/// What the scripted upstream does with one request.
pub enum Reply {
    /// Writes these bytes in pieces of the given size (0: all at once), then reads the next
    /// request on the same connection.
    Bytes(Vec<u8>, usize),
    /// Writes these bytes, then closes the connection.
    ThenClose(Vec<u8>),
    /// Closes the connection without answering.
    Hang,
}

type Script = Arc<dyn Fn(usize, &[u8]) -> Reply + Send + Sync>;

/// A TLS upstream answering each request by `script(request number, raw request)`. It reads
/// a request's head and its body (by `content-length` or to the chunked terminator) unless
/// the head holds `x-no-read-body`.
pub struct Scripted {
    pub port: u16,
    connections: Arc<Mutex<usize>>,
    requests: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Scripted {
    pub async fn start(ca: &TestCa, script: impl Fn(usize, &[u8]) -> Reply + Send + Sync + 'static) -> Scripted {
        let script: Script = Arc::new(script);
        let acceptor = ca.acceptor();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(Mutex::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (conns, seen) = (connections.clone(), requests.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                *conns.lock().unwrap() += 1;
                let (acceptor, script, seen) = (acceptor.clone(), script.clone(), seen.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    let mut pending = Vec::new();
                    while let Some(request) = read_request(&mut tls, &mut pending).await {
                        let n = {
                            let mut seen = seen.lock().unwrap();
                            seen.push(request.clone());
                            seen.len() - 1
                        };
                        match script(n, &request) {
                            Reply::Bytes(bytes, piece) => {
                                let piece = if piece == 0 { bytes.len().max(1) } else { piece };
                                for part in bytes.chunks(piece) {
                                    if tls.write_all(part).await.is_err() || tls.flush().await.is_err() {
                                        return;
                                    }
                                    if piece < bytes.len() {
                                        tokio::time::sleep(Duration::from_millis(2)).await;
                                    }
                                }
                            }
                            Reply::ThenClose(bytes) => {
                                let _ = tls.write_all(&bytes).await;
                                let _ = tls.shutdown().await;
                                return;
                            }
                            Reply::Hang => return,
                        }
                    }
                });
            }
        });
        Scripted { port, connections, requests }
    }

    pub fn connections(&self) -> usize {
        *self.connections.lock().unwrap()
    }

    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().iter().map(|r| String::from_utf8_lossy(r).to_string()).collect()
    }
}

/// One request (head and body) from the stream; `pending` keeps bytes read past it.
async fn read_request(stream: &mut (impl AsyncReadExt + Unpin), pending: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut buf).await.ok().filter(|&n| n > 0)?;
        pending.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&pending[..head_end]).to_lowercase();
    let complete = |data: &[u8]| -> Option<usize> {
        if head.contains("x-no-read-body") {
            return Some(head_end);
        }
        if let Some(line) = head.lines().find(|l| l.starts_with("content-length:")) {
            let n: usize = line["content-length:".len()..].trim().parse().ok()?;
            return (data.len() >= head_end + n).then_some(head_end + n);
        }
        if head.contains("transfer-encoding: chunked") {
            let body = &data[head_end..];
            return body.windows(5).position(|w| w == b"0\r\n\r\n").map(|i| head_end + i + 5);
        }
        Some(head_end)
    };
    let end = loop {
        if let Some(end) = complete(pending) {
            break end;
        }
        let n = stream.read(&mut buf).await.ok().filter(|&n| n > 0)?;
        pending.extend_from_slice(&buf[..n]);
    };
    Some(pending.drain(..end).collect())
}

/// A caller on one keep-alive connection, so the upstream connection Tollgate keeps for it
/// is the one reused (a new client connection would race the old one's hand-back).
pub struct Caller {
    pub sender: hyper::client::conn::http1::SendRequest<http_body_util::Full<Bytes>>,
    pub auth: String,
}

impl Caller {
    pub async fn new(proxy: &TestProxy) -> Caller {
        let stream = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        Caller { sender, auth: alice_bearer() }
    }

    pub async fn send(&mut self, method: &str, url: &str, body: &'static str) -> Answer {
        let request = http::Request::builder()
            .method(method)
            .uri(url)
            .header("proxy-authorization", &self.auth)
            .body(http_body_util::Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap();
        let response = self.sender.send_request(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = http_body_util::BodyExt::collect(body).await.unwrap().to_bytes();
        Answer { status: parts.status, headers: parts.headers, body }
    }

    pub async fn get(&mut self, url: &str) -> Answer {
        self.send("GET", url, "").await
    }
}
