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
