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
    if uri.scheme().is_some() {
        return Route::Forward(uri.to_string());
    }
    // Authority form (`GET host:443`) outside CONNECT: the normalizer refuses it as bad_target.
    if uri.authority().is_some() {
        return Route::Forward(uri.to_string());
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
