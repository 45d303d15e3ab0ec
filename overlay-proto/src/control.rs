//! Control messages: the plaintext of a data packet with flag
//! [`FLAG_CONTROL`](crate::wire::FLAG_CONTROL), sealed under a session like
//! any frame, so they are authenticated, encrypted and replay-protected.
//!
//! Why not serde: control messages come from the network, so parsing must be
//! bounded and must never panic; a fixed binary layout with explicit lengths
//! is easy to fuzz and needs no allocation to reject bad input. A message is
//! one byte of type followed by a type-specific body; unknown types are kept
//! as [`Control::Unknown`] so a receiver can count them (newer peers may send
//! messages we do not know).
//!
//! ```text
//! mesh          | 1 | [vlans] |
//! peer-update   | 2 | public key:32 | name len:1 | name | n:1 | n endpoints | [vlans] |
//! peer-gone     | 3 | public key:32 |
//! local-addrs   | 4 | n:1 | n endpoints |
//! mac-announce  | 5 | caps:32 | n:1 | n MACs (6 bytes each) |
//! ping          | 6 | id:64 |
//! pong          | 7 | id:64 |
//! peer-list-end | 8 | count:16 |
//! mac-owners    | 9 | public key:32 | n:1 | n MACs (6 bytes each) |
//! (type 10 is a trunk announcement between switches: see `announce`)
//! endpoint      | family:1 (4 or 6) | address (4 or 16) | port:16 |
//! vlans         | 1 | native:16 (0: none) | tagged: 512-byte bitmap, bit v for VLAN v |
//! ```
//!
//! The `vlans` extension is present only when the switch is VLAN-aware: in
//! `mesh` it is the receiving node's own port, in `peer-update` the member's
//! port restricted to the VLANs it shares with the receiver. A message
//! without it means a VLAN-unaware switch ([`PortVlan::Transparent`]), which
//! keeps the bytes of earlier versions. A receiver of an earlier version
//! refuses the extended messages (trailing bytes), so it never enables mesh
//! mode or learns a peer and every frame it sends goes through the switch,
//! which filters VLANs: it fails closed. An unknown extension type is refused
//! for the same reason.
//!
//! Who sends what: the switch sends `mesh` (this network runs in mesh mode),
//! `peer-update` (a member joined or moved: its key, name, the endpoint the
//! switch observed first, then the local addresses it announced) and
//! `peer-gone`, and after `mesh` and the full list of `peer-update`s
//! `peer-list-end` with the number of updates in that list (so a node knows
//! the list is complete and drops every peer missing from it), and
//! `mac-owners` (MACs the switch saw behind a member, so no other peer can
//! claim them over a direct path); a node sends `local-addrs` to the switch; nodes send each other
//! `mac-announce` (the source MACs behind the sender), `ping` and `pong`
//! (direct-path liveness and RTT).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::Error;
use crate::ethernet::MacAddr;
use crate::keys::PublicKey;
use crate::vlan::{PortVlan, Vid};

/// At most this many endpoints in one message.
pub const MAX_ENDPOINTS: usize = 8;
/// At most this many MACs in one `mac-announce`.
pub const MAX_MACS: usize = 64;
/// A peer name is at most this many bytes (UTF-8).
pub const MAX_NAME: usize = 64;
/// The only extension type: a port's VLANs.
const EXT_VLANS: u8 = 1;
/// Bytes of the VLAN bitmap (4096 bits).
const VLAN_BITMAP: usize = 512;
/// Bytes of the `vlans` extension.
const VLANS_LEN: usize = 1 + 2 + VLAN_BITMAP;
/// The highest VLAN id (4095 is reserved).
const MAX_VID: Vid = 4094;

mod kind {
    pub const MESH: u8 = 1;
    pub const PEER_UPDATE: u8 = 2;
    pub const PEER_GONE: u8 = 3;
    pub const LOCAL_ADDRS: u8 = 4;
    pub const MAC_ANNOUNCE: u8 = 5;
    pub const PING: u8 = 6;
    pub const PONG: u8 = 7;
    pub const PEER_LIST_END: u8 = 8;
    pub const MAC_OWNERS: u8 = 9;
}

