//! Request heads out, and how a request body is framed (RFC 9112 sections 6 and 7).
//!
//! The head is written from values that are valid by construction (`http`'s method, names and
//! values, which cannot hold CR or LF) plus the normalized target and the credential, which
//! are checked byte by byte here.

use http::header::{self, HeaderMap, HeaderName};
use http::Method;

use super::fields::first;
use super::Error;

/// What the request head is written from.
pub struct Outbound<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// The caller's headers, written if `filter` forwards them. `Content-Length` and
    /// `Transfer-Encoding` never are: the framing below decides them.
    pub headers: &'a HeaderMap,
    pub filter: &'a (dyn Forward + Sync),
    /// `host[:port]` of the target.
    pub host: &'a str,
    /// The credential's header and its value in three parts: `prefix{token}suffix`.
    pub credential: (&'a HeaderName, &'a str, &'a str, &'a str),
    /// Asks for a WebSocket upgrade (`Connection: Upgrade`, `Upgrade: websocket`).
    pub upgrade: bool,
}

/// Which of the caller's header fields are written upstream (the request path's rules).
pub trait Forward {
    fn forwards(&self, name: &HeaderName) -> bool;
}

/// How a request body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFraming {
    /// No body and no length header (a GET, say).
    Empty,
    Length(u64),
    Chunked,
}

impl RequestFraming {
    /// From the body's state and the caller's headers. A body without content keeps a
    /// `Content-Length: 0` where the caller sent one or the method expects a body.
    pub fn of(method: &Method, headers: &HeaderMap, at_end: bool, exact: Option<u64>) -> RequestFraming {
        if at_end {
            let expects_body = *method == Method::POST || *method == Method::PUT || *method == Method::PATCH;
            return match first(headers, &header::CONTENT_LENGTH).is_some() || expects_body {
                true => RequestFraming::Length(0),
                false => RequestFraming::Empty,
            };
        }
        match exact {
            Some(n) => RequestFraming::Length(n),
            None => RequestFraming::Chunked,
        }
    }
}

/// Whether `text` may stand in a request line: visible ASCII only, so no space, CR or LF
/// can end the target early or start a header.
fn is_request_target(text: &str) -> bool {
    every(text.as_bytes(), |b| b.is_ascii_graphic())
}

/// Whether each byte passes `ok`. Every byte is looked at (no early exit), which lets the
/// compiler check many at once: these run on the path, host and credential of every request.
fn every(bytes: &[u8], ok: impl Fn(u8) -> bool) -> bool {
    bytes.iter().fold(true, |all, &b| all & ok(b))
}

