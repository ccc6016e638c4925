//! Request heads, read by the listeners' fast path, which sees every head a connection sends
//! until it hands the connection to hyper (after which hyper serves that one request only).
//!
//! Every complete head is screened first (RFC 9112): one whose framing two readers could take
//! differently (`Content-Length` with `Transfer-Encoding`, several `Transfer-Encoding` fields
//! or any coding but one `chunked`, several or invalid `Content-Length`s), or with a line that
//! does not end in CRLF, obs-fold, or a malformed line, is [`NotTaken::Refused`]; one over
//! the size limit or with more than 100 fields is [`NotTaken::TooLarge`]. Neither reaches
//! hyper.
//!
//! A head is then taken only when its meaning is plain: HTTP/1.1, not `CONNECT`, an
//! origin-form or absolute-form target, no `Transfer-Encoding`, `Expect` or `Upgrade`, at most
//! one `Content-Length`, and a body of at most [`MAX_BODY`] bytes (waited for when it follows
//! the head). Anything else is left, unread, for hyper.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Uri, Version};

use super::fields::{content_length, crlf_lines, KnownNames};
use crate::body::Inbound;

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

/// Why a head was not taken.
#[derive(Debug, PartialEq, Eq)]
pub enum NotTaken {
    /// A request the fast path does not take; the read buffer is left as it was, for hyper.
    Hyper,
    /// A head no one may act on (RFC 9112): its framing is ambiguous or it is malformed. It
    /// is answered `400` and the connection closed, since where its body ends is unknown.
    Refused(&'static str),
    /// A head over the size limit, or with more than 100 fields: answered `431` and the
    /// connection closed, unread further.
    TooLarge(&'static str),
}

/// Parses the request at the front of `read`: `Ok(None)` while its head is incomplete. A head
/// still incomplete at `limit` bytes is [`NotTaken::TooLarge`]. Every complete head is
/// screened first, whoever serves it (see the module documentation).
pub fn parse(read: &mut BytesMut, scratch: &mut Scratch, limit: usize) -> Result<Option<Taken>, NotTaken> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut head = httparse::Request::new(&mut []);
    let length = match httparse::ParserConfig::default().parse_request_with_uninit_headers(&mut head, read, &mut slots)
    {
        Ok(httparse::Status::Complete(n)) if n <= limit => n,
        Ok(httparse::Status::Partial) if read.len() < limit => return Ok(None),
        Ok(_) => return Err(NotTaken::TooLarge("the request head is larger than the limit")),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(NotTaken::TooLarge("the request head has more than 100 fields"));
        }
        // obs-fold, a bad name or token, a bare CR, ...: RFC 9112 sections 2.2, 5.1, 5.2.
        Err(_) => return Err(NotTaken::Refused("the request head is malformed")),
    };
    let base = read.as_ptr() as usize;
    let starts = head.headers.iter().map(|field| field.name.as_ptr() as usize - base);
    if !crlf_lines(&read[..length], starts) {
        return Err(NotTaken::Refused("a line of the request head does not end in CRLF"));
    }
    let span = |part: &[u8]| {
        let start = (part.as_ptr() as usize - base) as u32;
        [start, start + part.len() as u32]
    };
    let Scratch { fields, names } = scratch;
    fields.clear();
    let mut framing = Framing::default();
    for (at, field) in head.headers.iter().enumerate() {
        let Some(name) = names.name(at, field.name.as_bytes()) else {
            return Err(NotTaken::Refused("the request head is malformed"));
        };
        framing.note(&name, field.value);
        fields.push((name, span(field.value)));
    }
    if let Some(reason) = framing.refusal(head.version == Some(0)) {
        return Err(NotTaken::Refused(reason));
    }
    let (Some(1), Some(method), Some(target)) = (head.version, head.method, head.path) else {
        return Err(NotTaken::Hyper);
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else { return Err(NotTaken::Hyper) };
    let form = target.as_bytes().first().is_some_and(|&b| b == b'/' || b.is_ascii_alphabetic());
    if method == Method::CONNECT || !form || framing.hyper {
        return Err(NotTaken::Hyper);
    }
    let target = span(target.as_bytes());
    let body = framing.length.unwrap_or(0);
    if body > MAX_BODY {
        return Err(NotTaken::Hyper);
    }
    if ((read.len() - length) as u64) < body {
        // The body is still on its way (clients often write it after the head): wait for it,
        // under the same head timeout.
        return Ok(None);
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
        return Err(NotTaken::Hyper);
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
    /// The one valid `Content-Length`.
    length: Option<u64>,
    lengths: u8,
    bad_length: bool,
    /// `Transfer-Encoding` fields, and whether one held anything but `chunked`.
    codings: u8,
    bad_coding: bool,
    close: bool,
    /// A field the fast path leaves to hyper: `Expect`, `Upgrade`, `Connection: upgrade`, a
    /// chunked body.
    hyper: bool,
}

impl Framing {
    /// Takes note of one field.
    fn note(&mut self, name: &HeaderName, value: &[u8]) {
        if *name == header::CONTENT_LENGTH {
            self.lengths = self.lengths.saturating_add(1);
            self.length = content_length(value);
            self.bad_length |= self.length.is_none();
        } else if *name == header::TRANSFER_ENCODING {
            self.codings = self.codings.saturating_add(1);
            self.bad_coding |= !value.trim_ascii().eq_ignore_ascii_case(b"chunked");
            self.hyper = true;
        } else if *name == header::CONNECTION {
            for option in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if option.eq_ignore_ascii_case(b"close") {
                    self.close = true;
                } else if option.eq_ignore_ascii_case(b"upgrade") {
                    self.hyper = true;
                }
            }
        } else if *name == header::EXPECT || *name == header::UPGRADE {
            self.hyper = true;
        }
    }

    /// Why the head's framing is refused (RFC 9112 sections 6.1 and 6.3), if it is: a body
    /// whose end two readers could place differently is never read.
    fn refusal(&self, http10: bool) -> Option<&'static str> {
        Some(match () {
            _ if self.codings > 0 && self.lengths > 0 => "the request has both Content-Length and Transfer-Encoding",
            _ if self.codings > 1 => "the request has more than one Transfer-Encoding field",
            _ if self.bad_coding => "the request's transfer coding is not a single chunked",
            _ if self.codings > 0 && http10 => "an HTTP/1.0 request has Transfer-Encoding",
            _ if self.lengths > 1 => "the request has more than one Content-Length field",
            _ if self.bad_length => "the request's Content-Length is not a number",
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> (Result<Option<Taken>, NotTaken>, BytesMut) {
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
            "POST / HTTP/1.1\r\nTransfer-Encoding:  Chunked \r\n\r\n0\r\n\r\n",
            "POST / HTTP/1.1\r\ncontent-length: 65537\r\n\r\n",
            "PUT / HTTP/1.1\r\nexpect: 100-continue\r\ncontent-length: 1\r\n\r\n",
            "GET / HTTP/1.1\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\r\n",
            "GET / HTTP/1.1\r\nupgrade: h2c\r\n\r\n",
        ] {
            let (parsed, read) = parse_text(text);
            assert_eq!(parsed.err(), Some(NotTaken::Hyper), "{text:?}");
            assert_eq!(&read[..], text.as_bytes(), "{text:?}");
        }
        // A target the `http` types refuse is put back after the head was split off.
        let long = format!("GET /{} HTTP/1.1\r\nhost: a\r\n\r\nrest", "a".repeat(70_000));
        let mut read = BytesMut::from(long.as_bytes());
        assert_eq!(parse(&mut read, &mut Scratch::default(), 128 * 1024).err(), Some(NotTaken::Hyper));
        assert_eq!(&read[..], long.as_bytes());
    }

    #[test]
    fn ambiguous_or_malformed_heads_are_refused_whoever_would_serve_them() {
        for (text, why) in [
            ("POST / HTTP/1.1\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\nabc", "both"),
            ("POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\nabc", "both"),
            ("POST / HTTP/1.1\r\ntransfer-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n", "more than one"),
            ("POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n", "more than one"),
            ("POST / HTTP/1.1\r\ntransfer-encoding: gzip, chunked\r\n\r\n", "not a single chunked"),
            ("POST / HTTP/1.1\r\ntransfer-encoding: chunked, gzip\r\n\r\n", "not a single chunked"),
            ("POST / HTTP/1.1\r\ntransfer-encoding: identity\r\n\r\n", "not a single chunked"),
            ("POST / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n", "HTTP/1.0"),
            (
                "CONNECT a.test:443 HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
                "more than one Content-Length",
            ),
            ("POST / HTTP/1.1\r\ncontent-length: 3\r\ncontent-length: 3\r\n\r\nabc", "more than one Content-Length"),
            ("POST / HTTP/1.1\r\ncontent-length: 3, 3\r\n\r\nabc", "not a number"),
            ("POST / HTTP/1.1\r\ncontent-length: +3\r\n\r\nabc", "not a number"),
            ("GET / HTTP/1.1\nhost: a\r\n\r\n", "CRLF"),
            ("GET / HTTP/1.1\r\nhost: a\n\r\n", "CRLF"),
            ("GET / HTTP/1.1\r\nhost: a\r\n\n", "CRLF"),
            ("GET / HTTP/1.1\r\nx: a\rb\r\n\r\n", "malformed"),
            ("GET / HTTP/1.1\r\nx: a\r\n folded\r\n\r\n", "malformed"),
            ("GET / HTTP/1.1\r\nbad name: v\r\n\r\n", "malformed"),
            ("G\x01T / HTTP/1.1\r\n\r\n", "malformed"),
        ] {
            let (parsed, _) = parse_text(text);
            match parsed {
                Err(NotTaken::Refused(reason)) => assert!(reason.contains(why), "{text:?}: {reason}"),
                other => panic!("{text:?} was not refused: {other:?}"),
            }
        }
    }

    #[test]
    fn a_body_that_follows_its_head_is_waited_for() {
        let (parsed, read) = parse_text("POST / HTTP/1.1\r\ncontent-length: 5\r\n\r\nabc");
        assert!(matches!(parsed, Ok(None)));
        assert_eq!(&read[..], b"POST / HTTP/1.1\r\ncontent-length: 5\r\n\r\nabc", "nothing taken");
        let (parsed, read) = parse_text("POST / HTTP/1.1\r\ncontent-length: 5\r\n\r\nabcdeGET");
        let Ok(Some(Taken { request, .. })) = parsed else { panic!("not taken: {parsed:?}") };
        assert_eq!(http_body::Body::size_hint(request.body()).exact(), Some(5));
        assert_eq!(&read[..], b"GET");
    }

    #[test]
    fn partial_heads_wait_until_the_limit() {
        let (parsed, read) = parse_text("GET / HTTP/1.1\r\nhost: a\r\n");
        assert!(matches!(parsed, Ok(None)));
        assert_eq!(read.len(), 25);
        let mut big = BytesMut::from(&b"GET / HTTP/1.1\r\nx-filler: "[..]);
        big.resize(1024, b'a');
        assert!(matches!(parse(&mut big, &mut Scratch::default(), 1024), Err(NotTaken::TooLarge(_))));
        assert_eq!(big.len(), 1024);
        // A whole head past the limit is refused too, as is one of more than 100 fields.
        let mut whole = BytesMut::from(&b"GET / HTTP/1.1\r\nx-filler: "[..]);
        whole.resize(1024, b'a');
        whole.extend_from_slice(b"\r\n\r\n");
        assert!(matches!(parse(&mut whole, &mut Scratch::default(), 1024), Err(NotTaken::TooLarge(_))));
        let many: String = (0..101).map(|i| format!("x-{i}: v\r\n")).collect();
        let (parsed, _) = parse_text(&format!("GET / HTTP/1.1\r\n{many}\r\n"));
        assert!(matches!(parsed, Err(NotTaken::TooLarge(_))), "{parsed:?}");
    }
}
