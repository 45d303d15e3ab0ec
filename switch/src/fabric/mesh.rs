//! Mesh mode (see [`crate::mesh`]): control messages from the nodes, and
//! the membership announcements the engine sends them.

use std::net::SocketAddr;
use std::time::Instant;

use overlay_proto::wire::FLAG_FRAGMENT;

use super::{Switch, remote_members};
use crate::NodeId;
use crate::counters::DropReason;
use crate::mesh::{MemberView, Mesh};

/// Mesh mode (see [`crate::mesh`]): control messages in and out.
impl Switch {
    /// Run this network in mesh mode: tell nodes about each other.
    pub fn enable_mesh(&mut self) {
        self.mesh = Some(Mesh::new(self.ports.len()));
    }

    /// A control message from node `id`: only `LocalAddrs`, in mesh mode.
    /// The others hear of it at the next sweep, not now: however often a
    /// node announces, each other node gets at most one update per sweep.
    pub(super) fn handle_control(
        &mut self,
        now: Instant,
        id: NodeId,
        flags: u8,
        payload: &[u8],
    ) -> Result<(), DropReason> {
        use crate::mesh::Announced;
        use overlay_proto::control::Control;
        let (Some(mesh), 0) = (self.mesh.as_mut(), flags & FLAG_FRAGMENT) else {
            return Err(DropReason::UnexpectedMessage);
        };
        let Some(observed) = self.ports[id.0 as usize].tunnel.endpoint() else {
            return Err(DropReason::UnexpectedMessage);
        };
        match Control::parse(payload) {
            Ok(Control::LocalAddrs(addrs)) => match mesh.set_local(now, id, observed, addrs) {
                Announced::Taken { refused } => {
                    self.drops.add_n(DropReason::MeshAddress, refused as u64);
                    Ok(())
                }
                Announced::RateLimited => Err(DropReason::MeshRateLimited),
            },
            _ => Err(DropReason::UnexpectedMessage),
        }
    }

    /// Announce joins, moves and departures, and where MACs were learned
    /// (cheap when nothing changed).
    pub(super) fn mesh_sync(&mut self, now: Instant) {
        self.mesh_sync_hiding(now, &[]);
    }

    /// [`mesh_sync`](Self::mesh_sync), with the nodes in `hidden` shown as
    /// departed (a reload about to change their VLANs tells their old
    /// VLANs' members that they left).
    pub(super) fn mesh_sync_hiding(&mut self, now: Instant, hidden: &[NodeId]) {
        if self.mesh.is_none() {
            return;
        }
        let cluster = self.cluster.as_deref();
        // Members homed on other switches (see `remote_members`).
        let remote: Vec<Option<SocketAddr>> = (0..self.ports.len())
            .map(|i| remote_members::remote_endpoint(cluster, &self.ports, i))
            .collect();
        let Some(mesh) = self.mesh.as_mut() else {
            return;
        };
        let views: Vec<MemberView<'_>> = self
            .ports
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let local = (p.tunnel.endpoint()).filter(|_| p.is_connected() && !p.is_trunk());
                let shown = !hidden.contains(&NodeId(i as u32));
                MemberView {
                    key: p.spec.public_key,
                    name: &p.spec.name,
                    endpoint: local.or(remote[i]).filter(|_| shown),
                    session: p.tunnel.current().map(|s| s.created()),
                    vlan: &p.spec.vlan,
                    remote: local.is_none() && remote[i].is_some(),
                }
            })
            .collect();
        let joined: Vec<NodeId> = (views.iter().enumerate())
            .filter(|(_, v)| v.remote && v.endpoint.is_some())
            .map(|(i, _)| NodeId(i as u32))
            .filter(|id| !mesh.is_announced(*id))
            .collect();
        let mut out = mesh.sync(&views);
        let (macs, ports) = (&self.macs, &self.ports);
        out.extend(mesh.sync_owners(&views, || {
            macs.iter()
                .filter(|(_, _, e)| e.expires_at > now)
                .map(|(vid, mac, e)| {
                    let owner = remote_members::mac_owner(cluster, ports, e.port, vid, &mac);
                    (owner, vid, mac)
                })
                .collect()
        }));
        drop(views);
        // MACs the store placed behind members announced just now go out
        // with the next sweep's owners.
        self.note_remote_joins(now, &joined);
        let mut buf = Vec::new();
        for (to, msg) in out {
            buf.clear();
            msg.emit(&mut buf);
            self.send_control(now, to, &buf);
        }
    }
}
