//! Response heads in, and how an answer's body is framed (RFC 9112 section 6). The head is
//! parsed strictly, by the rules the listeners apply to requests: a line that does not end in
//! CRLF, obs-fold, `Content-Length` beside `Transfer-Encoding`, several `Transfer-Encoding`
//! fields or any coding but one `chunked`, or lengths that disagree fail the exchange (`502`,
//! the connection closed) rather than guessing where the answer ends.

use bytes::BytesMut;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};

use super::fields::{content_length, crlf_lines, response_drops, KnownNames};
use super::Error;

/// Largest response head accepted from an upstream.
pub const MAX_HEAD: usize = 64 * 1024;

/// Most header fields accepted in one response head.
const MAX_HEADERS: usize = 128;

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

/// Where one header field's name and value sit in the head, so the values can share its
/// memory once the head is split off the read buffer.
type Span = [u32; 4];

/// What a connection keeps from one response head to the next.
#[derive(Default)]
pub struct Scratch {
    spans: Vec<Span>,
    names: KnownNames,
}

/// Parses the response head at the front of `read`, removing it. Interim answers (1xx other
/// than 101) are read past. `None` until the head is complete. `scratch` is kept by the
/// connection.
///
/// The head comes back cleaned (SPEC section 4): hop-by-hop fields, those the upstream names
/// in `Connection`, and `X-Tollgate-Error` never enter the map. The framing fields are read
/// on the way, so nothing is looked up twice.
pub fn parse_response(
    read: &mut BytesMut,
    method: &Method,
    scratch: &mut Scratch,
) -> Result<Option<ResponseHead>, Error> {
    loop {
        let mut fields = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut []);
        let parsed =
            httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut response, &read[..], &mut fields);
        let length = match parsed {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if read.len() > MAX_HEAD => return Err(Error::HeadTooLarge),
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(Error::Head("too many header fields")),
            Err(_) => return Err(Error::Head("not an HTTP/1.x response head")),
        };
        if length > MAX_HEAD {
            return Err(Error::HeadTooLarge);
        }
        let base = read.as_ptr() as usize;
        let starts = response.headers.iter().map(|field| field.name.as_ptr() as usize - base);
        if !crlf_lines(&read[..length], starts) {
            return Err(Error::Head("a line does not end in CRLF"));
        }
        let code = response.code.unwrap_or(0);
        let status = StatusCode::from_u16(code).map_err(|_| Error::Head("status code out of range"))?;
        if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
            let _ = read.split_to(length);
            continue;
        }
        let version = response.version.unwrap_or(1);
        let offset = |part: &[u8]| (part.as_ptr() as usize - base) as u32;
        let Scratch { spans, names } = &mut *scratch;
        spans.clear();
        spans.extend(response.headers.iter().map(|field| {
            let (name, value) = (offset(field.name.as_bytes()), offset(field.value));
            [name, name + field.name.len() as u32, value, value + field.value.len() as u32]
        }));
        let head = read.split_to(length).freeze();
        let mut fields = Fields::default();
        let mut headers = HeaderMap::with_capacity(spans.len());
        for (at, &[name_start, name_end, value_start, value_end]) in spans.iter().enumerate() {
            let name =
                names.name(at, &head[name_start as usize..name_end as usize]).ok_or(Error::Head("bad field name"))?;
            let value = &head[value_start as usize..value_end as usize];
            if fields.note(&name, value)? {
                continue;
            }
            let value = HeaderValue::from_maybe_shared(head.slice(value_start as usize..value_end as usize))
                .map_err(|_| Error::Head("bad field value"))?;
            headers.append(name, value);
        }
        for name in &fields.nominated {
            headers.remove(name);
        }
        let (framing, keep_alive) = fields.framing(status, version == 0, method)?;
        // The caller's answer is Tollgate's own HTTP/1.1 message whatever the upstream spoke:
        // the upstream's version only decides whether its connection stays open.
        let mut parts = http::Response::new(()).into_parts().0;
        parts.status = status;
        parts.headers = headers;
        return Ok(Some(ResponseHead { parts, framing, keep_alive }));
    }
}

