//! Request heads for the fast path. A head is taken only when its meaning is plain: HTTP/1.1,
//! not `CONNECT`, an origin-form or absolute-form target, no `Transfer-Encoding`, `Expect` or
//! `Upgrade`, at most one `Content-Length` of digits, and a body of at most [`MAX_BODY`]
//! bytes that arrived with the head. Anything else is left, unread, for hyper; so is any head
//! hyper would refuse, which then answers it as it always has.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Uri, Version};

use crate::body::Inbound;
use crate::proxy::headers::{content_length, KnownNames};

/// Most header fields in a head taken here (hyper's own limit).
const MAX_HEADERS: usize = 100;

/// Largest body read whole with its head.
pub const MAX_BODY: u64 = 64 * 1024;

/// What a connection keeps from one request head to the next.
#[derive(Default)]
pub struct Scratch {
    /// Each field's name and where its value sits in the head.
    fields: Vec<(HeaderName, [u32; 2])>,
    names: KnownNames,
}

/// A request for the fast path, taken off the read buffer.
#[derive(Debug)]
pub struct Taken {
    pub request: Request<Inbound>,
    /// The caller asked for the connection to close after its answer.
    pub close: bool,
}

/// A request the fast path does not take; the read buffer is left as it was.
#[derive(Debug)]
pub struct NotFast;

/// Parses the request at the front of `read`: `Ok(None)` while its head is incomplete. A head
/// still incomplete at `limit` bytes is [`NotFast`].
pub fn parse(read: &mut BytesMut, scratch: &mut Scratch, limit: usize) -> Result<Option<Taken>, NotFast> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut head = httparse::Request::new(&mut []);
    let length = match httparse::ParserConfig::default().parse_request_with_uninit_headers(&mut head, read, &mut slots)
    {
        Ok(httparse::Status::Complete(n)) if n <= limit => n,
        Ok(httparse::Status::Partial) if read.len() < limit => return Ok(None),
        _ => return Err(NotFast),
    };
    let (Some(1), Some(method), Some(target)) = (head.version, head.method, head.path) else {
        return Err(NotFast);
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else { return Err(NotFast) };
    let form = target.as_bytes().first().is_some_and(|&b| b == b'/' || b.is_ascii_alphabetic());
    if method == Method::CONNECT || !form {
        return Err(NotFast);
    }
    let base = read.as_ptr() as usize;
    let span = |part: &[u8]| {
        let start = (part.as_ptr() as usize - base) as u32;
        [start, start + part.len() as u32]
    };
    let target = span(target.as_bytes());
    let Scratch { fields, names } = scratch;
    fields.clear();
    let mut framing = Framing::default();
    for (at, field) in head.headers.iter().enumerate() {
        let Some(name) = names.name(at, field.name.as_bytes()) else { return Err(NotFast) };
        if !framing.note(&name, field.value) {
            return Err(NotFast);
        }
        fields.push((name, span(field.value)));
    }
    let body = framing.length.unwrap_or(0);
    if body > MAX_BODY || ((read.len() - length) as u64) < body {
        return Err(NotFast);
    }
    let head = read.split_to(length).freeze();
    let body = if body == 0 { Bytes::new() } else { read.split_to(body as usize).freeze() };
    let Some(request) = build(method, &head, target, fields, body.clone()) else {
        // Not something the `http` types hold (an over-long target, say): hyper decides.
        let mut again = BytesMut::with_capacity(head.len() + body.len() + read.len());
        again.extend_from_slice(&head);
        again.extend_from_slice(&body);
        again.extend_from_slice(read);
        *read = again;
        return Err(NotFast);
    };
    Ok(Some(Taken { request, close: framing.close }))
}

/// The request, its values sharing the head's memory.
fn build(
    method: Method,
    head: &Bytes,
    target: [u32; 2],
    fields: &mut Vec<(HeaderName, [u32; 2])>,
    body: Bytes,
) -> Option<Request<Inbound>> {
    let slice = |[start, end]: [u32; 2]| head.slice(start as usize..end as usize);
    let uri = Uri::from_maybe_shared(slice(target)).ok()?;
    let mut headers = HeaderMap::with_capacity(fields.len());
    for (name, value) in fields.drain(..) {
        headers.append(name, HeaderValue::from_maybe_shared(slice(value)).ok()?);
    }
    let mut request = Request::new(Inbound::read(body));
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    Some(request)
}

/// What the framing and connection fields of a head said.
#[derive(Default)]
struct Framing {
    length: Option<u64>,
    close: bool,
}

