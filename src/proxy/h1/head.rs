//! Request heads out, response heads in, and how each message's body is framed (RFC 9112
//! sections 6 and 7).
//!
//! The request head is written from values that are valid by construction (`http`'s method,
//! names and values, which cannot hold CR or LF) plus the normalized target, which is checked
//! byte by byte here. The response head is parsed strictly: a length Tollgate cannot be sure
//! of fails the exchange rather than guessing where the answer ends.

use bytes::BytesMut;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};

use super::Error;

/// Largest response head accepted from an upstream.
pub const MAX_HEAD: usize = 64 * 1024;

/// Most header fields accepted in one response head.
const MAX_HEADERS: usize = 128;

/// What the request head is written from.
pub struct Outbound<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// Already cleaned, with `Host` and the credential in place. `Content-Length` and
    /// `Transfer-Encoding` are left out: the framing below decides them.
    pub headers: &'a HeaderMap,
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
            return match headers.contains_key(header::CONTENT_LENGTH) || expects_body {
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
    text.bytes().all(|b| b.is_ascii_graphic())
}

/// Appends the request head to `buf`.
pub fn write_request(buf: &mut Vec<u8>, out: &Outbound<'_>, framing: RequestFraming) -> Result<(), Error> {
    if !out.path.starts_with('/') || !is_request_target(out.path) || !out.query.is_none_or(is_request_target) {
        return Err(Error::Target);
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
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        buf.extend_from_slice(name.as_str().as_bytes());
        buf.extend_from_slice(b": ");
        buf.extend_from_slice(value.as_bytes());
        buf.extend_from_slice(b"\r\n");
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

/// How a response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: an answer to HEAD, 204, 304.
    None,
    /// `101 Switching Protocols`: the connection now carries another protocol.
    Upgrade,
    Length(u64),
    Chunked,
    /// No length given: the body ends when the upstream closes the connection.
    UntilClose,
}

/// A parsed response head.
#[derive(Debug)]
pub struct ResponseHead {
    pub parts: http::response::Parts,
    pub framing: Framing,
    /// Whether the connection may carry another request after this answer's body.
    pub keep_alive: bool,
}

/// Parses the response head at the front of `read`, removing it. Interim answers (1xx other
/// than 101) are read past. `None` until the head is complete.
pub fn parse_response(read: &mut BytesMut, method: &Method) -> Result<Option<ResponseHead>, Error> {
    loop {
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut fields);
        let length = match response.parse(&read[..]) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if read.len() > MAX_HEAD => return Err(Error::HeadTooLarge),
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(Error::Head("too many header fields")),
            Err(_) => return Err(Error::Head("not an HTTP/1.x response head")),
        };
        if length > MAX_HEAD {
            return Err(Error::HeadTooLarge);
        }
        let code = response.code.unwrap_or(0);
        let status = StatusCode::from_u16(code).map_err(|_| Error::Head("status code out of range"))?;
        if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
            let _ = read.split_to(length);
            continue;
        }
        let version = match response.version {
            Some(0) => Version::HTTP_10,
            _ => Version::HTTP_11,
        };
        // Where each name and value sits in the head, so the values can share its memory.
        let base = read.as_ptr() as usize;
        let mut spans = [(0usize, 0usize, 0usize, 0usize); MAX_HEADERS];
        let count = response.headers.len();
        for (span, field) in spans.iter_mut().zip(response.headers.iter()) {
            let name = field.name.as_ptr() as usize - base;
            let value = field.value.as_ptr() as usize - base;
            *span = (name, name + field.name.len(), value, value + field.value.len());
        }
        let head = read.split_to(length).freeze();
        let mut headers = HeaderMap::with_capacity(count);
        for &(name_start, name_end, value_start, value_end) in &spans[..count] {
            let name =
                HeaderName::from_bytes(&head[name_start..name_end]).map_err(|_| Error::Head("bad field name"))?;
            let value = HeaderValue::from_maybe_shared(head.slice(value_start..value_end))
                .map_err(|_| Error::Head("bad field value"))?;
            headers.append(name, value);
        }
        let (framing, keep_alive) = framing(status, version, method, &mut headers)?;
        // The caller's answer is Tollgate's own HTTP/1.1 message whatever the upstream spoke:
        // the upstream's version only decides whether its connection stays open.
        let mut parts = http::Response::new(()).into_parts().0;
        parts.status = status;
        parts.headers = headers;
        return Ok(Some(ResponseHead { parts, framing, keep_alive }));
    }
}

