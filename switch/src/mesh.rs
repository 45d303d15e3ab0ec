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
//! the core seals and queues them. The core calls it on every sweep only, so
//! joins, moves and departures reach the others within
//! [`SWEEP_INTERVAL`](crate::fabric::SWEEP_INTERVAL) and however often a node
//! announces, the others hear at most one update per sweep. A node whose
//! session is new (first connect, restart or rekey) gets `Mesh`, the full
//! list and `PeerListEnd` again, so a restarted node or switch converges
//! without any extra state: the list is authoritative, and a node drops
//! every peer missing from it (that is how a member removed from the config
//! loses its peers when the switch restarts).
//!
//! A node's `LocalAddrs` is taken at most [`ANNOUNCE_BURST`] times per
//! [`ANNOUNCE_WINDOW`] (a node sends one per new session) and only its
//! plausible addresses are passed on
//! ([`check_local_addr`](overlay_proto::control::check_local_addr)): every
//! announced address makes every other node send handshakes there, so an
//! unchecked list would be a traffic amplifier aimed at third parties.
//!
//! [`Mesh::sync_owners`] tells nodes which MACs the switch saw behind which
//! member (`MacOwners`): what it learned or saw move since the last sweep,
//! and the whole table to a node with a new session (so at least every
//! rekey). A node lets no other peer claim those MACs over a direct path,
//! which the switch never sees.
//!
//! In a cluster (see `fabric::remote_members`) a member may be homed on
//! another switch: its [`MemberView`] is `remote`, its endpoint the one that
//! switch published. It is announced like any other member, with only that
//! endpoint, and is never a recipient: its own switch tells it the list.
//!
//! VLANs: the switch vouches a member to a node only if their ports share a
//! VLAN. `Mesh` tells a node its own port (access, native and tagged VLANs),
//! and each `PeerUpdate` the member's port restricted to the VLANs the two
//! share ([`PortVlan::shared_with`]); the receiving node classifies every
//! frame a peer sends it directly by the peer's port and drops what is not in
//! a shared VLAN, as the switch does on the relayed path. The full list's
//! `PeerListEnd` counts only the updates actually sent, so a node's list is
//! complete without the members it shares no VLAN with; and `MacOwners` about
//! a member carries only the MACs the switch learned in VLANs the receiving
//! node is a member of (a node learns nothing about other VLANs).
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use overlay_proto::control::{Control, MAX_ENDPOINTS, MAX_MACS, check_local_addr};
use overlay_proto::ethernet::MacAddr;
use overlay_proto::keys::PublicKey;
use overlay_proto::vlan::{EgressForm, PortVlan, Vid};
use serde::{Deserialize, Serialize};

use crate::NodeId;

/// `LocalAddrs` taken from one node per [`ANNOUNCE_WINDOW`]; more are
/// refused and counted. A node sends one per new session with the switch,
/// at most every 10 s (the shortest `rekey-after-secs`).
pub const ANNOUNCE_BURST: u32 = 3;
/// See [`ANNOUNCE_BURST`].
pub const ANNOUNCE_WINDOW: Duration = Duration::from_secs(10);
/// MACs learned or moved between two sweeps that are passed on one by one;
/// past this every node gets the whole table instead.
const LEARNED_LIMIT: usize = 4096;

/// What became of a `LocalAddrs` (the core counts it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announced {
    /// Taken; this many of its addresses were refused as implausible.
    Taken {
        /// Addresses refused.
        refused: usize,
    },
    /// Over the node's rate: ignored.
    RateLimited,
}

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
    /// Homed on another switch of the cluster, `endpoint` as that switch
    /// published it: announced to the nodes here, never told anything
    /// itself (see `fabric::remote_members`).
    pub remote: bool,
}

impl MemberView<'_> {
    /// A node connected here, which gets the list.
    fn is_local(&self) -> bool {
        self.endpoint.is_some() && !self.remote
    }
}

