//! Egress: one copy per receiving node, cut into segments for nodes without
//! offload, sealed under the node's session (fragmented if needed) and queued.

use std::time::Instant;

use overlay_proto::tunnel::TunnelError;
use overlay_proto::vnet::{self, VNET_HDR_LEN, VnetHdr};
use overlay_proto::wire::{FLAG_CONTROL, FLAG_RELAYED, FLAG_VNET};

use super::Switch;
use super::port::drop_reason;
use crate::NodeId;
use crate::counters::DropReason;
use crate::impair::Direction;
use tapmesh_shell::capture::Direction as Seen;

impl Switch {
    /// Answer a keepalive.
    pub(super) fn send_keepalive(&mut self, now: Instant, to: NodeId) {
        self.send_sealed(now, to, None, &[]);
    }

    /// Send a frame (with its virtio header, if any) to node `to`, through
    /// its link's impairment if it has one.
    pub(super) fn send_frame(
        &mut self,
        now: Instant,
        to: NodeId,
        vnet: Option<VnetHdr>,
        frame: &[u8],
    ) {
        // HOT PATH: one branch when the node's link is not impaired.
        if self.ports[to.0 as usize].impair.is_some() {
            if let Err(r) = self.impair_frame(now, to, Direction::Egress, vnet, frame) {
                self.drops.add(r);
            }
            return;
        }
        self.send_unimpaired(now, to, vnet, frame);
    }

    /// Send a frame to node `to`. A node that did not announce offload
    /// support gets plain frames: an offloaded super-frame is cut into
    /// segments for it here.
    pub(super) fn send_unimpaired(
        &mut self,
        now: Instant,
        to: NodeId,
        vnet: Option<VnetHdr>,
        frame: &[u8],
    ) {
        // HOT PATH
        self.capture(now, to, Seen::Outbound, frame);
        match vnet {
            Some(h) if !self.ports[to.0 as usize].accepts_vnet() => {
                if h.is_plain() {
                    self.send_sealed(now, to, None, frame);
                    return;
                }
                let mut scratch = std::mem::take(&mut self.segment_scratch);
                scratch.clear();
                scratch.extend_from_slice(frame);
                if vnet::segment(&h, &mut scratch, |seg| self.send_sealed(now, to, None, seg))
                    .is_err()
                {
                    self.drops.add(DropReason::Offload);
                }
                self.segment_scratch = scratch;
            }
            _ => self.send_sealed(now, to, vnet, frame),
        }
    }

    /// Encrypt for node `to` (fragmenting if needed) and queue. An empty frame
    /// is a keepalive.
    fn send_sealed(&mut self, now: Instant, to: NodeId, vnet: Option<VnetHdr>, frame: &[u8]) {
        // HOT PATH
        let mut hdr = [0u8; VNET_HDR_LEN];
        let (flags, parts): (u8, [&[u8]; 2]) = match vnet {
            Some(h) => {
                h.emit(&mut hdr);
                (FLAG_VNET, [&hdr, frame])
            }
            None => (0, [&[], frame]),
        };
        // In mesh mode every frame the switch carries is a relayed one.
        let flags = if self.mesh.is_some() && !frame.is_empty() {
            flags | FLAG_RELAYED
        } else {
            flags
        };
        match self.seal(now, to, flags, &parts, true) {
            Ok(()) => {
                if !frame.is_empty() {
                    let c = &mut self.ports[to.0 as usize].counters;
                    c.tx_frames += 1;
                    c.tx_bytes += frame.len() as u64;
                }
            }
            Err(TunnelError::NoSession) => {}
            // A full queue, the counter exhausted (the node must rekey) or a
            // frame too large even for fragments.
            Err(e) => self.drops.add(drop_reason(e)),
        }
    }

    /// Seal a control message for node `to` and queue it (a failure to seal
    /// is not counted).
    pub(super) fn send_control(&mut self, now: Instant, to: NodeId, payload: &[u8]) {
        if let Err(TunnelError::TxQueueFull) = self.seal(now, to, FLAG_CONTROL, &[payload], false) {
            self.drops.add(DropReason::TxQueueFull);
        }
    }

    /// Seal `parts` under node `to`'s session and queue them: cut to the
    /// underlay's MTU (as fragments) if `fit`, else in one datagram.
    fn seal(
        &mut self,
        now: Instant,
        to: NodeId,
        flags: u8,
        parts: &[&[u8]],
        fit: bool,
    ) -> Result<(), TunnelError> {
        // HOT PATH
        if self.tx.is_full() {
            return Err(TunnelError::TxQueueFull);
        }
        let tunnel = &mut self.ports[to.0 as usize].tunnel;
        let dst = tunnel.endpoint().ok_or(TunnelError::NoSession)?;
        let max = if fit {
            self.cfg.max_datagram(dst)
        } else {
            usize::MAX
        };
        tunnel.send(now, flags, parts, max, &mut self.tx).map(drop)
    }
}
