//! Ethernet frames for simulations: 60-byte frames of the local
//! experimental EtherType (0x88b5) with a 32-bit tag right after the header,
//! so a test can find each frame it sent on the TAPs it reached.

/// Locally administered MAC `02:00:00:00:00:n`.
pub fn mac(n: u8) -> [u8; 6] {
    [2, 0, 0, 0, 0, n]
}

/// A 60-byte frame from `src` to `dst` carrying `tag` at bytes 14..18.
pub fn frame(dst: [u8; 6], src: [u8; 6], tag: u32) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x88, 0xb5]);
    f.extend_from_slice(&tag.to_be_bytes());
    f.resize(60, 0);
    f
}

/// [`frame`] with an 802.1Q tag for VLAN `vid` (the tag at bytes 18..22).
pub fn tagged(dst: [u8; 6], src: [u8; 6], vid: u16, tag: u32) -> Vec<u8> {
    let mut f = frame(dst, src, tag);
    f.splice(12..12, [0x81, 0x00, (vid >> 8) as u8, vid as u8]);
    f
}

/// How many of `frames` carry `tag` (untagged frames from [`frame`]).
pub fn count_tag(frames: &[Vec<u8>], tag: u32) -> usize {
    frames
        .iter()
        .filter(|f| f.len() >= 18 && f[14..18] == tag.to_be_bytes())
        .count()
}

/// An IPv4 UDP frame from `mac(src)` (198.19.0.`src`) to `group`, its
/// 32-bit `tag` at bytes 42..46 (the UDP payload), 60 bytes.
pub fn group_frame(src: u8, group: [u8; 4], tag: u32) -> Vec<u8> {
    // 01:00:5e + the group's low 23 bits.
    let dst = [0x01, 0x00, 0x5e, group[1] & 0x7f, group[2], group[3]];
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&mac(src));
    f.extend_from_slice(&[0x08, 0x00]);
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(20u16 + 12).to_be_bytes());
    ip[8] = 8;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[198, 19, 0, src]);
    ip[16..20].copy_from_slice(&group);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&[0x13, 0x88, 0x13, 0x88, 0, 12, 0, 0]);
    f.extend_from_slice(&tag.to_be_bytes());
    f.resize(60, 0);
    f
}

/// How many of `frames` are [`group_frame`]s carrying `tag`.
pub fn count_group_tag(frames: &[Vec<u8>], tag: u32) -> usize {
    frames
        .iter()
        .filter(|f| f.len() >= 46 && f[12..14] == [0x08, 0x00] && f[42..46] == tag.to_be_bytes())
        .count()
}

/// An IGMPv2 membership report (a join) for `group` from `mac(src)`
/// (198.19.0.`src`), with the router alert option, 60 bytes.
pub fn igmp_join(src: u8, group: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&[0x01, 0x00, 0x5e, group[1] & 0x7f, group[2], group[3]]);
    f.extend_from_slice(&mac(src));
    f.extend_from_slice(&[0x08, 0x00]);
    let mut ip = [0u8; 24];
    ip[0] = 0x46;
    ip[2..4].copy_from_slice(&(24u16 + 8).to_be_bytes());
    ip[8] = 1;
    ip[9] = 2;
    ip[12..16].copy_from_slice(&[198, 19, 0, src]);
    ip[16..20].copy_from_slice(&group);
    ip[20..24].copy_from_slice(&[0x94, 0x04, 0, 0]);
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    let mut igmp = [0x16, 0, 0, 0, group[0], group[1], group[2], group[3]];
    let c = checksum(&igmp);
    igmp[2..4].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&igmp);
    f.resize(60, 0);
    f
}

/// The Internet checksum of `b` (even length).
fn checksum(b: &[u8]) -> u16 {
    let mut s: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// A datagram that carries a frame between cores (data with a payload; not
/// a handshake, a keepalive or a control message such as a trunk
/// announcement): for [`crate::Net::observe`].
pub fn carries_frame(b: &[u8]) -> bool {
    use overlay_proto::wire::{DATA_OVERHEAD, FLAG_CONTROL, Header, MessageType};
    Header::new_checked(b)
        .is_ok_and(|h| h.message_type() == MessageType::Data && h.flags() & FLAG_CONTROL == 0)
        && b.len() > DATA_OVERHEAD
}

/// A datagram that carries a control message (its header's flag is in
/// clear): for [`crate::Faults::lose`].
pub fn is_control(b: &[u8]) -> bool {
    use overlay_proto::wire::{FLAG_CONTROL, Header};
    Header::new_checked(b).is_ok_and(|h| h.flags() & FLAG_CONTROL != 0)
}