/// The body's framing and whether the connection stays open, by RFC 9112 section 6.3. A
/// `Content-Length` beside `Transfer-Encoding` is removed (the encoding wins, and the
/// connection is not reused), so the caller never sees a length that does not hold.
fn framing(
    status: StatusCode,
    version: Version,
    method: &Method,
    headers: &mut HeaderMap,
) -> Result<(Framing, bool), Error> {
    let mut keep_alive = match version {
        Version::HTTP_10 => connection_has(headers, b"keep-alive"),
        _ => !connection_has(headers, b"close"),
    };
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Ok((Framing::Upgrade, false));
    }
    if *method == Method::HEAD || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok((Framing::None, keep_alive));
    }
    if headers.contains_key(header::TRANSFER_ENCODING) {
        let chunked = last_coding_is_chunked(headers)?;
        if headers.remove(header::CONTENT_LENGTH).is_some() || version == Version::HTTP_10 {
            keep_alive = false;
        }
        return Ok(match chunked {
            true => (Framing::Chunked, keep_alive),
            false => (Framing::UntilClose, false),
        });
    }
    match content_length(headers)? {
        Some(n) => Ok((Framing::Length(n), keep_alive)),
        None => Ok((Framing::UntilClose, false)),
    }
}

fn connection_has(headers: &HeaderMap, option: &[u8]) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .any(|v| v.as_bytes().split(|&b| b == b',').any(|o| o.trim_ascii().eq_ignore_ascii_case(option)))
}

/// Whether the last transfer coding is `chunked`; `chunked` anywhere before it is refused.
fn last_coding_is_chunked(headers: &HeaderMap) -> Result<bool, Error> {
    let mut codings = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|c| !c.is_empty())
        .peekable();
    while let Some(coding) = codings.next() {
        let chunked = coding.eq_ignore_ascii_case(b"chunked");
        if codings.peek().is_none() {
            return Ok(chunked);
        }
        if chunked {
            return Err(Error::Head("chunked applied more than once"));
        }
    }
    Ok(false)
}