impl Framing {
    /// Takes note of one field; false when the head is not one the fast path takes.
    fn note(&mut self, name: &HeaderName, value: &[u8]) -> bool {
        if *name == header::CONTENT_LENGTH {
            if self.length.is_some() {
                return false;
            }
            self.length = content_length(value);
            return self.length.is_some();
        }
        if *name == header::CONNECTION {
            for option in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if option.eq_ignore_ascii_case(b"close") {
                    self.close = true;
                } else if option.eq_ignore_ascii_case(b"upgrade") {
                    return false;
                }
            }
            return true;
        }
        !(*name == header::TRANSFER_ENCODING || *name == header::EXPECT || *name == header::UPGRADE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> (Result<Option<Taken>, NotFast>, BytesMut) {
        let mut read = BytesMut::from(text.as_bytes());
        let parsed = parse(&mut read, &mut Scratch::default(), 16 * 1024);
        (parsed, read)
    }

    #[test]
    fn plain_requests_are_taken_with_their_bodies() {
        let text = "POST http://api.test/v1?q=1 HTTP/1.1\r\nHost: api.test\r\nX-Tool: a\r\nx-tool: b\r\n\
                    Connection: keep-alive, close\r\nContent-Length: 7\r\n\r\n{\"a\":1}GET / HTTP/1.1\r\n";
        let (parsed, read) = parse_text(text);
        let Ok(Some(Taken { request, close })) = parsed else { panic!("not taken: {parsed:?}") };
        assert!(close);
        assert_eq!(request.method(), Method::POST);
        assert_eq!(request.uri().to_string(), "http://api.test/v1?q=1");
        assert_eq!(request.version(), Version::HTTP_11);
        let tools: Vec<_> = request.headers().get_all("x-tool").iter().map(|v| v.as_bytes().to_vec()).collect();
        assert_eq!(tools, [b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(http_body::Body::size_hint(request.body()).exact(), Some(7));
        // The next request's bytes stay.
        assert_eq!(&read[..], b"GET / HTTP/1.1\r\n");
        let (parsed, read) = parse_text("GET /x HTTP/1.1\r\nhost: a\r\n\r\n");
        assert!(matches!(parsed, Ok(Some(Taken { close: false, .. }))));
        assert!(read.is_empty());
    }

    #[test]
    fn anything_else_is_left_whole_for_hyper() {
        for text in [
            "GET / HTTP/1.0\r\n\r\n",
            "CONNECT api.test:443 HTTP/1.1\r\nhost: api.test:443\r\n\r\n",
            "OPTIONS * HTTP/1.1\r\n\r\n",
            "POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
            "POST / HTTP/1.1\r\ncontent-length: 3\r\ncontent-length: 3\r\n\r\nabc",
            "POST / HTTP/1.1\r\ncontent-length: 3, 3\r\n\r\nabc",
            "POST / HTTP/1.1\r\ncontent-length: +3\r\n\r\nabc",
            "POST / HTTP/1.1\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\nabc",
            "POST / HTTP/1.1\r\ncontent-length: 5\r\n\r\nabc",
            "POST / HTTP/1.1\r\ncontent-length: 65537\r\n\r\n",
            "PUT / HTTP/1.1\r\nexpect: 100-continue\r\ncontent-length: 1\r\n\r\n",
            "GET / HTTP/1.1\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\r\n",
            "GET / HTTP/1.1\r\nupgrade: h2c\r\n\r\n",
            "GET / HTTP/1.1\r\nbad name: v\r\n\r\n",
            "GET / HTTP/1.1\r\nx: a\r\n folded\r\n\r\n",
            "G\x01T / HTTP/1.1\r\n\r\n",
        ] {
            let (parsed, read) = parse_text(text);
            assert!(matches!(parsed, Err(NotFast)), "{text:?}: {parsed:?}");
            assert_eq!(&read[..], text.as_bytes(), "{text:?}");
        }
        // A target the `http` types refuse is put back after the head was split off.
        let long = format!("GET /{} HTTP/1.1\r\nhost: a\r\n\r\nrest", "a".repeat(70_000));
        let mut read = BytesMut::from(long.as_bytes());
        assert!(matches!(parse(&mut read, &mut Scratch::default(), 128 * 1024), Err(NotFast)));
        assert_eq!(&read[..], long.as_bytes());
    }

    #[test]
    fn partial_heads_wait_until_the_limit() {
        let (parsed, read) = parse_text("GET / HTTP/1.1\r\nhost: a\r\n");
        assert!(matches!(parsed, Ok(None)));
        assert_eq!(read.len(), 25);
        let mut big = BytesMut::from(&b"GET / HTTP/1.1\r\nx-filler: "[..]);
        big.resize(1024, b'a');
        assert!(matches!(parse(&mut big, &mut Scratch::default(), 1024), Err(NotFast)));
        assert_eq!(big.len(), 1024);
        // A whole head past the limit goes to hyper too.
        let mut whole = BytesMut::from(&b"GET / HTTP/1.1\r\nx-filler: "[..]);
        whole.resize(1024, b'a');
        whole.extend_from_slice(b"\r\n\r\n");
        assert!(matches!(parse(&mut whole, &mut Scratch::default(), 1024), Err(NotFast)));
    }
}
