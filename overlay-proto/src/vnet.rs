//! The virtio-net header that a TAP opened with `IFF_VNET_HDR` puts before each
//! frame, and software segmentation for receivers that cannot take offloaded
//! frames.
//!
//! Why: with offloads on (`TUNSETOFFLOAD`), one TAP read returns a TCP
//! "super-frame" of up to 64 KB plus this 10-byte header saying how to cut it
//! into MSS-sized segments (GSO) and where a checksum is still to be filled
//! in. Carrying the super-frame across the overlay and writing it, header and
//! all, into the receiving TAP cuts the per-frame costs (syscalls, wakeups,
//! AEAD setup, headers) by the segment count. Research on this kind of machine
//! measured ~5x TCP throughput (research/protocol.md, 5.1); Tailscale reported
//! the same effect for wireguard-go ("Surpassing 10Gb/s over Tailscale", 2023).
//!
//! On the wire the header travels inside the encrypted payload of a data
//! packet flagged [`crate::wire::FLAG_VNET`], fields little-endian (virtio's
//! byte order on every Linux host we run on). A receiver that did not announce
//! offload support in its handshake never gets such a frame: the switch cuts
//! it into plain frames with [`segment`] first.
use crate::ethernet::{self, Frame};

/// Length of `struct virtio_net_hdr` (without `num_buffers`).
pub const VNET_HDR_LEN: usize = 10;
/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `csum_start + csum_offset` is partial.
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`.
pub const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_TCPV6`.
pub const GSO_TCPV6: u8 = 4;
/// `VIRTIO_NET_HDR_GSO_ECN` (a flag on the type).
pub const GSO_ECN: u8 = 0x80;

/// A parsed virtio-net header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VnetHdr {
    /// `F_NEEDS_CSUM` or 0.
    pub flags: u8,
    /// `GSO_*`, possibly with `GSO_ECN`.
    pub gso_type: u8,
    /// Length of the headers (Ethernet + IP + TCP).
    pub hdr_len: u16,
    /// Segment payload size (the MSS) for GSO frames.
    pub gso_size: u16,
    /// Where checksumming starts.
    pub csum_start: u16,
    /// Where, from `csum_start`, the checksum goes.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Parse the first [`VNET_HDR_LEN`] bytes.
    pub fn parse(b: &[u8]) -> Option<VnetHdr> {
        if b.len() < VNET_HDR_LEN {
            return None;
        }
        let u = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Some(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        })
    }

    /// Write into the first [`VNET_HDR_LEN`] bytes of `b`.
    pub fn emit(&self, b: &mut [u8]) {
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
    }

    /// A GSO super-frame (to be cut into segments)?
    pub fn is_gso(&self) -> bool {
        self.gso_type & !GSO_ECN != GSO_NONE
    }

    /// Nothing to do: a complete, ordinary frame.
    pub fn is_plain(&self) -> bool {
        !self.is_gso() && self.flags & F_NEEDS_CSUM == 0
    }

    /// Whether the work this header asks for stays behind `frame`'s
    /// Ethernet header (and its 802.1Q tag): a partial checksum must start
    /// after it and its 2-byte field must lie inside the frame. A header
    /// that fails this would have whoever completes the checksum rewrite
    /// MAC addresses or the VLAN tag after the switch had decided where the
    /// frame goes and in which VLAN. The kernel never writes such a header;
    /// a node or VM that sends one is dropped (found by the `forwarding`
    /// fuzz target).
    ///
    /// The GSO type must also be one a TAP with our offloads produces (none,
    /// TCPv4, TCPv6, with or without ECN): anything else would reach a
    /// receiving kernel that refuses it, or a node that cannot cut it.
    pub fn fits(&self, frame: &[u8]) -> bool {
        if !matches!(self.gso_type & !GSO_ECN, GSO_NONE | GSO_TCPV4 | GSO_TCPV6) {
            return false;
        }
        if self.flags & F_NEEDS_CSUM == 0 {
            return true;
        }
        let start = self.csum_start as usize;
        let at = start + self.csum_offset as usize;
        l2_len(frame).is_some_and(|l2| start >= l2) && at + 2 <= frame.len()
    }
}

/// Whether `frame` (after its virtio header `hdr`, if any) fits a link of
/// `mtu`: a GSO super-frame by its segment size, anything else by its length
/// ([`ethernet::max_len`]).
pub fn fits_mtu(hdr: Option<&VnetHdr>, frame: &[u8], mtu: usize) -> bool {
    match hdr {
        Some(h) if h.is_gso() => h.gso_size as usize <= mtu,
        _ => frame.len() <= ethernet::max_len(mtu, frame),
    }
}

