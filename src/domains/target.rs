//! The normalized outbound target: parsing a caller's URL into the one form that is both
//! checked against the allowed domains and written on the wire.
//!
//! The parser is deliberately strict and works on the raw text, never on another parser's
//! interpretation of it: every input that two common URL parsers could read differently
//! (userinfo, backslashes, encoded separators, numeric IPv4 forms, zone identifiers, ...) is
//! refused here, so there is no second reading for an attacker to exploit. What it accepts it
//! canonicalizes (SPEC section 3) and nothing downstream may re-encode or re-parse the path.
//!
//! `plain.rs` is this parser's fast path: [`Target::parse`] tries it first, and for the
//! canonical URLs it accepts it gives the parts of the same [`Target`]. It knows nothing of
//! this file; the test that holds it to the full parser is here (`tests` below).

use std::fmt;

pub use super::error::TargetError;
pub use super::host::{parse_host, Host};
pub(crate) use super::path::normalize_path;
use super::plain::{parse_plain, Plain};
pub use super::scheme::Scheme;

/// A normalized target URL. `path` is canonical and is exactly what is sent upstream;
/// `query` is kept byte for byte and never matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub scheme: Scheme,
    pub host: Host,
    pub port: u16,
    pub path: String,
    pub query: Option<String>,
    /// `host[:port]` as written on the wire, kept from parsing.
    authority: String,
}

impl Target {
    /// Parses and normalizes an absolute URL given by a caller.
    pub fn parse(raw: &str) -> Result<Target, TargetError> {
        match parse_plain(raw) {
            Some(Plain { scheme, host, port, authority, path, query }) => Ok(Target {
                scheme,
                host,
                port,
                path,
                query: query.map(str::to_string),
                authority: authority.to_string(),
            }),
            None => Self::parse_full(raw),
        }
    }

    /// The full parser: every URL, every refusal.
    pub(super) fn parse_full(raw: &str) -> Result<Target, TargetError> {
        if raw.is_empty() {
            return Err(TargetError::Empty);
        }
        let control = if raw.is_ascii() {
            raw.bytes().any(|b| b < 0x20 || b == 0x7f || b == b' ')
        } else {
            raw.chars().any(|c| c.is_control() || c == ' ')
        };
        if control {
            return Err(TargetError::ControlCharacter);
        }
        let (scheme_text, rest) = raw.split_once("://").ok_or(TargetError::MissingScheme)?;
        if scheme_text.is_empty()
            || !scheme_text.starts_with(|c: char| c.is_ascii_alphabetic())
            || !scheme_text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        {
            return Err(TargetError::MissingScheme);
        }
        let scheme = if scheme_text.eq_ignore_ascii_case("https") {
            Scheme::Https
        } else if scheme_text.eq_ignore_ascii_case("http") {
            Scheme::Http
        } else {
            return Err(TargetError::UnsupportedScheme(scheme_text.to_ascii_lowercase()));
        };
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        if tail.contains('#') || authority.contains('#') {
            return Err(TargetError::Fragment);
        }
        if authority.contains('\\') {
            return Err(TargetError::Backslash);
        }
        let (host, port) = parse_authority(authority, scheme)?;
        let (path, query) = match tail.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (tail, None),
        };
        if path.contains('\\') {
            return Err(TargetError::Backslash);
        }
        if !path.is_ascii() || query.is_some_and(|q| !q.is_ascii()) {
            return Err(TargetError::NonAscii);
        }
        let path = if path.is_empty() { "/".to_string() } else { normalize_path(path)? };
        let mut authority = String::with_capacity(64);
        push_authority(&host, port, scheme, &mut authority);
        Ok(Target { scheme, host, port, path, query: query.map(str::to_string), authority })
    }

    /// `host[:port]`, the port only when it is not the scheme's default: the Host header.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The path and query as written on the request line.
    pub fn path_and_query(&self) -> String {
        match &self.query {
            Some(q) => [self.path.as_str(), "?", q].concat(),
            None => self.path.clone(),
        }
    }

    /// The URL without its query: what errors and logs may show.
    pub fn without_query(&self) -> String {
        let mut out = String::with_capacity(self.path.len() + 72);
        self.push_origin(&mut out);
        out.push_str(&self.path);
        out
    }

    fn push_origin(&self, out: &mut String) {
        out.push_str(self.scheme.as_str());
        out.push_str("://");
        out.push_str(&self.authority);
    }
}

