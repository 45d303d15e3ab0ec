//! The virtio-net header and software segmentation (`vnet::segment`): the
//! switch runs them on super-frames from a node with offload before sending
//! them to a node without, and a node checks the header of every offloaded
//! frame it receives. Input: a 10-byte virtio header, then the frame.
//!
//! Must never panic, and what it produces must be right: the header
//! survives emit/parse; every segment is at most headers + MSS long, all
//! segments together carry exactly the super-frame's TCP payload, in order,
//! and each one's IPv4 header checksum and TCP checksum verify.
#![no_main]

use libfuzzer_sys::fuzz_target;
use overlay_proto::vnet::{self, F_NEEDS_CSUM, GSO_ECN, GSO_TCPV4, VNET_HDR_LEN, VnetHdr};
use tapmesh_fuzz::ip::checksum;

fn l2_len(f: &[u8]) -> usize {
    if f[12..14] == [0x81, 0x00] { 18 } else { 14 }
}

fn check_segment(seg: &[u8], v4: bool) {
    let l2 = l2_len(seg);
    let (l3, pseudo) = if v4 {
        let ihl = usize::from(seg[l2] & 0x0f) * 4;
        assert_eq!(checksum(0, &seg[l2..l2 + ihl]), 0, "IPv4 header checksum");
        let total = u16::from_be_bytes([seg[l2 + 2], seg[l2 + 3]]);
        assert_eq!(usize::from(total), seg.len() - l2, "IPv4 total length");
        (ihl, &seg[l2 + 12..l2 + 20])
    } else {
        let plen = u16::from_be_bytes([seg[l2 + 4], seg[l2 + 5]]);
        assert_eq!(
            usize::from(plen),
            seg.len() - l2 - 40,
            "IPv6 payload length"
        );
        (40, &seg[l2 + 8..l2 + 40])
    };
    // The pseudo-header: addresses, protocol 6, TCP length.
    let tcp = &seg[l2 + l3..];
    let pseudo = u32::from(!checksum(0, pseudo)) + 6 + tcp.len() as u32;
    assert_eq!(checksum(pseudo, tcp), 0, "TCP checksum");
}

fuzz_target!(|data: &[u8]| {
    let Some(h) = VnetHdr::parse(data) else {
        assert!(data.len() < VNET_HDR_LEN);
        return;
    };
    let mut back = [0u8; VNET_HDR_LEN];
    h.emit(&mut back);
    assert_eq!(back, data[..VNET_HDR_LEN]);
    assert_eq!(h.is_plain(), !h.is_gso() && h.flags & F_NEEDS_CSUM == 0);

    let original = data[VNET_HDR_LEN..].to_vec();
    let mut frame = original.clone();
    let mut segs: Vec<Vec<u8>> = Vec::new();
    let r = vnet::segment(&h, &mut frame, |s| segs.push(s.to_vec()));
    if r.is_err() {
        assert!(segs.is_empty(), "segments produced before an error");
        return;
    }
    if !h.is_gso() {
        // One frame out: the input, with at most its checksum field set.
        assert_eq!(segs.len(), 1);
        assert_eq!(segs[0].len(), original.len());
        if h.flags & F_NEEDS_CSUM == 0 {
            assert_eq!(segs[0], original);
        }
        return;
    }
    let v4 = h.gso_type & !GSO_ECN == GSO_TCPV4;
    let l2 = l2_len(&original);
    let l3 = if v4 {
        usize::from(original[l2] & 0x0f) * 4
    } else {
        40
    };
    let thl = usize::from(original[l2 + l3 + 12] >> 4) * 4;
    let hlen = l2 + l3 + thl;
    let mss = usize::from(h.gso_size);
    let mut payload = Vec::new();
    for s in &segs {
        assert!(
            s.len() >= hlen && s.len() <= hlen + mss,
            "segment of {}",
            s.len()
        );
        assert_eq!(s[..l2], original[..l2], "Ethernet header changed");
        check_segment(s, v4);
        payload.extend_from_slice(&s[hlen..]);
    }
    assert_eq!(payload, original[hlen..], "payload not carried exactly");
    assert_eq!(segs.len(), original[hlen..].len().div_ceil(mss).max(1));
});
