//! Mesh mode in the deterministic simulator ([`tapmesh_sim::Net`]): one
//! switch core in mesh mode and several node cores, virtual time, and an
//! underlay that can drop datagrams between chosen node pairs (a firewall
//! between two hosts) or lose the switch entirely. Checks path selection,
//! relay fallback, recovery, the simultaneous open, the loop guard,
//! surviving a dead switch, revocation (the switch's list is authoritative),
//! the vouch lifetime, the bounds on what a peer may claim, and VLANs on
//! direct and relayed paths.
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use overlay_proto::handshake::Timestamp;
use overlay_proto::keys::StaticSecret;
use overlay_proto::vlan::PortVlan;
use overlay_proto::wire::{DATA_OVERHEAD, HS_RESP_LEN};
use tapmesh_node::engine::Node;
use tapmesh_node::peers::{MAC_LIMIT_PER_PEER, Path};
use tapmesh_sim::frames::{frame, mac, tagged};
use tapmesh_switch::fabric::{NodeSpec, Switch, SwitchConfig};

const SWITCH: &str = "198.18.0.3:7777";

/// The simulated network, with what it takes to restart or reload the
/// switch.
struct Net {
    net: tapmesh_sim::Net,
    switch_key: StaticSecret,
    keys: Vec<StaticSecret>,
    /// Each node's port.
    vlans: Vec<PortVlan>,
}

impl Deref for Net {
    type Target = tapmesh_sim::Net;
    fn deref(&self) -> &tapmesh_sim::Net {
        &self.net
    }
}

impl DerefMut for Net {
    fn deref_mut(&mut self) -> &mut tapmesh_sim::Net {
        &mut self.net
    }
}

/// A mesh switch whose config holds `members`: node index, key, port.
fn mesh_switch(
    switch_key: &StaticSecret,
    members: &[(usize, &StaticSecret, PortVlan)],
    now: Instant,
) -> Switch {
    let mut switch = Switch::new(mesh_config(switch_key, members), now, 1);
    switch.enable_mesh();
    switch
}

/// The config of a mesh switch admitting `members` (`h{i+1}` on its port).
fn mesh_config(
    switch_key: &StaticSecret,
    members: &[(usize, &StaticSecret, PortVlan)],
) -> SwitchConfig {
    SwitchConfig {
        mac_limit_per_node: 16,
        mac_table_limit: 1000,
        ..SwitchConfig::new(
            switch_key.clone(),
            members
                .iter()
                .map(|(i, k, vlan)| NodeSpec {
                    vlan: vlan.clone(),
                    ..NodeSpec::new(format!("h{}", i + 1), k.public_key())
                })
                .collect(),
        )
    }
}

/// A frame (not a keepalive or control message) a node sends the switch
/// to relay.
fn is_frame(d: &[u8]) -> bool {
    d.len() >= DATA_OVERHEAD + 60 && d[0] & 0x0f == 1
}

/// An on-path attacker's forgery of a handshake response: the genuine
/// one's header and indices, garbage after.
fn forged_response(d: &[u8]) -> Option<Vec<u8>> {
    if d.len() != HS_RESP_LEN || d[0] & 0x0f != 3 {
        return None;
    }
    let mut forged = d.to_vec();
    for (k, b) in forged[16..].iter_mut().enumerate() {
        *b = (k as u8).wrapping_mul(37) ^ 0xa5;
    }
    Some(forged)
}

impl Net {
    fn new(n: usize) -> Net {
        Net::with_vouch_lifetime(n, tapmesh_node::peers::DEFAULT_VOUCH_LIFETIME)
    }

    fn with_vouch_lifetime(n: usize, vouch_lifetime: Duration) -> Net {
        let mut net = Net::quiet(vec![PortVlan::Transparent; n], vouch_lifetime);
        net.advance(Duration::from_secs(2));
        net
    }

    /// Node `i` on port `vlans[i]`, connected.
    fn with_vlans(vlans: Vec<PortVlan>) -> Net {
        let mut net = Net::quiet(vlans, tapmesh_node::peers::DEFAULT_VOUCH_LIFETIME);
        net.advance(Duration::from_secs(2));
        net
    }