/// One control message, parsed. Bounded: at most [`MAX_ENDPOINTS`] endpoints,
/// [`MAX_MACS`] MACs and a [`MAX_NAME`]-byte name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Switch to node: this network runs in mesh mode.
    Mesh {
        /// The receiving node's own port: its access or native VLAN and the
        /// VLANs it carries tagged ([`PortVlan::Transparent`] on a
        /// VLAN-unaware switch).
        vlan: PortVlan,
    },
    /// Switch to node: a member joined or moved.
    PeerUpdate {
        /// Its static public key (the only key the receiver accepts from it).
        key: PublicKey,
        /// Its configured name.
        name: String,
        /// Where to reach it: the endpoint the switch observed, then the
        /// local addresses the member announced.
        endpoints: Vec<SocketAddr>,
        /// Its port, restricted to the VLANs it shares with the receiver.
        vlan: PortVlan,
    },
    /// Switch to node: a member left (timed out).
    PeerGone {
        /// Its static public key.
        key: PublicKey,
    },
    /// Node to switch: the node's own underlay addresses (for peers behind the
    /// same NAT).
    LocalAddrs(Vec<SocketAddr>),
    /// Node to node: these source MACs live behind the sender; `caps` are
    /// its capability flags (`CAP_*` of [`crate::handshake`]), so a peer
    /// knows whether it may send offloaded super-frames directly.
    MacAnnounce {
        /// Capability flags.
        caps: u32,
        /// Source MACs seen on the sender's TAP.
        macs: Vec<MacAddr>,
    },
    /// Node to node: please answer with a `Pong` carrying the same id.
    Ping(u64),
    /// Node to node: the answer to a `Ping`.
    Pong(u64),
    /// Switch to node: the full list that began with `Mesh` is over; it held
    /// `count` `PeerUpdate`s. The list is authoritative: a peer missing from
    /// it is no longer vouched for.
    PeerListEnd {
        /// How many `PeerUpdate`s the list held.
        count: u16,
    },
    /// Switch to node: the switch saw these source MACs behind the member
    /// with this key (learned or moved there). A node lets no other peer
    /// claim them.
    MacOwners {
        /// The member's static public key.
        key: PublicKey,
        /// MACs behind it.
        macs: Vec<MacAddr>,
    },
    /// A type this version does not know: counted, otherwise ignored.
    Unknown(u8),
}

/// Why an announced local address is not used (see [`check_local_addr`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Implausible {
    /// Not the family of the endpoint the switch observed.
    Family,
    /// Unspecified, loopback, multicast, broadcast, link-local, `0.0.0.0/8`,
    /// or port 0: nothing a peer elsewhere could reach.
    Unreachable,
}

/// Whether `addr`, announced by a node whose endpoint the switch observed as
/// `observed`, is a plausible place for its peers to send handshakes: the
/// same family, and an address that can be a unicast host on some network
/// (not unspecified, loopback, multicast, broadcast, link-local, which
/// needs an interface scope a peer does not have, `0.0.0.0/8`, or port 0).
/// Anything else would only make peers send handshakes somewhere useless or
/// at a third party. IPv4-mapped IPv6 addresses count as IPv4.
pub fn check_local_addr(observed: SocketAddr, addr: SocketAddr) -> Result<(), Implausible> {
    let (o, a) = (observed.ip().to_canonical(), addr.ip().to_canonical());
    if o.is_ipv4() != a.is_ipv4() {
        return Err(Implausible::Family);
    }
    let unreachable = addr.port() == 0
        || a.is_unspecified()
        || a.is_loopback()
        || a.is_multicast()
        || match a {
            IpAddr::V4(v4) => v4.is_broadcast() || v4.is_link_local() || v4.octets()[0] == 0,
            IpAddr::V6(v6) => v6.is_unicast_link_local(),
        };
    if unreachable {
        return Err(Implausible::Unreachable);
    }
    Ok(())
}

