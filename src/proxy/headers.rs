//! Which request and response headers cross Tollgate (SPEC section 4).
//!
//! Caller credentials, hop-by-hop headers (and any the caller nominates in `Connection`),
//! routing overrides and Tollgate's own headers never reach the upstream; the injected
//! credential is added only after this cleaning, so `Connection: Authorization` cannot remove it.

use http::header::{self, HeaderMap, HeaderName};

/// Marks a response made by Tollgate itself.
pub const X_TOLLGATE_ERROR: HeaderName = HeaderName::from_static("x-tollgate-error");
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

/// Names listed in `Connection` headers, as written. `keep-alive` is left out: it is removed
/// as a listed hop-by-hop header anyway, and it is the one name almost every upstream sends.
fn nominated(headers: &HeaderMap) -> Vec<&str> {
    let mut names = Vec::new();
    for value in headers.get_all(header::CONNECTION) {
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

/// Removes every hop-by-hop header (listed, or nominated in `Connection`) and every other
/// header `doomed` picks. The map's own names are walked once (a handful) and compared with
/// the lists, rather than looking each listed name up: the lookups, and turning each listed
/// `&str` into a `HeaderName`, showed up in profiles. Nothing is allocated unless a header goes.
fn remove_hop_by_hop_and(headers: &mut HeaderMap, doomed: impl Fn(&HeaderName) -> bool) {
    let names: Vec<HeaderName> = {
        let nominated = nominated(headers);
        headers
            .keys()
            .filter(|name| {
                is_listed_hop_by_hop(name.as_str())
                    || nominated.iter().any(|n| n.eq_ignore_ascii_case(name.as_str()))
                    || doomed(name)
            })
            .cloned()
            .collect()
    };
    for name in names {
        headers.remove(name);
    }
}

/// Cleans a caller's request headers before the credential is injected. `Host` is left for
/// the caller of this function to replace (inserting it replaces every value, so removing it
/// first would only cost a second lookup).
pub fn clean_request(headers: &mut HeaderMap, injected: &HeaderName, strip: &[HeaderName]) {
    remove_hop_by_hop_and(headers, |name| {
        let text = name.as_str();
        name == header::AUTHORIZATION
            || name == injected
            || is_routing_override(text)
            || is_identity_assertion(text)
            || strip.contains(name)
            || text.starts_with("x-tollgate-")
            || text.starts_with("x-forwarded-")
    });
}

/// Whether an upstream response header is dropped: hop-by-hop headers go, and an upstream
/// can never pose as Tollgate by sending `X-Tollgate-Error`. Headers the upstream nominates
/// in `Connection` go too; the response head parser (proxy/h1/head.rs) applies both as it
/// reads the head.
pub fn response_drops(name: &HeaderName) -> bool {
    is_listed_hop_by_hop(name.as_str()) || name == X_TOLLGATE_ERROR
}

/// Total size of the request headers as they appeared on the wire (name, value, separators).
pub fn header_bytes(headers: &HeaderMap) -> usize {
    headers.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum()
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
        ] {
            h.append(k, HeaderValue::from_static(v));
        }
        clean_request(&mut h, &HeaderName::from_static("x-api-key"), &[HeaderName::from_static("cookie")]);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, ["accept", "x-request-id"]);
    }
}
