//! Egress: one copy per receiving node, cut into segments for nodes without
//! offload, sealed under the node's session (fragmented if needed) and queued.

use std::time::Instant;

use overlay_proto::vnet::{self, VNET_HDR_LEN, VnetHdr};
use overlay_proto::wire::{FLAG_CONTROL, FLAG_RELAYED, FLAG_VNET};

use super::Switch;
use crate::NodeId;
use crate::impair::Direction;
use crate::stats::DropReason;

impl Switch {
    /// Answer a keepalive.
    pub(super) fn send_keepalive(&mut self, to: NodeId) {
        self.send_sealed(to, None, &[]);
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
        self.send_unimpaired(to, vnet, frame);
    }

    /// Send a frame to node `to`. A node that did not announce offload
    /// support gets plain frames: an offloaded super-frame is cut into
    /// segments for it here.
    pub(super) fn send_unimpaired(&mut self, to: NodeId, vnet: Option<VnetHdr>, frame: &[u8]) {
        // HOT PATH
        match vnet {
            Some(h) if !self.ports[to.0 as usize].accepts_vnet => {
                if h.is_plain() {
                    self.send_sealed(to, None, frame);
                    return;
                }
                let mut scratch = std::mem::take(&mut self.segment_scratch);
                scratch.clear();
                scratch.extend_from_slice(frame);
                if vnet::segment(&h, &mut scratch, |seg| self.send_sealed(to, None, seg)).is_err() {
                    self.drops.add(DropReason::Offload);
                }
                self.segment_scratch = scratch;
            }
            _ => self.send_sealed(to, vnet, frame),
        }
    }

    /// Encrypt for node `to` (fragmenting if needed) and queue. An empty frame
    /// is a keepalive.
    fn send_sealed(&mut self, to: NodeId, vnet: Option<VnetHdr>, frame: &[u8]) {
        // HOT PATH
        if self.tx.is_full() {
            self.drops.add(DropReason::TxQueueFull);
            return;
        }
        let port = &mut self.ports[to.0 as usize];
        let (Some(session), Some(dst)) = (port.current.as_mut(), port.endpoint) else {
            return;
        };
        let max = self.cfg.max_datagram(dst);
        let mut hdr = [0u8; VNET_HDR_LEN];
        let (flags, parts): (u8, [&[u8]; 2]) = match vnet {
            Some(h) => {
                h.emit(&mut hdr);
                (FLAG_VNET, [&hdr, frame])
            }
            None => (0, [&[], frame]),
        };
        let mut b = self.tx.buffer(0);
        // In mesh mode every frame the switch carries is a relayed one.
        let flags = if self.mesh.is_some() && !frame.is_empty() {
            flags | FLAG_RELAYED
        } else {
            flags
        };
        match session.seal_frame(flags, &parts, max, &mut port.next_frame_id, &mut b) {
            Ok(stride) => {
                if !frame.is_empty() {
                    port.counters.tx_frames += 1;
                    port.counters.tx_bytes += frame.len() as u64;
                }
                match stride {
                    None => self.tx.push(dst, b),
                    Some(s) => self.tx.push_batch(dst, b, s),
                }
            }
            Err(e) => {
                // Counter exhausted (the node must rekey) or a frame too large
                // even for fragments.
                self.drops.add(DropReason::from(e));
                self.tx.recycle(b);
            }
        }
    }

    /// Seal a control message for node `to` and queue it.
    pub(super) fn send_control(&mut self, to: NodeId, payload: &[u8]) {
        if self.tx.is_full() {
            self.drops.add(DropReason::TxQueueFull);
            return;
        }
        let port = &mut self.ports[to.0 as usize];
        let (Some(session), Some(dst)) = (port.current.as_mut(), port.endpoint) else {
            return;
        };
        let mut b = self.tx.buffer(0);
        match session.seal_frame(FLAG_CONTROL, &[payload], usize::MAX, &mut 0, &mut b) {
            Ok(_) => self.tx.push(dst, b),
            Err(_) => self.tx.recycle(b),
        }
    }
}
