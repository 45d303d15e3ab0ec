//! Trunk announcements: what one switch of a cluster tells another over
//! their trunk, per network, so the other sends it only what it can use:
//! the VLANs it serves (those of its connected nodes' ports) and the
//! multicast groups wanted behind it (groups with members, per VLAN, and
//! router ports as the unspecified address of each family).
//!
//! An announcement is a control message (the plaintext of a data packet
//! with [`FLAG_CONTROL`](crate::wire::FLAG_CONTROL), sealed under the trunk's
//! session, so authenticated, encrypted and replay-protected like every
//! frame on it), type byte [`TRUNK_ANNOUNCE`] in the same space as
//! [`crate::control`]'s types. It carries the sender's **whole** state, in
//! one or more parts of at most [`MAX_ANNOUNCE_LEN`] bytes; the receiver
//! takes a state only once it has every part of one generation, so a lost
//! part never leaves it with half a list.
//!
//! ```text
//! trunk-announce | 10 | epoch:64 | generation:64 | part:8 | parts:8 | flags:8 |
//!                | n:16 | n VLANs (16 each) | m:16 | m groups |
//! group          | vlan:16 | family:8 (4 or 6) | address (4 or 16) |
//! ```
//!
//! - `epoch`: random, chosen when the sender's engine starts; a new epoch
//!   is a restarted sender, whose generations start again.
//! - `generation`: rises by one with every change of the sender's state
//!   within an epoch; a receiver ignores generations older than the one it
//!   holds (reordered or repeated parts).
//! - `part` of `parts` (`part < parts`, at most [`MAX_PARTS`]).
//! - `flags` bit 0, [`FLAG_ALL_GROUPS`]: the sender wants every group in
//!   every VLAN it serves (too many groups to list, or no snooping); other
//!   bits are reserved and refused.
//! - VLAN 0 is a VLAN-unaware network's one domain; VLANs are 0..=4094.
//! - A group is a multicast address or the unspecified address of its
//!   family (a multicast router: every group of that family).
//!
//! Parsing is bounded and allocation-free ([`Announce::parse`] checks every
//! byte once; the iterators after it cannot fail). What is emitted always
//! parses.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::Error;
use crate::vlan::Vid;

/// The control type byte of a trunk announcement.
pub const TRUNK_ANNOUNCE: u8 = 10;
/// The largest announcement part: well within one datagram on any underlay.
pub const MAX_ANNOUNCE_LEN: usize = 1200;
/// The most parts one announcement may have.
pub const MAX_PARTS: usize = 64;
/// The most groups one announcement lists; beyond, the sender sets
/// [`FLAG_ALL_GROUPS`] instead.
pub const MAX_GROUPS: usize = 2048;
/// Flag: every group of every VLAN served is wanted.
pub const FLAG_ALL_GROUPS: u8 = 0x01;
/// The highest VLAN id (4095 is reserved).
const MAX_VID: Vid = 4094;
/// Type, epoch, generation, part, parts, flags.
const FIXED: usize = 1 + 8 + 8 + 1 + 1 + 1;
/// The fixed bytes and both counts.
const OVERHEAD: usize = FIXED + 2 + 2;

/// One part of an announcement, checked: a view of the bytes it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Announce<'a> {
    /// The sender's epoch (see the module doc).
    pub epoch: u64,
    /// The generation of the sender's state.
    pub generation: u64,
    /// This part's index.
    pub part: u8,
    /// How many parts the generation has.
    pub parts: u8,
    /// [`FLAG_ALL_GROUPS`] was set.
    pub all_groups: bool,
    vlans: &'a [u8],
    groups: &'a [u8],
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// The length of the group entry at the start of `b`, if it is one.
fn group_len(b: &[u8]) -> Result<usize, Error> {
    if b.len() < 3 || be16(b) > MAX_VID {
        return Err(Error::Truncated);
    }
    let n = match b[2] {
        4 => 3 + 4,
        6 => 3 + 16,
        _ => return Err(Error::BadFlags),
    };
    let ip = read_group(b.get(..n).ok_or(Error::Truncated)?).1;
    if !(ip.is_multicast() || ip.is_unspecified()) {
        return Err(Error::BadFlags);
    }
    Ok(n)
}