    /// The network before any time has passed: nodes not yet connected.
    fn new_quiet(n: usize) -> Net {
        Net::quiet(
            vec![PortVlan::Transparent; n],
            tapmesh_node::peers::DEFAULT_VOUCH_LIFETIME,
        )
    }

    /// Node `i` on port `vlans[i]`, vouches lasting `vouch_lifetime`,
    /// before any time has passed.
    fn quiet(vlans: Vec<PortVlan>, vouch_lifetime: Duration) -> Net {
        let n = vlans.len();
        let t0 = Instant::now();
        let mut rng = rand::rng();
        let switch_key = StaticSecret::generate(&mut rng);
        let keys: Vec<StaticSecret> = (0..n).map(|_| StaticSecret::generate(&mut rng)).collect();
        let members: Vec<(usize, &StaticSecret, PortVlan)> = keys
            .iter()
            .zip(&vlans)
            .enumerate()
            .map(|(i, (k, v))| (i, k, v.clone()))
            .collect();
        let switch_addr: SocketAddr = SWITCH.parse().unwrap();
        let switch = mesh_switch(&switch_key, &members, t0);
        let mut net = tapmesh_sim::Net::new(t0, switch_addr, Some(switch));
        net.observe = Some(is_frame);
        for (i, k) in keys.iter().enumerate() {
            let addr: SocketAddr = format!("198.18.0.{}:4000", 10 + i).parse().unwrap();
            let cfg = tapmesh_node::engine::NodeConfig {
                vouch_lifetime,
                ..tapmesh_sim::node_config(k.clone(), switch_key.public_key(), switch_addr)
            };
            let mut node = Node::new(cfg, t0, Duration::from_secs(1_700_000_000), i as u64);
            node.set_local_addrs(vec![addr]);
            net.add_node(node, addr);
        }
        Net {
            net,
            switch_key,
            keys,
            vlans,
        }
    }

    /// Like [`Net::new`], with a forgery ahead of every handshake response
    /// from the start.
    fn with_forged_responses(n: usize) -> Net {
        let mut net = Net::new_quiet(n);
        net.faults.forge = Some(forged_response);
        net.advance(Duration::from_secs(2));
        net
    }

    /// Restart the switch with only `members` in its config; it sends the
    /// restart notice to each of them (as its state file makes it do).
    fn restart_switch(&mut self, members: &[usize]) {
        let keys = self.keys.clone();
        let m: Vec<(usize, &StaticSecret, PortVlan)> = members
            .iter()
            .map(|&i| (i, &keys[i], self.vlans[i].clone()))
            .collect();
        let mut sw = mesh_switch(&self.switch_key, &m, self.now);
        let names: Vec<String> = members.iter().map(|i| format!("h{}", i + 1)).collect();
        let eps = members.iter().map(|&i| self.addrs[i]);
        sw.announce_restart(
            Timestamp::from_unix(1_800_000_000, 0),
            names.iter().map(String::as_str).zip(eps),
        );
        self.switch = Some(sw);
        self.deliver();
    }

    /// Data frames the switch received from each node (relayed traffic).
    fn via_switch(&self) -> Vec<u64> {
        self.addrs
            .iter()
            .map(|a| self.observed(*a, self.switch_addr))
            .collect()
    }

    fn peer_names(&self, i: usize) -> Vec<String> {
        self.nodes[i]
            .peers()
            .status(self.now)
            .into_iter()
            .map(|p| p.name)
            .collect()
    }

    fn path(&self, i: usize, peer: usize) -> Option<Path> {
        self.nodes[i]
            .peers()
            .path_of(self.now, &format!("h{}", peer + 1))
    }

    /// Where node `i` sends a frame from its host to `dst`: the peer's
    /// index if direct, `None` if via the switch.
    fn route(&self, i: usize, dst: [u8; 6]) -> Option<usize> {
        let f = frame(dst, mac(i as u8 + 1), 0);
        self.nodes[i].peers().route(self.now, &f, false)
    }

    /// Each host announces its MAC with a broadcast, as ARP would.
    fn announce_macs(&mut self) {
        for i in 0..self.nodes.len() {
            self.send(i, &frame([0xff; 6], mac(i as u8 + 1), 1000 + i as u32));
        }
        self.advance(Duration::from_millis(100));
    }
}