#[derive(Debug, Clone, Default)]
struct Member {
    /// What the others were last told about this node.
    announced: Option<Vec<SocketAddr>>,
    /// The session this node was last given the full list under.
    told_under: Option<Instant>,
    /// The local addresses it announced.
    local: Vec<SocketAddr>,
    /// The current rate window's start and the announcements taken in it.
    window: Option<(Instant, u32)>,
}

/// Membership bookkeeping for mesh mode.
#[derive(Debug, Default)]
#[cfg_attr(fuzzing, derive(Clone))]
pub struct Mesh {
    members: Vec<Member>,
    /// MACs learned or moved since the last sync: (owner, VLAN, MAC).
    learned: Vec<(NodeId, Vid, MacAddr)>,
    /// `learned` overflowed: every node gets the whole table.
    resync: bool,
    /// Nodes given the full list by the latest sync: they get the whole table.
    fresh: Vec<NodeId>,
}

impl Mesh {
    /// For `n` ports.
    pub fn new(n: usize) -> Mesh {
        Mesh {
            members: vec![Member::default(); n],
            learned: Vec::new(),
            resync: false,
            fresh: Vec::new(),
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
        self.learned.retain(|(n, _, _)| *n != id);
    }

    /// Whether member `id` was announced at the last [`sync`](Self::sync).
    pub fn is_announced(&self, id: NodeId) -> bool {
        self.members
            .get(id.0 as usize)
            .is_some_and(|m| m.announced.is_some())
    }

    /// The switch learned `mac` in VLAN `vid` behind `node`, or saw it
    /// move there.
    pub fn note_learned(&mut self, node: NodeId, vid: Vid, mac: MacAddr) {
        if self.learned.len() < LEARNED_LIMIT {
            self.learned.push((node, vid, mac));
        } else {
            self.resync = true;
        }
    }

    /// After [`sync`](Self::sync): `MacOwners` for every connected node,
    /// about MACs behind the others: what was learned or moved since the
    /// last call, or the whole `table` (`(owner, MAC)`, asked for only when
    /// needed) to nodes with a new session.
    pub fn sync_owners(
        &mut self,
        ports: &[MemberView<'_>],
        table: impl FnOnce() -> Vec<(NodeId, Vid, MacAddr)>,
    ) -> Vec<(NodeId, Control)> {
        let n = ports.len().min(self.members.len());
        let learned = std::mem::take(&mut self.learned);
        let resync = std::mem::take(&mut self.resync);
        let fresh = std::mem::take(&mut self.fresh);
        let told = |j: usize| ports[j].is_local() && self.members[j].told_under.is_some();
        let whole: Vec<usize> = (0..n)
            .filter(|&j| told(j) && (resync || fresh.contains(&NodeId(j as u32))))
            .collect();
        let mut out = Vec::new();
        if !whole.is_empty() {
            let groups = by_owner(table());
            for &j in &whole {
                owned(&mut out, j, &groups, ports);
            }
        }
        if !learned.is_empty() {
            let groups = by_owner(learned);
            for j in (0..n).filter(|&j| told(j) && !whole.contains(&j)) {
                owned(&mut out, j, &groups, ports);
            }
        }
        out
    }

    /// Node `id`, whose endpoint the switch observes as `observed`,
    /// announced its local addresses. Only plausible ones are kept; the
    /// others hear of them at the next [`sync`](Self::sync).
    pub fn set_local(
        &mut self,
        now: Instant,
        id: NodeId,
        observed: SocketAddr,
        addrs: Vec<SocketAddr>,
    ) -> Announced {
        let Some(m) = self.members.get_mut(id.0 as usize) else {
            return Announced::RateLimited;
        };
        let taken = match m.window {
            Some((start, n)) if now.saturating_duration_since(start) < ANNOUNCE_WINDOW => n,
            _ => {
                m.window = Some((now, 0));
                0
            }
        };
        if taken >= ANNOUNCE_BURST {
            return Announced::RateLimited;
        }
        m.window = m.window.map(|(start, n)| (start, n + 1));
        let n = addrs.len();
        m.local = addrs
            .into_iter()
            .filter(|a| check_local_addr(observed, *a).is_ok())
            .collect();
        let refused = n - m.local.len();
        m.local.truncate(MAX_ENDPOINTS - 1);
        Announced::Taken { refused }
    }

    fn endpoints(&self, i: usize, observed: SocketAddr, remote: bool) -> Vec<SocketAddr> {
        let mut e = vec![observed];
        // A member homed on another switch announced its local addresses
        // there, not here: only the endpoint that switch published.
        if remote {
            return e;
        }
        for a in &self.members[i].local {
            // Checked again: the endpoint may have changed family since.
            if !e.contains(a) && check_local_addr(observed, *a).is_ok() {
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
            let now = ports[i]
                .endpoint
                .map(|ep| self.endpoints(i, ep, ports[i].remote));
            if self.members[i].announced == now {
                continue;
            }
            for (j, p) in ports.iter().enumerate().take(n) {
                if j == i || !p.is_local() || self.members[j].told_under.is_none() {
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
            if !ports[i].is_local() {
                self.members[i].told_under = None;
                continue;
            }
            if self.members[i].told_under == ports[i].session {
                continue;
            }
            self.members[i].told_under = ports[i].session;
            self.fresh.push(NodeId(i as u32));
            out.push((
                NodeId(i as u32),
                Control::Mesh {
                    vlan: ports[i].vlan.clone(),
                },
            ));
            // Counts the updates actually sent: members sharing no VLAN
            // with this node are not in its list.
            let mut count: u16 = 0;
            for (j, p) in ports.iter().enumerate().take(n) {
                let vlan = p.vlan.shared_with(ports[i].vlan);
                if let (true, Some(ep), Some(vlan)) = (j != i, p.endpoint, vlan) {
                    count = count.saturating_add(1);
                    out.push((
                        NodeId(i as u32),
                        Control::PeerUpdate {
                            key: p.key,
                            name: p.name.to_owned(),
                            endpoints: self.endpoints(j, ep, p.remote),
                            vlan,
                        },
                    ));
                }
            }
            out.push((NodeId(i as u32), Control::PeerListEnd { count }));
        }
        out
    }
}

/// `(owner, VLAN, MAC)` entries grouped by owner, each group sorted by MAC.
fn by_owner(entries: Vec<(NodeId, Vid, MacAddr)>) -> BTreeMap<u32, Vec<(MacAddr, Vid)>> {
    let mut g: BTreeMap<u32, Vec<(MacAddr, Vid)>> = BTreeMap::new();
    for (node, vid, mac) in entries {
        g.entry(node.0).or_default().push((mac, vid));
    }
    for macs in g.values_mut() {
        macs.sort_unstable();
        macs.dedup();
    }
    g
}

/// `MacOwners` to node `to` for every group but its own, with only the MACs
/// learned in VLANs `to` is a member of (a MAC in two such VLANs is one
/// entry): a node hears nothing about VLANs it is not in.
fn owned(
    out: &mut Vec<(NodeId, Control)>,
    to: usize,
    groups: &BTreeMap<u32, Vec<(MacAddr, Vid)>>,
    ports: &[MemberView<'_>],
) {
    let Some(viewer) = ports.get(to).map(|p| p.vlan) else {
        return;
    };
    for (&owner, entries) in groups {
        let Some(p) = ports.get(owner as usize).filter(|_| owner as usize != to) else {
            continue;
        };
        let mut macs: Vec<MacAddr> = entries
            .iter()
            .filter(|(_, vid)| viewer.egress(*vid) != EgressForm::NotMember)
            .map(|(mac, _)| *mac)
            .collect();
        macs.dedup();
        for chunk in macs.chunks(MAX_MACS) {
            out.push((
                NodeId(to as u32),
                Control::MacOwners {
                    key: p.key,
                    macs: chunk.to_vec(),
                },
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use overlay_proto::vlan::NO_VLAN;

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
            remote: false,
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
        m.set_local(
            t0,
            NodeId(0),
            "10.0.0.1:1".parse().unwrap(),
            vec!["192.168.1.1:1".parse().unwrap()],
        );
        let out = m.sync(&ports);
        let to: Vec<u32> = out.iter().map(|(n, _)| n.0).collect();
        assert_eq!(to, vec![2, 3], "{out:?}");
    }

    #[test]
    fn full_lists_count_only_members_sharing_a_vlan() {
        let t0 = Instant::now();
        let (a10, b20, c10) = (access(10), access(20), access(10));
        let mut m = Mesh::new(3);
        let ports = [
            view_in(&a10, 1, Some("10.0.0.1:1"), Some(t0)),
            view_in(&b20, 2, Some("10.0.0.2:1"), Some(t0)),
            view_in(&c10, 3, Some("10.0.0.3:1"), Some(t0)),
        ];
        let out = m.sync(&ports);
        let to = |n: u32| -> Vec<&Control> {
            out.iter()
                .filter(|(t, _)| t.0 == n)
                .map(|(_, c)| c)
                .collect()
        };
        // VLAN 20 alone: its list is empty and says so; VLAN 10 hears of one.
        assert!(
            matches!(
                to(1)[..],
                [Control::Mesh { .. }, Control::PeerListEnd { count: 0 }]
            ),
            "{out:?}"
        );
        assert!(
            matches!(
                to(0)[..],
                [
                    Control::Mesh { .. },
                    Control::PeerUpdate { .. },
                    Control::PeerListEnd { count: 1 }
                ]
            ),
            "{out:?}"
        );
    }

    #[test]
    fn owners_are_told_only_in_the_vlans_a_node_is_member_of() {
        let t0 = Instant::now();
        let a10 = access(10);
        let b20 = access(20);
        let trunk = PortVlan::Member {
            native: Some(10),
            tagged: vec![20],
        };
        let mut m = Mesh::new(3);
        let ports = [
            view_in(&a10, 1, Some("198.18.0.1:1"), Some(t0)),
            view_in(&b20, 2, Some("198.18.0.2:1"), Some(t0)),
            view_in(&trunk, 3, Some("198.18.0.3:1"), Some(t0)),
        ];
        m.sync(&ports);
        let mac = |n: u8| MacAddr([2, 0, 0, 0, 0, n]);
        // The trunk has mac 3 in VLAN 10 and mac 4 in VLAN 20, mac 5 in both.
        let table = vec![
            (NodeId(2), 10, mac(3)),
            (NodeId(2), 20, mac(4)),
            (NodeId(2), 10, mac(5)),
            (NodeId(2), 20, mac(5)),
            (NodeId(0), 10, mac(1)),
        ];
        let out = m.sync_owners(&ports, || table.clone());
        let told = |n: u32, about: u8| -> Vec<MacAddr> {
            out.iter()
                .filter_map(|(t, c)| match c {
                    Control::MacOwners { key, macs } if t.0 == n && key.0[0] == about => {
                        Some(macs.clone())
                    }
                    _ => None,
                })
                .flatten()
                .collect()
        };
        assert_eq!(
            told(0, 3),
            vec![mac(3), mac(5)],
            "VLAN 10 sees VLAN 10 only"
        );
        assert_eq!(
            told(1, 3),
            vec![mac(4), mac(5)],
            "VLAN 20 sees VLAN 20 only"
        );
        assert_eq!(
            told(1, 1),
            Vec::<MacAddr>::new(),
            "nothing of VLAN 10 to VLAN 20"
        );
        assert_eq!(told(2, 1), vec![mac(1)]);
        // Later learning is filtered the same way.
        m.note_learned(NodeId(0), 10, mac(6));
        let out = m.sync_owners(&ports, || panic!("no whole table needed"));
        let to: Vec<u32> = out.iter().map(|(n, _)| n.0).collect();
        assert_eq!(to, vec![2], "{out:?}");
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
        assert_eq!(
            out,
            vec![
                (NodeId(0), mesh.clone()),
                (NodeId(0), Control::PeerListEnd { count: 0 })
            ]
        );
        assert!(
            m.sync(&[view(1, a, Some(t0)), view(2, None, None)])
                .is_empty()
        );
        // The second joins: the first hears of it, the second gets the list.
        let b = Some("10.0.0.2:2");
        let out = m.sync(&[view(1, a, Some(t0)), view(2, b, Some(t0))]);
        assert_eq!(out.len(), 4, "{out:?}");
        assert!(matches!(out[0], (NodeId(0), Control::PeerUpdate { .. })));
        assert_eq!(out[1], (NodeId(1), mesh));
        assert!(matches!(out[2], (NodeId(1), Control::PeerUpdate { .. })));
        assert_eq!(out[3], (NodeId(1), Control::PeerListEnd { count: 1 }));
        // It moves and announces a local address: one update.
        m.set_local(
            t0,
            NodeId(1),
            "10.0.0.2:2".parse().unwrap(),
            vec!["192.168.1.2:2".parse().unwrap()],
        );
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

    #[test]
    fn owners_go_to_the_others_learned_at_the_sweep_and_whole_on_a_new_session() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        let mut m = Mesh::new(3);
        let (a, b, c) = (
            Some("198.18.0.1:1"),
            Some("198.18.0.2:2"),
            Some("198.18.0.3:3"),
        );
        let ports = [
            view(1, a, Some(t0)),
            view(2, b, Some(t0)),
            view(3, c, Some(t0)),
        ];
        m.sync(&ports);
        let mac = |n: u8| MacAddr([2, 0, 0, 0, 0, n]);
        // New sessions everywhere: each node gets the whole table minus its own.
        let table = vec![
            (NodeId(0), NO_VLAN, mac(1)),
            (NodeId(1), NO_VLAN, mac(2)),
            (NodeId(1), NO_VLAN, mac(2)),
        ];
        let out = m.sync_owners(&ports, || table.clone());
        let to = |out: &[(NodeId, Control)], n: u32| -> Vec<Control> {
            out.iter()
                .filter(|(t, _)| t.0 == n)
                .map(|(_, c)| c.clone())
                .collect()
        };
        assert_eq!(
            to(&out, 2),
            vec![
                Control::MacOwners {
                    key: PublicKey([1; 32]),
                    macs: vec![mac(1)]
                },
                Control::MacOwners {
                    key: PublicKey([2; 32]),
                    macs: vec![mac(2)]
                },
            ]
        );
        assert_eq!(to(&out, 0).len(), 1, "not its own MACs");
        // Later: only what was learned, to the others, and the table is not read.
        m.sync(&ports);
        m.note_learned(NodeId(2), NO_VLAN, mac(3));
        let out = m.sync_owners(&ports, || panic!("no whole table needed"));
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(out.iter().all(|(t, _)| t.0 != 2));
        // A node's new session: the whole table to it alone.
        let ports = [
            view(1, a, Some(t1)),
            view(2, b, Some(t0)),
            view(3, c, Some(t0)),
        ];
        m.sync(&ports);
        let out = m.sync_owners(&ports, || table.clone());
        assert!(out.iter().all(|(t, _)| t.0 == 0), "{out:?}");
        assert!(m.sync_owners(&ports, || panic!()).is_empty());
    }

    #[test]
    fn members_homed_elsewhere_are_announced_but_never_told() {
        let t0 = Instant::now();
        let mut m = Mesh::new(2);
        let a = Some("198.18.0.1:1");
        let remote = |ep: Option<&str>| MemberView {
            remote: true,
            ..view(2, ep, None)
        };
        // h2 is homed on another switch: h1 hears of it at the endpoint
        // that switch published (no local addresses), h2 gets nothing.
        m.set_local(
            t0,
            NodeId(1),
            "198.18.0.2:2".parse().unwrap(),
            vec!["198.18.1.2:2".parse().unwrap()],
        );
        let out = m.sync(&[view(1, a, Some(t0)), remote(Some("198.18.0.2:2"))]);
        assert!(out.iter().all(|(to, _)| to.0 == 0), "{out:?}");
        let updates: Vec<&Vec<SocketAddr>> = (out.iter())
            .filter_map(|(_, c)| match c {
                Control::PeerUpdate { endpoints, .. } => Some(endpoints),
                _ => None,
            })
            .collect();
        assert_eq!(updates, vec![&vec!["198.18.0.2:2".parse().unwrap()]]);
        assert!(m.is_announced(NodeId(1)));
        // Its MACs are told to h1, never anything to h2.
        let views = [view(1, a, Some(t0)), remote(Some("198.18.0.2:2"))];
        assert!(m.sync_owners(&views, Vec::new).is_empty());
        let mac = MacAddr([2, 0, 0, 0, 0, 2]);
        m.note_learned(NodeId(1), NO_VLAN, mac);
        let out = m.sync_owners(&views, || panic!("no whole table needed"));
        assert_eq!(
            out,
            vec![(
                NodeId(0),
                Control::MacOwners {
                    key: PublicKey([2; 32]),
                    macs: vec![mac]
                }
            )]
        );
        // It is homed here now: it gets mesh mode and the list.
        let out = m.sync(&[
            view(1, a, Some(t0)),
            view(2, Some("198.18.0.2:2"), Some(t0)),
        ]);
        assert!(
            out.contains(&(NodeId(1), Control::PeerListEnd { count: 1 })),
            "{out:?}"
        );
        // Gone from the store: h1 hears it left.
        let out = m.sync(&[view(1, a, Some(t0)), remote(None)]);
        assert_eq!(
            out,
            vec![(
                NodeId(0),
                Control::PeerGone {
                    key: PublicKey([2; 32])
                }
            )]
        );
        assert!(!m.is_announced(NodeId(1)));
    }

    #[test]
    fn implausible_addresses_are_refused_and_announcements_rate_limited() {
        let t0 = Instant::now();
        let mut m = Mesh::new(2);
        let (a, b) = (Some("198.18.0.1:1"), Some("198.18.0.2:2"));
        let ports = [view(1, a, Some(t0)), view(2, b, Some(t0))];
        m.sync(&ports);
        let observed: SocketAddr = "198.18.0.2:2".parse().unwrap();
        let offered: Vec<SocketAddr> = [
            "198.18.1.2:2",
            "127.0.0.1:2",
            "224.0.0.1:2",
            "255.255.255.255:2",
            "169.254.0.1:2",
            "0.0.0.0:2",
            "[fd00::2]:2",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        assert_eq!(
            m.set_local(t0, NodeId(1), observed, offered.clone()),
            Announced::Taken { refused: 6 }
        );
        let out = m.sync(&ports);
        let [(NodeId(0), Control::PeerUpdate { endpoints, .. })] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!(
            endpoints,
            &vec![observed, "198.18.1.2:2".parse().unwrap()],
            "the observed endpoint and the one plausible local address"
        );
        // A burst per window, then refused until the window passes; the
        // others hear of the accepted ones only at the sweep, once.
        for k in 1..ANNOUNCE_BURST {
            let addr = format!("198.18.1.{}:2", 10 + k).parse().unwrap();
            assert_eq!(
                m.set_local(t0, NodeId(1), observed, vec![addr]),
                Announced::Taken { refused: 0 }
            );
        }
        for _ in 0..100 {
            let addr = "198.18.9.9:2".parse().unwrap();
            assert_eq!(
                m.set_local(t0, NodeId(1), observed, vec![addr]),
                Announced::RateLimited
            );
        }
        assert_eq!(m.sync(&ports).len(), 1, "one update per sweep");
        let later = t0 + ANNOUNCE_WINDOW;
        assert_eq!(
            m.set_local(later, NodeId(1), observed, vec![]),
            Announced::Taken { refused: 0 }
        );
    }
}
