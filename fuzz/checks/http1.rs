//! What must hold for any bytes given to Tollgate's HTTP/1.1 parsers: the request head parser
//! (`http1::head`), the response head parser (`http1::response`) and the chunked decoder
//! (`http1::chunked`). Shared by the fuzz targets and by `tests/fuzz_seeds.rs`, which runs
//! every committed seed and every input that ever failed through the same checks.

#![allow(dead_code)] // each fuzz target uses one of these checks

use bytes::BytesMut;
use http::Method;
use tollgate::http1::chunked::{Decoder, Step};
use tollgate::http1::head::{self, NotTaken, Taken};
use tollgate::http1::response::{self, Framing};

const LIMIT: usize = 16 * 1024;

/// Whether every CR is followed by LF and every LF preceded by CR, byte by byte (the check's
/// own reading; the parsers use `http1::fields::crlf_lines`).
fn crlf_only(head: &[u8]) -> bool {
    (0..head.len()).all(|i| match head[i] {
        b'\r' => head.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && head[i - 1] == b'\r',
        _ => true,
    })
}

/// The framing fields of a complete head as a second, independent reading sees them:
/// (Content-Length fields, Transfer-Encoding fields, whether every line ends in CRLF).
fn second_reading(head: &[u8]) -> (usize, usize, bool) {
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    let lines = text.split("\r\n").skip(1);
    let named = |name: &str| lines.clone().filter(|l| l.starts_with(name) && l[name.len()..].starts_with(':')).count();
    (named("content-length"), named("transfer-encoding"), crlf_only(head))
}

/// The request head parser never panics; what it takes is plainly framed and consumed
/// exactly; what it hands to hyper was screened; what it waits on is left untouched.
pub fn request_head(data: &[u8]) {
    let mut read = BytesMut::from(data);
    let parsed = head::parse(&mut read, &mut head::Scratch::default(), LIMIT);
    match parsed {
        Ok(Some(Taken { request, .. })) => {
            let consumed = data.len() - read.len();
            assert_eq!(&read[..], &data[consumed..], "bytes after the request must stay");
            // Empty lines before the request line are skipped (RFC 9112 section 2.2).
            let start = data.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(0);
            let head_end = start
                + data[start..].windows(4).position(|w| w == b"\r\n\r\n").expect("a taken head ends in CRLF CRLF")
                + 4;
            let (lengths, codings, crlf) = second_reading(&data[..head_end]);
            assert!(crlf, "a taken head has a line that does not end in CRLF");
            assert_eq!(codings, 0, "a taken head has Transfer-Encoding");
            assert!(lengths <= 1, "a taken head has several Content-Lengths");
            let body = http_body::Body::size_hint(request.body()).exact().unwrap_or(0) as usize;
            assert_eq!(consumed, head_end + body, "the body taken is not the one framed");
            assert!(request.headers().get(http::header::TRANSFER_ENCODING).is_none());
        }
        Ok(None) | Err(NotTaken::Hyper) => {
            assert_eq!(&read[..], data, "a head that is not taken is left whole");
            if let (Err(NotTaken::Hyper), Some(end)) = (&parsed, data.windows(4).position(|w| w == b"\r\n\r\n")) {
                let (lengths, codings, crlf) = second_reading(&data[..end + 4]);
                // What hyper reads was screened: no ambiguity left in it.
                if end + 4 <= LIMIT {
                    assert!(crlf || !data[..end + 4].contains(&b'\n'), "hyper got a head with a bare line end");
                    assert!(!(lengths > 0 && codings > 0), "hyper got Content-Length with Transfer-Encoding");
                    assert!(codings <= 1, "hyper got several Transfer-Encodings");
                }
            }
        }
        Err(NotTaken::Refused(reason) | NotTaken::TooLarge(reason)) => assert!(!reason.is_empty()),
    }
}

/// The response head parser never panics; a head it accepts has one certain framing.
pub fn response_head(data: &[u8]) {
    let method = if data.first().is_some_and(|b| b & 1 == 1) { Method::HEAD } else { Method::GET };
    let mut read = BytesMut::from(data);
    if let Ok(Some(head)) = response::parse_response(&mut read, &method, &mut response::Scratch::default()) {
        let consumed = data.len() - read.len();
        let (lengths, codings, crlf) = second_reading(&data[..consumed]);
        assert!(crlf, "an accepted answer head has a line that does not end in CRLF");
        assert!(!(lengths > 0 && codings > 0), "an accepted answer has Content-Length with Transfer-Encoding");
        assert!(codings <= 1, "an accepted answer has several Transfer-Encodings");
        assert!(head.parts.headers.get(http::header::TRANSFER_ENCODING).is_none(), "hop-by-hop field passed on");
        if head.framing == Framing::Chunked {
            assert!(head.parts.headers.get(http::header::CONTENT_LENGTH).is_none());
        }
    }
}

/// Decodes `data` fed `piece` bytes at a time: the data, and whether it ended well.
fn decode(data: &[u8], piece: usize) -> (Vec<u8>, Result<usize, &'static str>) {
    let mut decoder = Decoder::default();
    let mut read = BytesMut::new();
    let (mut fed, mut out) = (0, Vec::new());
    loop {
        match decoder.step(&mut read) {
            Ok(Step::Data(bytes)) => out.extend_from_slice(&bytes),
            Ok(Step::Again) => {}
            Ok(Step::End) => return (out, Ok(read.len() + data.len() - fed)),
            Ok(Step::More(_)) if fed == data.len() => return (out, Err("cut short")),
            Ok(Step::More(_)) => {
                let next = (fed + piece).min(data.len());
                read.extend_from_slice(&data[fed..next]);
                fed = next;
            }
            Err(e) => return (out, Err(e)),
        }
    }
}

/// The chunked decoder never panics, and reads the same body however the bytes arrive.
pub fn chunked(data: &[u8]) {
    let whole = decode(data, data.len().max(1));
    for piece in [1, 2, 7] {
        let (body, end) = decode(data, piece);
        assert_eq!(end.is_ok(), whole.1.is_ok(), "the ending depends on how the bytes arrive");
        if let (Ok(rest), Ok(whole_rest)) = (end, whole.1) {
            assert_eq!(body, whole.0, "the body depends on how the bytes arrive");
            assert_eq!(rest, whole_rest);
        }
    }
}
