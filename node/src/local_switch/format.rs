//! The two frame formats of the local switch's ports and the conversions
//! between them.
//!
//! VM ports and userspace hosts always take plain Ethernet frames. The uplink
//! and the TAP take what the node core takes: plain frames too, unless the
//! TAP was opened with offloads, in which case every frame has a virtio-net
//! header in front and may be a TCP super-frame of up to 64 KB or carry a
//! partial checksum ([`overlay_proto::vnet`]). A frame crossing from one
//! format to the other gets an all-zero header added (a complete frame,
//! [`LocalSwitch::encode_local`](super::LocalSwitch::encode_local)) or is cut
//! into plain frames ([`Format::plain_frames`]).
use overlay_proto::ethernet;
use overlay_proto::vnet::{self, VNET_HDR_LEN, VnetHdr};

use crate::counters::DropReason;

/// How a port's frames look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Plain Ethernet frames.
    Plain,
    /// A virtio-net header, then the frame (an offload TAP and the uplink
    /// in front of it).
    Vnet,
}

impl Format {
    /// The Ethernet frame in `payload` (of a super-frame, its headers: the
    /// MACs are the same in every segment); empty if `payload` is too short
    /// for its virtio header.
    pub fn frame(self, payload: &[u8]) -> &[u8] {
        match self {
            Format::Plain => payload,
            Format::Vnet => payload.get(VNET_HDR_LEN..).unwrap_or(&[]),
        }
    }

    /// Turn `payload` into plain Ethernet frames of at most `max` bytes (by
    /// [`LocalSwitch::max_frame`](super::LocalSwitch::max_frame) of the
    /// egress port) and give each to `out`. A TCP super-frame is cut into
    /// segments, a frame with a partial checksum gets it completed; both need
    /// a copy, made in `scratch` (the payload itself is left as it was, since
    /// it may still go to the uplink or the TAP). Returns why the frame (or
    /// one segment) was dropped; the caller counts it.
    pub fn plain_frames(
        self,
        payload: &[u8],
        max: impl Fn(&[u8]) -> usize,
        scratch: &mut Vec<u8>,
        mut out: impl FnMut(&[u8]),
    ) -> Result<(), DropReason> {
        let frame = match self {
            Format::Plain => payload,
            Format::Vnet => {
                let h = VnetHdr::parse(payload).ok_or(DropReason::Runt)?;
                let frame = &payload[VNET_HDR_LEN..];
                if !h.is_plain() {
                    scratch.clear();
                    scratch.extend_from_slice(frame);
                    let mut oversize = false;
                    vnet::segment(&h, scratch, |seg| {
                        if seg.len() <= max(seg) {
                            out(seg);
                        } else {
                            oversize = true;
                        }
                    })
                    .map_err(|_| DropReason::Segment)?;
                    return if oversize {
                        Err(DropReason::Oversize)
                    } else {
                        Ok(())
                    };
                }
                frame
            }
        };
        if frame.len() < ethernet::HEADER_LEN {
            return Err(DropReason::Runt);
        }
        if frame.len() > max(frame) {
            return Err(DropReason::Oversize);
        }
        out(frame);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 0xa, 2, 0, 0, 0, 0, 0xb, 0x08, 0x00];
        f.extend_from_slice(&[0u8; 46]);
        f
    }

    #[test]
    fn plain_frames_strips_headers_and_checks_size() {
        let f = frame();
        let mut scratch = Vec::new();
        let mut got = Vec::new();
        // Plain in, plain out.
        Format::Plain
            .plain_frames(&f, |_| 1514, &mut scratch, |s| got.push(s.to_vec()))
            .unwrap();
        // An all-zero virtio header is stripped.
        let mut v = vec![0u8; VNET_HDR_LEN];
        v.extend_from_slice(&f);
        Format::Vnet
            .plain_frames(&v, |_| 1514, &mut scratch, |s| got.push(s.to_vec()))
            .unwrap();
        assert_eq!(got, vec![f.clone(), f.clone()]);
        // Too big for the port, too short, or a bad GSO header: refused.
        assert_eq!(
            Format::Plain.plain_frames(&f, |_| 40, &mut scratch, |_| panic!()),
            Err(DropReason::Oversize)
        );
        assert_eq!(
            Format::Vnet.plain_frames(&v[..20], |_| 1514, &mut scratch, |_| panic!()),
            Err(DropReason::Runt)
        );
        v[1] = vnet::GSO_TCPV4;
        v[4] = 100;
        assert_eq!(
            Format::Vnet.plain_frames(&v, |_| 1514, &mut scratch, |_| panic!()),
            Err(DropReason::Segment)
        );
    }
}
