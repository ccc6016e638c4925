//! A plain HTTP/1.1 client over real sockets: one request per connection, answers collected
//! (or streamed), and raw reads for tests that write bytes by hand.

use super::*;

/// A collected response.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| panic!("not JSON: {:?}", self.body))
    }

    /// The `X-Tollgate-Error` header, if any.
    pub fn error_header(&self) -> Option<&str> {
        self.headers.get("x-tollgate-error").and_then(|v| v.to_str().ok())
    }

    /// Asserts a Tollgate refusal: status, code in body and header, request id present.
    pub fn assert_refused(&self, status: u16, code: &str) -> serde_json::Value {
        assert_eq!(self.status.as_u16(), status, "body: {:?}", self.body);
        assert_eq!(self.error_header(), Some(code));
        let json = self.json();
        assert_eq!(json["error"], code);
        assert!(json["request_id"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(json["message"].as_str().is_some_and(|s| !s.is_empty()));
        json
    }
}

/// Sends one request over a fresh connection; `target` goes on the request line as is.
pub async fn send(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)], body: Bytes) -> Answer {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let mut builder = Request::builder().method(method).uri(target);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let response = sender.send_request(builder.body(Full::new(body)).unwrap()).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    Answer { status: parts.status, headers: parts.headers, body }
}

pub async fn get(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> Answer {
    send(addr, "GET", target, headers, Bytes::new()).await
}

/// A GET through the proxy whose answer is returned as soon as its head arrives, so a test can
/// read the body frame by frame.
pub async fn get_streaming(addr: SocketAddr, target: &str, proxy_authorization: &str) -> Response<Incoming> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let request = Request::get(target)
        .header("proxy-authorization", proxy_authorization)
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    sender.send_request(request).await.unwrap()
}

/// Everything a peer sends until it closes or falls silent for `idle`.
pub async fn read_until_quiet(
    stream: &mut (impl tokio::io::AsyncReadExt + Unpin),
    idle: std::time::Duration,
) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(Ok(n)) = tokio::time::timeout(idle, stream.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).to_string()
}

/// One HTTP/1.1 response head, read byte by byte so nothing after it is consumed.
pub async fn read_head(stream: &mut (impl tokio::io::AsyncReadExt + Unpin)) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => buf.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&buf).to_string()
}