/// A group entry known to be whole.
fn read_group(b: &[u8]) -> (Vid, IpAddr) {
    let ip = if b[2] == 4 {
        let mut a = [0u8; 4];
        a.copy_from_slice(&b[3..7]);
        IpAddr::V4(Ipv4Addr::from(a))
    } else {
        let mut a = [0u8; 16];
        a.copy_from_slice(&b[3..19]);
        IpAddr::V6(Ipv6Addr::from(a))
    };
    (be16(b), ip)
}

impl<'a> Announce<'a> {
    /// Check a decrypted control payload of type [`TRUNK_ANNOUNCE`]. Fails
    /// (never panics) on anything over [`MAX_ANNOUNCE_LEN`], truncated or
    /// with trailing bytes, a part outside its parts or more than
    /// [`MAX_PARTS`], reserved flags, a VLAN over 4094, a bad family, or an
    /// address that is neither multicast nor unspecified.
    pub fn parse(buf: &'a [u8]) -> Result<Announce<'a>, Error> {
        if buf.len() > MAX_ANNOUNCE_LEN {
            return Err(Error::BufferTooSmall);
        }
        if buf.len() < OVERHEAD {
            return Err(Error::Truncated);
        }
        if buf[0] != TRUNK_ANNOUNCE {
            return Err(Error::UnknownType);
        }
        let (part, parts, flags) = (buf[17], buf[18], buf[19]);
        if parts == 0 || part >= parts || parts as usize > MAX_PARTS {
            return Err(Error::BadFlags);
        }
        if flags & !FLAG_ALL_GROUPS != 0 {
            return Err(Error::BadFlags);
        }
        let n = be16(&buf[FIXED..]) as usize;
        let vlans_at = FIXED + 2;
        let vlans = buf
            .get(vlans_at..vlans_at + 2 * n)
            .ok_or(Error::Truncated)?;
        if vlans.chunks(2).any(|v| be16(v) > MAX_VID) {
            return Err(Error::BadFlags);
        }
        let rest = &buf[vlans_at + 2 * n..];
        let m = be16(rest.get(..2).ok_or(Error::Truncated)?) as usize;
        let groups = &rest[2..];
        let mut at = 0;
        for _ in 0..m {
            at += group_len(&groups[at..])?;
        }
        if at != groups.len() {
            return Err(Error::Truncated);
        }
        Ok(Announce {
            epoch: be64(&buf[1..]),
            generation: be64(&buf[9..]),
            part,
            parts,
            all_groups: flags & FLAG_ALL_GROUPS != 0,
            vlans,
            groups,
        })
    }

    /// The VLANs this part lists.
    pub fn vlans(&self) -> impl Iterator<Item = Vid> + 'a {
        self.vlans.chunks_exact(2).map(be16)
    }

    /// The groups this part lists, with their VLANs.
    pub fn groups(&self) -> impl Iterator<Item = (Vid, IpAddr)> + 'a {
        let mut rest = self.groups;
        std::iter::from_fn(move || {
            let n = group_len(rest).ok()?;
            let (g, r) = rest.split_at(n);
            rest = r;
            Some(read_group(g))
        })
    }
}

/// The bytes of one group entry.
fn group_bytes(ip: &IpAddr) -> usize {
    if ip.is_ipv4() { 7 } else { 19 }
}