/// Writes `host[:port]` by hand rather than through `format!`, which showed up in profiles.
fn push_authority(host: &Host, port: u16, scheme: Scheme, out: &mut String) {
    match host {
        Host::Name(name) => out.push_str(name),
        Host::V4(addr) => {
            for (i, octet) in addr.octets().iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_decimal(out, u16::from(*octet));
            }
        }
        other => {
            use fmt::Write;
            let _ = write!(out, "{other}");
        }
    }
    if port != scheme.default_port() {
        out.push(':');
        push_decimal(out, port);
    }
}

/// Appends a number in decimal without the formatting machinery or an allocation.
fn push_decimal(out: &mut String, n: u16) {
    let mut digits = [0u8; 5];
    let mut i = digits.len();
    let mut rest = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    for d in &digits[i..] {
        out.push(char::from(*d));
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::with_capacity(self.path.len() + self.query.as_ref().map_or(0, |q| q.len() + 1) + 72);
        self.push_origin(&mut out);
        out.push_str(&self.path);
        if let Some(q) = &self.query {
            out.push('?');
            out.push_str(q);
        }
        f.write_str(&out)
    }
}

/// Splits `host[:port]` (userinfo refused) and validates both halves.
pub(crate) fn parse_authority(authority: &str, scheme: Scheme) -> Result<(Host, u16), TargetError> {
    if authority.is_empty() {
        return Err(TargetError::MissingHost);
    }
    if authority.contains('@') {
        return Err(TargetError::Userinfo);
    }
    let (host_text, port_text) = if let Some(inner) = authority.strip_prefix('[') {
        let (v6, after) = inner.split_once(']').ok_or(TargetError::InvalidHost)?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(TargetError::InvalidHost)?),
        };
        (&authority[..v6.len() + 2], port)
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let host = parse_host(host_text)?;
    let port = match port_text {
        None => scheme.default_port(),
        Some(p) => parse_port(p)?,
    };
    Ok((host, port))
}

