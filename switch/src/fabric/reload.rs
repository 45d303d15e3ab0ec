//! Live reload: a new [`SwitchConfig`] applied to a running core.
//!
//! Nodes are matched by name and public key together: a node whose pair is
//! unchanged keeps its port, its sessions, its MACs and its counters, so it
//! sees nothing of the reload. A node that is gone (or whose name or key
//! changed, which is the same to the switch) is *retired*: its sessions end
//! at once, its MACs and multicast memberships are flushed, and in mesh mode
//! the members that knew it get `peer-gone`. An added node can handshake as
//! soon as the call returns. A node whose VLAN membership or fast-leave
//! setting changed keeps its session; its MACs and memberships are flushed
//! (they were learned in the old VLANs), and in mesh mode its old VLANs'
//! members hear it left, the new ones hear of it, and it gets `mesh` with
//! its new port and the full member list again. A node whose
//! `multicast-router` setting alone changed keeps everything: only its
//! static router port comes or goes.
//!
//! A retired port keeps its slot ([`NodeId`]s index the MAC table, the
//! snooper and the mesh bookkeeping) until a later reload adds a node; then
//! the slot is reused, so repeated reloads do not grow the port list.
//!
//! What a core cannot change while running is refused before anything is
//! touched ([`Switch::check_config`]): the switch's key, the network secret
//! (sessions and handshakes in flight are bound to both) and the network id.
//! Everything else (limits, aging, timeouts, MTU, `[multicast]`,
//! `[storm-control]`, the handshake guard) takes effect at once: new limits
//! apply to what is learned from now on, and changed `[multicast]` settings
//! keep the group table (snooping switched off forgets it). What
//! `tapmesh-switch querier` changed stays until the file's `[multicast]`
//! section changes.
use std::time::Instant;

use super::{NodeSpec, Port, Switch, SwitchConfig};
use crate::NodeId;

/// What a reload changed in one core, by node name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Nodes admitted now.
    pub added: Vec<String>,
    /// Nodes no longer admitted: their sessions ended.
    pub removed: Vec<String>,
    /// Nodes whose VLANs, fast-leave or multicast-router setting changed.
    pub changed: Vec<String>,
    /// Whether a setting of the whole network changed (limits, aging,
    /// timeouts, MTU, multicast, storm control, handshake guard).
    pub settings: bool,
}

impl Changes {
    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.changed.is_empty()
            && !self.settings
    }
}

/// A setting the running core cannot take; the config key that names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unchangeable(pub &'static str);

impl Switch {
    /// Whether `new` can be applied to this core; if not, the key of the
    /// first setting that cannot change while running.
    pub fn check_config(&self, new: &SwitchConfig) -> Result<(), Unchangeable> {
        if new.private_key.public_key() != self.cfg.private_key.public_key() {
            return Err(Unchangeable("private-key-file"));
        }
        if new.psk != self.cfg.psk {
            return Err(Unchangeable("network-secret-file"));
        }
        if new.network_id != self.cfg.network_id {
            return Err(Unchangeable("id"));
        }
        Ok(())
    }

