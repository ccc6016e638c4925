//! Which request and response headers cross Tollgate (SPEC section 4).
//!
//! Caller credentials, hop-by-hop headers (and any the caller nominates in `Connection`),
//! routing overrides and Tollgate's own headers never reach the upstream. The injected
//! credential and `Host` are written by Tollgate after the caller's filtered headers, so
//! nothing the caller sends (`Connection: Authorization`, say) can remove or repeat them.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

pub use crate::http1::fields::first;
use crate::http1::fields::is_listed_hop_by_hop;

/// Marks a response made by Tollgate itself.
pub use crate::error_code::X_TOLLGATE_ERROR;
pub const X_TOLLGATE_CONNECTOR: HeaderName = HeaderName::from_static("x-tollgate-connector");
pub const X_TOLLGATE_TOOL: HeaderName = HeaderName::from_static("x-tollgate-tool");

/// The request fields the phases ask about, found in one walk over the head. A request
/// carries a handful of fields; each phase walking them for its own (five walks a request)
/// cost more than the rest of identifying and authorizing a cached caller. Each is the
/// field's first value.
#[derive(Debug, Default, Clone, Copy)]
pub struct Asked<'a> {
    pub proxy_authorization: Option<&'a HeaderValue>,
    pub authorization: Option<&'a HeaderValue>,
    pub connector: Option<&'a HeaderValue>,
    pub tool: Option<&'a HeaderValue>,
    pub upgrade: Option<&'a HeaderValue>,
}

impl<'a> Asked<'a> {
    pub fn of(headers: &'a HeaderMap) -> Self {
        // A large map is looked up, not walked.
        if headers.keys_len() > 16 {
            return Asked {
                proxy_authorization: headers.get(header::PROXY_AUTHORIZATION),
                authorization: headers.get(header::AUTHORIZATION),
                connector: headers.get(X_TOLLGATE_CONNECTOR),
                tool: headers.get(X_TOLLGATE_TOOL),
                upgrade: headers.get(header::UPGRADE),
            };
        }
        let mut asked = Asked::default();
        for (name, value) in headers {
            let field = match name.as_str() {
                "proxy-authorization" => &mut asked.proxy_authorization,
                "authorization" => &mut asked.authorization,
                "x-tollgate-connector" => &mut asked.connector,
                "x-tollgate-tool" => &mut asked.tool,
                "upgrade" => &mut asked.upgrade,
                _ => continue,
            };
            field.get_or_insert(value);
        }
        asked
    }
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

impl crate::http1::request::Forward for RequestFilter<'_> {
    fn forwards(&self, name: &HeaderName) -> bool {
        RequestFilter::forwards(self, name)
    }
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

    #[test]
    fn one_walk_finds_each_first_value_in_small_and_large_heads() {
        for padding in [0, 40] {
            let mut h = HeaderMap::new();
            for i in 0..padding {
                h.insert(
                    HeaderName::from_bytes(format!("x-pad-{i}").as_bytes()).unwrap(),
                    HeaderValue::from_static("p"),
                );
            }
            h.append("X-Tollgate-Tool", HeaderValue::from_static("first-tool"));
            h.append("x-tollgate-tool", HeaderValue::from_static("second-tool"));
            h.insert(header::PROXY_AUTHORIZATION, HeaderValue::from_static("Bearer p"));
            h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            let asked = Asked::of(&h);
            let text = |v: Option<&HeaderValue>| v.map(|v| v.to_str().unwrap().to_string());
            assert_eq!(text(asked.tool).as_deref(), Some("first-tool"), "{padding}");
            assert_eq!(text(asked.proxy_authorization).as_deref(), Some("Bearer p"));
            assert_eq!(text(asked.upgrade).as_deref(), Some("websocket"));
            assert_eq!((asked.authorization, asked.connector), (None, None));
        }
    }

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
}
