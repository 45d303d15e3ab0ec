//! Mesh mode across the switches of a cluster, in memory
//! ([`tapmesh_sim::build::mesh_cluster`]), with a stand-in for etcd that
//! hands each switch's published changes to the others: members homed on
//! another switch are announced to the nodes here (direct sessions, known
//! unicast past both switches), a node removed from one switch's config
//! loses its direct access to that switch's nodes only, and a member whose
//! switch dies keeps its direct paths when it is homed elsewhere.
use std::time::Duration;

use tapmesh_node::counters::DropReason as NodeDrop;
use tapmesh_node::peers::Path;
use tapmesh_sim::Net;
use tapmesh_sim::build::{ClusterSetup, mesh_cluster, nth_switch_addr};
use tapmesh_sim::frames::{carries_frame, frame, mac};
use tapmesh_switch::cluster::{
    ClusterUpdate, LocalChange, Name, Snapshot, StoreState, SwitchFacts,
};
use tapmesh_switch::fabric::Switch;

/// Switch `k`, if it is up.
fn live(net: &mut Net, k: usize) -> Option<&mut Switch> {
    if k == 0 {
        net.switch.as_mut()
    } else {
        net.others[k - 1].1.as_mut()
    }
}

/// What the store would tell the other switches of `change` by `switch`.
fn update(switch: &Name, change: LocalChange) -> ClusterUpdate {
    let switch = switch.clone();
    match change {
        LocalChange::MacOwned(mac, node) => ClusterUpdate::MacOwned {
            switch,
            mac,
            node: Some(node),
        },
        LocalChange::MacReleased(mac) => ClusterUpdate::MacReleased { switch, mac },
        LocalChange::GroupJoined(group) => ClusterUpdate::GroupJoined { switch, group },
        LocalChange::GroupLeft(group) => ClusterUpdate::GroupLeft { switch, group },
        LocalChange::NodeHomed(node, endpoint) => ClusterUpdate::NodeHomed {
            switch,
            node,
            endpoint,
        },
        LocalChange::NodeGone(node) => ClusterUpdate::NodeGone { switch, node },
    }
}

/// The cluster and a stand-in store that relays every switch's published
/// changes to the others.
struct Cluster {
    net: Net,
    setup: ClusterSetup,
    names: Vec<Name>,
}

impl Cluster {
    /// Node `h{i+1}` homed on switch `homes[i]`; every switch connected to
    /// the store (an empty snapshot with every switch up).
    fn new(homes: &[usize]) -> Cluster {
        let (mut net, setup): (Net, ClusterSetup) = mesh_cluster(homes);
        net.observe = Some(carries_frame);
        let names: Vec<Name> = setup.clusters.iter().map(|c| c.name.clone()).collect();
        let now = net.now;
        for k in 0..names.len() {
            let s = live(&mut net, k).unwrap();
            s.handle_cluster_update(
                now,
                &ClusterUpdate::Store(StoreState {
                    connected: true,
                    revision: 1,
                }),
            );
            s.handle_cluster_update(
                now,
                &ClusterUpdate::Resync(Snapshot {
                    revision: 1,
                    switches: (names.iter())
                        .map(|n| (n.clone(), SwitchFacts::default()))
                        .collect(),
                }),
            );
        }
        Cluster { net, setup, names }
    }

    /// Hands every live switch's changes to the other live switches.
    fn relay(&mut self) {
        let now = self.net.now;
        for k in 0..self.names.len() {
            let mut changes = Vec::new();
            if let Some(s) = live(&mut self.net, k) {
                while let Some(c) = s.poll_local_change() {
                    changes.push(update(&self.names[k], c));
                }
            }
            self.tell_others(k, &changes, now);
        }
    }

    fn tell_others(&mut self, k: usize, updates: &[ClusterUpdate], now: std::time::Instant) {
        for j in (0..self.names.len()).filter(|&j| j != k) {
            if let Some(s) = live(&mut self.net, j) {
                for u in updates {
                    s.handle_cluster_update(now, u);
                }
            }
        }
    }

