//! Link impairment (see [`crate::impair`]): frames of an impaired node's
//! link go through its [`PortImpair`]; held ones come back out in
//! `handle_timeout`.

use std::time::{Duration, Instant};

use overlay_proto::vnet::{self, VnetHdr};

use super::Switch;
use crate::NodeId;
use crate::counters::DropReason;
use crate::impair::{self, Direction, LinkImpair, PortImpair};

/// Link impairment (see [`crate::impair`]): frames of an impaired node's
/// link go through its [`PortImpair`]; held ones come back out in
/// `handle_timeout`.
impl Switch {
    /// For a shell whose timers fire late by about `slack` (tokio's round up
    /// to whole milliseconds): held frames are then asked for (`poll_timeout`)
    /// and released `slack` before they are due, so on average they leave
    /// on time. Zero (exact) by default.
    pub fn set_timer_slack(&mut self, slack: Duration) {
        self.timer_slack = slack;
    }

    /// Set node `name`'s link (down/up, and what each direction does),
    /// replacing what was set. Held frames keep their release times; taking
    /// the link down drops them. Returns false if there is no such node.
    pub fn set_impair(&mut self, name: &str, l: &LinkImpair) -> bool {
        let Some(i) = self
            .ports
            .iter()
            .position(|p| !p.retired && p.spec.name == name)
        else {
            return false;
        };
        let seed = self.impair_seed;
        let port = &mut self.ports[i];
        match port.impair.as_mut() {
            Some(p) => p.set(l, name, seed),
            None if l.is_none() => return true,
            None => {
                port.impair = Some(Box::new(PortImpair::new(l, name, seed)));
                self.impaired.push(NodeId(i as u32));
            }
        }
        if l.down
            && let Some(p) = port.impair.as_mut()
        {
            for d in [Direction::Egress, Direction::Ingress] {
                port.impair_counters[d as usize].link_down += p.dir(d).flush() as u64;
            }
        }
        true
    }

    /// What is set on node `name`'s link (up and nothing, if nothing), if
    /// there is such a node.
    pub fn impair_of(&self, name: &str) -> Option<LinkImpair> {
        let p = self
            .ports
            .iter()
            .find(|p| !p.retired && p.spec.name == name)?;
        Some(p.impair.as_ref().map(|p| p.setting()).unwrap_or_default())
    }

    /// A frame of node `node`'s link in direction `dir`: offloaded frames
    /// are cut into plain wire-sized frames with their checksums complete
    /// first, so loss, rate and corruption act per frame as on a wire.
    pub(super) fn impair_frame(
        &mut self,
        now: Instant,
        node: NodeId,
        dir: Direction,
        vnet: Option<VnetHdr>,
        frame: &[u8],
    ) -> Result<(), DropReason> {
        match vnet {
            Some(h) if !h.is_plain() => {
                let mut scratch = std::mem::take(&mut self.impair_scratch);
                scratch.clear();
                scratch.extend_from_slice(frame);
                let r = vnet::segment(&h, &mut scratch, |seg| {
                    self.impair_plain(now, node, dir, seg);
                });
                self.impair_scratch = scratch;
                r.map_err(|_| DropReason::Offload)
            }
            _ => {
                self.impair_plain(now, node, dir, frame);
                Ok(())
            }
        }
    }

    fn impair_plain(&mut self, now: Instant, node: NodeId, dir: Direction, frame: &[u8]) {
        let port = &mut self.ports[node.0 as usize];
        let Some(p) = port.impair.as_mut() else {
            return;
        };
        let up = p.up;
        let c = &mut port.impair_counters[dir as usize];
        if p.dir(dir).handle_frame(now, up, frame, c) == impair::Verdict::Pass {
            self.impaired_out(now, node, dir, frame);
        }
    }

    /// A frame that passed node `node`'s impairment goes on its way.
    fn impaired_out(&mut self, now: Instant, node: NodeId, dir: Direction, frame: &[u8]) {
        match dir {
            Direction::Egress => self.send_unimpaired(now, node, None, frame),
            Direction::Ingress => {
                if let Err(r) = self.forward_frame(now, node, None, frame) {
                    self.drops.add(r);
                }
            }
        }
    }

    /// Send or forward every held frame that is due; forget impairments
    /// that were cleared once they hold nothing.
    pub(super) fn release_impaired(&mut self, now: Instant) {
        let due = now + self.timer_slack;
        let mut k = 0;
        while k < self.impaired.len() {
            let id = self.impaired[k];
            let i = id.0 as usize;
            for dir in [Direction::Egress, Direction::Ingress] {
                while let Some(buf) = self.ports[i]
                    .impair
                    .as_mut()
                    .and_then(|p| p.dir(dir).poll_release(due))
                {
                    self.impaired_out(now, id, dir, &buf);
                    if let Some(p) = self.ports[i].impair.as_mut() {
                        p.dir(dir).recycle(buf);
                    }
                }
            }
            if self.ports[i].impair.as_ref().is_none_or(|p| p.is_idle()) {
                self.ports[i].impair = None;
                self.impaired.swap_remove(k);
            } else {
                k += 1;
            }
        }
    }
}
