//! Which request and response headers cross Tollgate (SPEC section 4).
//!
//! Caller credentials, hop-by-hop headers (and any the caller nominates in `Connection`),
//! routing overrides and Tollgate's own headers never reach the upstream. The injected
//! credential and `Host` are written by Tollgate after the caller's filtered headers, so
//! nothing the caller sends (`Connection: Authorization`, say) can remove or repeat them.

use http::header::{self, HeaderMap, HeaderName};

/// Marks a response made by Tollgate itself.
pub use crate::error_code::X_TOLLGATE_ERROR;
pub const X_TOLLGATE_CONNECTOR: HeaderName = HeaderName::from_static("x-tollgate-connector");
pub const X_TOLLGATE_TOOL: HeaderName = HeaderName::from_static("x-tollgate-tool");

// The lists are `matches!` patterns rather than slices: the compiler turns them into a switch
// on length and bytes instead of a string comparison per entry.

fn is_listed_hop_by_hop(name: &str) -> bool {
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

fn is_routing_override(name: &str) -> bool {
    matches!(name, "forwarded" | "x-original-url" | "x-rewrite-url")
}

/// Identity assertions that upstreams behind authenticating proxies trust: a caller must not
/// speak for another user through them.
fn is_identity_assertion(name: &str) -> bool {
    matches!(
        name,
        "x-user"
            | "x-user-id"
            | "x-user-email"
            | "x-principal"
            | "x-remote-user"
            | "x-auth-user"
            | "x-auth-request-user"
            | "x-auth-request-email"
            | "remote-user"
            | "x-connector-id"
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

/// Names listed in `Connection` headers, as written. `keep-alive` is left out: it is removed
/// as a listed hop-by-hop header anyway, and it is the one name almost every upstream sends.
fn nominated(headers: &HeaderMap) -> Vec<&str> {
    let mut names = Vec::new();
    let values = headers.iter().filter(|(n, _)| *n == header::CONNECTION).map(|(_, v)| v);
    for value in values {
        for name in value.as_bytes().split(|&b| b == b',') {
            let name = name.trim_ascii();
            if !name.is_empty() && !name.eq_ignore_ascii_case(b"keep-alive") {
                // A name that is not text cannot equal a header name; it is left out.
                if let Ok(name) = std::str::from_utf8(name) {
                    names.push(name);
                }
            }
        }
    }
    names
}

/// Which of a caller's request headers go upstream, decided name by name as the request head
/// is written: nothing is removed from the caller's map, nothing allocated unless the caller
/// nominates headers in `Connection`. Caller credentials, hop-by-hop headers (listed or
/// nominated), routing overrides, identity assertions, the connector's `strip_headers`,
/// Tollgate's own headers and `Host` (Tollgate writes the target's) stay behind.
pub struct RequestFilter<'a> {
    injected: &'a HeaderName,
    strip: &'a [HeaderName],
    nominated: Vec<&'a str>,
}

impl<'a> RequestFilter<'a> {
    pub fn new(headers: &'a HeaderMap, injected: &'a HeaderName, strip: &'a [HeaderName]) -> RequestFilter<'a> {
        RequestFilter { injected, strip, nominated: nominated(headers) }
    }

    /// Whether the caller's header `name` goes upstream.
    pub fn forwards(&self, name: &HeaderName) -> bool {
        let text = name.as_str();
        !(is_listed_hop_by_hop(text)
            || name == header::AUTHORIZATION
            || name == header::HOST
            || name == self.injected
            || is_routing_override(text)
            || is_identity_assertion(text)
            || self.strip.contains(name)
            || text.starts_with("x-tollgate-")
            || text.starts_with("x-forwarded-")
            || self.nominated.iter().any(|n| n.eq_ignore_ascii_case(text)))
    }
}

/// Whether an upstream response header is dropped: hop-by-hop headers go, and an upstream
/// can never pose as Tollgate by sending `X-Tollgate-Error`. Headers the upstream nominates
/// in `Connection` go too; the response head parser (proxy/h1/head.rs) applies both as it
/// reads the head.
pub fn response_drops(name: &HeaderName) -> bool {
    is_listed_hop_by_hop(name.as_str()) || name == X_TOLLGATE_ERROR
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

/// Total size of the request headers as they appeared on the wire (name, value, separators).
pub fn header_bytes(headers: &HeaderMap) -> usize {
    headers.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum()
}

/// Refuses a request whose header fields exceed `max` bytes (`limits.max_header_bytes`): the
/// one check every listener makes, the proxy path, its own pages, the OAuth pages and admin.
/// (The field count is bounded where heads are parsed: 100 fields on every listener.)
pub fn check_header_limit(headers: &HeaderMap, max: usize) -> Result<(), super::error::ProxyError> {
    if header_bytes(headers) > max {
        return Err(super::error::ProxyError::HeadersTooLarge(max));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn request_cleaning() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "close, X-Secret-Thing"),
            ("x-secret-thing", "1"),
            ("authorization", "Bearer caller"),
            ("proxy-authorization", "Bearer jwt"),
            ("x-tollgate-connector", "github"),
            ("x-forwarded-for", "1.2.3.4"),
            ("x-original-url", "/admin"),
            ("forwarded", "for=1.2.3.4"),
            ("x-api-key", "caller"),
            ("accept", "application/json"),
            ("x-request-id", "r-1"),
            ("upgrade", "h2c"),
            ("cookie", "a=b"),
            ("host", "caller.example"),
            ("x-user-id", "admin"),
        ] {
            h.append(k, HeaderValue::from_static(v));
        }
        let injected = HeaderName::from_static("x-api-key");
        let strip = [HeaderName::from_static("cookie")];
        let filter = RequestFilter::new(&h, &injected, &strip);
        let mut left: Vec<&str> = h.keys().filter(|k| filter.forwards(k)).map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, ["accept", "x-request-id"]);
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