    /// `d` of simulated time, the store relaying every 100 ms.
    fn run(&mut self, d: Duration) {
        let end = self.net.now + d;
        while self.net.now < end {
            self.net.advance(Duration::from_millis(100));
            self.relay();
        }
    }

    fn path(&self, i: usize, peer: usize) -> Option<Path> {
        self.net.nodes[i]
            .peers()
            .path_of(self.net.now, &format!("h{}", peer + 1))
    }

    /// Where node `i` sends a frame to `dst`: the peer's index if direct.
    fn route(&self, i: usize, dst: [u8; 6]) -> Option<usize> {
        let f = frame(dst, mac(i as u8 + 1), 0);
        self.net.nodes[i].peers().route(self.net.now, &f, false)
    }

    /// Frame datagrams the switches received from the nodes.
    fn via_switches(&self) -> u64 {
        let n = self.names.len();
        (self.net.addrs.iter())
            .flat_map(|a| (0..n).map(move |k| (*a, nth_switch_addr(k))))
            .map(|(a, s)| self.net.observed(a, s))
            .sum()
    }

    /// Each host announces its MAC with a broadcast, as ARP would.
    fn announce_macs(&mut self) {
        for i in 0..self.net.nodes.len() {
            let f = frame([0xff; 6], mac(i as u8 + 1), 1000 + i as u32);
            self.net.send(i, &f);
        }
        self.run(Duration::from_secs(2));
    }
}

#[test]
fn nodes_homed_on_different_switches_go_direct_and_unicast_passes_no_switch() {
    // h1 on s0; h2 and h3 on s1.
    let mut c = Cluster::new(&[0, 1, 1]);
    c.run(Duration::from_secs(3));
    for (a, b) in [(0, 1), (0, 2), (1, 0), (2, 0), (1, 2)] {
        assert_eq!(c.path(a, b), Some(Path::Direct), "h{} -> h{}", a + 1, b + 1);
    }
    c.announce_macs();
    // The switches told each node whose MACs are whose (h2's MAC is behind
    // h2, not behind s1): h1 and h2 route each other's MAC directly.
    assert!(c.route(0, mac(2)).is_some(), "h1 routes h2's MAC directly");
    assert!(c.route(1, mac(1)).is_some(), "h2 routes h1's MAC directly");
    for i in 0..3 {
        let m = c.net.nodes[i].peers().mac_counters();
        assert_eq!(m.refused_owner, 0, "h{}: {m:?}", i + 1);
    }
    let before = c.via_switches();
    for t in 0..20 {
        c.net.send(0, &frame(mac(2), mac(1), t));
        c.net.send(1, &frame(mac(1), mac(2), 100 + t));
    }
    for t in 0..20 {
        assert_eq!(c.net.received(1, t), 1);
        assert_eq!(c.net.received(0, 100 + t), 1);
    }
    assert_eq!(c.via_switches(), before, "no unicast frame passed a switch");
    // Past a rekey each node gets the switch's whole MAC table again: h2's
    // MAC is still told as h2's (not as the other switch's, which would
    // take it from h2), so h1 keeps routing it directly.
    c.run(Duration::from_secs(150));
    assert!(c.route(0, mac(2)).is_some(), "h1 routes h2's MAC directly");
    assert!(c.route(1, mac(1)).is_some(), "h2 routes h1's MAC directly");
}

#[test]
fn a_node_removed_from_one_switch_loses_direct_access_to_that_switchs_nodes_only() {
    // h1 on s0; h2 and h3 on s1. s0's config drops h3.
    let mut c = Cluster::new(&[0, 1, 1]);
    c.run(Duration::from_secs(3));
    c.announce_macs();
    assert_eq!(c.path(0, 2), Some(Path::Direct));
    let mut cfg = c.setup.switches[0].clone();
    cfg.nodes.retain(|n| n.name != "h3");
    let now = c.net.now;
    let changes = c.net.switch_mut().apply_config(now, cfg).unwrap();
    assert_eq!(changes.removed, vec!["h3".to_string()]);
    let failed = |c: &Cluster| c.net.nodes[0].drops().get(NodeDrop::HandshakeFailed);
    let before = failed(&c);
    c.run(Duration::from_secs(1));
    assert_eq!(c.path(0, 2), None, "h1 dropped h3 at once");
    // h3 still tries h1 (s1 still vouches h1 to it): refused, and nothing
    // it sends reaches h1 directly.
    c.run(Duration::from_secs(10));
    assert_eq!(c.path(0, 2), None, "h3 did not get back in");
    assert!(failed(&c) > before, "h3's initiations are refused");
    assert_ne!(c.path(2, 0), Some(Path::Direct));
    // h3 keeps its direct path to h2 (its own switch still lists it), and
    // h1 and h2 theirs.
    assert_eq!(c.path(2, 1), Some(Path::Direct));
    assert_eq!(c.path(1, 2), Some(Path::Direct));
    assert_eq!(c.path(0, 1), Some(Path::Direct));
    assert_eq!(c.path(1, 0), Some(Path::Direct));
}

