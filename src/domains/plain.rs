//! The fast path of [`Target::parse`]: a URL already in its canonical form, as HTTP clients
//! write nearly every URL, is taken apart in one pass over its bytes, without the full
//! parser's searches and copies.
//!
//! It only ever accepts; it never refuses. Any byte, shape or host it is not certain of
//! (upper case, escapes, dot segments, punycode, default ports, numeric hosts other than four
//! plain octets, ...) sends the URL to the full parser, which gives the same answer for every
//! URL this path accepts (`target.rs` holds the test that compares the two). It gives the
//! parts of a target, which `target.rs` puts together: it knows nothing of the full parser.

use super::host::{parse_canonical_ipv4, Host};
use super::scheme::Scheme;

/// The parts of a canonical URL, as the target holds them.
#[derive(Debug)]
pub(super) struct Plain<'a> {
    pub scheme: Scheme,
    pub host: Host,
    pub port: u16,
    /// `host[:port]` as written, the port only when it is not the scheme's default.
    pub authority: &'a str,
    pub path: String,
    pub query: Option<&'a str>,
}

/// Bytes a path may hold here: RFC 3986 `pchar` and `/`, without `%`.
fn is_plain_path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(b, b'/' | b'-' | b'.' | b'_' | b'~' | b'!' | b'$' | b'&' | b'\'')
        || matches!(b, b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' | b':' | b'@')
}

/// Bytes a query may hold: visible ASCII but `#` (the full parser keeps a query byte for byte).
fn is_plain_query_byte(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && b != b'#'
}

/// Bytes a lower-case DNS name or dotted IPv4 address is made of.
fn is_plain_host_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
}

/// `Some` only for a canonical URL; `None` means "ask the full parser". One pass over the
/// bytes, no searches: this runs on every request.
pub(super) fn parse_plain(raw: &str) -> Option<Plain<'_>> {
    let (scheme, rest) = if let Some(rest) = raw.strip_prefix("https://") {
        (Scheme::Https, rest)
    } else {
        (Scheme::Http, raw.strip_prefix("http://")?)
    };
    let bytes = rest.as_bytes();
    let mut i = bytes.iter().position(|&b| !is_plain_host_byte(b)).unwrap_or(bytes.len());
    let host = plain_host(&rest[..i])?;
    let mut port = scheme.default_port();
    if bytes.get(i) == Some(&b':') {
        let digits = bytes[i + 1..].iter().take_while(|b| b.is_ascii_digit()).count();
        port = plain_port(&bytes[i + 1..i + 1 + digits], scheme)?;
        i += 1 + digits;
    }
    let authority = &rest[..i];
    let tail = &bytes[i..];
    let path_len = tail.iter().position(|&b| !is_plain_path_byte(b)).unwrap_or(tail.len());
    let (path, after) = tail.split_at(path_len);
    let query = match after.split_first() {
        None => None,
        Some((b'?', query)) if query.iter().all(|&b| is_plain_query_byte(b)) => Some(&rest[i + path_len + 1..]),
        Some(_) => return None,
    };
    // The path holds only plain bytes and starts with `/` (or is empty): the host ended at
    // the first byte that is not a host byte, and `:port` at the first that is not a digit.
    if path.first().is_some_and(|&b| b != b'/') || (path.contains(&b'.') && has_dot_segment(path)) {
        return None;
    }
    let path = if path.is_empty() { "/".to_string() } else { rest[i..i + path_len].to_string() };
    Some(Plain { scheme, host, port, authority, path, query })
}

/// A port in plain decimal without leading zeros, and not the scheme's default (which the
/// canonical form leaves out).
fn plain_port(digits: &[u8], scheme: Scheme) -> Option<u16> {
    if digits.is_empty() || digits.len() > 5 || digits[0] == b'0' {
        return None;
    }
    let port = digits.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    let port = u16::try_from(port).ok()?;
    (port != scheme.default_port()).then_some(port)
}

/// A lower-case name of valid labels (no punycode, which the full parser checks), or four
/// decimal octets without leading zeros. `text` holds only plain host bytes.
fn plain_host(text: &str) -> Option<Host> {
    let bytes = text.as_bytes();
    if bytes.is_empty() || bytes.len() > 253 {
        return None;
    }
    let last = bytes.iter().rposition(|&b| b == b'.').map_or(0, |dot| dot + 1);
    if bytes.get(last).is_some_and(u8::is_ascii_digit) {
        return parse_canonical_ipv4(text).ok().map(Host::V4);
    }
    let labels_ok =
        bytes.split(|&b| b == b'.').all(|label| !label.is_empty() && label.len() <= 63 && !label.starts_with(b"xn--"));
    labels_ok.then(|| Host::Name(text.to_string()))
}

/// Whether a segment is `.` or `..` (before any `;parameters`), which the full parser resolves.
fn has_dot_segment(path: &[u8]) -> bool {
    path.split(|&b| b == b'/').any(|segment| {
        let before_params = segment.split(|&b| b == b';').next().unwrap_or(segment);
        before_params == b"." || before_params == b".."
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_urls_take_the_fast_path() {
        for url in ["https://api.example.com/v1/x?y=1", "http://127.0.0.1:8080/small", "https://h.example"] {
            assert!(parse_plain(url).is_some(), "{url}");
        }
        for url in ["https://API.example.com/", "https://h.example:443/", "https://h.example/%7E", "https://1.2.3/"] {
            assert!(parse_plain(url).is_none(), "{url}");
        }
    }
}