/// Appends the request head to `buf`.
pub fn write_request(buf: &mut Vec<u8>, out: &Outbound<'_>, framing: RequestFraming) -> Result<(), Error> {
    if !out.path.starts_with('/')
        || !is_request_target(out.path)
        || !out.query.is_none_or(is_request_target)
        || !is_request_target(out.host)
    {
        return Err(Error::Target);
    }
    let (credential, prefix, token, suffix) = out.credential;
    if ![prefix, token, suffix].iter().all(|part| is_field_value(part.as_bytes())) {
        return Err(Error::Credential);
    }
    buf.extend_from_slice(out.method.as_str().as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(out.path.as_bytes());
    if let Some(query) = out.query {
        buf.push(b'?');
        buf.extend_from_slice(query.as_bytes());
    }
    buf.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in out.headers {
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING || !out.filter.forwards(name) {
            continue;
        }
        field(buf, name.as_str(), &[value.as_bytes()]);
    }
    field(buf, "host", &[out.host.as_bytes()]);
    field(buf, credential.as_str(), &[prefix.as_bytes(), token.as_bytes(), suffix.as_bytes()]);
    if out.upgrade {
        buf.extend_from_slice(b"connection: Upgrade\r\nupgrade: websocket\r\n");
    }
    match framing {
        RequestFraming::Empty => {}
        RequestFraming::Length(n) => {
            buf.extend_from_slice(b"content-length: ");
            buf.extend_from_slice(itoa_u64(n, &mut [0; 20]));
            buf.extend_from_slice(b"\r\n");
        }
        RequestFraming::Chunked => buf.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    buf.extend_from_slice(b"\r\n");
    Ok(())
}

fn field(buf: &mut Vec<u8>, name: &str, value: &[&[u8]]) {
    buf.extend_from_slice(name.as_bytes());
    buf.extend_from_slice(b": ");
    for part in value {
        buf.extend_from_slice(part);
    }
    buf.extend_from_slice(b"\r\n");
}

/// What a field value may hold (`HeaderValue`'s rule): no control bytes but tab, so no CR or
/// LF can end the field early.
fn is_field_value(bytes: &[u8]) -> bool {
    every(bytes, |b| (b >= 0x20) & (b != 0x7f) | (b == b'\t'))
}

/// `n` in decimal, written at the end of `scratch`.
fn itoa_u64(mut n: u64, scratch: &mut [u8; 20]) -> &[u8] {
    let mut at = scratch.len();
    loop {
        at -= 1;
        scratch[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &scratch[at..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn byte_rules() {
        for b in 0..=255u8 {
            let graphic = (0x21..=0x7e).contains(&b);
            let field = b == b'\t' || (b >= 0x20 && b != 0x7f);
            let text = [b'/', b, b'x'];
            assert_eq!(is_request_target(std::str::from_utf8(&text).unwrap_or("/ ")), graphic, "{b:#x}");
            assert_eq!(is_field_value(&[b'a', b, b'z']), field, "{b:#x}");
        }
        assert!(is_field_value(b"") && is_request_target(""));
        assert!(!is_field_value(b"Bearer abc\r\nX-Evil: 1"));
    }

    #[test]
    fn request_head() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("caller.example"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("999"));
        headers.append("x-a", HeaderValue::from_static("1"));
        headers.append("x-a", HeaderValue::from_static("2"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer caller"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("x-a"));
        let injected = header::AUTHORIZATION;
        // The request path's rules drop these three (proxy/headers.rs has their tests).
        struct Drop3;
        impl Forward for Drop3 {
            fn forwards(&self, name: &HeaderName) -> bool {
                !matches!(name.as_str(), "host" | "authorization" | "connection" | "x-a")
            }
        }
        let filter = Drop3;
        let mut out = Outbound {
            method: &Method::POST,
            path: "/v1/q",
            query: Some("a=1"),
            headers: &headers,
            filter: &filter,
            host: "api.example.com",
            credential: (&injected, "Bearer ", "tok-1", ""),
            upgrade: false,
        };
        let mut buf = Vec::new();
        assert!(write_request(&mut buf, &out, RequestFraming::Length(5)).is_ok());
        assert_eq!(
            String::from_utf8_lossy(&buf),
            "POST /v1/q?a=1 HTTP/1.1\r\nhost: api.example.com\r\nauthorization: Bearer tok-1\r\ncontent-length: 5\r\n\r\n"
        );
        out.upgrade = true;
        buf.clear();
        assert!(write_request(&mut buf, &out, RequestFraming::Empty).is_ok());
        assert!(String::from_utf8_lossy(&buf).ends_with("\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\r\n"));
        for (path, query, host) in [
            ("/a b", None, "h"),
            ("/a\r\nx: y", None, "h"),
            ("/a", Some("q=\n"), "h"),
            ("a", None, "h"),
            ("/é", None, "h"),
            ("/", None, "h\r\nx: y"),
            ("/", None, "h h"),
        ] {
            let out = Outbound { path, query, host, ..out };
            assert!(
                matches!(write_request(&mut Vec::new(), &out, RequestFraming::Empty), Err(Error::Target)),
                "{path} {host}"
            );
        }
        for token in ["a\r\nx-injected: 1", "a\nb", "nul\0"] {
            let out = Outbound { credential: (&injected, "Bearer ", token, ""), ..out };
            assert!(matches!(write_request(&mut Vec::new(), &out, RequestFraming::Empty), Err(Error::Credential)));
        }
        assert_eq!(itoa_u64(0, &mut [0; 20]), b"0");
        assert_eq!(itoa_u64(u64::MAX, &mut [0; 20]), u64::MAX.to_string().as_bytes());
    }

    #[test]
    fn request_framing() {
        let none = HeaderMap::new();
        let mut with_length = HeaderMap::new();
        with_length.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        assert_eq!(RequestFraming::of(&Method::GET, &none, true, Some(0)), RequestFraming::Empty);
        assert_eq!(RequestFraming::of(&Method::GET, &with_length, true, Some(0)), RequestFraming::Length(0));
        assert_eq!(RequestFraming::of(&Method::POST, &none, true, Some(0)), RequestFraming::Length(0));
        assert_eq!(RequestFraming::of(&Method::POST, &none, false, Some(7)), RequestFraming::Length(7));
        assert_eq!(RequestFraming::of(&Method::POST, &none, false, None), RequestFraming::Chunked);
    }
}