#[test]
fn a_member_keeps_its_direct_paths_when_its_switch_dies_and_it_is_homed_elsewhere() {
    // h1 on s0, h2 on s1 (then s2, then s0), h3 on s2. s1 dies; the store
    // notices when its lease ends (5 s later).
    let mut c = Cluster::new(&[0, 1, 2]);
    c.run(Duration::from_secs(3));
    c.announce_macs();
    assert_eq!(c.path(0, 1), Some(Path::Direct));
    let changes = |c: &Cluster| {
        let peers = c.net.nodes[0].peers().status(c.net.now);
        peers.iter().find(|p| p.name == "h2").unwrap().path_changes
    };
    let changes0 = changes(&c);
    c.net.others[0].1 = None;
    for _ in 0..50 {
        c.run(Duration::from_millis(100));
        assert_eq!(c.path(0, 1), Some(Path::Direct), "h1 kept h2 throughout");
        assert_eq!(c.path(1, 0), Some(Path::Direct), "h2 kept h1 throughout");
    }
    let now = c.net.now;
    c.tell_others(1, &[ClusterUpdate::SwitchDown(c.names[1].clone())], now);
    c.run(Duration::from_secs(5));
    assert_eq!(c.net.nodes[1].home().name, "s2", "h2 homed on s2 now");
    assert_eq!(c.path(0, 1), Some(Path::Direct));
    assert_eq!(c.path(1, 0), Some(Path::Direct));
    assert_eq!(changes(&c), changes0, "the path never went down");
    let before = c.via_switches();
    c.net.send(0, &frame(mac(2), mac(1), 7));
    assert_eq!(c.net.received(1, 7), 1);
    assert_eq!(c.via_switches(), before, "still direct");
}

#[test]
fn a_reload_that_adds_a_node_back_restores_its_direct_paths_and_announces_no_trunk() {
    // h1 on s0; h2 and h3 on s1. s0 reloads without h3, then with it again:
    // h3's direct paths to s0's nodes come back, and the reload that adds a
    // node announces no trunk port (to s1) as a member.
    let mut c = Cluster::new(&[0, 1, 1]);
    c.run(Duration::from_secs(3));
    c.announce_macs();
    let full = c.setup.switches[0].clone();
    let mut without = full.clone();
    without.nodes.retain(|n| n.name != "h3");
    let now = c.net.now;
    let changes = c.net.switch_mut().apply_config(now, without).unwrap();
    assert_eq!(changes.removed, vec!["h3".to_string()]);
    c.run(Duration::from_secs(1));
    let now = c.net.now;
    let changes = c.net.switch_mut().apply_config(now, full).unwrap();
    assert_eq!(changes.added, vec!["h3".to_string()]);
    c.run(Duration::from_secs(5));
    for i in 0..3 {
        let peers = c.net.nodes[i].peers().status(c.net.now);
        let names: Vec<&str> = peers.iter().map(|p| p.name.as_str()).collect();
        assert!(
            names.iter().all(|n| n.starts_with('h')),
            "h{} was told only of nodes, got {names:?}",
            i + 1
        );
    }
    // And the members are back: h1 goes direct to h3 again.
    assert_eq!(c.path(0, 2), Some(Path::Direct));
    assert_eq!(c.path(2, 0), Some(Path::Direct));
}
