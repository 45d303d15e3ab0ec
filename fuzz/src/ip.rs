//! Checksum fix-ups for IGMP and MLD inputs, shared by the `snooping` target
//! (so mutated packets still reach the parser's record code) and
//! `make-seeds` (so hand-built seed packets are valid). They find the message
//! exactly where `tapmesh_switch::snooping::wire::parse` looks for it.

/// RFC 1071 checksum of `b`, starting from `sum`.
pub fn checksum(mut sum: u32, b: &[u8]) -> u16 {
    for c in b.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Set the checksum of the IGMP message in an IPv4 packet.
pub fn fix_v4(p: &mut [u8]) -> Option<()> {
    let ihl = usize::from(*p.first()? & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([*p.get(2)?, *p.get(3)?]));
    let m = p.get_mut(ihl..total.min(p.len()))?;
    if m.len() < 4 {
        return None;
    }
    m[2..4].fill(0);
    let c = checksum(0, m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    Some(())
}

/// Set the checksum of the ICMPv6 message in an IPv6 packet, walking the
/// same extension headers the parser walks.
pub fn fix_v6(p: &mut [u8]) -> Option<()> {
    let end = (40 + usize::from(u16::from_be_bytes([*p.get(4)?, *p.get(5)?]))).min(p.len());
    let mut next = *p.get(6)?;
    let mut at = 40;
    for _ in 0..8 {
        let rest = p.get(at..end)?;
        match next {
            0 | 43 | 60 => {
                next = *rest.first()?;
                at += (usize::from(*rest.get(1)?) + 1) * 8;
            }
            51 => {
                next = *rest.first()?;
                at += (usize::from(*rest.get(1)?) + 2) * 4;
            }
            44 => {
                next = *rest.first()?;
                at += 8;
            }
            58 => {
                let mut sum = 0u32;
                for c in p[8..40].chunks_exact(2) {
                    sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
                }
                let len = (end - at) as u32;
                sum += (len >> 16) + (len & 0xffff) + 58;
                let m = &mut p[at..end];
                if m.len() < 4 {
                    return None;
                }
                m[2..4].fill(0);
                let c = checksum(sum, m);
                m[2..4].copy_from_slice(&c.to_be_bytes());
                return Some(());
            }
            _ => return None,
        }
    }
    None
}
