//! Mesh mode: the switch as membership authority and rendezvous point.
//!
//! In mesh mode nodes send each other frames directly; the switch tells every
//! connected node about the others (`PeerUpdate`: key, name, the endpoint the
//! switch observed, then the node's own local addresses) and about departures
//! (`PeerGone`), and keeps relaying whatever nodes still send it (broadcast,
//! multicast, unknown unicast, and unicast between nodes without a direct
//! path), exactly as in central mode.
//!
//! This module is pure bookkeeping: [`Mesh::sync`] compares what each node was
//! last told with the ports' state and returns the control messages to send;
//! the core seals and queues them. The core calls it on every sweep (so
//! joins, moves and departures reach the others within
//! [`SWEEP_INTERVAL`](crate::core::SWEEP_INTERVAL)) and after a node's
//! `LocalAddrs`. A node whose session is new (first connect, restart or
//! rekey) gets `Mesh` and the full list again, so a restarted node or switch
//! converges without any extra state.
//!
//! VLANs: the switch vouches a member to a node only if their ports share a
//! VLAN. `Mesh` tells a node its own port (access, native and tagged VLANs),
//! and each `PeerUpdate` the member's port restricted to the VLANs the two
//! share ([`PortVlan::shared_with`]); the receiving node classifies every
//! frame a peer sends it directly by the peer's port and drops what is not in
//! a shared VLAN, as the switch does on the relayed path.
use std::net::SocketAddr;
use std::time::Instant;

use overlay_proto::control::{Control, MAX_ENDPOINTS};
use overlay_proto::keys::PublicKey;
use overlay_proto::vlan::PortVlan;
use serde::{Deserialize, Serialize};

use crate::NodeId;

/// How the network forwards unicast between nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Every frame goes through the switch (hop by hop).
    #[default]
    Central,
    /// Nodes talk directly; the switch coordinates and relays when they cannot.
    Mesh,
}

/// One port as the mesh sees it.
#[derive(Debug, Clone)]
pub struct MemberView<'a> {
    /// Its key.
    pub key: PublicKey,
    /// Its name.
    pub name: &'a str,
    /// Its observed endpoint, if it has a confirmed session.
    pub endpoint: Option<SocketAddr>,
    /// When its current session was created (changes on every new session).
    pub session: Option<Instant>,
    /// Its VLAN membership.
    pub vlan: &'a PortVlan,
}

#[derive(Debug, Clone, Default)]
struct Member {
    /// What the others were last told about this node.
    announced: Option<Vec<SocketAddr>>,
    /// The session this node was last given the full list under.
    told_under: Option<Instant>,
    /// The local addresses it announced.
    local: Vec<SocketAddr>,
}

/// Membership bookkeeping for mesh mode.
#[derive(Debug, Default)]
#[cfg_attr(fuzzing, derive(Clone))]
pub struct Mesh {
    members: Vec<Member>,
}

impl Mesh {
    /// For `n` ports.
    pub fn new(n: usize) -> Mesh {
        Mesh {
            members: vec![Member::default(); n],
        }
    }

    /// Port `id` has a new node (a reload reused or added the slot): it
    /// starts as never announced and never told.
    pub fn reset(&mut self, id: NodeId) {
        let i = id.0 as usize;
        if i >= self.members.len() {
            self.members.resize(i + 1, Member::default());
        }
        self.members[i] = Member::default();
    }

    /// Node `id` announced its local addresses.
    pub fn set_local(&mut self, id: NodeId, mut addrs: Vec<SocketAddr>) {
        addrs.truncate(MAX_ENDPOINTS - 1);
        if let Some(m) = self.members.get_mut(id.0 as usize) {
            m.local = addrs;
        }
    }

    fn endpoints(&self, i: usize, observed: SocketAddr) -> Vec<SocketAddr> {
        let mut e = vec![observed];
        for a in &self.members[i].local {
            if !e.contains(a) {
                e.push(*a);
            }
        }
        e
    }

