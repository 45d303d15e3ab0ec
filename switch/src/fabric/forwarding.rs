//! Forwarding: learn from a node's frame and decide where it goes (unicast,
//! flood in its VLAN, or the snooper's multicast receivers).

use std::time::Instant;

use overlay_proto::ethernet::Frame;
use overlay_proto::mac_table::Learned;
use overlay_proto::vnet::{VNET_HDR_LEN, VnetHdr};
use overlay_proto::wire::FLAG_VNET;

use super::{MAX_FRAME, Switch, trunk};
use crate::NodeId;
use crate::counters::DropReason;
use crate::impair::Direction;
use crate::snooping::Verdict;
use crate::storm::StormClass;
use crate::vlan::{self, Ingress};
use tapmesh_shell::capture::Direction as Seen;

/// Who gets a frame.
#[derive(Clone, Copy)]
enum To<'a> {
    /// These ports.
    Only(&'a [NodeId]),
    /// Every node of the VLAN, and every trunk if `trunks`.
    Flood {
        /// Trunks too.
        trunks: bool,
    },
}

impl Switch {
    /// A complete payload from a node: a frame, or a virtio header and a frame.
    pub(super) fn switch_payload(
        &mut self,
        now: Instant,
        from: NodeId,
        flags: u8,
        payload: &[u8],
    ) -> Result<(), DropReason> {
        if flags & FLAG_VNET == 0 {
            return self.switch_frame(now, from, None, payload);
        }
        let hdr = VnetHdr::parse(payload).ok_or(DropReason::Runt)?;
        let frame = &payload[VNET_HDR_LEN..];
        if !hdr.fits(frame) {
            return Err(DropReason::Offload);
        }
        self.switch_frame(now, from, Some(hdr), frame)
    }

    fn switch_frame(
        &mut self,
        now: Instant,
        from: NodeId,
        vnet: Option<VnetHdr>,
        frame: &[u8],
    ) -> Result<(), DropReason> {
        // HOT PATH: one branch when the node's link is not impaired.
        if self.ports[from.0 as usize].impair.is_some() {
            return self.impair_frame(now, from, Direction::Ingress, vnet, frame);
        }
        self.forward_frame(now, from, vnet, frame)
    }

    /// Learn from a frame of node `from` and forward it.
    pub(super) fn forward_frame(
        &mut self,
        now: Instant,
        from: NodeId,
        vnet: Option<VnetHdr>,
        frame: &[u8],
    ) -> Result<(), DropReason> {
        // HOT PATH
        let Ok(eth) = Frame::new_checked(frame) else {
            return Err(DropReason::Runt);
        };
        let (dst, src) = (eth.dst(), eth.src());
        if frame.len() > MAX_FRAME {
            return Err(DropReason::Oversize);
        }
        if vlan::is_truncated_tag(frame) {
            return Err(DropReason::Runt);
        }
        if !src.is_valid_source() {
            return Err(DropReason::InvalidSource);
        }
        let ing = self.ports[from.0 as usize]
            .spec
            .vlan
            .ingress(frame)
            .ok_or(DropReason::VlanFiltered)?;
        let trunk = self.ports[from.0 as usize].is_trunk();
        // The table counts what it learned, moved and refused.
        match self.macs.learn(now, ing.vid, src, from) {
            Learned::Refreshed => {}
            Learned::New | Learned::Moved { .. } if trunk => {}
            Learned::New | Learned::Moved { .. } => {
                if let Some(mesh) = self.mesh.as_mut() {
                    mesh.note_learned(from, ing.vid, src);
                }
                self.note_local_mac(ing.vid, src);
            }
            Learned::Invalid => return Err(DropReason::InvalidSource),
            Learned::PortLimit => return Err(DropReason::MacLimit),
            Learned::TableFull => return Err(DropReason::TableFull),
        }
        let c = &mut self.ports[from.0 as usize].counters;
        c.rx_frames += 1;
        c.rx_bytes += frame.len() as u64;
        self.mirror_received(now, from, ing, vnet, frame);
        self.capture(now, from, Seen::Inbound, frame);

        let mut targets = std::mem::take(&mut self.targets);
        targets.clear();
        let class = if !dst.is_group() {
            match self.macs.lookup(now, ing.vid, &dst) {
                Some(to) if to == from => {
                    self.forwarded.filtered += 1;
                    self.targets = targets;
                    return Ok(());
                }
                // Split horizon: from one switch never to another.
                Some(to) if trunk && self.is_trunk(to) => {
                    self.forwarded.filtered += 1;
                    self.targets = targets;
                    return Ok(());
                }
                Some(to) if self.ports[to.0 as usize].is_connected() => {
                    self.forwarded.unicast += 1;
                    targets.push(to);
                    self.fan_out(now, Some(from), ing, vnet, frame, To::Only(&targets));
                    self.targets = targets;
                    return Ok(());
                }
                // Not learned from traffic: the cluster may know its switch.
                None if !trunk && let Some(to) = self.view_owner(ing.vid, &dst) => {
                    self.forwarded.unicast += 1;
                    targets.push(to);
                    self.fan_out(now, Some(from), ing, vnet, frame, To::Only(&targets));
                    self.targets = targets;
                    return Ok(());
                }
                _ => StormClass::UnknownUnicast,
            }
        } else if dst.is_broadcast() {
            StormClass::Broadcast
        } else {
            StormClass::Multicast
        };
        // Multicast: snooping decides (and learns from IGMP/MLD). Snooping
        // control from another switch is not ours to learn from.
        let typed = frame.get(ing.ethertype_offset()..).unwrap_or(&[]);
        if trunk && class == StormClass::Multicast && trunk::is_snoop_control(typed) {
            self.targets = targets;
            return Err(DropReason::TrunkControl);
        }
        let (only, link_local) = if class == StormClass::Multicast {
            let c = self
                .snoop
                .handle_frame(now, ing.vid, from, typed, frame.len(), &mut targets);
            (c.verdict == Verdict::Only, c.link_local)
        } else {
            (false, false)
        };
        // Only a node's frames count against storm control: another switch
        // applied its own to its nodes.
        if !trunk && !self.storm.allow(now, from, class, link_local) {
            let c = &mut self.ports[from.0 as usize].counters;
            match class {
                StormClass::Broadcast => c.storm_dropped_broadcast += 1,
                StormClass::Multicast => c.storm_dropped_multicast += 1,
                StormClass::UnknownUnicast => c.storm_dropped_unknown_unicast += 1,
            }
            self.targets = targets;
            return Err(DropReason::StormControl);
        }
        match class {
            StormClass::UnknownUnicast => self.forwarded.flooded_unicast += 1,
            StormClass::Broadcast => self.forwarded.broadcast += 1,
            StormClass::Multicast => self.forwarded.multicast += 1,
        }
        // A node's frames go to the other switches too (group traffic only
        // to those that want it, or all without a cluster view), but never
        // a frame from a switch (split horizon) or snooping control.
        let control =
            class == StormClass::Multicast && link_local && trunk::is_snoop_control(typed);
        if control {
            self.note_announce_change(now);
        }
        let to_trunks = !trunk && !control;
        let by_view = to_trunks && class == StormClass::Multicast && self.cluster.is_some();
        if only && by_view {
            self.add_trunk_targets(ing.vid, typed, &mut targets);
        }
        // Flood (every other node of the VLAN), or the snooper's receivers;
        // never back to the sender.
        let mut copies = self.fan_out(
            now,
            Some(from),
            ing,
            vnet,
            frame,
            if only {
                To::Only(&targets)
            } else {
                To::Flood {
                    trunks: to_trunks && !by_view,
                }
            },
        );
        // Group traffic flooded here still goes only to the switches that
        // want it.
        if !only && by_view {
            targets.clear();
            self.add_trunk_targets(ing.vid, typed, &mut targets);
            copies += self.fan_out(now, Some(from), ing, vnet, frame, To::Only(&targets));
        }
        self.forwarded.flood_copies += copies;
        self.targets = targets;
        if self.snoop.has_queries() {
            self.send_queries(now);
        }
        Ok(())
    }

