//! Mesh mode (see [`crate::mesh`]): control messages from the nodes, and
//! the membership announcements the engine sends them.

use std::time::Instant;

use overlay_proto::wire::FLAG_FRAGMENT;

use super::Switch;
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
        let Some(mesh) = self.mesh.as_mut() else {
            return;
        };
        let views: Vec<MemberView<'_>> = self
            .ports
            .iter()
            .enumerate()
            .map(|(i, p)| MemberView {
                key: p.spec.public_key,
                name: &p.spec.name,
                endpoint: p
                    .tunnel
                    .endpoint()
                    .filter(|_| p.is_connected() && !hidden.contains(&NodeId(i as u32))),
                session: p.tunnel.current().map(|s| s.created()),
                vlan: &p.spec.vlan,
            })
            .collect();
        let mut out = mesh.sync(&views);
        let macs = &self.macs;
        out.extend(mesh.sync_owners(&views, || {
            macs.iter()
                .filter(|(_, _, e)| e.expires_at > now)
                .map(|(vid, mac, e)| (e.port, vid, mac))
                .collect()
        }));
        let mut buf = Vec::new();
        for (to, msg) in out {
            buf.clear();
            msg.emit(&mut buf);
            self.send_control(now, to, &buf);
        }
    }
}