#[test]
fn all_pairs_go_direct_and_unicast_bypasses_the_switch() {
    let mut n = Net::new(4);
    for i in 0..4 {
        assert!(n.nodes[i].peers().is_enabled(), "h{} in mesh mode", i + 1);
        for j in 0..4 {
            if i != j {
                assert_eq!(n.path(i, j), Some(Path::Direct), "h{} -> h{}", i + 1, j + 1);
            }
        }
    }
    n.announce_macs();
    let before = n.via_switch();
    let relayed_before = n.nodes[1].counters().relayed_rx_frames;
    for t in 0..50 {
        let to = n.send(0, &frame(mac(2), mac(1), t));
        assert_eq!(to, Some(n.addrs[1]), "straight to h2");
        n.send(1, &frame(mac(1), mac(2), 100 + t));
    }
    for t in 0..50 {
        assert_eq!(n.received(1, t), 1);
        assert_eq!(n.received(0, 100 + t), 1);
    }
    assert_eq!(n.via_switch(), before, "no unicast frame passed the switch");
    assert_eq!(n.nodes[1].counters().relayed_rx_frames, relayed_before);
}

#[test]
fn broadcast_goes_via_the_switch_once_and_never_back() {
    let mut n = Net::new(3);
    n.announce_macs();
    let before = n.via_switch()[0];
    n.send(0, &frame([0xff; 6], mac(1), 7));
    assert_eq!(n.via_switch()[0], before + 1, "sent once, to the switch");
    assert_eq!(n.received(0, 7), 0, "never back to its origin");
    assert_eq!(
        (n.received(1, 7), n.received(2, 7)),
        (1, 1),
        "exactly once each"
    );
    // Nodes never re-send what they received: the only datagrams after the
    // flood are timers', not copies of the frame.
    n.advance(Duration::from_secs(1));
    assert_eq!((n.received(1, 7), n.received(2, 7)), (1, 1));
    // What the switch carries in mesh mode is marked as relayed.
    assert!(n.nodes[1].counters().relayed_rx_frames >= 1);
}

#[test]
fn blocked_direct_path_falls_back_to_the_relay_and_recovers() {
    let mut n = Net::new(3);
    n.announce_macs();
    n.set_blocked(0, 1, true);
    // A ping every 100 ms from h1 to h2 and back.
    let mut lost_at = None;
    let mut gap = Duration::ZERO;
    let mut t = 0;
    let start = n.now;
    while n.now < start + Duration::from_secs(10) {
        n.send(0, &frame(mac(2), mac(1), t));
        n.advance(Duration::from_millis(100));
        if n.received(1, t) == 0 {
            lost_at.get_or_insert(n.now);
        } else if let Some(l) = lost_at.take() {
            gap = gap.max(n.now - l);
        }
        t += 1;
    }
    assert!(lost_at.is_none(), "frames flow again");
    assert!(gap < Duration::from_secs(3), "gap {gap:?}");
    assert_eq!(n.path(0, 1), Some(Path::Relayed));
    assert_eq!(n.path(1, 0), Some(Path::Relayed));
    assert_eq!(n.path(0, 2), Some(Path::Direct), "other paths unaffected");
    assert!(
        n.nodes[1].counters().relayed_rx_frames >= 50,
        "relayed frames carry the RELAYED flag"
    );
    // Unblock: direct again within 30 s (the retry cap is 5 s), no loss.
    n.set_blocked(0, 1, false);
    let start = n.now;
    let mut back = None;
    while n.now < start + Duration::from_secs(30) {
        n.send(0, &frame(mac(2), mac(1), t));
        n.advance(Duration::from_millis(100));
        assert_eq!(n.received(1, t), 1, "no loss while switching back");
        t += 1;
        if back.is_none() && n.path(0, 1) == Some(Path::Direct) {
            back = Some(n.now - start);
        }
    }
    let back = back.expect("direct again");
    assert!(back <= Duration::from_secs(10), "back after {back:?}");
    assert_eq!(n.path(1, 0), Some(Path::Direct));
}