/// The one length every `Content-Length` field and list member agrees on.
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, Error> {
    let mut length = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        for member in value.as_bytes().split(|&b| b == b',') {
            let member = member.trim_ascii();
            if member.is_empty() || member.len() > 19 || !member.iter().all(u8::is_ascii_digit) {
                return Err(Error::Head("bad Content-Length"));
            }
            let n = member.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
            if length.is_some_and(|l| l != n) {
                return Err(Error::Head("conflicting Content-Length values"));
            }
            length = Some(n);
        }
    }
    Ok(length)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, method: Method) -> Result<Option<ResponseHead>, Error> {
        parse_response(&mut BytesMut::from(text.as_bytes()), &method)
    }

    fn framing_of(text: &str) -> Result<(Framing, bool), Error> {
        let head = parse(text, Method::GET)?.ok_or(Error::Closed)?;
        Ok((head.framing, head.keep_alive))
    }

    #[test]
    fn request_head() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("api.example.com"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("999"));
        headers.append("x-a", HeaderValue::from_static("1"));
        headers.append("x-a", HeaderValue::from_static("2"));
        let out = Outbound { method: &Method::POST, path: "/v1/q", query: Some("a=1"), headers: &headers };
        let mut buf = Vec::new();
        assert!(write_request(&mut buf, &out, RequestFraming::Length(5)).is_ok());
        assert_eq!(
            String::from_utf8_lossy(&buf),
            "POST /v1/q?a=1 HTTP/1.1\r\nhost: api.example.com\r\nx-a: 1\r\nx-a: 2\r\ncontent-length: 5\r\n\r\n"
        );
        for (path, query) in [("/a b", None), ("/a\r\nx: y", None), ("/a", Some("q=\n")), ("a", None), ("/é", None)] {
            let out = Outbound { method: &Method::GET, path, query, headers: &headers };
            assert!(
                matches!(write_request(&mut Vec::new(), &out, RequestFraming::Empty), Err(Error::Target)),
                "{path}"
            );
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

    #[test]
    fn response_framing() {
        let ok = |extra: &str| framing_of(&format!("HTTP/1.1 200 OK\r\n{extra}\r\n"));
        assert_eq!(ok("content-length: 11\r\n").ok(), Some((Framing::Length(11), true)));
        assert_eq!(ok("content-length: 11\r\ncontent-length: 11\r\n").ok(), Some((Framing::Length(11), true)));
        assert_eq!(ok("content-length: 11, 11\r\n").ok(), Some((Framing::Length(11), true)));
        assert_eq!(ok("content-length: 11\r\nconnection: close\r\n").ok(), Some((Framing::Length(11), false)));
        assert_eq!(ok("transfer-encoding: chunked\r\n").ok(), Some((Framing::Chunked, true)));
        assert_eq!(ok("transfer-encoding: gzip, Chunked\r\n").ok(), Some((Framing::Chunked, true)));
        assert_eq!(ok("transfer-encoding: gzip\r\n").ok(), Some((Framing::UntilClose, false)));
        assert_eq!(ok("").ok(), Some((Framing::UntilClose, false)));
        // Both: the encoding wins, the length is dropped, the connection is not reused.
        let head = parse("HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n", Method::GET);
        let head =
            head.ok().flatten().map(|h| (h.framing, h.keep_alive, h.parts.headers.contains_key("content-length")));
        assert_eq!(head, Some((Framing::Chunked, false, false)));
        for bad in [
            "content-length: 11\r\ncontent-length: 12\r\n",
            "content-length: 1,2\r\n",
            "content-length: -1\r\n",
            "content-length: +5\r\n",
            "content-length: 0x10\r\n",
            "content-length: 99999999999999999999\r\n",
            "content-length: \r\n",
            "transfer-encoding: chunked, gzip, chunked\r\n",
        ] {
            assert!(matches!(ok(bad), Err(Error::Head(_))), "{bad:?}");
        }
        assert_eq!(framing_of("HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\n").ok(), Some((Framing::Length(2), false)));
        assert_eq!(
            framing_of("HTTP/1.0 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\n").ok(),
            Some((Framing::Length(2), true))
        );
        assert_eq!(framing_of("HTTP/1.1 204 No Content\r\n\r\n").ok(), Some((Framing::None, true)));
        assert_eq!(
            framing_of("HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n").ok(),
            Some((Framing::None, true))
        );
        assert_eq!(framing_of("HTTP/1.1 101 Switching Protocols\r\n\r\n").ok(), Some((Framing::Upgrade, false)));
        let head = parse("HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n", Method::HEAD).ok().flatten();
        assert_eq!(head.map(|h| h.framing), Some(Framing::None));
    }

    #[test]
    fn interim_answers_and_limits() {
        let mut read = BytesMut::from(&b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early\r\nlink: </a>\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 2\r\nx-v: \xe9t\xe9\r\n\r\nok"[..]);
        let head = parse_response(&mut read, &Method::POST).ok().flatten();
        let Some(head) = head else { panic!("no head") };
        assert_eq!(head.parts.status, StatusCode::CREATED);
        assert_eq!(head.parts.headers.get("x-v").map(|v| v.as_bytes()), Some(&b"\xe9t\xe9"[..]));
        assert_eq!(&read[..], b"ok");
        // Partial: nothing is consumed.
        let mut read = BytesMut::from(&b"HTTP/1.1 200 OK\r\ncontent-le"[..]);
        assert!(matches!(parse_response(&mut read, &Method::GET), Ok(None)));
        assert_eq!(read.len(), 27);
        let mut huge = BytesMut::from(&b"HTTP/1.1 200 OK\r\nx-filler: "[..]);
        huge.resize(MAX_HEAD + 1, b'a');
        assert!(matches!(parse_response(&mut huge, &Method::GET), Err(Error::HeadTooLarge)));
        let many: String = (0..200).map(|i| format!("x-{i}: v\r\n")).collect();
        assert!(matches!(parse(&format!("HTTP/1.1 200 OK\r\n{many}\r\n"), Method::GET), Err(Error::Head(_))));
        for bad in ["HTTP/1.1 200 OK\r\nbad name: v\r\n\r\n", "HTTP/2 200 OK\r\n\r\n", "SSH-2.0-x\r\n\r\n"] {
            assert!(matches!(parse(bad, Method::GET), Err(Error::Head(_))), "{bad:?}");
        }
    }
}
