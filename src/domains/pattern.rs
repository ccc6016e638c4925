//! Allowed-domain patterns (`scheme://host[:port]/path`), parsed and refused at config load.
//!
//! A pattern is the security boundary of a connector, so anything ambiguous is refused here
//! with a message saying how to write it instead: glob syntax other than `*`, wildcards other
//! than a whole leftmost label, wildcards over a public suffix, queries, userinfo, non-ASCII
//! hosts, non-canonical paths, and IP literals in ranges the connector has not opted into.

use std::fmt;

use super::target::{normalize_path, parse_host, parse_port, Host, Scheme};
use crate::domains::addr::AddressPolicy;

/// Which ports a pattern covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortPattern {
    /// No port written: the scheme's default only.
    Default,
    Exact(u16),
    /// `:*`
    Any,
}

/// Which hosts a pattern covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(Host),
    /// `*.suffix`: one or more labels before `.suffix`, never `suffix` itself.
    Wildcard(String),
}

/// A validated allowed-domain pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    pub scheme: Scheme,
    pub host: HostPattern,
    pub port: PortPattern,
    /// Canonical path; `*` matches any run of characters, `/` included.
    pub path: String,
}

/// Why a pattern was refused at load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("`{0}`: patterns are written scheme://host[:port]/path, e.g. https://api.example.com/*")]
    Shape(String),
    #[error("`{0}`: only https is allowed; http needs `unsafe_allow_http: true` on the connector")]
    Http(String),
    #[error("`{0}`: only `*` is a wildcard; `?`, `[`, `]`, `{{`, `}}` and `\\` are not accepted")]
    GlobSyntax(String),
    #[error("`{0}`: query strings are never matched; remove the `?...` part")]
    Query(String),
    #[error("`{0}`: userinfo (user@) is not accepted in a pattern")]
    Userinfo(String),
    #[error("`{0}`: `*` may only stand as the whole leftmost label of the host, as in https://*.example.com/*")]
    MidHostWildcard(String),
    #[error("`{0}`: a wildcard over a public suffix would cover unrelated sites; name the organisation's domain")]
    PublicSuffix(String),
    #[error("`{0}`: the host must be ASCII; write internationalized names in punycode (xn--...)")]
    NonAsciiHost(String),
    #[error("`{0}`: the host is not a valid DNS name or IP literal ({1})")]
    Host(String, String),
    #[error("`{0}`: the port must be a number between 1 and 65535 or `*`")]
    Port(String),
    #[error("`{0}`: the path must start with `/` and be canonical (no dot segments or needless %-escapes); it normalizes to `{1}`")]
    Path(String, String),
    #[error("`{0}`: {1} addresses are refused unless the connector lists them in `unsafe_allow_ranges`")]
    DeniedAddress(String, &'static str),
}

/// Whether names under `name` belong to unrelated registrants: `name` is a public suffix in
/// the Public Suffix List (ICANN and private sections, so `co.uk` and `github.io` alike), or a
/// single label (a TLD, known or not).
fn is_public_suffix(name: &str, refused: Suffixes) -> bool {
    if !name.contains('.') {
        return true;
    }
    psl::suffix(name.as_bytes()).is_some_and(|s| {
        s.as_bytes() == name.as_bytes()
            && match refused {
                Suffixes::All => s.is_known(),
                Suffixes::Icann => s.typ() == Some(psl::Type::Icann),
            }
    })
}

/// Which public suffixes a wildcard may not cover.
#[derive(Debug, Clone, Copy)]
enum Suffixes {
    /// Every entry of the list.
    All,
    /// Only the ICANN section (for vetted template defaults).
    Icann,
}

impl Pattern {
    /// Parses a pattern. `allow_http` is the connector's `unsafe_allow_http`; `addresses`
    /// its address policy, applied to IP-literal hosts.
    pub fn parse(text: &str, allow_http: bool, addresses: &AddressPolicy) -> Result<Pattern, PatternError> {
        Self::parse_with(text, allow_http, addresses, Suffixes::All)
    }

