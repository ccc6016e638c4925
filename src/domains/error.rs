//! Why a URL is not a target: the one error of URL and host parsing (`400 bad_target`), shared
//! by the host parser, the full target parser and its fast path.

/// Why a target was refused as malformed or ambiguous (`400 bad_target`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("the URL is empty")]
    Empty,
    #[error("the URL contains a control character or a space")]
    ControlCharacter,
    #[error("the URL contains a backslash")]
    Backslash,
    #[error("the URL contains non-ASCII characters outside the host")]
    NonAscii,
    #[error("the URL has no scheme; write it as https://host/path")]
    MissingScheme,
    #[error("the scheme `{0}` is not supported; only https (and http where a connector allows it)")]
    UnsupportedScheme(String),
    #[error("the URL has no host")]
    MissingHost,
    #[error("the URL carries userinfo (user@host), which is never accepted")]
    Userinfo,
    #[error("the URL carries a fragment (#...), which is never sent and never accepted")]
    Fragment,
    #[error("the host is not a valid DNS name or IP literal")]
    InvalidHost,
    #[error("the host contains percent-encoding")]
    EncodedHost,
    #[error("the host is a non-canonical IPv4 form; write it as four decimal octets")]
    NonCanonicalIpv4,
    #[error("IPv6 zone identifiers are not accepted")]
    Ipv6Zone,
    #[error("the port is not a number between 1 and 65535")]
    InvalidPort,
    #[error("the path has invalid percent-encoding")]
    BadPercentEncoding,
    #[error("the path encodes a `/` or `\\` (%2F, %5C), which backends may decode differently")]
    EncodedSeparator,
    #[error("the path encodes a control character")]
    EncodedControl,
    #[error("the path has a percent-encoded dot segment (%2E%2E)")]
    EncodedDotSegment,
    #[error("the path has a dot segment with ;parameters")]
    DotSegmentParams,
    #[error("the path climbs above the root with ..")]
    AboveRoot,
    #[error("the Host inside the tunnel differs from the CONNECT target")]
    HostMismatch,
}