#[test]
fn direct_paths_survive_a_dead_switch_across_rekeys() {
    let mut n = Net::new(3);
    n.announce_macs();
    n.switch = None;
    let mut t = 0;
    let start = n.now;
    // 5 minutes: past two rekeys (120 s) and the reject time (180 s).
    while n.now < start + Duration::from_secs(300) {
        n.send(0, &frame(mac(2), mac(1), t));
        n.send(1, &frame(mac(1), mac(2), 1_000_000 + t));
        n.advance(Duration::from_millis(500));
        assert_eq!(
            n.received(1, t),
            1,
            "h1 -> h2 frame {t} at {:?}",
            n.now - start
        );
        assert_eq!(n.received(0, 1_000_000 + t), 1);
        t += 1;
    }
    assert_eq!(n.path(0, 1), Some(Path::Direct));
}

#[test]
fn simultaneous_open_ends_with_one_working_session() {
    // Both sides learn of each other in the same sync and initiate at once
    // (that is what Net::new does); afterwards exactly one session carries
    // traffic both ways and no handshake keeps repeating.
    let mut n = Net::new(2);
    n.announce_macs();
    n.advance(Duration::from_secs(30));
    let hs = |n: &Net| {
        n.nodes
            .iter()
            .map(|x| x.peers().status(n.now)[0].last_handshake_secs_ago.unwrap())
            .collect::<Vec<_>>()
    };
    let h = hs(&n);
    assert!(h.iter().all(|s| *s >= 25.0), "no handshake churn: {h:?}");
    n.send(0, &frame(mac(2), mac(1), 1));
    n.send(1, &frame(mac(1), mac(2), 2));
    assert_eq!((n.received(1, 1), n.received(0, 2)), (1, 1));
}

#[test]
fn a_member_removed_from_the_config_loses_its_peers_when_the_switch_restarts() {
    let mut n = Net::new(3);
    n.announce_macs();
    assert_eq!(n.path(0, 2), Some(Path::Direct));
    // The switch comes back without h3 in its config.
    n.restart_switch(&[0, 1]);
    let back = n.now;
    let mut t = 0;
    let mut cut_after = None;
    while n.now < back + Duration::from_secs(10) {
        // h3 keeps talking to h1 and h2 as if nothing happened.
        n.send(2, &frame(mac(1), mac(3), 5000 + t));
        n.send(0, &frame(mac(2), mac(1), t));
        n.advance(Duration::from_millis(100));
        assert_eq!(n.received(1, t), 1, "h1 -> h2 keeps working ({t})");
        if n.received(0, 5000 + t) == 0 {
            cut_after.get_or_insert(n.now - back);
        } else {
            cut_after = None;
        }
        t += 1;
    }
    let cut_after = cut_after.expect("h3's frames stop reaching h1");
    assert!(
        cut_after <= Duration::from_secs(5),
        "cut after {cut_after:?}"
    );
    for i in [0, 1] {
        assert!(
            !n.peer_names(i).contains(&"h3".to_string()),
            "h{} dropped h3: {:?}",
            i + 1,
            n.peer_names(i)
        );
        assert_eq!(n.nodes[i].peers().mac_counters().peers_unlisted, 1);
    }
    // The survivors' direct path never broke (the list's grace covers the
    // reconnect), and h3 cannot handshake its way back in.
    assert_eq!(n.path(0, 1), Some(Path::Direct));
    assert_eq!(n.nodes[0].peers().status(n.now)[0].path_changes, 1);
    let before = n.nodes[0]
        .drops()
        .get(tapmesh_node::counters::DropReason::HandshakeFailed);
    n.advance(Duration::from_secs(10));
    assert!(
        n.nodes[0]
            .drops()
            .get(tapmesh_node::counters::DropReason::HandshakeFailed)
            > before,
        "h3's initiations are refused"
    );
    assert!(!n.peer_names(0).contains(&"h3".to_string()));
}