    /// Parses a pattern a provider template ships: its wildcards may cover a suffix from the
    /// private section of the Public Suffix List that the provider itself runs
    /// (`*.googleapis.com`); ICANN suffixes stay refused.
    pub fn parse_vetted(text: &str, addresses: &AddressPolicy) -> Result<Pattern, PatternError> {
        Self::parse_with(text, false, addresses, Suffixes::Icann)
    }

    fn parse_with(
        text: &str,
        allow_http: bool,
        addresses: &AddressPolicy,
        refused: Suffixes,
    ) -> Result<Pattern, PatternError> {
        let t = || text.to_string();
        if !text.is_ascii() {
            return Err(PatternError::NonAsciiHost(t()));
        }
        if text.chars().any(|c| c.is_control() || c == ' ') {
            return Err(PatternError::Shape(t()));
        }
        if text.contains('?') {
            return Err(PatternError::Query(t()));
        }
        let (scheme, rest) = text.split_once("://").ok_or_else(|| PatternError::Shape(t()))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "https" => Scheme::Https,
            "http" if allow_http => Scheme::Http,
            "http" => return Err(PatternError::Http(t())),
            _ => return Err(PatternError::Shape(t())),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => return Err(PatternError::Shape(t())),
        };
        if authority.contains('@') {
            return Err(PatternError::Userinfo(t()));
        }
        let (host_text, port_text) = split_host_port(authority).ok_or_else(|| PatternError::Shape(t()))?;
        if path.contains(['[', ']', '{', '}', '\\', '#']) || host_text.contains(['{', '}', '\\']) {
            return Err(PatternError::GlobSyntax(t()));
        }
        let host = parse_host_pattern(host_text, text, refused)?;
        if let HostPattern::Exact(Host::V4(ip)) = &host {
            addresses.check((*ip).into()).map_err(|range| PatternError::DeniedAddress(t(), range.as_str()))?;
        }
        if let HostPattern::Exact(Host::V6(ip)) = &host {
            addresses.check((*ip).into()).map_err(|range| PatternError::DeniedAddress(t(), range.as_str()))?;
        }
        let port = match port_text {
            None => PortPattern::Default,
            Some("*") => PortPattern::Any,
            Some(p) => PortPattern::Exact(parse_port(p).map_err(|_| PatternError::Port(t()))?),
        };
        let path = collapse_stars(path);
        match normalize_path(&path) {
            Ok(canonical) if canonical == path => {}
            Ok(canonical) => return Err(PatternError::Path(t(), canonical)),
            Err(e) => return Err(PatternError::Path(t(), e.to_string())),
        }
        Ok(Pattern { scheme, host, port, path })
    }

    /// Whether the host part alone covers `host` (for confirming a tenant host to pin).
    pub fn covers_host(&self, host: &Host) -> bool {
        match (&self.host, host) {
            (HostPattern::Exact(h), host) => h == host,
            (HostPattern::Wildcard(suffix), Host::Name(name)) => {
                name.len() > suffix.len() + 1
                    && name.ends_with(suffix.as_str())
                    && name[..name.len() - suffix.len()].ends_with('.')
            }
            (HostPattern::Wildcard(_), _) => false,
        }
    }

    /// Whether a port is covered.
    pub fn covers_port(&self, port: u16) -> bool {
        match self.port {
            PortPattern::Default => port == self.scheme.default_port(),
            PortPattern::Exact(p) => port == p,
            PortPattern::Any => true,
        }
    }
}

fn split_host_port(authority: &str) -> Option<(&str, Option<&str>)> {
    if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (host, after) = authority.split_at(end + 1);
        return match after {
            "" => Some((host, None)),
            p => Some((host, Some(p.strip_prefix(':')?))),
        };
    }
    Some(match authority.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    })
}

