//! The address policy: which resolved IP addresses Tollgate may connect to.
//!
//! Patterns decide which *names* are allowed; this decides which *addresses* those names may
//! lead to, so a DNS answer (or an IP literal) pointing into the internal network is refused
//! unless the connector opts in with `unsafe_allow_ranges`. Embedded IPv4 addresses inside
//! IPv6 forms are unwrapped and checked as IPv4.
//!
//! Cloud metadata and platform addresses ([`METADATA`]) are refused even where they are public
//! (Azure's WireServer is), and only an opt-in naming the one address (`/32`, `/128`) lets a
//! connector reach one: a wide range opted into for an internal API never opens them.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// A CIDR range such as `10.0.0.0/8` or `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Whether the range is one address (`/32`, `/128`).
    pub fn is_single(&self) -> bool {
        self.prefix == if self.addr.is_ipv4() { 32 } else { 128 }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(u32::from(net) as u128, u32::from(ip) as u128, self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_eq(u128::from(net), u128::from(ip), self.prefix, 128),
            _ => false,
        }
    }
}

fn prefix_eq(a: u128, b: u128, prefix: u8, bits: u8) -> bool {
    if prefix == 0 {
        return true;
    }
    let shift = bits - prefix;
    (a >> shift) == (b >> shift)
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = s.split_once('/').ok_or_else(|| format!("`{s}` is not a CIDR range like 10.0.0.0/8"))?;
        let addr: IpAddr = addr.parse().map_err(|_| format!("`{addr}` is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("`{prefix}` is not a prefix length between 0 and {max}"))?;
        Ok(IpNet { addr, prefix })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Instance metadata and platform service addresses: where a cloud hands out credentials.
pub const METADATA: &[IpAddr] = &[
    // AWS, GCP, Azure IMDS, Oracle, DigitalOcean, OpenStack and others.
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
    // AWS ECS task credentials.
    IpAddr::V4(Ipv4Addr::new(169, 254, 170, 2)),
    // Azure WireServer (a public address).
    IpAddr::V4(Ipv4Addr::new(168, 63, 129, 16)),
    // Alibaba Cloud.
    IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)),
    // Oracle Cloud (legacy).
    IpAddr::V4(Ipv4Addr::new(192, 0, 0, 192)),
    // AWS IMDS over IPv6.
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254)),
    // GCP metadata over IPv6.
    IpAddr::V6(Ipv6Addr::new(0xfd20, 0x00ce, 0, 0, 0, 0, 0, 0x0254)),
];

/// Why an address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeniedRange {
    /// One of [`METADATA`].
    Metadata,
    Unspecified,
    Loopback,
    Private,
    SharedCgnat,
    LinkLocal,
    UniqueLocal,
    Multicast,
    Reserved,
}

impl DeniedRange {
    pub fn as_str(self) -> &'static str {
        match self {
            DeniedRange::Metadata => "cloud metadata",
            DeniedRange::Unspecified => "unspecified",
            DeniedRange::Loopback => "loopback",
            DeniedRange::Private => "private",
            DeniedRange::SharedCgnat => "cgnat",
            DeniedRange::LinkLocal => "link-local",
            DeniedRange::UniqueLocal => "unique-local",
            DeniedRange::Multicast => "multicast",
            DeniedRange::Reserved => "reserved",
        }
    }
}

impl fmt::Display for DeniedRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The range an address falls in, if it is one Tollgate refuses by default.
pub fn denied_range(ip: IpAddr) -> Option<DeniedRange> {
    match ip {
        IpAddr::V4(v4) => denied_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => denied_v4(v4),
            None => denied_v6(v6),
        },
    }
}

fn denied_v4(ip: Ipv4Addr) -> Option<DeniedRange> {
    if METADATA.contains(&IpAddr::V4(ip)) {
        return Some(DeniedRange::Metadata);
    }
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, _, _) => DeniedRange::Unspecified,
        (127, _, _) => DeniedRange::Loopback,
        (10, _, _) | (192, 168, _) => DeniedRange::Private,
        (172, 16..=31, _) => DeniedRange::Private,
        (100, 64..=127, _) => DeniedRange::SharedCgnat,
        (169, 254, _) => DeniedRange::LinkLocal,
        (192, 0, 0) | (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => DeniedRange::Reserved,
        (198, 18..=19, _) => DeniedRange::Reserved,
        (224..=239, _, _) => DeniedRange::Multicast,
        (240..=255, _, _) => DeniedRange::Reserved,
        _ => return None,
    })
}