#[test]
fn vouches_run_out_while_the_switch_is_unreachable_and_are_renewed_while_it_is_not() {
    let lifetime = Duration::from_secs(60);
    let mut n = Net::with_vouch_lifetime(3, lifetime);
    n.announce_macs();
    // Reachable switch: vouches renew, far past the lifetime.
    n.advance(lifetime * 3);
    assert_eq!(n.peer_names(0).len(), 2);
    assert!(n.nodes[0].peers().status(n.now)[0].vouch_secs_left > 45.0);
    // Unreachable switch: peers keep working for the lifetime, then go.
    n.switch = None;
    let gone = n.now;
    let mut t = 0;
    while n.now < gone + lifetime - Duration::from_secs(15) {
        n.send(0, &frame(mac(2), mac(1), t));
        n.advance(Duration::from_secs(1));
        assert_eq!(n.received(1, t), 1, "direct while vouched");
        t += 1;
    }
    n.advance(Duration::from_secs(20));
    assert!(n.peer_names(0).is_empty(), "{:?}", n.peer_names(0));
    assert_eq!(n.nodes[0].peers().mac_counters().peers_expired, 2);
    let to = n.send(0, &frame(mac(2), mac(1), 99_999));
    assert_eq!(to, None, "no direct path, and no switch to relay");
    assert_eq!(n.received(1, 99_999), 0);
}

#[test]
fn a_peer_claims_a_bounded_number_of_macs_and_never_ours() {
    let mut n = Net::new(3);
    n.announce_macs();
    // A MAC the switch never saw moves between h3 and h2: moves, counted,
    // reported at most once per interval.
    n.send(2, &frame(mac(1), mac(50), 43));
    n.send(1, &frame(mac(1), mac(50), 44));
    n.send(2, &frame(mac(1), mac(50), 45));
    n.send(1, &frame(mac(1), mac(50), 46));
    let c = n.nodes[0].peers().mac_counters().moves;
    assert!(c >= 3, "moves {c}: {:?}", n.nodes[0].peers().mac_counters());
    let now = n.now;
    let r = n.nodes[0].poll_mac_moves(now).expect("a report");
    assert!(r.moves >= 3);
    n.send(2, &frame(mac(1), mac(50), 47));
    assert_eq!(n.nodes[0].poll_mac_moves(now), None, "rate-limited");
    let later = now + Duration::from_secs(10);
    assert!(n.nodes[0].poll_mac_moves(later).is_some());
    // h2 sends h1 frames from 3000 source MACs over its direct path.
    for k in 0..3000u32 {
        let src = [2, 0x10, (k >> 16) as u8, (k >> 8) as u8, k as u8, 0x22];
        n.send(1, &frame(mac(1), src, 10_000 + k));
    }
    let h2 = n.nodes[0]
        .peers()
        .status(n.now)
        .into_iter()
        .find(|p| p.name == "h2")
        .unwrap();
    assert!(h2.macs <= MAC_LIMIT_PER_PEER, "{} MACs behind h2", h2.macs);
    assert!(n.nodes[0].peers().mac_counters().refused_limit > 0);
    // h3 claims h1's own MAC (in a frame and in its announcement): h1
    // does not route it there.
    n.send(2, &frame(mac(1), mac(1), 42));
    assert_eq!(n.route(0, mac(1)), None);
    assert!(n.nodes[0].peers().mac_counters().refused_local >= 1);
}

#[test]
fn both_directions_relay_within_a_second_of_the_first_loss() {
    let mut n = Net::new(3);
    n.announce_macs();
    n.advance(Duration::from_secs(5));
    n.set_blocked(0, 1, true);
    // Pings both ways every 50 ms for 5 s.
    let start = n.now;
    let mut gap = [Duration::ZERO; 2];
    let mut lost_at: [Option<Instant>; 2] = [None, None];
    let mut t = 0;
    while n.now < start + Duration::from_secs(5) {
        n.send(0, &frame(mac(2), mac(1), 20_000 + t));
        n.send(1, &frame(mac(1), mac(2), 30_000 + t));
        n.advance(Duration::from_millis(50));
        for (d, (to, base)) in [(1, 20_000), (0, 30_000)].into_iter().enumerate() {
            if n.received(to, base + t) == 0 {
                lost_at[d].get_or_insert(n.now);
            } else if let Some(l) = lost_at[d].take() {
                gap[d] = gap[d].max(n.now - l);
            }
        }
        t += 1;
    }
    assert_eq!(lost_at, [None, None], "frames flow again both ways");
    assert!(
        gap.iter().all(|g| *g <= Duration::from_secs(1)),
        "gaps h1->h2, h2->h1: {gap:?}"
    );
    assert_eq!(n.path(0, 1), Some(Path::Relayed));
    assert_eq!(n.path(1, 0), Some(Path::Relayed));
}