fn parse_host_pattern(host: &str, text: &str, refused: Suffixes) -> Result<HostPattern, PatternError> {
    let t = || text.to_string();
    let (wildcard, name) = match host.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, host),
    };
    if name.contains('*') {
        return Err(PatternError::MidHostWildcard(t()));
    }
    let parsed = parse_host(name).map_err(|e| PatternError::Host(t(), e.to_string()))?;
    if !wildcard {
        return Ok(HostPattern::Exact(parsed));
    }
    let Host::Name(suffix) = parsed else {
        return Err(PatternError::MidHostWildcard(t()));
    };
    if is_public_suffix(&suffix, refused) {
        return Err(PatternError::PublicSuffix(t()));
    }
    Ok(HostPattern::Wildcard(suffix))
}

/// `**` means the same as `*` here; collapsing it keeps globset's path-component rules out.
fn collapse_stars(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '*' && out.ends_with('*')) {
            out.push(c);
        }
    }
    out
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme.as_str())?;
        match &self.host {
            HostPattern::Exact(h) => write!(f, "{h}")?,
            HostPattern::Wildcard(s) => write!(f, "*.{s}")?,
        }
        match self.port {
            PortPattern::Default => {}
            PortPattern::Exact(p) => write!(f, ":{p}")?,
            PortPattern::Any => f.write_str(":*")?,
        }
        f.write_str(&self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Pattern, PatternError> {
        Pattern::parse(text, false, &AddressPolicy::default())
    }

    #[test]
    fn accepted_and_normalized() {
        for (text, shown) in [
            ("https://API.Example.COM/v1/*", "https://api.example.com/v1/*"),
            ("https://*.databricks.com/*", "https://*.databricks.com/*"),
            ("https://api.example.com:8443/**", "https://api.example.com:8443/*"),
            ("https://api.example.com:*/x", "https://api.example.com:*/x"),
            ("https://52.32.0.10/*", "https://52.32.0.10/*"),
            ("https://*.example.co.uk/*", "https://*.example.co.uk/*"),
            ("https://*.myorg.github.io/*", "https://*.myorg.github.io/*"),
            ("https://*.corp.internal/*", "https://*.corp.internal/*"),
        ] {
            assert_eq!(parse(text).map(|p| p.to_string()).as_deref(), Ok(shown), "{text}");
        }
    }

    #[test]
    fn refused() {
        for text in [
            "https://*.com/*",
            "https://*.co.uk/*",
            "https://*.com.au/*",
            "https://*.github.io/*",
            "https://*.herokuapp.com/*",
            "https://*.s3.amazonaws.com/*",
            "https://*.internal/*",
            "https://api.*.example.com/*",
            "https://a*.example.com/*",
            "http://api.example.com/*",
            "https://10.0.0.5/*",
            "https://[::1]/*",
            "https://user@api.example.com/*",
            "https://api.example.com/v1/*?x=*",
            "https://api.example.com/v1/../*",
            "https://api.example.com/v1/[ab]",
            "https://api.example.com/{a,b}",
            "https://api.example.com",
            "https://\u{430}pi.example.com/*",
            "https://api.example.com:0/*",
            "ftp://api.example.com/*",
        ] {
            assert!(parse(text).is_err(), "{text} should be refused");
            if !["https://*.github.io/*", "https://*.herokuapp.com/*", "https://*.s3.amazonaws.com/*"].contains(&text) {
                assert!(
                    Pattern::parse_vetted(text, &AddressPolicy::default()).is_err(),
                    "{text} should be refused in a template too"
                );
            }
        }
        assert!(Pattern::parse("http://api.example.com/*", true, &AddressPolicy::default()).is_ok());
        let wildcard = parse("https://*.databricks.com/*").unwrap();
        let host = |h: &str| crate::domains::target::parse_host(h).unwrap();
        assert!(wildcard.covers_host(&host("dbc-1.cloud.databricks.com")));
        assert!(!wildcard.covers_host(&host("databricks.com")));
        assert!(!wildcard.covers_host(&host("evildatabricks.com")));
    }
}