/// Encode a whole state (`vlans` served, `groups` wanted, each at most
/// once) as the parts of generation `generation`, replacing `out`. Lists
/// beyond the limits are not cut (the receiver would take a narrower state
/// than the truth): with more than [`MAX_GROUPS`] groups, or parts beyond
/// [`MAX_PARTS`], the groups are left out and [`FLAG_ALL_GROUPS`] set.
/// VLANs over 4094 and groups that are neither multicast nor unspecified
/// are left out, so what is emitted always parses.
pub fn emit(
    epoch: u64,
    generation: u64,
    vlans: &[Vid],
    groups: &[(Vid, IpAddr)],
    all_groups: bool,
    out: &mut Vec<Vec<u8>>,
) {
    let vlans: Vec<Vid> = vlans.iter().copied().filter(|v| *v <= MAX_VID).collect();
    let groups: Vec<(Vid, IpAddr)> = (groups.iter().copied())
        .filter(|(v, g)| *v <= MAX_VID && (g.is_multicast() || g.is_unspecified()))
        .collect();
    let fits = !all_groups && groups.len() <= MAX_GROUPS;
    let listed: &[(Vid, IpAddr)] = if fits { &groups } else { &[] };
    split(epoch, generation, &vlans, listed, !fits, out);
    if out.len() > MAX_PARTS {
        split(epoch, generation, &vlans, &[], true, out);
    }
}