    /// What to send so every connected node knows every other: `(to, message)`.
    pub fn sync(&mut self, ports: &[MemberView<'_>]) -> Vec<(NodeId, Control)> {
        let mut out = Vec::new();
        let n = ports.len().min(self.members.len());
        // Departures and moves first, to everyone already told.
        for i in 0..n {
            let now = ports[i].endpoint.map(|ep| self.endpoints(i, ep));
            if self.members[i].announced == now {
                continue;
            }
            for (j, p) in ports.iter().enumerate().take(n) {
                if j == i || p.endpoint.is_none() || self.members[j].told_under.is_none() {
                    continue;
                }
                // A member that shares no VLAN with `j` is never vouched to it.
                let Some(vlan) = ports[i].vlan.shared_with(p.vlan) else {
                    continue;
                };
                out.push((
                    NodeId(j as u32),
                    match &now {
                        Some(e) => Control::PeerUpdate {
                            key: ports[i].key,
                            name: ports[i].name.to_owned(),
                            endpoints: e.clone(),
                            vlan,
                        },
                        None => Control::PeerGone { key: ports[i].key },
                    },
                ));
            }
            self.members[i].announced = now;
        }
        // A node with a new session gets `Mesh` and the whole list.
        for i in 0..n {
            if ports[i].endpoint.is_none() {
                self.members[i].told_under = None;
                continue;
            }
            if self.members[i].told_under == ports[i].session {
                continue;
            }
            self.members[i].told_under = ports[i].session;
            out.push((
                NodeId(i as u32),
                Control::Mesh {
                    vlan: ports[i].vlan.clone(),
                },
            ));
            for (j, p) in ports.iter().enumerate().take(n) {
                let vlan = p.vlan.shared_with(ports[i].vlan);
                if let (true, Some(ep), Some(vlan)) = (j != i, p.endpoint, vlan) {
                    out.push((
                        NodeId(i as u32),
                        Control::PeerUpdate {
                            key: p.key,
                            name: p.name.to_owned(),
                            endpoints: self.endpoints(j, ep),
                            vlan,
                        },
                    ));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(k: u8, ep: Option<&str>, session: Option<Instant>) -> MemberView<'static> {
        view_in(&PortVlan::Transparent, k, ep, session)
    }

    fn view_in<'a>(
        vlan: &'a PortVlan,
        k: u8,
        ep: Option<&str>,
        session: Option<Instant>,
    ) -> MemberView<'a> {
        MemberView {
            key: PublicKey([k; 32]),
            name: "n",
            endpoint: ep.map(|e| e.parse().unwrap()),
            session,
            vlan,
        }
    }

    fn access(v: u16) -> PortVlan {
        PortVlan::Member {
            native: Some(v),
            tagged: vec![],
        }
    }

    #[test]
    fn members_are_vouched_only_to_nodes_sharing_a_vlan() {
        let t0 = Instant::now();
        let (a10, b20, c10) = (access(10), access(20), access(10));
        let trunk = PortVlan::Member {
            native: None,
            tagged: vec![10, 20, 30],
        };
        let mut m = Mesh::new(4);
        let ports = [
            view_in(&a10, 1, Some("10.0.0.1:1"), Some(t0)),
            view_in(&b20, 2, Some("10.0.0.2:1"), Some(t0)),
            view_in(&c10, 3, Some("10.0.0.3:1"), Some(t0)),
            view_in(&trunk, 4, Some("10.0.0.4:1"), Some(t0)),
        ];
        let out = m.sync(&ports);
        let told = |to: u32, about: u8| {
            out.iter().find_map(|(n, c)| match c {
                Control::PeerUpdate { key, vlan, .. } if n.0 == to && key.0[0] == about => {
                    Some(vlan.clone())
                }
                _ => None,
            })
        };
        assert_eq!(told(0, 2), None, "VLAN 10 told of VLAN 20");
        assert_eq!(told(1, 1), None, "VLAN 20 told of VLAN 10");
        assert_eq!(told(0, 3), Some(access(10)));
        // The trunk is shown to an access node with only the shared VLAN;
        // the trunk sees each access node as it is.
        let t10 = PortVlan::Member {
            native: None,
            tagged: vec![10],
        };
        assert_eq!(told(0, 4), Some(t10));
        assert_eq!(told(3, 2), Some(access(20)));
        assert!(out.contains(&(
            NodeId(3),
            Control::Mesh {
                vlan: trunk.clone()
            }
        )));
        // A move is announced only to the nodes sharing a VLAN.
        m.set_local(NodeId(0), vec!["192.168.1.1:1".parse().unwrap()]);
        let out = m.sync(&ports);
        let to: Vec<u32> = out.iter().map(|(n, _)| n.0).collect();
        assert_eq!(to, vec![2, 3], "{out:?}");
    }

    #[test]
    fn joins_moves_and_departures_are_announced_once() {
        let t0 = Instant::now();
        let mut m = Mesh::new(2);
        let a = Some("10.0.0.1:1");
        // One node: it is told mesh mode, with no peers.
        let out = m.sync(&[view(1, a, Some(t0)), view(2, None, None)]);
        let mesh = Control::Mesh {
            vlan: PortVlan::Transparent,
        };
        assert_eq!(out, vec![(NodeId(0), mesh.clone())]);
        assert!(
            m.sync(&[view(1, a, Some(t0)), view(2, None, None)])
                .is_empty()
        );
        // The second joins: the first hears of it, the second gets the list.
        let b = Some("10.0.0.2:2");
        let out = m.sync(&[view(1, a, Some(t0)), view(2, b, Some(t0))]);
        assert_eq!(out.len(), 3, "{out:?}");
        assert!(matches!(out[0], (NodeId(0), Control::PeerUpdate { .. })));
        assert_eq!(out[1], (NodeId(1), mesh));
        // It moves and announces a local address: one update.
        m.set_local(NodeId(1), vec!["192.168.1.2:2".parse().unwrap()]);
        let out = m.sync(&[view(1, a, Some(t0)), view(2, b, Some(t0))]);
        let Control::PeerUpdate { endpoints, .. } = &out[0].1 else {
            panic!("{out:?}")
        };
        assert_eq!(endpoints.len(), 2);
        assert_eq!(out.len(), 1);
        // It leaves.
        let out = m.sync(&[view(1, a, Some(t0)), view(2, None, None)]);
        assert_eq!(
            out,
            vec![(
                NodeId(0),
                Control::PeerGone {
                    key: PublicKey([2; 32])
                }
            )]
        );
    }
}
