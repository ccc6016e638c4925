//! Header fields as HTTP/1.1 frames them (RFC 9110 section 7.6.1, RFC 9112 section 6): the
//! hop-by-hop fields no proxy forwards, the one strict `Content-Length` parser, the field-name
//! memory that spares re-parsing a peer's usual names, and a cheap first-value lookup. Shared
//! by both directions: request heads read here and written upstream, answers read from
//! upstream and written back.

use http::header::{HeaderMap, HeaderName};

use crate::error_code::X_TOLLGATE_ERROR;

// The lists are `matches!` patterns rather than slices: the compiler turns them into a switch
// on length and bytes instead of a string comparison per entry.

/// Fields that concern one connection only (RFC 9110 section 7.6.1), and the proxy ones.
pub fn is_listed_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "http2-settings"
    )
}

/// The first value of `name`. A request carries a handful of headers: walking them and
/// comparing names costs less than hashing the name for a lookup, which showed up in
/// profiles once per phase. Larger maps are looked up.
pub fn first<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a http::HeaderValue> {
    if headers.keys_len() > 16 {
        return headers.get(name);
    }
    headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
}

/// Whether an upstream response header is dropped: hop-by-hop headers go, and an upstream
/// can never pose as Tollgate by sending `X-Tollgate-Error`. Headers the upstream nominates
/// in `Connection` go too; the response head parser (`response.rs`) applies both as it
/// reads the head.
pub fn response_drops(name: &HeaderName) -> bool {
    is_listed_hop_by_hop(name.as_str()) || name == X_TOLLGATE_ERROR
}

/// Whether every line of a head httparse has parsed ends in CRLF, given where each field's
/// name starts. httparse refuses a CR not followed by LF, but takes a lone LF as a line end,
/// as many parsers do (RFC 9112 section 2.2 allows it); a device in front could then split the
/// head elsewhere, so Tollgate accepts CRLF only. Looking where httparse found the lines costs
/// two byte comparisons a line: whatever comes before the first line (the empty lines a
/// server skips) must be CRLFs, each field must start after a CRLF, and the head must end in
/// two.
pub fn crlf_lines(head: &[u8], field_starts: impl Iterator<Item = usize>) -> bool {
    let first_line = head.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
    let after_crlf = |at: usize| at >= 2 && head.get(at - 2..at) == Some(b"\r\n".as_slice());
    first_line % 2 == 0
        && head[..first_line].chunks_exact(2).all(|pair| pair == b"\r\n")
        && field_starts.fold(true, |all, at| all & after_crlf(at))
        && head.ends_with(b"\r\n\r\n")
}

/// A `Content-Length` value, or one member of a list of them: digits only, at most 19 (no
/// sign, no spaces, nothing a lenient parser would read differently).
pub fn content_length(value: &[u8]) -> Option<u64> {
    let digits = !value.is_empty() && value.len() <= 19 && value.iter().all(u8::is_ascii_digit);
    digits.then(|| value.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

/// Most field names remembered from one head to the next, and the longest one: at most 2 KiB
/// kept per connection, whatever its peer sends.
const KNOWN_NAMES: usize = 32;
const KNOWN_NAME_LEN: usize = 64;

/// The field names of a connection's last head, in order, as written and parsed. A peer sends
/// the same fields in the same order head after head, so a name written as its place's was
/// last time is taken as it is instead of parsed (and, for names the `http` crate does not
/// know, allocated) again.
#[derive(Debug, Default)]
pub struct KnownNames(Vec<(Vec<u8>, HeaderName)>);

impl KnownNames {
    /// The name of field number `at`, written `raw`; `None` when `raw` is not a field name.
    pub fn name(&mut self, at: usize, raw: &[u8]) -> Option<HeaderName> {
        if let Some((written, known)) = self.0.get(at) {
            if written.as_slice() == raw {
                return Some(known.clone());
            }
        }
        let name = HeaderName::from_bytes(raw).ok()?;
        if raw.len() > KNOWN_NAME_LEN {
            return Some(name);
        }
        if let Some((written, known)) = self.0.get_mut(at) {
            written.clear();
            written.extend_from_slice(raw);
            *known = name.clone();
        } else if at == self.0.len() && at < KNOWN_NAMES {
            self.0.push((raw.to_vec(), name.clone()));
        }
        Some(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_ends() {
        // (head, where its fields start)
        let ok: [(&[u8], &[usize]); 3] = [
            (b"GET / HTTP/1.1\r\n\r\n", &[]),
            (b"GET / HTTP/1.1\r\nx: 1\r\ny: 2\r\n\r\n", &[16, 22]),
            (b"\r\n\r\nGET / HTTP/1.1\r\nx: 1\r\n\r\n", &[20]),
        ];
        for (head, starts) in ok {
            assert!(crlf_lines(head, starts.iter().copied()), "{:?}", String::from_utf8_lossy(head));
        }
        let bad: [(&[u8], &[usize]); 6] = [
            (b"GET / HTTP/1.1\nx: 1\r\n\r\n", &[15]),
            (b"GET / HTTP/1.1\r\nx: 1\ny: 2\r\n\r\n", &[16, 21]),
            (b"GET / HTTP/1.1\r\nx: 1\n\r\n", &[16]),
            (b"GET / HTTP/1.1\r\nx: 1\r\n\n", &[16]),
            (b"\nGET / HTTP/1.1\r\n\r\n", &[]),
            (b"\r\r\nGET / HTTP/1.1\r\n\r\n", &[]),
        ];
        for (head, starts) in bad {
            assert!(!crlf_lines(head, starts.iter().copied()), "{:?}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn names_are_reused_only_where_they_match() {
        let mut known = KnownNames::default();
        let mut names = |list: &[&str]| -> Vec<String> {
            list.iter()
                .enumerate()
                .filter_map(|(at, raw)| known.name(at, raw.as_bytes()))
                .map(|n| n.to_string())
                .collect()
        };
        assert_eq!(names(&["Content-Type", "X-One"]), ["content-type", "x-one"]);
        // Same places, other case; a different name in the second place; one more at the end.
        assert_eq!(names(&["content-type", "X-Two", "X-Three"]), ["content-type", "x-two", "x-three"]);
        assert_eq!(names(&["X-Two"]), ["x-two"]);
        assert_eq!(known.0.len(), 3);
        assert_eq!(known.0[0].1.as_str(), "x-two");
        // Not a name: refused, and nothing kept changes.
        assert!(known.name(0, b"bad name").is_none());
        assert_eq!(known.0[0].1.as_str(), "x-two");
        // A long name is parsed every time and not kept.
        let long = "x".repeat(KNOWN_NAME_LEN + 1);
        assert_eq!(known.name(1, long.as_bytes()).map(|n| n.to_string()), Some(long.clone()));
        assert_eq!(known.0[1].1.as_str(), "x-two");
        // At most KNOWN_NAMES places are kept.
        for at in 0..KNOWN_NAMES + 5 {
            assert_eq!(known.name(at, format!("x-{at}").as_bytes()).map(|n| n.to_string()), Some(format!("x-{at}")));
        }
        assert_eq!(known.0.len(), KNOWN_NAMES);
    }
}
