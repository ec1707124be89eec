//! Validated value types. Each constructor checks one rule and says which in
//! its error; once built, a value is known good everywhere it travels.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// A VXLAN network identifier: 24 bits, 0 reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct Vni(u32);

impl Vni {
    pub const MAX: u32 = 0xFF_FFFF;

    pub fn new(value: u32) -> Result<Self, String> {
        if (1..=Self::MAX).contains(&value) {
            Ok(Vni(value))
        } else {
            Err(format!("{value} is out of range 1..={}", Self::MAX))
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for Vni {
    type Error = String;
    fn try_from(value: u32) -> Result<Self, String> {
        Vni::new(value)
    }
}

impl From<Vni> for u32 {
    fn from(vni: Vni) -> u32 {
        vni.0
    }
}

impl fmt::Display for Vni {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An interface MTU in bytes (the IP packet size, without the Ethernet header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct Mtu(u32);

impl Mtu {
    /// The IPv4 minimum (RFC 791) and the largest value an IPv4 length can carry.
    pub const MIN: u32 = 68;
    pub const MAX: u32 = 65535;

    pub fn new(value: u32) -> Result<Self, String> {
        if (Self::MIN..=Self::MAX).contains(&value) {
            Ok(Mtu(value))
        } else {
            Err(format!("{value} is out of range {}..={}", Self::MIN, Self::MAX))
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for Mtu {
    type Error = String;
    fn try_from(value: u32) -> Result<Self, String> {
        Mtu::new(value)
    }
}

impl From<Mtu> for u32 {
    fn from(mtu: Mtu) -> u32 {
        mtu.0
    }
}

impl fmt::Display for Mtu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A value for an error message: quoted, and cut after 64 characters (a
/// config value can be megabytes long; the message need not be).
pub fn shown(value: &str) -> String {
    const MAX: usize = 64;
    match value.char_indices().nth(MAX) {
        None => format!("{value:?}"),
        Some((cut, _)) => format!("{:?}... ({} bytes)", &value[..cut], value.len()),
    }
}

/// A network or container name: `[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}`, as Docker
/// accepts them, so it is also a usable DNS label path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Name(String);

impl Name {
    pub const MAX_LEN: usize = 64;

    pub fn new(value: &str) -> Result<Self, String> {
        let mut chars = value.chars();
        let Some(first) = chars.next() else {
            return Err("must not be empty".into());
        };
        if !first.is_ascii_alphanumeric() {
            return Err(format!("{} must start with a letter or digit", shown(value)));
        }
        if let Some(bad) = chars.find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))) {
            return Err(format!("{} contains {bad:?}; allowed are letters, digits, '_', '.' and '-'", shown(value)));
        }
        if value.len() > Self::MAX_LEN {
            return Err(format!("{} is longer than {} characters", shown(value), Self::MAX_LEN));
        }
        Ok(Name(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Name {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        Name::new(&value)
    }
}

impl From<Name> for String {
    fn from(name: Name) -> String {
        name.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Linux interface name: 1 to 15 bytes, no '/', ':' or whitespace, not "." or "..".
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IfName(String);

impl IfName {
    /// IFNAMSIZ minus the terminating NUL.
    pub const MAX_LEN: usize = 15;

    pub fn new(value: &str) -> Result<Self, String> {
        if value.is_empty() {
            return Err("must not be empty".into());
        }
        if value.len() > Self::MAX_LEN {
            return Err(format!("{} is longer than {} bytes", shown(value), Self::MAX_LEN));
        }
        if value == "." || value == ".." {
            return Err(format!("{} is not a valid interface name", shown(value)));
        }
        if let Some(bad) = value.chars().find(|c| *c == '/' || *c == ':' || c.is_whitespace() || c.is_control()) {
            return Err(format!("{} contains {bad:?}, which interface names may not", shown(value)));
        }
        Ok(IfName(value.to_owned()))
    }

    /// `eth0`, `eth1`, ...: what a container's n-th network interface is called.
    pub fn eth(n: usize) -> Self {
        IfName(format!("eth{n}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for IfName {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        IfName::new(&value)
    }
}

impl From<IfName> for String {
    fn from(name: IfName) -> String {
        name.0
    }
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An Ethernet MAC address (switchd's packet views own the type).
pub use switchd_wire::MacAddr;

/// An IP subnet in CIDR form whose host bits are zero (`10.10.0.0/24`, not
/// `10.10.0.5/24`), with room for at least a gateway and one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Subnet(IpNet);

impl Subnet {
    pub fn new(net: IpNet) -> Result<Self, String> {
        if net.trunc() != net {
            return Err(format!("{net} has host bits set; did you mean {}?", net.trunc()));
        }
        let host_bits = net.max_prefix_len() - net.prefix_len();
        if host_bits < 2 {
            return Err(format!(
                "{net} is too small: it needs room for a gateway and an endpoint (at most /{})",
                net.max_prefix_len() - 2
            ));
        }
        Ok(Subnet(net))
    }

    pub fn net(self) -> IpNet {
        self.0
    }

    pub fn prefix_len(self) -> u8 {
        self.0.prefix_len()
    }

    pub fn contains(self, ip: IpAddr) -> bool {
        self.0.contains(&ip)
    }

    /// Whether `ip` may be given to an endpoint or gateway: inside the subnet,
    /// and not the network address or (IPv4) the broadcast address.
    pub fn is_assignable(self, ip: IpAddr) -> bool {
        if !self.contains(ip) || ip == self.0.network() {
            return false;
        }
        !(ip.is_ipv4() && ip == self.0.broadcast())
    }

    /// How many addresses the subnet spans (saturating at 2^127).
    pub fn size(self) -> u128 {
        1u128 << (self.0.max_prefix_len() - self.0.prefix_len()).min(127)
    }

    /// IPAM cuts a subnet into 16 blocks of 4 to 256 addresses, claimed by
    /// hosts through gossip: the addresses of one block.
    pub fn block_size(self) -> u128 {
        (self.size() / 16).clamp(4.min(self.size()), 256)
    }

    /// How many IPAM blocks the subnet has (at most 65536).
    pub fn block_count(self) -> u32 {
        (self.size() / self.block_size()).clamp(1, 1 << 16) as u32
    }

    /// The first assignable address: the default gateway, as Docker picks it.
    pub fn first_host(self) -> IpAddr {
        self.nth_host(1).expect("a validated subnet has at least two host addresses")
    }

    /// The address `n` places after the network address, if it is assignable.
    pub fn nth_host(self, n: u128) -> Option<IpAddr> {
        let ip = match self.0.network() {
            IpAddr::V4(v4) => {
                let n = u32::try_from(n).ok()?;
                IpAddr::V4(u32::from(v4).checked_add(n)?.into())
            }
            IpAddr::V6(v6) => IpAddr::V6(u128::from(v6).checked_add(n)?.into()),
        };
        self.is_assignable(ip).then_some(ip)
    }
}

impl FromStr for Subnet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let net: IpNet = s.parse().map_err(|_| format!("{} is not a CIDR subnet like 10.10.0.0/24", shown(s)))?;
        Subnet::new(net)
    }
}

impl TryFrom<String> for Subnet {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        value.parse()
    }
}

impl From<Subnet> for String {
    fn from(subnet: Subnet) -> String {
        subnet.to_string()
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vni_range() {
        assert!(Vni::new(0).is_err());
        assert_eq!(Vni::new(1).unwrap().get(), 1);
        assert_eq!(Vni::new(0xFF_FFFF).unwrap().get(), 0xFF_FFFF);
        assert!(Vni::new(0x100_0000).is_err());
    }

    #[test]
    fn mtu_range() {
        assert!(Mtu::new(67).is_err());
        assert!(Mtu::new(68).is_ok());
        assert!(Mtu::new(65535).is_ok());
        assert!(Mtu::new(65536).is_err());
    }

    #[test]
    fn names() {
        assert!(Name::new("frontend").is_ok());
        assert!(Name::new("a.b_c-9").is_ok());
        assert!(Name::new("").is_err());
        assert!(Name::new("-x").is_err());
        assert!(Name::new("a b").is_err());
        assert!(Name::new(&"a".repeat(64)).is_ok());
        assert!(Name::new(&"a".repeat(65)).is_err());
    }

    #[test]
    fn ifnames() {
        assert!(IfName::new("eth0").is_ok());
        assert!(IfName::new("a234567890abcde").is_ok());
        assert!(IfName::new("a234567890abcdef").is_err());
        assert!(IfName::new("a/b").is_err());
        assert!(IfName::new("..").is_err());
        assert_eq!(IfName::eth(2).as_str(), "eth2");
    }

    #[test]
    fn mac_parse_and_print() {
        let mac: MacAddr = "02:00:00:00:00:10".parse().unwrap();
        assert_eq!(mac.0, [2, 0, 0, 0, 0, 0x10]);
        assert_eq!(mac.to_string(), "02:00:00:00:00:10");
        assert_eq!("02-00-00-00-00-10".parse::<MacAddr>().unwrap(), mac);
        assert!("02:00:00:00:00".parse::<MacAddr>().is_err());
        assert!("02:00:00:00:00:10:11".parse::<MacAddr>().is_err());
        assert!("02:00:00:00:00:1g".parse::<MacAddr>().is_err());
        assert!("2:0:0:0:0:10".parse::<MacAddr>().is_err());
        assert!(MacAddr::BROADCAST.is_multicast());
        assert!(!mac.is_multicast());
        assert!(MacAddr::ZERO.is_zero());
        assert_eq!(mac.to_u64(), 0x0200_0000_0010);
    }

    #[test]
    fn mac_derivation() {
        let mac = MacAddr::derived_from_ip("10.10.0.10".parse().unwrap());
        assert_eq!(mac.to_string(), "02:42:0a:0a:00:0a");
        assert!(mac.is_unicast());
        let local = MacAddr::local_from_bits(u64::MAX);
        assert!(local.is_unicast());
        assert_eq!(local.0[0] & 0x02, 0x02);
    }

    #[test]
    fn subnets() {
        let s: Subnet = "10.10.0.0/24".parse().unwrap();
        assert_eq!(s.first_host().to_string(), "10.10.0.1");
        assert!(s.is_assignable("10.10.0.254".parse().unwrap()));
        assert!(!s.is_assignable("10.10.0.255".parse().unwrap()));
        assert!(!s.is_assignable("10.10.0.0".parse().unwrap()));
        assert!(!s.is_assignable("10.10.1.1".parse().unwrap()));
        assert_eq!(s.nth_host(254).unwrap().to_string(), "10.10.0.254");
        assert!(s.nth_host(255).is_none());
        let err = "10.10.0.5/24".parse::<Subnet>().unwrap_err();
        assert!(err.contains("did you mean 10.10.0.0/24"), "{err}");
        assert!("10.10.0.0/31".parse::<Subnet>().is_err());
        assert!("10.10.0.0/30".parse::<Subnet>().is_ok());
        assert!("fd00::/64".parse::<Subnet>().is_ok());
        assert!("bogus".parse::<Subnet>().is_err());
    }
}