    /// Send a frame of VLAN `ing.vid` to the ports `to` names, in the form
    /// each needs (tagged or not); never to `from` or to a node that is not
    /// connected or not in the VLAN. Returns the copies sent.
    fn fan_out(
        &mut self,
        now: Instant,
        from: Option<NodeId>,
        ing: Ingress,
        vnet: Option<VnetHdr>,
        frame: &[u8],
        to: To<'_>,
    ) -> u64 {
        // HOT PATH
        let mut other = std::mem::take(&mut self.vlan_scratch);
        let mut other_vnet = None;
        let mut other_ready = false;
        let mut copies = 0;
        let (only, trunks) = match to {
            To::Only(t) => (Some(t), true),
            To::Flood { trunks } => (None, trunks),
        };
        let count = only.map_or(self.ports.len(), <[NodeId]>::len);
        for k in 0..count {
            let to = only.map_or(NodeId(k as u32), |t| t[k]);
            let Some(port) = self.ports.get(to.0 as usize) else {
                continue;
            };
            if Some(to) == from || !port.is_connected() {
                continue;
            }
            // Split horizon, frames that stay on this switch, and floods
            // of a VLAN the other switch does not serve.
            if port.is_trunk() && !trunks {
                continue;
            }
            if only.is_none() && !port.serves(ing.vid) {
                self.note_pruned(to);
                continue;
            }
            let Some(as_is) = port.spec.vlan.egress(ing.vid).keeps_form(ing) else {
                continue;
            };
            copies += 1;
            self.mirror_sent(now, from, to, ing, vnet, frame);
            if as_is {
                self.send_frame(now, to, vnet, frame);
            } else {
                if !other_ready {
                    other_vnet = vlan::other_form(frame, ing, vnet, &mut other);
                    other_ready = true;
                }
                self.send_frame(now, to, other_vnet, &other);
            }
        }
        self.vlan_scratch = other;
        copies
    }

    /// Send the queries the built-in querier made to every node of their VLAN.
    pub(super) fn send_queries(&mut self, now: Instant) {
        while let Some((vid, frame)) = self.snoop.poll_query() {
            let ing = Ingress { vid, tagged: false };
            self.fan_out(now, None, ing, None, &frame, To::Flood { trunks: false });
        }
    }
}