#[test]
fn a_peer_cannot_take_a_mac_the_switch_placed_behind_another_member() {
    let mut n = Net::new(3);
    n.announce_macs();
    n.advance(Duration::from_secs(1));
    let h2 = n.route(0, mac(2));
    assert!(h2.is_some(), "h1 routes h2's MAC directly");
    // h3 sends h1 frames from h2's MAC over its direct path (and announces
    // it): the switch never sees that, and h1 does not believe it.
    for t in 0..5 {
        n.send(2, &frame(mac(1), mac(2), 60 + t));
    }
    n.advance(Duration::from_secs(1));
    assert_eq!(n.route(0, mac(2)), h2);
    assert!(n.nodes[0].peers().mac_counters().refused_owner >= 1);
    // A real move (the host now sends through the switch from behind h3):
    // the switch tells h1, and h3's claim then holds.
    n.send(2, &frame([0xff; 6], mac(2), 70));
    n.advance(Duration::from_secs(1));
    n.send(2, &frame(mac(1), mac(2), 71));
    let h3 = n.route(0, mac(2));
    assert!(h3.is_some() && h3 != h2, "{h3:?} vs {h2:?}");
}

/// Frames on host `i`'s TAP carrying `tag`, as (VLAN tag if any, count).
fn forms(n: &Net, i: usize, tag: u32) -> Vec<Option<u16>> {
    n.tap[i]
        .iter()
        .filter_map(|f| match f.get(12..14) {
            Some([0x81, 0x00]) if f.get(18..22) == Some(&tag.to_be_bytes()[..]) => {
                Some(Some(u16::from_be_bytes([f[14], f[15]]) & 0x0fff))
            }
            _ if f.get(14..18) == Some(&tag.to_be_bytes()[..]) => Some(None),
            _ => None,
        })
        .collect()
}

#[test]
fn vlans_hold_on_direct_and_relayed_paths_with_tags_as_each_port_needs() {
    let trunk = PortVlan::Member {
        native: None,
        tagged: vec![10, 20],
    };
    // h1 access 10, h2 trunk [10, 20], h3 access 20, h4 access 10.
    let mut n = Net::with_vlans(vec![access(10), trunk, access(20), access(10)]);
    assert_eq!(
        n.path(0, 2),
        None,
        "h1 (VLAN 10) has h3 (VLAN 20) as a peer"
    );
    assert_eq!(n.path(2, 0), None);
    for (a, b) in [(0, 1), (0, 3), (1, 2), (2, 1), (3, 0)] {
        assert_eq!(n.path(a, b), Some(Path::Direct), "h{} -> h{}", a + 1, b + 1);
    }
    n.announce_macs();
    // h1 to h3 is relayed and dropped by the switch (another VLAN), even
    // with h3's MAC known on the switch; h1 to h4 goes direct.
    let before = n.via_switch();
    assert_eq!(
        n.send(0, &frame(mac(3), mac(1), 2)),
        Some(SWITCH.parse().unwrap())
    );
    assert_eq!(n.send(0, &frame(mac(4), mac(1), 3)), Some(n.addrs[3]));
    assert_eq!(forms(&n, 2, 2), vec![], "VLAN 10 reached VLAN 20");
    assert_eq!(forms(&n, 3, 3), vec![None]);
    // The trunk sends tagged to the access nodes it learned from their
    // announcements: direct, untagged at each; VLAN 10 to h3's MAC is not.
    assert_eq!(n.send(1, &tagged(mac(1), mac(2), 10, 4)), Some(n.addrs[0]));
    assert_eq!(n.send(1, &tagged(mac(3), mac(2), 20, 5)), Some(n.addrs[2]));
    n.send(1, &tagged(mac(3), mac(2), 10, 6));
    assert_eq!(forms(&n, 0, 4), vec![None]);
    assert_eq!(forms(&n, 2, 5), vec![None]);
    assert_eq!(
        forms(&n, 2, 6),
        vec![],
        "the trunk's VLAN 10 reached VLAN 20"
    );
    // h1 learned the trunk's MAC in VLAN 10 from its frame: the answer goes
    // direct and arrives tagged 10.
    assert_eq!(n.send(0, &frame(mac(2), mac(1), 7)), Some(n.addrs[1]));
    assert_eq!(forms(&n, 1, 7), vec![Some(10)]);
    // A broadcast goes via the switch and reaches VLAN 10 only, each in its form.
    n.send(0, &frame([0xff; 6], mac(1), 8));
    assert_eq!(forms(&n, 1, 8), vec![Some(10)]);
    assert_eq!(forms(&n, 3, 8), vec![None]);
    assert_eq!(forms(&n, 2, 8), vec![]);
    assert_eq!(
        n.via_switch()[0] - before[0],
        2,
        "h1: one relayed unicast, one broadcast"
    );
    assert_eq!(
        n.via_switch()[1] - before[1],
        1,
        "only the trunk's VLAN 10 frame for h3's MAC was relayed"
    );
}

