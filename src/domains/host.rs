//! Hosts: DNS names lower-cased and converted to punycode, IP literals in their one canonical
//! form. Every numeric IPv4 spelling other than four decimal octets without leading zeros is
//! refused rather than interpreted, since resolvers and parsers disagree about them.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::error::TargetError;

/// A validated host: a lower-case ASCII DNS name, or an IP literal in canonical form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    Name(String),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::V4(a) => write!(f, "{a}"),
            Host::V6(a) => write!(f, "[{a}]"),
        }
    }
}

/// Validates a host: IP literals in canonical form only, DNS names lower-cased, IDN
/// converted to punycode, one trailing dot removed.
pub fn parse_host(text: &str) -> Result<Host, TargetError> {
    if let Some(inner) = text.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or(TargetError::InvalidHost)?;
        if inner.contains('%') {
            return Err(TargetError::Ipv6Zone);
        }
        return inner.parse::<Ipv6Addr>().map(Host::V6).map_err(|_| TargetError::InvalidHost);
    }
    if text.contains('%') {
        return Err(TargetError::EncodedHost);
    }
    let text = text.strip_suffix('.').unwrap_or(text);
    if text.is_empty() {
        return Err(TargetError::MissingHost);
    }
    let ascii = if text.is_ascii() {
        text.to_ascii_lowercase()
    } else {
        idna::domain_to_ascii_strict(text).map_err(|_| TargetError::InvalidHost)?
    };
    if looks_numeric(ascii.rsplit('.').next().unwrap_or("")) {
        return parse_canonical_ipv4(&ascii).map(Host::V4);
    }
    if ascii.len() > 253 {
        return Err(TargetError::InvalidHost);
    }
    for label in ascii.split('.') {
        if label.is_empty()
            || label.len() > 63
            || !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(TargetError::InvalidHost);
        }
        if let Some(puny) = label.strip_prefix("xn--") {
            match idna::punycode::decode_to_string(puny) {
                Some(decoded) if !decoded.is_empty() && !decoded.is_ascii() => {}
                _ => return Err(TargetError::InvalidHost),
            }
        }
    }
    Ok(Host::Name(ascii))
}

/// WHATWG's rule: a host whose last label is a number is an IPv4 address attempt.
fn looks_numeric(label: &str) -> bool {
    if label.is_empty() {
        return false;
    }
    if let Some(hex) = label.strip_prefix("0x") {
        return hex.bytes().all(|b| b.is_ascii_hexdigit());
    }
    label.bytes().all(|b| b.is_ascii_digit())
}

/// Only the dotted-quad decimal form without leading zeros is an address; every other
/// numeric form (decimal, octal, hex, short) is refused rather than interpreted.
pub(super) fn parse_canonical_ipv4(text: &str) -> Result<Ipv4Addr, TargetError> {
    let mut octets = [0u8; 4];
    let mut labels = text.as_bytes().split(|&b| b == b'.');
    for slot in &mut octets {
        let label = labels.next().ok_or(TargetError::NonCanonicalIpv4)?;
        let canonical = !label.is_empty()
            && label.len() <= 3
            && label.iter().all(u8::is_ascii_digit)
            && (label.len() == 1 || label[0] != b'0');
        if !canonical {
            return Err(TargetError::NonCanonicalIpv4);
        }
        let value = label.iter().fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
        *slot = u8::try_from(value).map_err(|_| TargetError::NonCanonicalIpv4)?;
    }
    if labels.next().is_some() {
        return Err(TargetError::NonCanonicalIpv4);
    }
    Ok(Ipv4Addr::from(octets))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dotted_quads_without_leading_zeros_are_addresses() {
        for (text, octets) in [("127.0.0.1", [127, 0, 0, 1]), ("255.255.255.255", [255; 4]), ("0.0.0.0", [0; 4])] {
            assert_eq!(parse_canonical_ipv4(text).ok(), Some(Ipv4Addr::from(octets)), "{text}");
        }
        for text in [
            "256.0.0.1",
            "1.2.3",
            "1.2.3.4.5",
            "01.2.3.4",
            "1.2.3.04",
            "1..3.4",
            "1.2.3.4.",
            ".1.2.3",
            "1.2.3.1000",
            "0x7f.0.0.1",
            "1.2.3.-4",
            "+1.2.3.4",
            "",
            "1.2.3.a",
        ] {
            assert!(parse_canonical_ipv4(text).is_err(), "{text}");
        }
    }
}