fn denied_v6(ip: Ipv6Addr) -> Option<DeniedRange> {
    let s = ip.segments();
    Some(match s[0] {
        _ if METADATA.contains(&IpAddr::V6(ip)) => DeniedRange::Metadata,
        _ if ip.is_unspecified() => DeniedRange::Unspecified,
        _ if ip.is_loopback() => DeniedRange::Loopback,
        0xfe80..=0xfebf => DeniedRange::LinkLocal,
        0xfec0..=0xfeff => DeniedRange::Reserved,
        0xfc00..=0xfdff => DeniedRange::UniqueLocal,
        0xff00..=0xffff => DeniedRange::Multicast,
        // Teredo, documentation and discard prefixes never name a real upstream.
        0x2001 if s[1] == 0 || s[1] == 0x0db8 || (s[1] == 2 && s[2] == 0) => DeniedRange::Reserved,
        0x0100 if s[1..4] == [0, 0, 0] => DeniedRange::Reserved,
        _ => return None,
    })
}

/// The IPv4 address inside IPv4-mapped, IPv4-compatible, NAT64 and 6to4 forms.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(tail),
        // IPv4-translated (RFC 2765).
        [0, 0, 0, 0, 0xffff, 0, _, _] => Some(tail),
        [0, 0, 0, 0, 0, 0, _, _] if !ip.is_loopback() && !ip.is_unspecified() => Some(tail),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(tail),
        [0x64, 0xff9b, 1, ..] => Some(tail),
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)),
        _ => None,
    }
}

/// The address policy of one connector: the default deny ranges minus what it opts into.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    unsafe_allow: Vec<IpNet>,
}

impl AddressPolicy {
    pub fn new(unsafe_allow: Vec<IpNet>) -> Self {
        AddressPolicy { unsafe_allow }
    }

    /// The ranges opted into (`unsafe_allow_ranges`).
    pub fn allowed_ranges(&self) -> &[IpNet] {
        &self.unsafe_allow
    }

    /// `Err` with the range when the address may not be dialed.
    pub fn check(&self, ip: IpAddr) -> Result<(), DeniedRange> {
        // An opt-in for an IPv4 range also covers that range's IPv6-embedded forms.
        let embedded = match ip {
            IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        let range = denied_range(ip);
        // A metadata address is opened only by an opt-in that names it alone.
        let single = range == Some(DeniedRange::Metadata);
        let opted_in = |candidate: IpAddr| {
            self.unsafe_allow.iter().any(|net| net.contains(candidate) && (!single || net.is_single()))
        };
        match range {
            Some(range) if !opted_in(ip) && !embedded.is_some_and(opted_in) => Err(range),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_deny_ranges() {
        let denied = [
            "0.0.0.0",
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.169.254",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fe80::1",
            "fd00:ec2::254",
            "fc00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
            "ff02::1",
            "2001:db8::1",
        ];
        for ip in denied {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(denied_range(ip).is_some(), "{ip} should be denied");
        }
        let allowed = ["52.32.0.10", "8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700::1111", "::ffff:52.32.0.10"];
        for ip in allowed {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(denied_range(ip), None, "{ip} should be allowed");
        }
    }

    #[test]
    fn metadata_addresses_whatever_their_range() {
        for ip in [
            "169.254.169.254",
            "169.254.170.2",
            "168.63.129.16",
            "100.100.100.200",
            "192.0.0.192",
            "fd00:ec2::254",
            "fd20:ce::254",
            "::ffff:168.63.129.16",
            "64:ff9b::a83f:8110",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(denied_range(ip), Some(DeniedRange::Metadata), "{ip}");
        }
        // The rest of link-local stays denied as such; WireServer's neighbours are public.
        assert_eq!(denied_range("169.254.0.23".parse().unwrap()), Some(DeniedRange::LinkLocal));
        assert_eq!(denied_range("168.63.129.17".parse().unwrap()), None);
        // A wide opt-in does not open a metadata address; naming it alone does.
        let wide = AddressPolicy::new(vec!["168.63.0.0/16".parse().unwrap(), "169.254.0.0/16".parse().unwrap()]);
        assert!(wide.check("168.63.1.1".parse().unwrap()).is_ok());
        assert!(wide.check("169.254.1.1".parse().unwrap()).is_ok());
        assert_eq!(wide.check("168.63.129.16".parse().unwrap()), Err(DeniedRange::Metadata));
        assert_eq!(wide.check("169.254.169.254".parse().unwrap()), Err(DeniedRange::Metadata));
        assert_eq!(wide.check("::ffff:169.254.169.254".parse().unwrap()), Err(DeniedRange::Metadata));
        let named = AddressPolicy::new(vec!["169.254.169.254/32".parse().unwrap()]);
        assert!(named.check("169.254.169.254".parse().unwrap()).is_ok());
    }

    #[test]
    fn opt_in_ranges() {
        let policy = AddressPolicy::new(vec!["10.0.0.0/8".parse().unwrap()]);
        assert!(policy.check("10.9.9.9".parse().unwrap()).is_ok());
        assert!(policy.check("::ffff:10.9.9.9".parse().unwrap()).is_ok());
        assert_eq!(policy.check("127.0.0.1".parse().unwrap()), Err(DeniedRange::Loopback));
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
        assert!("::/0".parse::<IpNet>().unwrap().contains("::1".parse().unwrap()));
    }
}
