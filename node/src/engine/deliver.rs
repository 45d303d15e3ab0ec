//! Decrypted payloads to the TAP: checked, reassembled, admitted by VLAN and
//! given our port's form.

use std::ops::Range;
use std::time::Instant;

use overlay_proto::vlan::{self, Ingress};
use overlay_proto::vnet::{VNET_HDR_LEN, VnetHdr};
use overlay_proto::wire::{FLAG_FRAGMENT, FLAG_RELAYED, FLAG_VNET};

use tapmesh_shell::capture::Direction as Seen;

use super::{Node, TapWrite};
use crate::counters::DropReason;
#[cfg(doc)]
use crate::peers::Peers;

impl Node {
    /// A decrypted payload (frame or fragment) from the switch (`peer` is
    /// `None`) or from a mesh peer: check it, reassemble it, admit it by VLAN
    /// and learn its source MAC if a peer sent it, give it our port's VLAN
    /// form, and say where the frame for the TAP is.
    pub(super) fn deliver(
        &mut self,
        now: Instant,
        peer: Option<usize>,
        flags: u8,
        buf: &mut [u8],
        range: Range<usize>,
    ) -> Result<Option<TapWrite>, DropReason> {
        // HOT PATH
        let vnet = flags & FLAG_VNET != 0;
        if vnet && !self.cfg.offload {
            // We never announced offload support; the switch must not send these.
            return Err(DropReason::Offload);
        }
        // With an offload TAP every frame needs a virtio header in front;
        // an all-zero one means "complete ordinary frame".
        let add_hdr = self.cfg.offload && !vnet;
        if flags & FLAG_FRAGMENT == 0 {
            let ing = self.check_frame(now, peer, vnet, &buf[range.clone()])?;
            if peer.is_none() && flags & FLAG_RELAYED != 0 {
                let skip = if vnet { VNET_HDR_LEN } else { 0 };
                self.peers
                    .note_relayed(now, &buf[range.start + skip..range.end], &mut self.tx);
            }
            if let Some(ing) = ing {
                let mut out = std::mem::take(&mut self.scratch);
                let n = retag(vnet, add_hdr, &buf[range], ing, &mut out);
                self.scratch = out;
                return Ok(Some(TapWrite::Reassembled(0..n)));
            }
            if add_hdr {
                let start = range.start - VNET_HDR_LEN;
                buf[start..range.start].fill(0);
                return Ok(Some(TapWrite::InPlace(start..range.end)));
            }
            return Ok(Some(TapWrite::InPlace(range)));
        }
        let whole = match peer {
            None => self
                .uplink
                .reassemble(now, &buf[range])
                .map_err(|_| DropReason::Fragment),
            Some(p) => self.peers.reassemble(now, p, &buf[range]),
        };
        let Some(whole) = whole? else {
            return Ok(None);
        };
        let skip = if add_hdr { VNET_HDR_LEN } else { 0 };
        self.scratch.clear();
        self.scratch.resize(skip, 0);
        self.scratch.extend_from_slice(whole);
        let mut n = self.scratch.len();
        let payload = std::mem::take(&mut self.scratch);
        let r = self.check_frame(now, peer, vnet, &payload[skip..]);
        self.scratch = payload;
        if let Some(ing) = r? {
            let mut out = std::mem::take(&mut self.vlan_scratch);
            n = retag(vnet, add_hdr, &self.scratch[skip..], ing, &mut out);
            self.vlan_scratch = std::mem::replace(&mut self.scratch, out);
        }
        Ok(Some(TapWrite::Reassembled(0..n)))
    }

    /// The frame of a [`TapWrite::Reassembled`].
    pub fn reassembled(&self) -> &[u8] {
        &self.scratch
    }

    /// Check a frame (with its virtio header if `vnet`) about to go to the
    /// TAP; if mesh peer `peer` sent it, admit it by VLAN
    /// ([`Peers::admit`]: `Some` if it must change form); count it.
    fn check_frame(
        &mut self,
        now: Instant,
        peer: Option<usize>,
        vnet: bool,
        payload: &[u8],
    ) -> Result<Option<Ingress>, DropReason> {
        let (_, frame) = self.split_checked(vnet, payload)?;
        let retag = match peer {
            Some(p) => {
                let r = self.peers.admit(now, p, frame)?;
                self.capture(now, p, Seen::Inbound, frame);
                r
            }
            None => None,
        };
        self.counters.tap_tx_frames += 1;
        self.counters.tap_tx_bytes += frame.len() as u64;
        Ok(retag)
    }
}

/// Write `payload` (a frame, after its virtio header if `vnet`) into `out`
/// in its other VLAN form ([`vlan::append_other_form`]), behind a virtio
/// header if `vnet` or `add_hdr` (all zero: a complete frame). Returns the
/// length written. `payload` passed [`Node::split_checked`].
fn retag(vnet: bool, add_hdr: bool, payload: &[u8], ing: Ingress, out: &mut Vec<u8>) -> usize {
    out.clear();
    let (hdr, frame) = if vnet {
        (VnetHdr::parse(payload), &payload[VNET_HDR_LEN..])
    } else {
        (None, payload)
    };
    if vnet || add_hdr {
        out.resize(VNET_HDR_LEN, 0);
    }
    if let Some(h) = vlan::append_other_form(frame, ing, hdr, out) {
        h.emit(&mut out[..VNET_HDR_LEN]);
    }
    out.len()
}

#[cfg(test)]
mod retag_tests {
    use super::*;

    fn untagged() -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
        f.resize(60, 0x45);
        f
    }

    #[test]
    fn a_tag_added_moves_the_virtio_offsets_and_a_zero_header_stays_zero() {
        let f = untagged();
        let ing = Ingress {
            vid: 10,
            tagged: false,
        };
        let h = VnetHdr {
            csum_start: 34,
            hdr_len: 54,
            ..VnetHdr::default()
        };
        let mut payload = vec![0; VNET_HDR_LEN];
        h.emit(&mut payload);
        payload.extend_from_slice(&f);
        let mut out = Vec::new();
        let n = retag(true, false, &payload, ing, &mut out);
        assert_eq!(n, payload.len() + 4);
        let h2 = VnetHdr::parse(&out).unwrap();
        assert_eq!((h2.csum_start, h2.hdr_len), (38, 58));
        let frame = &out[VNET_HDR_LEN..];
        assert_eq!(vlan::tag_vid(frame), Some(10));
        assert_eq!(&frame[16..], &f[12..]);
        // A plain frame for an offload TAP: an all-zero header in front.
        let n = retag(false, true, &f, ing, &mut out);
        assert_eq!(n, VNET_HDR_LEN + f.len() + 4);
        assert!(out[..VNET_HDR_LEN].iter().all(|b| *b == 0));
        // And back: the tag removed, nothing in front without offload.
        let tagged = out[VNET_HDR_LEN..].to_vec();
        let ing = Ingress {
            vid: 10,
            tagged: true,
        };
        let n = retag(false, false, &tagged, ing, &mut out);
        assert_eq!(&out[..n], &f[..]);
    }
}
