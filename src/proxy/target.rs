//! Phase `resolve_target`: where the request goes. Absolute-form requests carry the URL;
//! gateway requests (`/{connector}/{rest}`) are joined onto the connector's `base_url`. Both
//! end in the same normalizer, so gateway paths are checked like any other URL.

use http::{Method, Uri};

use crate::config::Config;
use crate::domains::{Target, TargetError};

/// How the request reached Tollgate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET https://host/path HTTP/1.1`
    Forward(String),
    /// `/{name}/{rest}`: connector index, the name used, the rest and the query.
    Gateway { connector: usize, name: String, rest: String, query: Option<String> },
    /// `CONNECT host:port`
    Connect,
    /// A path on Tollgate itself (`/connect`, `/oauth/...`, or unknown).
    Local(String),
}

/// Classifies a request by its request target.
pub fn route(method: &Method, uri: &Uri, config: &Config) -> Route {
    if method == Method::CONNECT {
        return Route::Connect;
    }
    // Authority form (`GET host:443`) outside CONNECT: the normalizer refuses it as bad_target.
    if uri.scheme().is_some() || uri.authority().is_some() {
        return Route::Forward(written(uri));
    }
    let path = uri.path();
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let (name, rest) = trimmed.split_once('/').unwrap_or((trimmed, ""));
    match config.resolve_name(name) {
        Some(connector) if config.connectors[connector].base_url.is_some() => Route::Gateway {
            connector,
            name: name.to_string(),
            rest: rest.to_string(),
            query: uri.query().map(str::to_string),
        },
        _ => Route::Local(path.to_string()),
    }
}

/// The request target as the caller wrote it (what `Uri`'s `Display` gives), put together
/// without the formatting machinery.
fn written(uri: &Uri) -> String {
    let (scheme, authority) = (uri.scheme_str(), uri.authority().map(|a| a.as_str()));
    let (path, query) = (uri.path(), uri.query());
    let mut out = String::with_capacity(
        scheme.map_or(0, |s| s.len() + 3)
            + authority.map_or(0, str::len)
            + path.len()
            + query.map_or(0, |q| q.len() + 1),
    );
    if let Some(scheme) = scheme {
        out.push_str(scheme);
        out.push_str("://");
    }
    out.push_str(authority.unwrap_or(""));
    out.push_str(path);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// The normalized target of a forward or gateway route.
pub fn resolve_target(route: &Route, config: &Config) -> Result<Target, TargetError> {
    match route {
        Route::Forward(raw) => Target::parse(raw),
        Route::Gateway { connector, rest, query, .. } => {
            let base = config.connectors[*connector].base_url.as_ref().ok_or(TargetError::MissingHost)?;
            let mut url = base.without_query();
            if !url.ends_with('/') {
                url.push('/');
            }
            url.push_str(rest);
            if let Some(q) = query {
                url.push('?');
                url.push_str(q);
            }
            Target::parse(&url)
        }
        Route::Connect | Route::Local(_) => Err(TargetError::MissingHost),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_is_what_the_uri_displays() {
        for text in [
            "https://api.test/x?y=1",
            "http://API.test:8080",
            "https://a.test/%2e%2E/./b;c?q=%20&r",
            "https://a.test?only=query",
            "api.test:443",
            "/v1/x?y",
            "*",
        ] {
            let uri: Uri = text.parse().unwrap();
            assert_eq!(written(&uri), uri.to_string(), "{text}");
        }
    }
}