/// A port written in decimal digits only (leading zeros allowed), 1 to 65535.
pub(crate) fn parse_port(text: &str) -> Result<u16, TargetError> {
    if text.is_empty() || text.len() > 10 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TargetError::InvalidPort);
    }
    match text.parse::<u32>() {
        Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
        _ => Err(TargetError::InvalidPort),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMES: &[&str] = &["https://", "http://", "HTTPS://", "ftp://", "https:/", ""];
    const HOSTS: &[&str] = &[
        "api.example.com",
        "a-b_c.example",
        "127.0.0.1",
        "10.0.0.255",
        "256.0.0.1",
        "0177.0.0.1",
        "1.2.3",
        "1.2.3.4.5",
        "0x7f.0.0.1",
        "2130706433",
        "1a.example",
        "example.0x1f",
        "xn--bc-6kc.example",
        "API.example.com",
        "a..example",
        "a.example.",
        ".example",
        "-.example",
        "[::1]",
        "u@h.example",
        "a%2eb",
        "",
    ];
    const PORTS: &[&str] = &["", ":80", ":443", ":8443", ":0", ":08080", ":65535", ":65536", ":", ":1a"];
    const PATHS: &[&str] = &[
        "",
        "/",
        "/v1/x",
        "/a/./b",
        "/a/../b",
        "/..",
        "/.;x/y",
        "/a;b=c/d",
        "/x:y@z!$&'()*+,=",
        "/%41",
        "/a%2Fb",
        "/a b",
        "/a\\b",
        "/\"q\"",
        "/#frag",
        "/caf\u{e9}",
    ];
    const QUERIES: &[&str] = &["", "?", "?a=b&c=d", "?x=%2F&y=/..", "?a#b", "?a\\b", "?a b", "?\u{e9}", "?a?b"];

    /// The fast path (`plain.rs`) accepts only what the full parser accepts, and gives the same
    /// target.
    #[test]
    fn agrees_with_the_full_parser() {
        let mut taken = 0;
        for scheme in SCHEMES {
            for host in HOSTS {
                for port in PORTS {
                    for path in PATHS {
                        for query in QUERIES {
                            let url = [*scheme, host, port, path, query].concat();
                            if parse_plain(&url).is_some() {
                                taken += 1;
                                // Every field, the authority as written included.
                                let full = Target::parse_full(&url);
                                assert!(full.is_ok(), "{url}: {full:?}");
                                assert_eq!(Target::parse(&url), full, "{url}");
                            }
                        }
                    }
                }
            }
        }
        assert!(taken > 1000, "the fast path took only {taken} URLs");
    }

    fn ok(raw: &str) -> String {
        Target::parse(raw).map(|t| t.to_string()).unwrap_or_else(|e| panic!("{raw}: {e}"))
    }

    #[test]
    fn authorities_and_display() {
        for (url, authority, shown) in [
            ("https://API.example.com/x?q=1", "api.example.com", "https://api.example.com/x?q=1"),
            ("https://10.1.2.3:8443/a", "10.1.2.3:8443", "https://10.1.2.3:8443/a"),
            ("http://127.0.0.1:80/", "127.0.0.1", "http://127.0.0.1/"),
            ("https://[2001:db8::1]:444/p", "[2001:db8::1]:444", "https://[2001:db8::1]:444/p"),
            ("https://0.0.0.0:65535/", "0.0.0.0:65535", "https://0.0.0.0:65535/"),
        ] {
            let t = Target::parse(url).unwrap();
            assert_eq!(t.authority(), authority, "{url}");
            assert_eq!(t.to_string(), shown, "{url}");
            assert_eq!(t.without_query(), shown.split('?').next().unwrap(), "{url}");
        }
    }

    #[test]
    fn canonical_forms() {
        let cases = [
            ("https://API.Example.COM./v1/x", "https://api.example.com/v1/x"),
            ("HTTPS://api.example.com:443/a", "https://api.example.com/a"),
            ("https://api.example.com:0443/a", "https://api.example.com/a"),
            ("https://api.example.com", "https://api.example.com/"),
            ("https://api.example.com?q=1", "https://api.example.com/?q=1"),
            ("https://h.example/v1/x/..", "https://h.example/v1/"),
            ("https://h.example/a/./b/../c", "https://h.example/a/c"),
            ("https://h.example/%7Euser/%41", "https://h.example/~user/A"),
            ("https://h.example/a%3ab", "https://h.example/a%3Ab"),
            ("https://h.example/q?x=%2F&y=/..", "https://h.example/q?x=%2F&y=/.."),
            ("https://[::1]:8443/", "https://[::1]:8443/"),
            ("https://h.example:8443/", "https://h.example:8443/"),
            ("https://xn--bc-6kc.example/", "https://xn--bc-6kc.example/"),
            ("https://\u{430}bc.example/", "https://xn--bc-6kc.example/"),
        ];
        for (raw, want) in cases {
            assert_eq!(ok(raw), want, "{raw}");
        }
    }

    #[test]
    fn refusals() {
        use TargetError::*;
        let cases = [
            ("", Empty),
            (" https://h.example/", ControlCharacter),
            ("https://h.example/a b", ControlCharacter),
            ("api.example.com/v1", MissingScheme),
            ("//api.example.com/v1", MissingScheme),
            ("ftp://h.example/", UnsupportedScheme("ftp".into())),
            ("https:///h.example/", MissingHost),
            ("https://u:p@h.example/", Userinfo),
            ("https://h.example/#x", Fragment),
            ("https://h.example\\@evil.io/", Backslash),
            ("https://h.example/v1\\..\\a", Backslash),
            ("https://a..example/", InvalidHost),
            ("https://.example/", InvalidHost),
            ("https://*.example/", InvalidHost),
            ("https://h.example.xn--/", InvalidHost),
            ("https://a%2eexample/", EncodedHost),
            ("https://2130706433/", NonCanonicalIpv4),
            ("https://0177.0.0.1/", NonCanonicalIpv4),
            ("https://0xa9fea9fe/", NonCanonicalIpv4),
            ("https://127.1/", NonCanonicalIpv4),
            ("https://[::1%25eth0]/", Ipv6Zone),
            ("https://h.example:65536/", InvalidPort),
            ("https://h.example:0/", InvalidPort),
            ("https://h.example:+443/", InvalidPort),
            ("https://h.example:443:443/", InvalidPort),
            ("https://h.example:/", InvalidPort),
            ("https://h.example/a%zz", BadPercentEncoding),
            ("https://h.example/a%2Fb", EncodedSeparator),
            ("https://h.example/a%5cb", EncodedSeparator),
            ("https://h.example/a%00", EncodedControl),
            ("https://h.example/v1/%2e%2e/a", EncodedDotSegment),
            ("https://h.example/v1/..;/a", DotSegmentParams),
            ("https://h.example/..", AboveRoot),
            ("https://h.example/a/../..", AboveRoot),
        ];
        for (raw, want) in cases {
            assert_eq!(Target::parse(raw), Err(want), "{raw}");
        }
    }
}