/// What the framing and connection fields of a response head said.
#[derive(Default)]
struct Fields {
    close: bool,
    keep_alive: bool,
    /// Field names the upstream listed in `Connection`, to be removed.
    nominated: Vec<HeaderName>,
    /// `Transfer-Encoding` fields seen; each must say `chunked` and nothing else.
    transfer_encodings: u8,
    /// The one length every `Content-Length` field and list member agreed on.
    length: Option<u64>,
}

impl Fields {
    /// Takes note of one field; true when the field is not passed on.
    fn note(&mut self, name: &HeaderName, value: &[u8]) -> Result<bool, Error> {
        if *name == header::CONTENT_LENGTH {
            self.note_length(value)?;
            return Ok(false);
        }
        if *name == header::CONNECTION {
            for option in value.split(|&b| b == b',').map(<[u8]>::trim_ascii).filter(|o| !o.is_empty()) {
                if option.eq_ignore_ascii_case(b"close") {
                    self.close = true;
                } else if option.eq_ignore_ascii_case(b"keep-alive") {
                    self.keep_alive = true;
                } else if let Ok(nominated) = HeaderName::from_bytes(option) {
                    self.nominated.push(nominated);
                }
            }
            return Ok(true);
        }
        if *name == header::TRANSFER_ENCODING {
            if !value.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                return Err(Error::Head("a transfer coding other than a single chunked"));
            }
            self.transfer_encodings = self.transfer_encodings.saturating_add(1);
            if self.transfer_encodings > 1 {
                return Err(Error::Head("more than one Transfer-Encoding field"));
            }
            return Ok(true);
        }
        Ok(response_drops(name))
    }

    fn note_length(&mut self, value: &[u8]) -> Result<(), Error> {
        for member in value.split(|&b| b == b',') {
            let n = content_length(member.trim_ascii()).ok_or(Error::Head("bad Content-Length"))?;
            if self.length.is_some_and(|l| l != n) {
                return Err(Error::Head("conflicting Content-Length values"));
            }
            self.length = Some(n);
        }
        Ok(())
    }

    /// The body's framing and whether the connection stays open, by RFC 9112 section 6.3.
    /// `Content-Length` beside `Transfer-Encoding`, or `Transfer-Encoding` in an HTTP/1.0
    /// answer, is refused: two readers could end the body in different places.
    fn framing(&self, status: StatusCode, http10: bool, method: &Method) -> Result<(Framing, bool), Error> {
        if self.transfer_encodings > 0 && self.length.is_some() {
            return Err(Error::Head("Content-Length with Transfer-Encoding"));
        }
        if self.transfer_encodings > 0 && http10 {
            return Err(Error::Head("Transfer-Encoding in an HTTP/1.0 answer"));
        }
        let keep_alive = match http10 {
            true => self.keep_alive,
            false => !self.close,
        };
        Ok(if status == StatusCode::SWITCHING_PROTOCOLS {
            (Framing::Upgrade, false)
        } else if *method == Method::HEAD || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
            (Framing::None, keep_alive)
        } else if self.transfer_encodings > 0 {
            (Framing::Chunked, keep_alive)
        } else {
            match self.length {
                Some(n) => (Framing::Length(n), keep_alive),
                None => (Framing::UntilClose, false),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, method: Method) -> Result<Option<ResponseHead>, Error> {
        parse_response(&mut BytesMut::from(text.as_bytes()), &method, &mut Scratch::default())
    }

    fn framing_of(text: &str) -> Result<(Framing, bool), Error> {
        let head = parse(text, Method::GET)?.ok_or(Error::Closed)?;
        Ok((head.framing, head.keep_alive))
    }

    #[test]
    fn response_framing() {
        let ok = |extra: &str| framing_of(&format!("HTTP/1.1 200 OK\r\n{extra}\r\n"));
        assert_eq!(ok("content-length: 11\r\n").ok(), Some((Framing::Length(11), true)));
        assert_eq!(ok("content-length: 11\r\ncontent-length: 11\r\n").ok(), Some((Framing::Length(11), true)));
        assert_eq!(ok("content-length: 11, 11\r\n").ok(), Some((Framing::Length(11), true)));
        assert_eq!(ok("content-length: 11\r\nconnection: close\r\n").ok(), Some((Framing::Length(11), false)));
        assert_eq!(ok("transfer-encoding: chunked\r\n").ok(), Some((Framing::Chunked, true)));
        assert_eq!(ok("Transfer-Encoding:  Chunked \r\n").ok(), Some((Framing::Chunked, true)));
        assert_eq!(ok("").ok(), Some((Framing::UntilClose, false)));
        for bad in [
            "content-length: 11\r\ncontent-length: 12\r\n",
            "content-length: 1,2\r\n",
            "content-length: -1\r\n",
            "content-length: +5\r\n",
            "content-length: 0x10\r\n",
            "content-length: 99999999999999999999\r\n",
            "content-length: \r\n",
            // Ambiguous framing: refused, never guessed (RFC 9112 section 6.3).
            "content-length: 3\r\ntransfer-encoding: chunked\r\n",
            "transfer-encoding: chunked\r\ncontent-length: 3\r\n",
            "transfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n",
            "transfer-encoding: gzip\r\ntransfer-encoding: chunked\r\n",
            "transfer-encoding: gzip, chunked\r\n",
            "transfer-encoding: chunked, gzip\r\n",
            "transfer-encoding: gzip\r\n",
            "transfer-encoding: chunked, gzip, chunked\r\n",
            // Lines that do not end in CRLF, and obs-fold.
            "x-a: 1\ncontent-length: 0\r\n",
            "x-a: 1\r\ncontent-length: 0\n",
            "x-a: 1\r\n folded\r\ncontent-length: 0\r\n",
            "x-a: 1\rx\r\ncontent-length: 0\r\n",
        ] {
            assert!(matches!(ok(bad), Err(Error::Head(_))), "{bad:?}");
        }
        assert!(matches!(framing_of("HTTP/1.1 200 OK\ncontent-length: 0\r\n\r\n"), Err(Error::Head(_))));
        assert!(matches!(framing_of("HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"), Err(Error::Head(_))));
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
        let head = parse_response(&mut read, &Method::POST, &mut Scratch::default()).ok().flatten();
        let Some(head) = head else { panic!("no head") };
        assert_eq!(head.parts.status, StatusCode::CREATED);
        assert_eq!(head.parts.headers.get("x-v").map(|v| v.as_bytes()), Some(&b"\xe9t\xe9"[..]));
        assert_eq!(&read[..], b"ok");
        // Partial: nothing is consumed.
        let mut read = BytesMut::from(&b"HTTP/1.1 200 OK\r\ncontent-le"[..]);
        assert!(matches!(parse_response(&mut read, &Method::GET, &mut Scratch::default()), Ok(None)));
        assert_eq!(read.len(), 27);
        let mut huge = BytesMut::from(&b"HTTP/1.1 200 OK\r\nx-filler: "[..]);
        huge.resize(MAX_HEAD + 1, b'a');
        assert!(matches!(parse_response(&mut huge, &Method::GET, &mut Scratch::default()), Err(Error::HeadTooLarge)));
        let many: String = (0..200).map(|i| format!("x-{i}: v\r\n")).collect();
        assert!(matches!(parse(&format!("HTTP/1.1 200 OK\r\n{many}\r\n"), Method::GET), Err(Error::Head(_))));
        for bad in ["HTTP/1.1 200 OK\r\nbad name: v\r\n\r\n", "HTTP/2 200 OK\r\n\r\n", "SSH-2.0-x\r\n\r\n"] {
            assert!(matches!(parse(bad, Method::GET), Err(Error::Head(_))), "{bad:?}");
        }
    }

    #[test]
    fn response_cleaning() {
        let text = "HTTP/1.1 200 OK\r\nconnection: keep-alive, X-Hop\r\nx-hop: 1\r\nkeep-alive: timeout=5\r\nx-tollgate-error: endpoint_not_allowed\r\ncontent-type: application/json\r\nset-cookie: a=1\r\nset-cookie: b=2\r\nproxy-authenticate: Basic\r\ncontent-length: 0\r\n\r\n";
        let Ok(Some(head)) = parse(text, Method::GET) else { panic!("no head") };
        let mut left: Vec<(&str, &str)> =
            head.parts.headers.iter().map(|(k, v)| (k.as_str(), v.to_str().unwrap_or(""))).collect();
        left.sort();
        assert_eq!(
            left,
            [
                ("content-length", "0"),
                ("content-type", "application/json"),
                ("set-cookie", "a=1"),
                ("set-cookie", "b=2")
            ]
        );
        assert!(head.keep_alive);
    }
}