/// A bounds-checked reader; every read fails instead of panicking.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.0.len() < n {
            return Err(Error::Truncated);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.take(1)?[0])
    }

    fn u64(&mut self) -> Result<u64, Error> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    fn key(&mut self) -> Result<PublicKey, Error> {
        let mut k = [0u8; 32];
        k.copy_from_slice(self.take(32)?);
        Ok(PublicKey(k))
    }

    fn endpoint(&mut self) -> Result<SocketAddr, Error> {
        let ip = match self.u8()? {
            4 => {
                let mut a = [0u8; 4];
                a.copy_from_slice(self.take(4)?);
                IpAddr::V4(Ipv4Addr::from(a))
            }
            6 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(self.take(16)?);
                IpAddr::V6(Ipv6Addr::from(a))
            }
            _ => return Err(Error::BadFlags),
        };
        let p = self.take(2)?;
        Ok(SocketAddr::new(ip, u16::from_be_bytes([p[0], p[1]])))
    }

    fn macs(&mut self) -> Result<Vec<MacAddr>, Error> {
        let n = self.u8()? as usize;
        if n > MAX_MACS {
            return Err(Error::BadFlags);
        }
        let mut macs = Vec::with_capacity(n);
        for _ in 0..n {
            let mut m = [0u8; 6];
            m.copy_from_slice(self.take(6)?);
            macs.push(MacAddr(m));
        }
        Ok(macs)
    }

    fn endpoints(&mut self) -> Result<Vec<SocketAddr>, Error> {
        let n = self.u8()? as usize;
        if n > MAX_ENDPOINTS {
            return Err(Error::BadFlags);
        }
        (0..n).map(|_| self.endpoint()).collect()
    }

    /// The optional `vlans` extension, at the end of a message.
    fn vlans(&mut self) -> Result<PortVlan, Error> {
        if self.0.is_empty() {
            return Ok(PortVlan::Transparent);
        }
        if self.u8()? != EXT_VLANS {
            return Err(Error::BadFlags);
        }
        let n = self.take(2)?;
        let native = match u16::from_be_bytes([n[0], n[1]]) {
            0 => None,
            v if v <= MAX_VID => Some(v),
            _ => return Err(Error::BadFlags),
        };
        let bits = self.take(VLAN_BITMAP)?;
        if bits[0] & 0x80 != 0 || bits[VLAN_BITMAP - 1] & 1 != 0 {
            return Err(Error::BadFlags);
        }
        let tagged = (1..=MAX_VID)
            .filter(|v| bits[*v as usize / 8] & (0x80 >> (v % 8)) != 0)
            .collect();
        Ok(PortVlan::Member { native, tagged })
    }

    fn end(self) -> Result<(), Error> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::Truncated)
        }
    }
}

impl Control {
    /// Parse a decrypted control payload. Fails (never panics) on a truncated
    /// or over-long message, too many items, or a bad endpoint family.
    pub fn parse(buf: &[u8]) -> Result<Control, Error> {
        let mut r = Reader(buf);
        let msg = match r.u8()? {
            kind::MESH => Control::Mesh { vlan: r.vlans()? },
            kind::PEER_UPDATE => {
                let key = r.key()?;
                let n = r.u8()? as usize;
                if n > MAX_NAME {
                    return Err(Error::BadFlags);
                }
                let name = std::str::from_utf8(r.take(n)?)
                    .map_err(|_| Error::BadFlags)?
                    .to_owned();
                let endpoints = r.endpoints()?;
                Control::PeerUpdate {
                    key,
                    name,
                    endpoints,
                    vlan: r.vlans()?,
                }
            }
            kind::PEER_GONE => Control::PeerGone { key: r.key()? },
            kind::LOCAL_ADDRS => Control::LocalAddrs(r.endpoints()?),
            kind::MAC_ANNOUNCE => {
                let c = r.take(4)?;
                let caps = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
                let macs = r.macs()?;
                Control::MacAnnounce { caps, macs }
            }
            kind::PING => Control::Ping(r.u64()?),
            kind::PONG => Control::Pong(r.u64()?),
            kind::MAC_OWNERS => {
                let key = r.key()?;
                let macs = r.macs()?;
                Control::MacOwners { key, macs }
            }
            kind::PEER_LIST_END => {
                let c = r.take(2)?;
                Control::PeerListEnd {
                    count: u16::from_be_bytes([c[0], c[1]]),
                }
            }
            // Unknown types may carry anything: do not check the length.
            t => return Ok(Control::Unknown(t)),
        };
        r.end()?;
        Ok(msg)
    }