/// Reload the switch with its config as built, adjusted by `adjust`.
fn reload(n: &mut Net, adjust: impl FnOnce(&mut SwitchConfig)) -> tapmesh_switch::fabric::Changes {
    let members: Vec<(usize, &StaticSecret, PortVlan)> = n
        .keys
        .iter()
        .zip(&n.vlans)
        .enumerate()
        .map(|(i, (k, v))| (i, k, v.clone()))
        .collect();
    let mut cfg = mesh_config(&n.switch_key, &members);
    adjust(&mut cfg);
    let now = n.now;
    let changes = n.switch.as_mut().unwrap().apply_config(now, cfg).unwrap();
    n.advance(Duration::from_millis(10));
    changes
}

#[test]
fn reload_removal_reaches_every_peer_at_once() {
    let mut n = Net::new(4);
    assert_eq!(n.path(0, 3), Some(Path::Direct));
    let handshakes: Vec<_> = (0..3)
        .map(|i| n.nodes[i].counters().handshakes_completed)
        .collect();
    let changes = reload(&mut n, |c| {
        c.nodes.pop();
    });
    assert_eq!(changes.removed, ["h4"]);
    // peer-gone went out with the reload: no peer knows h4 any more.
    for i in 0..3 {
        assert_eq!(n.path(i, 3), None, "h{} still has h4", i + 1);
        assert_eq!(n.path(i, (i + 1) % 3), Some(Path::Direct));
    }
    n.advance(Duration::from_secs(5));
    for (i, &before) in handshakes.iter().enumerate() {
        let hs = n.nodes[i].counters().handshakes_completed;
        assert_eq!(hs, before, "h{} handshook again", i + 1);
        assert_eq!(n.path(i, 3), None);
    }
}

#[test]
fn reload_moves_a_mesh_node_between_vlans() {
    let mut n = Net::with_vlans(vec![access(10), access(10), access(20)]);
    assert_eq!(n.path(0, 1), Some(Path::Direct));
    assert_eq!(n.path(2, 1), None);
    let changes = reload(&mut n, |c| c.nodes[1].vlan = access(20));
    assert_eq!(changes.changed, ["h2"]);
    n.advance(Duration::from_secs(2));
    assert_eq!(n.path(0, 1), None, "h1 still vouched h2");
    assert_eq!(n.path(1, 0), None, "h2 still has h1");
    assert_eq!(n.path(1, 2), Some(Path::Direct));
    assert_eq!(n.path(2, 1), Some(Path::Direct));
}

fn access(v: u16) -> PortVlan {
    PortVlan::Member {
        native: Some(v),
        tagged: vec![],
    }
}