/// Why a frame could not be turned into plain frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GsoError {
    /// Headers missing, truncated or inconsistent with the virtio header.
    Malformed,
    /// A GSO type or header layout we do not segment (UDP GSO, IPv6
    /// extension headers, IP options on IPv6 ...).
    Unsupported,
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

fn sum_bytes(mut sum: u32, b: &[u8]) -> u32 {
    let mut chunks = b.chunks_exact(2);
    for c in &mut chunks {
        sum += u16::from_be_bytes([c[0], c[1]]) as u32;
        if sum > 0xffff_0000 {
            sum = fold(sum) as u32;
        }
    }
    if let [last] = chunks.remainder() {
        sum += (*last as u32) << 8;
    }
    sum
}

/// The Internet checksum (RFC 1071) of `b`: the complement of its
/// ones'-complement sum of 16-bit words (an odd last byte padded with zero).
pub fn internet_checksum(b: &[u8]) -> u16 {
    !fold(sum_bytes(0, b))
}

/// Complete a partial checksum (`F_NEEDS_CSUM`): the field already holds the
/// pseudo-header sum, as Linux leaves it; sum from `csum_start` to the end and
/// store the complement.
pub fn complete_checksum(hdr: &VnetHdr, frame: &mut [u8]) -> Result<(), GsoError> {
    if !hdr.fits(frame) {
        return Err(GsoError::Malformed);
    }
    let start = hdr.csum_start as usize;
    let at = start + hdr.csum_offset as usize;
    let sum = fold(sum_bytes(0, &frame[start..]));
    let c = !sum;
    frame[at..at + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

/// Turn a frame carrying a virtio-net header into plain frames, calling `out`
/// for each: a GSO TCP super-frame becomes MSS-sized segments with their IP
/// and TCP headers and checksums fixed; a frame needing a checksum gets it.
/// `frame` excludes the virtio header; it may be modified.
pub fn segment(
    hdr: &VnetHdr,
    frame: &mut [u8],
    mut out: impl FnMut(&[u8]),
) -> Result<(), GsoError> {
    if !hdr.is_gso() {
        if hdr.flags & F_NEEDS_CSUM != 0 {
            complete_checksum(hdr, frame)?;
        }
        out(frame);
        return Ok(());
    }
    let l2 = l2_len(frame).ok_or(GsoError::Malformed)?;
    let ty = hdr.gso_type & !GSO_ECN;
    let (l3, v4) = match ty {
        GSO_TCPV4 => {
            let ihl = (*frame.get(l2).ok_or(GsoError::Malformed)? & 0x0f) as usize * 4;
            if frame[l2] >> 4 != 4 || ihl < 20 {
                return Err(GsoError::Malformed);
            }
            (ihl, true)
        }
        GSO_TCPV6 => {
            if frame.get(l2).ok_or(GsoError::Malformed)? >> 4 != 6 {
                return Err(GsoError::Malformed);
            }
            // Next header must be TCP: we do not walk extension headers.
            if frame.get(l2 + 6) != Some(&6) {
                return Err(GsoError::Unsupported);
            }
            (40, false)
        }
        _ => return Err(GsoError::Unsupported),
    };
    let tcp = l2 + l3;
    if frame.len() < tcp + 20 {
        return Err(GsoError::Malformed);
    }
    let thl = (frame[tcp + 12] >> 4) as usize * 4;
    let hlen = tcp + thl;
    if thl < 20 || frame.len() < hlen {
        return Err(GsoError::Malformed);
    }
    let mss = hdr.gso_size as usize;
    if mss == 0 {
        return Err(GsoError::Malformed);
    }
    let payload_len = frame.len() - hlen;
    // Each segment's IP length field (total for IPv4, payload for IPv6) must
    // hold its headers and up to one MSS of data.
    let ip_len = if v4 { l3 + thl } else { thl } + mss.min(payload_len);
    if ip_len > usize::from(u16::MAX) {
        return Err(GsoError::Malformed);
    }
    let seq0 = u32::from_be_bytes(frame[tcp + 4..tcp + 8].try_into().expect("4 bytes"));
    let flags0 = frame[tcp + 13];
    let id0 = if v4 {
        u16::from_be_bytes([frame[l2 + 4], frame[l2 + 5]])
    } else {
        0
    };
    let mut seg = vec![0u8; hlen + mss];
    let mut off = 0;
    let mut i = 0u16;
    while off < payload_len || (payload_len == 0 && i == 0) {
        let n = mss.min(payload_len - off);
        let last = off + n >= payload_len;
        let s = &mut seg[..hlen + n];
        s[..hlen].copy_from_slice(&frame[..hlen]);
        s[hlen..].copy_from_slice(&frame[hlen + off..hlen + off + n]);
        // IP header.
        if v4 {
            let total = (l3 + thl + n) as u16;
            s[l2 + 2..l2 + 4].copy_from_slice(&total.to_be_bytes());
            s[l2 + 4..l2 + 6].copy_from_slice(&id0.wrapping_add(i).to_be_bytes());
            s[l2 + 10..l2 + 12].copy_from_slice(&[0, 0]);
            let c = !fold(sum_bytes(0, &s[l2..l2 + l3]));
            s[l2 + 10..l2 + 12].copy_from_slice(&c.to_be_bytes());
        } else {
            let plen = (thl + n) as u16;
            s[l2 + 4..l2 + 6].copy_from_slice(&plen.to_be_bytes());
        }
        // TCP header: sequence, flags (FIN/PSH only on the last, CWR only on the first).
        let seq = seq0.wrapping_add(off as u32);
        s[tcp + 4..tcp + 8].copy_from_slice(&seq.to_be_bytes());
        let mut f = flags0;
        if !last {
            f &= !(0x01 | 0x08);
        }
        if i > 0 {
            f &= !0x80;
        }
        s[tcp + 13] = f;
        s[tcp + 16..tcp + 18].copy_from_slice(&[0, 0]);
        // Pseudo-header + TCP header + payload.
        let seg_len = (thl + n) as u32;
        let mut sum = if v4 {
            sum_bytes(0, &s[l2 + 12..l2 + 20])
        } else {
            sum_bytes(0, &s[l2 + 8..l2 + 40])
        };
        sum += 6 + seg_len;
        sum = sum_bytes(sum, &s[tcp..]);
        let c = !fold(sum);
        s[tcp + 16..tcp + 18].copy_from_slice(&c.to_be_bytes());
        out(s);
        off += n;
        i = i.wrapping_add(1);
        if payload_len == 0 {
            break;
        }
    }
    Ok(())
}

/// Ethernet header length, 4 more with one 802.1Q tag.
fn l2_len(frame: &[u8]) -> Option<usize> {
    Frame::new_checked(frame).ok().map(|f| f.payload_offset())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4/TCP super-frame with `payload` bytes, partial checksum as Linux leaves it.
    fn tcp4_superframe(payload: usize) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20 + payload];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&((40 + payload) as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&100u16.to_be_bytes());
        ip[8] = 64;
        ip[9] = 6;
        ip[12..16].copy_from_slice(&[198, 19, 0, 1]);
        ip[16..20].copy_from_slice(&[198, 19, 0, 2]);
        let tcp = &mut f[34..54];
        tcp[4..8].copy_from_slice(&1000u32.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = 0x18; // PSH ACK
        for (i, b) in f[54..].iter_mut().enumerate() {
            *b = i as u8;
        }
        f
    }

    fn verify_tcp4(seg: &[u8]) -> bool {
        let ip = &seg[14..34];
        if fold(sum_bytes(0, ip)) != 0xffff {
            return false;
        }
        let tcp_len = seg.len() - 34;
        let mut sum = sum_bytes(0, &ip[12..20]);
        sum += 6 + tcp_len as u32;
        sum = sum_bytes(sum, &seg[34..]);
        fold(sum) == 0xffff
    }

    #[test]
    fn header_round_trip() {
        let h = VnetHdr {
            flags: 1,
            gso_type: GSO_TCPV4,
            hdr_len: 54,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        let mut b = [0u8; 10];
        h.emit(&mut b);
        assert_eq!(b, [1, 1, 54, 0, 0xa8, 5, 34, 0, 16, 0]);
        assert_eq!(VnetHdr::parse(&b), Some(h));
        assert_eq!(VnetHdr::parse(&b[..9]), None);
    }

    #[test]
    fn segments_tcp4_with_valid_checksums_and_sequence() {
        let mut f = tcp4_superframe(3000);
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: 54,
            gso_size: 1400,
            csum_start: 34,
            csum_offset: 16,
        };
        let mut segs = Vec::new();
        segment(&h, &mut f, |s| segs.push(s.to_vec())).unwrap();
        assert_eq!(
            segs.iter().map(|s| s.len() - 54).collect::<Vec<_>>(),
            vec![1400, 1400, 200]
        );
        let mut payload = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            assert!(verify_tcp4(s), "segment {i} checksum");
            let seq = u32::from_be_bytes(s[38..42].try_into().unwrap());
            assert_eq!(seq, 1000 + 1400 * i as u32);
            assert_eq!(u16::from_be_bytes([s[18], s[19]]), 100 + i as u16);
            let psh = s[47] & 0x08 != 0;
            assert_eq!(psh, i == 2, "PSH only on the last");
            payload.extend_from_slice(&s[54..]);
        }
        assert_eq!(payload, f[54..].to_vec());
    }

    #[test]
    fn completes_a_partial_checksum() {
        // A single small segment whose TCP checksum field holds the pseudo-header sum.
        let mut f = tcp4_superframe(10);
        let mut pseudo = sum_bytes(0, &f[26..34]);
        pseudo += 6 + 30;
        f[50..52].copy_from_slice(&fold(pseudo).to_be_bytes());
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            csum_start: 34,
            csum_offset: 16,
            ..Default::default()
        };
        let mut got = Vec::new();
        // The IP header checksum is the sender's job here; fill it to verify.
        let c = !fold(sum_bytes(0, &f[14..34]));
        f[24..26].copy_from_slice(&c.to_be_bytes());
        segment(&h, &mut f, |s| got = s.to_vec()).unwrap();
        assert!(verify_tcp4(&got));
    }

    #[test]
    fn a_checksum_may_not_reach_into_the_ethernet_header() {
        let f = tcp4_superframe(10);
        let csum = |start, offset| VnetHdr {
            flags: F_NEEDS_CSUM,
            csum_start: start,
            csum_offset: offset,
            ..Default::default()
        };
        assert!(csum(34, 16).fits(&f));
        assert!(csum(14, 10).fits(&f), "the IP header checksum is fine");
        // Into the source MAC, the EtherType, or past the end.
        assert!(!csum(0, 8).fits(&f));
        assert!(!csum(12, 0).fits(&f));
        assert!(!csum(34, 30).fits(&f));
        // Behind an 802.1Q tag the Ethernet header is 18 bytes.
        let mut tagged = f[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
        tagged.extend_from_slice(&f[12..]);
        assert!(!csum(14, 0).fits(&tagged));
        assert!(csum(38, 16).fits(&tagged));
        // Without F_NEEDS_CSUM the fields mean nothing.
        assert!(
            VnetHdr {
                flags: 0,
                ..csum(0, 8)
            }
            .fits(&f)
        );
        // GSO types we never enable on a TAP (UDP, USO, unknown) do not fit.
        for t in [3, 5, 8, 0x83] {
            let h = VnetHdr {
                gso_type: t,
                ..csum(34, 16)
            };
            assert!(!h.fits(&f), "type {t}");
        }
        let ecn = VnetHdr {
            gso_type: GSO_TCPV4 | GSO_ECN,
            ..csum(34, 16)
        };
        assert!(ecn.fits(&f));
        // And the checksum is not written there.
        let mut g = f.clone();
        assert_eq!(
            complete_checksum(&csum(0, 8), &mut g),
            Err(GsoError::Malformed)
        );
        assert_eq!(g, f);
    }

    #[test]
    fn malformed_input_is_refused_not_panicked_on() {
        let h = VnetHdr {
            gso_type: GSO_TCPV4,
            gso_size: 100,
            ..Default::default()
        };
        for n in 0..60 {
            let mut f = tcp4_superframe(0)[..n.min(54)].to_vec();
            let _ = segment(&h, &mut f, |_| {});
        }
        let mut f = tcp4_superframe(10);
        let zero = VnetHdr { gso_size: 0, ..h };
        assert_eq!(segment(&zero, &mut f, |_| {}), Err(GsoError::Malformed));
        let udp = VnetHdr { gso_type: 5, ..h };
        assert_eq!(segment(&udp, &mut f, |_| {}), Err(GsoError::Unsupported));
        let bad = VnetHdr {
            flags: F_NEEDS_CSUM,
            csum_start: 60,
            csum_offset: 16,
            ..Default::default()
        };
        assert_eq!(segment(&bad, &mut f, |_| {}), Err(GsoError::Malformed));
    }

    #[test]
    fn segments_whose_ip_length_would_overflow_are_refused() {
        // 65,500 bytes of payload in one "segment": 40 + 65,500 does not fit
        // the IPv4 total length field, which would wrap.
        let mut f = tcp4_superframe(65_500);
        let h = VnetHdr {
            gso_type: GSO_TCPV4,
            gso_size: u16::MAX,
            ..Default::default()
        };
        assert_eq!(segment(&h, &mut f, |_| {}), Err(GsoError::Malformed));
        // The same with a real MSS is fine.
        let ok = VnetHdr {
            gso_size: 1448,
            ..h
        };
        let mut n = 0;
        segment(&ok, &mut f, |_| n += 1).unwrap();
        assert_eq!(n, 65_500usize.div_ceil(1448));
    }
}
