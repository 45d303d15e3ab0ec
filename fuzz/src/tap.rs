//! What every TAP write must be, whoever sent the frame: shared by the
//! targets that follow frames to a node's TAP (`forwarding`,
//! `peer_session`).
use overlay_proto::vnet::{VNET_HDR_LEN, VnetHdr};

/// Check one TAP write `w` of node h`node`, with TAP MTU `mtu` (after a virtio
/// header if `offload`): a header the kernel takes (a GSO type it knows, a
/// checksum inside the frame behind the Ethernet header), a whole frame,
/// no tag cut short, no larger than the MTU allows (per segment for a GSO
/// super-frame). Returns the frame, after the header.
pub fn check_write(node: usize, offload: bool, mtu: usize, w: &[u8]) -> &[u8] {
    let (hdr, frame) = if offload {
        let h = VnetHdr::parse(w).expect("an offload TAP write starts with a virtio header");
        (Some(h), &w[VNET_HDR_LEN..])
    } else {
        (None, w)
    };
    assert!(frame.len() >= 14, "runt to the TAP of h{node}");
    let tagged = frame[12..14] == [0x81, 0x00];
    assert!(
        !tagged || frame.len() >= 18,
        "a truncated 802.1Q frame reached h{node}"
    );
    if let Some(h) = hdr {
        assert!(
            h.fits(frame),
            "a virtio header the kernel refuses to h{node}: {h:?}"
        );
    }
    match hdr {
        Some(h) if h.is_gso() => assert!(h.gso_size as usize <= mtu),
        _ => assert!(
            frame.len() <= mtu + 14 + if tagged { 4 } else { 0 },
            "oversize frame ({} bytes) to the TAP of h{node}",
            frame.len()
        ),
    }
    frame
}
