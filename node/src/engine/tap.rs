//! Frames from the TAP (or a VM), sealed for the switch or a mesh peer.

use std::ops::Range;
use std::time::Instant;

use overlay_proto::ethernet::{self, Frame};
use overlay_proto::tunnel::Sealed;
use overlay_proto::vnet::{self, VNET_HDR_LEN, VnetHdr};
use overlay_proto::wire::{DATA_HEADER_LEN, FLAG_VNET};

use tapmesh_shell::capture::Direction as Seen;

use super::Node;
use crate::counters::DropReason;

impl Node {
    /// Seal a frame read from the TAP for the switch. What the TAP gave (the
    /// frame, after a virtio header if `offload`) is at
    /// `buf[DATA_HEADER_LEN..DATA_HEADER_LEN + frame_len]` and `buf` has
    /// [`DATA_OVERHEAD`](overlay_proto::wire::DATA_OVERHEAD) bytes more room. Returns where in `buf` the sealed
    /// datagram is (send it to [`switch_addr`](Self::switch_addr)), `None` if
    /// the frame was too large for one datagram and its fragments wait in
    /// [`poll_transmit`](Self::poll_transmit), or why it was dropped (counted).
    pub fn handle_tap_frame(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        frame_len: usize,
    ) -> Result<Option<Range<usize>>, DropReason> {
        // HOT PATH
        let r = self.tap_frame(now, buf, frame_len);
        if let Err(d) = r {
            self.drops.add(d);
        }
        r
    }

    fn tap_frame(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        len: usize,
    ) -> Result<Option<Range<usize>>, DropReason> {
        self.counters.tap_rx_frames += 1;
        self.counters.tap_rx_bytes += len as u64;
        let payload = &buf[DATA_HEADER_LEN..DATA_HEADER_LEN + len];
        let (vnet, frame) = self.split_checked(self.cfg.offload, payload)?;
        let (flags, start) = travel_form(vnet);
        let plen = len - start;
        let max = self.cfg.max_datagram();
        self.destination = self.homes.home().addr;
        if self.homes.is_several() {
            self.local_macs.note(now, frame);
        }
        if self.peers.is_enabled() {
            // Mesh: known unicast to a peer with a direct path goes straight
            // there; everything else goes to the switch as in central mode.
            if let Ok(f) = Frame::new_checked(frame) {
                self.peers.note_local_mac(now, f.src(), &mut self.tx);
            }
            if let Some(i) = self.peers.route(now, frame, flags & FLAG_VNET != 0) {
                self.capture(now, i, Seen::Outbound, frame);
                let r =
                    self.peers
                        .seal(now, i, flags, &mut buf[start..], plen, max, &mut self.tx)?;
                self.counters.udp_tx_datagrams += 1;
                return Ok(r.map(|(to, r)| {
                    self.destination = to;
                    r.start + start..r.end + start
                }));
            }
        }
        if !self.uplink.is_up(now) {
            self.with_uplink(now, |t, ctx, to| t.ensure_handshake(now, ctx, to));
            return Err(DropReason::NoSession);
        }
        match self
            .uplink
            .seal(now, flags, &mut buf[start..], plen, max, &mut self.tx)
            .map_err(DropReason::from)?
        {
            Sealed::InPlace(r) => {
                self.counters.udp_tx_datagrams += 1;
                Ok(Some(r.start + start..r.end + start))
            }
            Sealed::Queued(n) => {
                self.counters.udp_tx_datagrams += n as u64;
                Ok(None)
            }
        }
    }

    /// Split a payload into its virtio header (if `vnet`) and frame, refusing
    /// runts and frames over the MTU in either direction. A GSO super-frame is
    /// checked by its segment size; others as they are.
    pub(super) fn split_checked<'p>(
        &self,
        vnet: bool,
        payload: &'p [u8],
    ) -> Result<(Option<VnetHdr>, &'p [u8]), DropReason> {
        split_checked(vnet, self.cfg.mtu, payload)
    }
}

/// Split a payload into its virtio header (if `vnet`) and frame, refusing
/// runts and frames over `mtu` ([`Node::split_checked`]).
pub fn split_checked(
    vnet: bool,
    mtu: usize,
    payload: &[u8],
) -> Result<(Option<VnetHdr>, &[u8]), DropReason> {
    // HOT PATH
    let (hdr, frame) = if vnet {
        let h = VnetHdr::parse(payload).ok_or(DropReason::Runt)?;
        (Some(h), &payload[VNET_HDR_LEN..])
    } else {
        (None, payload)
    };
    if frame.len() < ethernet::HEADER_LEN {
        return Err(DropReason::Runt);
    }
    if !vnet::fits_mtu(hdr.as_ref(), frame, mtu) {
        return Err(DropReason::Oversize);
    }
    if hdr.is_some_and(|h| !h.fits(frame)) {
        return Err(DropReason::Offload);
    }
    Ok((hdr, frame))
}

/// How a payload read from the TAP travels: its data flags and where in
/// it the sealed payload starts. A complete ordinary frame travels without
/// its virtio header; a super-frame or one needing a checksum with it
/// (flag `VNET`).
pub fn travel_form(vnet: Option<VnetHdr>) -> (u8, usize) {
    match vnet {
        Some(h) if !h.is_plain() => (FLAG_VNET, 0),
        Some(_) => (0, VNET_HDR_LEN),
        None => (0, 0),
    }
}
