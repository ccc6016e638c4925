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

/// Whether a line of `head` ends other than at CRLF: a bare LF (which httparse, like many
/// parsers, takes as a line end) or a bare CR. A device in front could split such a head
/// elsewhere (RFC 9112 section 2.2 allows either reading; Tollgate takes neither).
pub fn bare_line_end(head: &[u8]) -> bool {
    // One pass, stopping only at CR and LF: a CR must be followed by LF (and the pair is
    // skipped), so any LF met is one without its CR.
    let mut at = 0;
    while let Some(found) = memchr::memchr2(b'\r', b'\n', &head[at..]) {
        let i = at + found;
        if head[i] == b'\n' || head.get(i + 1) != Some(&b'\n') {
            return true;
        }
        at = i + 2;
    }
    false
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
        for ok in [&b""[..], b"GET / HTTP/1.1\r\n\r\n", b"a\r\nb: c\r\n\r\n", b"no line end at all"] {
            assert!(!bare_line_end(ok), "{:?}", String::from_utf8_lossy(ok));
        }
        for bad in [&b"\n"[..], b"\r", b"a\nb", b"a\r\n\n", b"a\rb\r\n", b"a\r\r\n", b"a\r\n\r", b"\n\r\n"] {
            assert!(bare_line_end(bad), "{:?}", String::from_utf8_lossy(bad));
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