/// Cut the lists into parts of at most [`MAX_ANNOUNCE_LEN`] bytes.
fn split(
    epoch: u64,
    generation: u64,
    vlans: &[Vid],
    groups: &[(Vid, IpAddr)],
    all_groups: bool,
    out: &mut Vec<Vec<u8>>,
) {
    out.clear();
    let (mut v, mut g) = (0, 0);
    loop {
        let mut b = Vec::with_capacity(MAX_ANNOUNCE_LEN);
        b.push(TRUNK_ANNOUNCE);
        b.extend_from_slice(&epoch.to_be_bytes());
        b.extend_from_slice(&generation.to_be_bytes());
        b.extend_from_slice(&[0, 0, if all_groups { FLAG_ALL_GROUPS } else { 0 }]);
        let room = (MAX_ANNOUNCE_LEN - OVERHEAD) / 2;
        let nv = (vlans.len() - v).min(room);
        b.extend_from_slice(&(nv as u16).to_be_bytes());
        for vid in &vlans[v..v + nv] {
            b.extend_from_slice(&vid.to_be_bytes());
        }
        v += nv;
        let count_at = b.len();
        b.extend_from_slice(&[0, 0]);
        let mut ng = 0u16;
        while let Some((vid, ip)) = groups.get(g) {
            if b.len() + group_bytes(ip) > MAX_ANNOUNCE_LEN {
                break;
            }
            b.extend_from_slice(&vid.to_be_bytes());
            match ip {
                IpAddr::V4(a) => {
                    b.push(4);
                    b.extend_from_slice(&a.octets());
                }
                IpAddr::V6(a) => {
                    b.push(6);
                    b.extend_from_slice(&a.octets());
                }
            }
            ng += 1;
            g += 1;
        }
        b[count_at..count_at + 2].copy_from_slice(&ng.to_be_bytes());
        out.push(b);
        if (v == vlans.len() && g == groups.len()) || out.len() > MAX_PARTS {
            break;
        }
    }
    let parts = out.len().min(u8::MAX as usize) as u8;
    for (i, b) in out.iter_mut().enumerate() {
        b[17] = i as u8;
        b[18] = parts;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Parse every part and gather what they list.
    fn gather(parts: &[Vec<u8>]) -> (Vec<Vid>, Vec<(Vid, IpAddr)>, bool) {
        let (mut v, mut gs, mut all) = (Vec::new(), Vec::new(), false);
        for (i, p) in parts.iter().enumerate() {
            assert!(p.len() <= MAX_ANNOUNCE_LEN);
            let a = Announce::parse(p).unwrap();
            assert_eq!((a.part as usize, a.parts as usize), (i, parts.len()));
            v.extend(a.vlans());
            gs.extend(a.groups());
            all |= a.all_groups;
        }
        (v, gs, all)
    }

    #[test]
    fn byte_vector() {
        let mut out = Vec::new();
        emit(
            0x0102,
            3,
            &[0, 10],
            &[(10, g("239.1.2.3")), (0, g("::"))],
            false,
            &mut out,
        );
        assert_eq!(out.len(), 1);
        let mut want = vec![TRUNK_ANNOUNCE, 0, 0, 0, 0, 0, 0, 1, 2];
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 3, 0, 1, 0]);
        want.extend_from_slice(&[0, 2, 0, 0, 0, 10, 0, 2]);
        want.extend_from_slice(&[0, 10, 4, 239, 1, 2, 3]);
        want.extend_from_slice(&[0, 0, 6]);
        want.extend_from_slice(&[0; 16]);
        assert_eq!(out[0], want);
        let a = Announce::parse(&out[0]).unwrap();
        assert_eq!((a.epoch, a.generation, a.all_groups), (0x0102, 3, false));
        assert_eq!(a.vlans().collect::<Vec<_>>(), [0, 10]);
        assert_eq!(
            a.groups().collect::<Vec<_>>(),
            [(10, g("239.1.2.3")), (0, g("::"))]
        );
    }

    #[test]
    fn big_states_split_and_round_trip() {
        let vlans: Vec<Vid> = (1..=4094).collect();
        let groups: Vec<(Vid, IpAddr)> = (0..1500u16)
            .map(|i| {
                (
                    i % 7,
                    IpAddr::V6(Ipv6Addr::new(0xff0e, 0, 0, 0, 0, 0, 0, i)),
                )
            })
            .chain((0..500u16).map(|i| {
                (
                    3,
                    IpAddr::V4(Ipv4Addr::new(239, 0, (i >> 8) as u8, i as u8)),
                )
            }))
            .collect();
        let mut out = Vec::new();
        emit(7, 9, &vlans, &groups, false, &mut out);
        assert!(out.len() > 1 && out.len() <= MAX_PARTS, "{}", out.len());
        assert_eq!(gather(&out), (vlans.clone(), groups, false));
        // Too many groups: none listed, every one wanted.
        let many: Vec<(Vid, IpAddr)> = (0..=MAX_GROUPS as u32)
            .map(|i| (1, IpAddr::V4(Ipv4Addr::from(0xef00_0000 | i))))
            .collect();
        emit(7, 10, &vlans, &many, false, &mut out);
        assert_eq!(gather(&out), (vlans, vec![], true));
        // Nothing at all is one part.
        emit(7, 11, &[], &[], false, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(gather(&out), (vec![], vec![], false));
    }

    #[test]
    fn what_cannot_parse_is_left_out() {
        let mut out = Vec::new();
        emit(
            1,
            1,
            &[4095, 5],
            &[
                (5, g("198.19.0.1")),
                (4095, g("239.1.1.1")),
                (5, g("ff02::1")),
            ],
            false,
            &mut out,
        );
        assert_eq!(gather(&out), (vec![5], vec![(5, g("ff02::1"))], false));
    }

    #[test]
    fn bad_input_is_refused_without_panicking() {
        let mut out = Vec::new();
        emit(1, 2, &[1, 2], &[(1, g("239.1.1.1"))], false, &mut out);
        let b = out[0].clone();
        for n in 0..b.len() {
            assert!(Announce::parse(&b[..n]).is_err(), "cut at {n}");
        }
        let mut t = b.clone();
        t.push(0);
        assert!(Announce::parse(&t).is_err(), "trailing byte");
        let bad = |at: usize, v: u8| {
            let mut c = b.clone();
            c[at] = v;
            Announce::parse(&c).is_err()
        };
        assert!(bad(0, 9), "another type");
        assert!(bad(17, 1), "part 1 of 1");
        assert!(bad(18, 0), "no parts");
        assert!(bad(18, MAX_PARTS as u8 + 1), "too many parts");
        assert!(bad(19, 2), "reserved flag");
        assert!(bad(22, 0x10), "VLAN 4096");
        assert!(bad(30, 5), "family 5");
        assert!(bad(31, 198), "a unicast group");
        let mut big = vec![TRUNK_ANNOUNCE; MAX_ANNOUNCE_LEN + 1];
        big[17..19].copy_from_slice(&[0, 1]);
        assert_eq!(Announce::parse(&big), Err(Error::BufferTooSmall));
        // Every byte flipped is safe.
        for i in 0..b.len() {
            for v in [0u8, 1, 4, 6, 0xff] {
                let mut c = b.clone();
                c[i] = v;
                if let Ok(a) = Announce::parse(&c) {
                    let _ = (a.vlans().count(), a.groups().count());
                }
            }
        }
    }
}