#[test]
fn with_vlans_the_list_is_complete_without_members_of_other_vlans() {
    // h1, h2 on VLAN 10; h3, h4 on VLAN 20: each full list holds one member.
    let mut n = Net::with_vlans(vec![access(10), access(10), access(20), access(20)]);
    n.announce_macs();
    assert_eq!(n.path(0, 1), Some(Path::Direct));
    assert_eq!(n.path(2, 3), Some(Path::Direct));
    // The switch comes back without h2: h1's list is empty, and complete.
    n.restart_switch(&[0, 2, 3]);
    n.advance(Duration::from_secs(5));
    assert!(n.peer_names(0).is_empty(), "{:?}", n.peer_names(0));
    assert_eq!(n.nodes[0].peers().mac_counters().peers_unlisted, 1);
    // h3's list (h4 alone) is complete too: its vouch keeps being renewed.
    n.advance(Duration::from_secs(60));
    assert_eq!(n.peer_names(2), vec!["h4".to_string()]);
    let left = n.nodes[2].peers().status(n.now)[0].vouch_secs_left;
    let lifetime = tapmesh_node::peers::DEFAULT_VOUCH_LIFETIME.as_secs_f64();
    assert!(left > lifetime - 30.0, "vouch left {left} s");
    assert_eq!(n.nodes[2].peers().mac_counters().peers_unlisted, 0);
}

#[test]
fn with_vlans_the_answering_side_relays_as_soon_as_a_relayed_frame_arrives() {
    // h1 access 10, h2 a trunk carrying 10 tagged, h3 access 10.
    let trunk = PortVlan::Member {
        native: None,
        tagged: vec![10, 20],
    };
    let mut n = Net::with_vlans(vec![access(10), trunk, access(10)]);
    n.announce_macs();
    // h2 learned h1's MAC from its announcement; h1 learns h2's in VLAN 10
    // from its first direct frame.
    assert_eq!(n.send(1, &tagged(mac(1), mac(2), 10, 1)), Some(n.addrs[0]));
    assert_eq!(n.send(0, &frame(mac(2), mac(1), 2)), Some(n.addrs[1]));
    n.advance(Duration::from_secs(5));
    n.set_blocked(0, 1, true);
    // h1 pings every 50 ms; h2 sends nothing but the answers, so only the
    // relayed pings can tell it the direct path is gone (its own probe
    // would start with its first lost answer, 0.7 s too late).
    let start = n.now;
    let mut answered = 0;
    let (mut lost_at, mut gap) = (None, Duration::ZERO);
    let mut t = 0;
    while n.now < start + Duration::from_secs(5) {
        n.send(0, &frame(mac(2), mac(1), 20_000 + t));
        n.advance(Duration::from_millis(25));
        while answered <= t {
            if forms(&n, 1, 20_000 + answered) == vec![Some(10)] {
                n.send(1, &tagged(mac(1), mac(2), 10, 30_000 + answered));
            }
            answered += 1;
        }
        n.advance(Duration::from_millis(25));
        if forms(&n, 0, 30_000 + t) != vec![None] {
            lost_at.get_or_insert(n.now);
        } else if let Some(l) = lost_at.take() {
            gap = gap.max(n.now - l);
        }
        t += 1;
    }
    assert_eq!(lost_at, None, "round trips work again");
    assert!(
        gap <= Duration::from_secs(1),
        "round trips lost for {gap:?}"
    );
    assert_eq!(n.path(0, 1), Some(Path::Relayed));
    assert_eq!(n.path(1, 0), Some(Path::Relayed));
    assert_eq!(n.path(0, 2), Some(Path::Direct), "other paths unaffected");
}

#[test]
fn forged_responses_ahead_of_every_response_stop_no_handshake() {
    // Issue 13 item 4: the receiver index travels in clear, so an on-path
    // attacker can put a forged response ahead of the genuine one. The
    // in-flight initiation must survive it, towards the switch and between
    // peers, so every session still comes up.
    let mut n = Net::with_forged_responses(3);
    n.advance(Duration::from_secs(3));
    n.announce_macs();
    for i in 0..3 {
        let st = n.nodes[i].status(n.now, "x");
        assert_eq!(
            n.nodes[i].link_state(),
            tapmesh_node::engine::LinkState::Established,
            "h{} has no session with the switch",
            i + 1
        );
        for peer in (0..3).filter(|&p| p != i) {
            assert_eq!(
                n.path(i, peer),
                Some(Path::Direct),
                "h{} -> h{}",
                i + 1,
                peer + 1
            );
        }
        assert!(
            st.drops
                .get(tapmesh_node::counters::DropReason::ForgedResponse)
                >= 1,
            "h{}: forgeries not counted: {:?}",
            i + 1,
            st.drops
        );
    }
    n.send(0, &frame(mac(2), mac(1), 7));
    assert_eq!(n.received(1, 7), 1);
}
