//! Mesh mode across the switches of a cluster: members homed on another
//! switch, announced to the nodes homed here.
//!
//! Every switch of a cluster admits the same nodes (`[[node]]` in each
//! switch.toml), and the store says where each is homed and at which
//! endpoint (`ClusterView::node_home`). In mesh mode a switch vouches to its
//! own nodes for every member **in its own config** that is connected here
//! or homed on another switch it peers with (`[[cluster.switch]]`): the
//! member's key and VLANs come from this switch's config, only its endpoint
//! from the store. So two nodes homed on different switches open a direct
//! session as two nodes of one switch do, and each switch's list stays
//! authoritative for its own nodes.
//!
//! Revocation: a node removed from this switch's config is announced to
//! nobody here, wherever it is homed, so the nodes homed here drop it
//! (`peer-gone`) and refuse its handshakes. The store cannot widen that: it
//! names nodes, and a name not in this config (or a switch not in
//! `[[cluster.switch]]`) is ignored.
//!
//! `mac-owners`: a MAC behind a trunk is told as the remote member's if the
//! store says which node it is behind and that node is announced here (so
//! the member's own claims over its direct session are taken); otherwise as
//! the other switch's, which no peer may claim.
use std::net::SocketAddr;

use overlay_proto::ethernet::MacAddr;

use super::Switch;
use super::port::Port;
use super::trunk::Cluster;
use crate::NodeId;
use crate::cluster::Name;
use crate::vlan::Vid;

/// Where member `i` is homed on another switch, per the store: its
/// endpoint there. `None` for a trunk, a retired slot, a node connected
/// here, and a node the store does not place on a switch this one peers
/// with.
pub(super) fn remote_endpoint(
    cluster: Option<&Cluster>,
    ports: &[Port],
    i: usize,
) -> Option<SocketAddr> {
    let c = cluster?;
    let p = &ports[i];
    if p.retired || p.is_trunk() || p.is_connected() {
        return None;
    }
    let (switch, endpoint) = c.view.node_home(&p.spec.name)?;
    is_peer(c, ports, switch).then_some(endpoint)
}

/// Whether `switch` is one this switch peers with.
fn is_peer(c: &Cluster, ports: &[Port], switch: &Name) -> bool {
    (c.trunks.iter()).any(|id| *ports[id.0 as usize].spec.name == **switch)
}

/// The member named `name` in this switch's config.
fn member(ports: &[Port], name: &str) -> Option<NodeId> {
    (ports.iter())
        .position(|p| !p.retired && !p.is_trunk() && p.spec.name == name)
        .map(|i| NodeId(i as u32))
}

/// The member announced here as homed elsewhere that the store places
/// `mac` in VLAN `vid` behind (the MAC's switch must be the member's home).
fn attributed(c: &Cluster, ports: &[Port], vid: Vid, mac: &MacAddr) -> Option<NodeId> {
    let node = c.view.mac_node(vid, mac)?;
    let m = member(ports, node)?;
    let (home, _) = c.view.node_home(node)?;
    if c.view.mac_owner(vid, mac) != Some(home) {
        return None;
    }
    remote_endpoint(Some(c), ports, m.0 as usize).map(|_| m)
}

/// Who `mac` in VLAN `vid`, learned behind port `id`, is told to be behind:
/// for a trunk, the remote member the store names (if announced here),
/// else `id` itself.
pub(super) fn mac_owner(
    cluster: Option<&Cluster>,
    ports: &[Port],
    id: NodeId,
    vid: Vid,
    mac: &MacAddr,
) -> NodeId {
    match cluster {
        Some(c) if ports[id.0 as usize].is_trunk() => attributed(c, ports, vid, mac).unwrap_or(id),
        _ => id,
    }
}

impl Switch {
    /// The store now says which node of another switch `mac` in VLAN `vid`
    /// is behind: in mesh mode, the nodes here hear of it at the next sweep
    /// if that node is announced here.
    pub(super) fn note_remote_mac(&mut self, vid: Vid, mac: MacAddr) {
        let (Some(mesh), Some(c)) = (self.mesh.as_mut(), self.cluster.as_deref()) else {
            return;
        };
        if let Some(m) = attributed(c, &self.ports, vid, &mac) {
            mesh.note_learned(m, vid, mac);
        }
    }

    /// Members that are now announced here as homed elsewhere and were not
    /// before: the nodes here hear of the MACs behind them at the next sweep
    /// (the store may have placed those MACs before it placed the member).
    pub(super) fn note_remote_joins(&mut self, now: std::time::Instant, joined: &[NodeId]) {
        if joined.is_empty() {
            return;
        }
        let (Some(mesh), Some(c)) = (self.mesh.as_mut(), self.cluster.as_deref()) else {
            return;
        };
        for (vid, mac, e) in self.macs.iter() {
            if e.expires_at <= now || !self.ports[e.port.0 as usize].is_trunk() {
                continue;
            }
            if let Some(m) = attributed(c, &self.ports, vid, &mac)
                && joined.contains(&m)
            {
                mesh.note_learned(m, vid, mac);
            }
        }
    }
}
