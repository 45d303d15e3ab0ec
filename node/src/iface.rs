//! Interface addresses and MACs as `node.toml` writes them, for the TAP
//! (`[tap]`) and the userspace hosts (`[[host]]`) alike.
use std::net::IpAddr;

/// An interface address with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfAddr {
    /// The address.
    pub addr: IpAddr,
    /// The prefix length.
    pub prefix: u8,
}

impl std::fmt::Display for IfAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// `ADDRESS/PREFIX`, the prefix no longer than the address.
pub(crate) fn parse_ifaddr(s: &str) -> Option<IfAddr> {
    let (a, p) = s.split_once('/')?;
    let addr: IpAddr = a.parse().ok()?;
    let prefix: u8 = p.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (prefix <= max).then_some(IfAddr { addr, prefix })
}

/// A stable, locally administered unicast MAC for a node's TAP, from its
/// public key (which is public, so the MAC reveals nothing new).
pub fn mac_from_key(public: &[u8; 32]) -> [u8; 6] {
    let mut m = [0u8; 6];
    m.copy_from_slice(&public[..6]);
    m[0] = (m[0] & 0xfc) | 0x02;
    m
}