    /// The encoded length.
    pub fn buffer_len(&self) -> usize {
        let eps = |e: &[SocketAddr]| {
            1 + e
                .iter()
                .take(MAX_ENDPOINTS)
                .map(|a| if a.is_ipv4() { 7 } else { 19 })
                .sum::<usize>()
        };
        let vlans = |v: &PortVlan| if v.is_aware() { VLANS_LEN } else { 0 };
        1 + match self {
            Control::Unknown(_) => 0,
            Control::Mesh { vlan } => vlans(vlan),
            Control::PeerUpdate {
                name,
                endpoints,
                vlan,
                ..
            } => 32 + 1 + name.len().min(MAX_NAME) + eps(endpoints) + vlans(vlan),
            Control::PeerGone { .. } => 32,
            Control::LocalAddrs(e) => eps(e),
            Control::MacAnnounce { macs, .. } => 4 + 1 + 6 * macs.len().min(MAX_MACS),
            Control::Ping(_) | Control::Pong(_) => 8,
            Control::PeerListEnd { .. } => 2,
            Control::MacOwners { macs, .. } => 32 + 1 + 6 * macs.len().min(MAX_MACS),
        }
    }

    /// Append the encoding to `out`. Lists longer than the limits are cut to
    /// them, and a name to [`MAX_NAME`] bytes (at a character boundary), and
    /// VLAN ids outside 1..=4094 are left out, so what is emitted always
    /// parses.
    pub fn emit(&self, out: &mut Vec<u8>) {
        fn emit_macs(out: &mut Vec<u8>, macs: &[MacAddr]) {
            let m = &macs[..macs.len().min(MAX_MACS)];
            out.push(m.len() as u8);
            for mac in m {
                out.extend_from_slice(&mac.0);
            }
        }
        fn endpoints(out: &mut Vec<u8>, e: &[SocketAddr]) {
            let e = &e[..e.len().min(MAX_ENDPOINTS)];
            out.push(e.len() as u8);
            for a in e {
                match a.ip() {
                    IpAddr::V4(ip) => {
                        out.push(4);
                        out.extend_from_slice(&ip.octets());
                    }
                    IpAddr::V6(ip) => {
                        out.push(6);
                        out.extend_from_slice(&ip.octets());
                    }
                }
                out.extend_from_slice(&a.port().to_be_bytes());
            }
        }
        fn vlans(out: &mut Vec<u8>, v: &PortVlan) {
            let PortVlan::Member { native, tagged } = v else {
                return;
            };
            let valid = |v: &Vid| (1..=MAX_VID).contains(v);
            out.push(EXT_VLANS);
            out.extend_from_slice(&native.filter(valid).unwrap_or(0).to_be_bytes());
            let at = out.len();
            out.resize(at + VLAN_BITMAP, 0);
            for v in tagged.iter().filter(|v| valid(v)) {
                out[at + *v as usize / 8] |= 0x80 >> (v % 8);
            }
        }
        match self {
            Control::Mesh { vlan } => {
                out.push(kind::MESH);
                vlans(out, vlan);
            }
            Control::PeerUpdate {
                key,
                name,
                endpoints: e,
                vlan,
            } => {
                out.push(kind::PEER_UPDATE);
                out.extend_from_slice(&key.0);
                let mut n = name.len().min(MAX_NAME);
                while !name.is_char_boundary(n) {
                    n -= 1;
                }
                out.push(n as u8);
                out.extend_from_slice(&name.as_bytes()[..n]);
                endpoints(out, e);
                vlans(out, vlan);
            }
            Control::PeerGone { key } => {
                out.push(kind::PEER_GONE);
                out.extend_from_slice(&key.0);
            }
            Control::LocalAddrs(e) => {
                out.push(kind::LOCAL_ADDRS);
                endpoints(out, e);
            }
            Control::MacAnnounce { caps, macs } => {
                out.push(kind::MAC_ANNOUNCE);
                out.extend_from_slice(&caps.to_be_bytes());
                emit_macs(out, macs);
            }
            Control::MacOwners { key, macs } => {
                out.push(kind::MAC_OWNERS);
                out.extend_from_slice(&key.0);
                emit_macs(out, macs);
            }
            Control::Ping(id) => {
                out.push(kind::PING);
                out.extend_from_slice(&id.to_be_bytes());
            }
            Control::Pong(id) => {
                out.push(kind::PONG);
                out.extend_from_slice(&id.to_be_bytes());
            }
            Control::PeerListEnd { count } => {
                out.push(kind::PEER_LIST_END);
                out.extend_from_slice(&count.to_be_bytes());
            }
            Control::Unknown(t) => out.push(*t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(m: Control) {
        let mut b = Vec::new();
        m.emit(&mut b);
        assert_eq!(b.len(), m.buffer_len(), "{m:?}");
        assert_eq!(Control::parse(&b).unwrap(), m);
    }

    #[test]
    fn every_message_round_trips() {
        let eps = vec![
            "198.18.0.11:40000".parse().unwrap(),
            "[fd00::1]:7".parse().unwrap(),
        ];
        round_trip(Control::Mesh {
            vlan: PortVlan::Transparent,
        });
        round_trip(Control::Mesh {
            vlan: PortVlan::Member {
                native: Some(10),
                tagged: vec![],
            },
        });
        round_trip(Control::PeerUpdate {
            key: PublicKey([7; 32]),
            name: "h1".into(),
            endpoints: eps.clone(),
            vlan: PortVlan::Transparent,
        });
        round_trip(Control::PeerUpdate {
            key: PublicKey([7; 32]),
            name: "h1".into(),
            endpoints: eps.clone(),
            vlan: PortVlan::Member {
                native: None,
                tagged: vec![1, 7, 8, 20, 4094],
            },
        });
        round_trip(Control::PeerGone {
            key: PublicKey([9; 32]),
        });
        round_trip(Control::LocalAddrs(eps));
        round_trip(Control::MacAnnounce {
            caps: 1,
            macs: vec![MacAddr([2, 0, 0, 0, 0, 1]); 3],
        });
        round_trip(Control::Ping(u64::MAX));
        round_trip(Control::Pong(1));
        round_trip(Control::PeerListEnd { count: 300 });
        round_trip(Control::MacOwners {
            key: PublicKey([3; 32]),
            macs: vec![MacAddr([2, 0, 0, 0, 0, 9]); 64],
        });
    }

    #[test]
    fn peer_list_end_byte_vector() {
        let mut b = Vec::new();
        Control::PeerListEnd { count: 258 }.emit(&mut b);
        assert_eq!(b, [8, 1, 2]);
        assert!(Control::parse(&[8, 1]).is_err());
        assert!(Control::parse(&[8, 1, 2, 3]).is_err());
    }

    #[test]
    fn only_plausible_local_addresses_pass() {
        let v4: SocketAddr = "198.18.0.10:4000".parse().unwrap();
        let v6: SocketAddr = "[fd00::10]:4000".parse().unwrap();
        let ok = |o: SocketAddr, a: &str| check_local_addr(o, a.parse().unwrap());
        assert_eq!(ok(v4, "198.18.1.10:4000"), Ok(()));
        assert_eq!(ok(v4, "[::ffff:198.18.1.10]:4000"), Ok(()));
        assert_eq!(ok(v6, "[fd00::11]:1"), Ok(()));
        assert_eq!(ok(v4, "[fd00::11]:1"), Err(Implausible::Family));
        assert_eq!(ok(v6, "198.18.1.10:1"), Err(Implausible::Family));
        for bad in [
            "0.0.0.0:1",
            "0.1.2.3:1",
            "127.0.0.1:1",
            "224.0.0.1:1",
            "255.255.255.255:1",
            "169.254.1.1:1",
            "198.18.1.10:0",
        ] {
            assert_eq!(ok(v4, bad), Err(Implausible::Unreachable), "{bad}");
        }
        for bad in ["[::]:1", "[::1]:1", "[ff02::1]:1", "[fe80::1]:1"] {
            assert_eq!(ok(v6, bad), Err(Implausible::Unreachable), "{bad}");
        }
    }

    #[test]
    fn byte_vector() {
        let mut b = Vec::new();
        Control::LocalAddrs(vec!["10.0.0.1:258".parse().unwrap()]).emit(&mut b);
        assert_eq!(b, [4, 1, 4, 10, 0, 0, 1, 1, 2]);
    }

    #[test]
    fn limits_are_enforced_on_emit() {
        let m = Control::MacAnnounce {
            caps: 0,
            macs: vec![MacAddr::ZERO; 100],
        };
        let mut b = Vec::new();
        m.emit(&mut b);
        assert_eq!(
            Control::parse(&b).unwrap(),
            Control::MacAnnounce {
                caps: 0,
                macs: vec![MacAddr::ZERO; 64]
            }
        );
        let m = Control::PeerUpdate {
            key: PublicKey([0; 32]),
            name: "é".repeat(40),
            endpoints: vec![],
            vlan: PortVlan::Transparent,
        };
        let mut b = Vec::new();
        m.emit(&mut b);
        let Control::PeerUpdate { name, .. } = Control::parse(&b).unwrap() else {
            panic!()
        };
        assert_eq!(name, "é".repeat(32));
    }

    #[test]
    fn vlans_extension_layout_and_refusals() {
        let mut b = Vec::new();
        Control::Mesh {
            vlan: PortVlan::Member {
                native: Some(10),
                tagged: vec![9, 4095, 0],
            },
        }
        .emit(&mut b);
        assert_eq!(b.len(), 1 + VLANS_LEN);
        assert_eq!(&b[..4], &[kind::MESH, EXT_VLANS, 0, 10]);
        // VLAN 9 is bit 9: byte 1, mask 0x40; 0 and 4095 are left out.
        assert_eq!(b[4 + 1], 0x40);
        assert_eq!(b[4..].iter().filter(|x| **x != 0).count(), 1);
        assert_eq!(
            Control::parse(&b).unwrap(),
            Control::Mesh {
                vlan: PortVlan::Member {
                    native: Some(10),
                    tagged: vec![9]
                }
            }
        );
        // Without the extension: the earlier bytes, a VLAN-unaware switch.
        assert_eq!(
            Control::parse(&[kind::MESH]).unwrap(),
            Control::Mesh {
                vlan: PortVlan::Transparent
            }
        );
        let mut bad = b.clone();
        bad[1] = 2;
        assert!(Control::parse(&bad).is_err(), "unknown extension");
        let mut bad = b.clone();
        bad[2..4].copy_from_slice(&4095u16.to_be_bytes());
        assert!(Control::parse(&bad).is_err(), "native 4095");
        let mut bad = b.clone();
        bad[4] |= 0x80;
        assert!(Control::parse(&bad).is_err(), "tagged VLAN 0");
        let mut bad = b.clone();
        bad[4 + VLAN_BITMAP - 1] |= 1;
        assert!(Control::parse(&bad).is_err(), "tagged VLAN 4095");
        for n in 2..b.len() {
            assert!(Control::parse(&b[..n]).is_err(), "cut at {n}");
        }
        b.push(0);
        assert!(Control::parse(&b).is_err(), "trailing byte");
    }

    #[test]
    fn bad_input_is_refused_without_panicking() {
        assert!(Control::parse(&[]).is_err());
        assert!(Control::parse(&[kind::PING, 1, 2]).is_err());
        assert!(Control::parse(&[kind::PING, 0, 0, 0, 0, 0, 0, 0, 0, 9]).is_err());
        assert!(Control::parse(&[kind::LOCAL_ADDRS, 1, 5, 1, 2, 3, 4, 0, 1]).is_err());
        assert!(Control::parse(&[kind::LOCAL_ADDRS, 200]).is_err());
        assert!(Control::parse(&[kind::MAC_ANNOUNCE, 0, 0, 0, 0, 65]).is_err());
        assert_eq!(Control::parse(&[99, 1, 2]).unwrap(), Control::Unknown(99));
        // Every prefix of a valid message, and every byte flipped, is safe.
        let mut b = Vec::new();
        Control::PeerUpdate {
            key: PublicKey([1; 32]),
            name: "node".into(),
            endpoints: vec!["[::1]:1".parse().unwrap(), "1.2.3.4:5".parse().unwrap()],
            vlan: PortVlan::Transparent,
        }
        .emit(&mut b);
        for n in 0..b.len() {
            assert!(Control::parse(&b[..n]).is_err());
        }
        for i in 0..b.len() {
            for v in [0u8, 1, 4, 6, 0xff] {
                let mut c = b.clone();
                c[i] = v;
                let _ = Control::parse(&c);
            }
        }
    }
}