    /// Apply a new configuration (see the module doc). Nothing changes if it
    /// is refused. In mesh mode the announcements it causes are queued at
    /// once (drain [`poll_transmit`](Self::poll_transmit) after the call).
    pub fn apply_config(
        &mut self,
        now: Instant,
        new: SwitchConfig,
    ) -> Result<Changes, Unchangeable> {
        self.check_config(&new)?;
        let mut changes = Changes::default();
        let same = |a: &NodeSpec, b: &NodeSpec| a.name == b.name && a.public_key == b.public_key;
        let mut removed = Vec::new();
        let mut changed = Vec::new();
        for (i, p) in self.ports.iter().enumerate() {
            // Trunks to other switches come from `[cluster]`, not the nodes.
            if p.retired || p.is_trunk() {
                continue;
            }
            match new.nodes.iter().find(|n| same(n, &p.spec)) {
                None => removed.push(NodeId(i as u32)),
                Some(n) if n.vlan != p.spec.vlan || n.fast_leave != p.spec.fast_leave => {
                    changed.push((NodeId(i as u32), n.clone()));
                }
                Some(_) => {}
            }
        }
        // A node whose `multicast-router` alone changed keeps everything it
        // learned: only its router port comes or goes.
        let mut router_changed = Vec::new();
        for (i, p) in self.ports.iter().enumerate() {
            if let Some(n) = new.nodes.iter().find(|n| !p.retired && same(n, &p.spec))
                && n.multicast_router != p.spec.multicast_router
                && !changed.iter().any(|(id, _)| id.0 as usize == i)
            {
                router_changed.push((i, n.multicast_router));
            }
        }
        let added: Vec<NodeSpec> = new
            .nodes
            .iter()
            .filter(|n| {
                !(self.ports.iter()).any(|p| !p.retired && !p.is_trunk() && same(n, &p.spec))
            })
            .cloned()
            .collect();

        // Departures first, so the members still hold sessions to hear them:
        // removed nodes leave for good, changed ones leave their old VLANs.
        for &id in &removed {
            self.forget(id);
            let port = &mut self.ports[id.0 as usize];
            port.retired = true;
            // Frames its impaired link held go nowhere now.
            port.impair = None;
            self.impaired.retain(|x| *x != id);
            let port = &self.ports[id.0 as usize];
            self.by_key.remove(&port.spec.public_key);
            changes.removed.push(port.spec.name.clone());
        }
        let hidden: Vec<NodeId> = changed.iter().map(|(id, _)| *id).collect();
        self.mesh_sync_hiding(now, &hidden);
        for (id, spec) in changed {
            self.macs.flush_port(id);
            self.snoop.forget_node(id);
            changes.changed.push(spec.name.clone());
            self.ports[id.0 as usize].spec = spec;
        }
        for (i, router) in router_changed {
            let spec = &mut self.ports[i].spec;
            spec.multicast_router = router;
            changes.changed.push(spec.name.clone());
        }
        for spec in added {
            changes.added.push(spec.name.clone());
            let key = spec.public_key;
            let slot = self.ports.iter().position(|p| p.retired);
            let id = NodeId(slot.unwrap_or(self.ports.len()) as u32);
            let port = Port::new(now, id, spec);
            match slot {
                Some(i) => self.ports[i] = port,
                None => self.ports.push(port),
            }
            self.by_key.insert(key, id);
            if let Some(mesh) = self.mesh.as_mut() {
                mesh.reset(id);
            }
        }

        changes.settings = self.cfg.mac_aging != new.mac_aging
            || self.cfg.node_timeout != new.node_timeout
            || self.cfg.mac_limit_per_node != new.mac_limit_per_node
            || self.cfg.mac_table_limit != new.mac_table_limit
            || self.cfg.underlay_mtu != new.underlay_mtu
            || self.cfg.multicast != new.multicast
            || self.cfg.storm != new.storm
            || self.cfg.handshake_guard != new.handshake_guard;
        let n = self.ports.len();
        self.macs
            .reconfigure(new.mac_aging, new.mac_limit_per_node, new.mac_table_limit);
        self.storm.reconfigure(new.storm.clone(), n);
        crate::workers::gate::lock(&self.guard).reconfigure(new.handshake_guard.clone());
        let nodes = self.ports.iter().filter(|p| !p.retired && !p.is_trunk());
        let vlans = super::member_vlans(nodes.map(|p| &p.spec));
        let fast_leave = self
            .ports
            .iter()
            .map(|p| !p.retired && p.spec.fast_leave)
            .collect();
        // The querier as `tapmesh-switch querier` set it stays until the
        // file's `[multicast]` changes.
        let multicast = if new.multicast == self.cfg.multicast {
            self.snoop.config().clone()
        } else {
            new.multicast.clone()
        };
        self.snoop.reconfigure(now, multicast, fast_leave, &vlans);
        self.cfg = new;
        self.retrunk();
        self.sync_static_routers();
        self.mesh_sync(now);
        Ok(changes)
    }
}
