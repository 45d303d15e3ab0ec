//! Several switch cores wired in memory ([`tapmesh_sim::build::cluster`]):
//! trunks come up, frames cross between switches once, never from one
//! switch to another (split horizon), multicast follows the cluster view
//! (with trunk announcements lost),
//! and a dead switch takes the MACs behind it along.
use std::net::IpAddr;
use std::time::Duration;

use overlay_proto::ethernet::MacAddr;
use tapmesh_sim::Net;
use tapmesh_sim::build::{ClusterSetup, cluster, node_addr, nth_switch_addr};
use tapmesh_sim::frames::{carries_frame, frame, group_frame, igmp_join, is_control, mac};
use tapmesh_switch::cluster::{
    ClusterUpdate, GroupRef, LocalChange, MacRef, NodeRef, Snapshot, StoreState, SwitchFacts,
};
use tapmesh_switch::fabric::Switch;
use tapmesh_switch::vlan::NO_VLAN;

const BROADCAST: [u8; 6] = [0xff; 6];

/// Switch `k` of the cluster.
fn sw(net: &mut Net, k: usize) -> &mut Switch {
    net.nth_switch(k)
}

/// A cluster with every node and trunk connected, frames counted.
fn up(homes: &[usize], store: bool) -> (Net, ClusterSetup) {
    up_with(homes, store, false)
}

/// [`up`]; with `silent`, trunk announcements are lost on the way, so
/// switches only have the cluster view to go by.
fn up_with(homes: &[usize], store: bool, silent: bool) -> (Net, ClusterSetup) {
    let (mut net, setup) = cluster(homes, store);
    net.observe = Some(carries_frame);
    if silent {
        net.faults.lose = Some(is_control);
    }
    net.advance(Duration::from_secs(3));
    let n = setup.switches.len();
    for k in 0..n {
        let now = net.now;
        let s = sw(&mut net, k).status(now, false);
        assert_eq!(s.switches.len(), n - 1, "switch s{k}");
        for t in &s.switches {
            assert!(t.up, "s{k}'s trunk to {} is up: {t:?}", t.name);
        }
    }
    (net, setup)
}

/// Datagrams carrying frames from switch `a` to switch `b`.
fn between(net: &Net, a: usize, b: usize) -> u64 {
    net.observed(nth_switch_addr(a), nth_switch_addr(b))
}

/// Every node sends one broadcast (tag 100 + i): each other node gets it
/// exactly once.
fn broadcast_from_each(net: &mut Net, nodes: usize) {
    for i in 0..nodes {
        net.send(i, &frame(BROADCAST, mac(i as u8 + 1), 100 + i as u32));
    }
    for i in 0..nodes {
        for j in 0..nodes {
            let want = usize::from(i != j);
            assert_eq!(
                net.received(j, 100 + i as u32),
                want,
                "h{} got h{}'s broadcast {want} time(s)",
                j + 1,
                i + 1
            );
        }
    }
}

#[test]
fn a_flood_crosses_once_per_switch_and_never_between_switches() {
    // h1, h2 on s0; h3 on s1; h4 on s2.
    let (mut net, _) = up(&[0, 0, 1, 2], false);
    net.send(0, &frame(BROADCAST, mac(1), 1));
    assert_eq!(net.received(1, 1), 1);
    assert_eq!(net.received(2, 1), 1);
    assert_eq!(net.received(3, 1), 1);
    assert_eq!(between(&net, 0, 1), 1, "once to s1");
    assert_eq!(between(&net, 0, 2), 1, "once to s2");
    // Split horizon: s1 and s2 sent nothing on to each other or back.
    for (a, b) in [(1, 2), (2, 1), (1, 0), (2, 0)] {
        assert_eq!(between(&net, a, b), 0, "s{a} -> s{b}");
    }
    // Learned behind the trunk: h3's answer to h1 is unicast, once.
    net.send(2, &frame(mac(1), mac(3), 2));
    assert_eq!(net.received(0, 2), 1);
    assert_eq!(net.received(1, 2), 0, "unicast, not flooded");
    assert_eq!(net.received(3, 2), 0);
    assert_eq!(between(&net, 1, 0), 1);
    assert_eq!(between(&net, 1, 2), 0);
    // And back: s0 learned h3 behind s1.
    let now = net.now;
    let s0 = sw(&mut net, 0);
    assert!(s0.lookup_mac(now, NO_VLAN, &MacAddr(mac(3))).is_some());
    assert!(
        s0.status(now, true)
            .macs
            .unwrap()
            .iter()
            .any(|m| m.node == "s1")
    );
    net.send(0, &frame(mac(3), mac(1), 3));
    assert_eq!(net.received(2, 3), 1);
    assert_eq!(net.received(3, 3), 0);
    assert_eq!(between(&net, 0, 2), 1, "nothing more to s2");
    broadcast_from_each(&mut net, 4);
}

#[test]
fn a_frame_from_a_switch_for_a_mac_behind_another_switch_is_not_passed_on() {
    let (mut net, _) = up(&[0, 1, 2], false);
    // s0 learns h3 behind s2.
    net.send(2, &frame(BROADCAST, mac(3), 1));
    assert_eq!(net.received(0, 1), 1);
    // h2 (on s1) sends to h3 while s1 has not learned h3: s1 floods to s0
    // and s2 once each; s0 knows h3 behind s2 but must not pass it on.
    let before = between(&net, 0, 2);
    net.send(1, &frame(mac(3), mac(2), 2));
    assert_eq!(net.received(2, 2), 1, "h3 gets it once, from s1");
    assert_eq!(between(&net, 0, 2), before, "s0 passed nothing on to s2");
    // An unknown unicast from a switch goes to local nodes only.
    net.send(1, &frame(mac(9), mac(2), 3));
    assert_eq!(net.received(0, 3), 1);
    assert_eq!(net.received(2, 3), 1);
    assert_eq!(between(&net, 0, 2), before);
    assert_eq!(between(&net, 2, 0), 1, "only h3's broadcast");
}

#[test]
fn a_dead_switch_is_noticed_and_its_macs_are_released() {
    let (mut net, _) = up(&[0, 1], false);
    net.send(1, &frame(BROADCAST, mac(2), 1));
    let now = net.now;
    assert!(
        sw(&mut net, 0)
            .lookup_mac(now, NO_VLAN, &MacAddr(mac(2)))
            .is_some()
    );
    // s1 dies.
    net.others[0].1 = None;
    net.advance(Duration::from_millis(2_000));
    let now = net.now;
    let s = sw(&mut net, 0).status(now, false);
    assert!(s.switches[0].up, "not yet: 2 s is within the margin");
    net.advance(Duration::from_millis(2_000));
    let now = net.now;
    let s0 = sw(&mut net, 0);
    let s = s0.status(now, false);
    assert!(!s.switches[0].up, "down within 4 s: {:?}", s.switches[0]);
    assert_eq!(s.switches[0].downs, 1);
    assert_eq!(s.switches[0].macs, 0);
    assert_eq!(s0.lookup_mac(now, NO_VLAN, &MacAddr(mac(2))), None);
    // h1's frames to h2 are floods now (to local nodes; the trunk is down).
    net.send(0, &frame(mac(2), mac(1), 2));
    assert_eq!(net.received(1, 2), 0);
}

#[test]
fn a_restarted_switch_comes_back() {
    let (mut net, setup) = up(&[0, 1], false);
    net.others[0].1 = None;
    net.advance(Duration::from_secs(5));
    let now = net.now;
    let mut s1 = Switch::new(setup.switches[1].clone(), now, 99);
    s1.join_cluster(
        now,
        Duration::from_secs(1_700_000_100),
        "default",
        &setup.clusters[1],
    );
    net.others[0].1 = Some(s1);
    // Its node reconnects (keepalive lost -> handshake) and the trunk is up.
    net.advance(Duration::from_secs(30));
    let now = net.now;
    let s = sw(&mut net, 0).status(now, false);
    assert!(s.switches[0].up, "{:?}", s.switches[0]);
    assert_eq!(s.switches[0].ups, 2);
    net.clear_tap();
    broadcast_from_each(&mut net, 2);
}

#[test]
fn multicast_goes_to_every_switch_without_a_view_and_only_where_wanted_with_one() {
    // No announcements either (see trunk_announce_sim.rs for those).
    let (mut net, _) = up_with(&[0, 1, 2], false, true);
    let g = [239, 1, 2, 3];
    // No view: every switch gets the group.
    net.send(0, &group_frame(1, g, 1));
    assert_eq!((between(&net, 0, 1), between(&net, 0, 2)), (1, 1));
    // The store says s2 has members, s1 none.
    let now = net.now;
    let group = GroupRef {
        network: "default".into(),
        vlan: NO_VLAN,
        group: IpAddr::from(g),
    };
    for u in [
        ClusterUpdate::Store(StoreState {
            connected: true,
            revision: 3,
        }),
        ClusterUpdate::Resync(Snapshot {
            revision: 3,
            switches: vec![
                ("s1".into(), SwitchFacts::default()),
                (
                    "s2".into(),
                    SwitchFacts {
                        groups: vec![group.clone()],
                        ..Default::default()
                    },
                ),
            ],
        }),
    ] {
        sw(&mut net, 0).handle_cluster_update(now, &u);
    }
    net.send(0, &group_frame(1, g, 2));
    assert_eq!(between(&net, 0, 1), 1, "pruned: nothing more to s1");
    assert_eq!(between(&net, 0, 2), 2);
    // s2's members go: nobody wants it.
    sw(&mut net, 0).handle_cluster_update(
        now,
        &ClusterUpdate::GroupLeft {
            switch: "s2".into(),
            group,
        },
    );
    net.send(0, &group_frame(1, g, 3));
    assert_eq!((between(&net, 0, 1), between(&net, 0, 2)), (1, 2));
    // The store is lost: unknown again, every switch gets it.
    sw(&mut net, 0).handle_cluster_update(
        now,
        &ClusterUpdate::Store(StoreState {
            connected: false,
            revision: 3,
        }),
    );
    net.send(0, &group_frame(1, g, 4));
    assert_eq!((between(&net, 0, 1), between(&net, 0, 2)), (2, 3));
}

#[test]
fn snooping_control_never_crosses_a_trunk() {
    let (mut net, _) = up(&[0, 1], false);
    // An IGMPv2 report from h1 for 239.1.2.3.
    let f = igmp_join(1, [239, 1, 2, 3]);
    net.send(0, &f);
    assert_eq!(between(&net, 0, 1), 0, "the report stays on s0");
    let now = net.now;
    let s = sw(&mut net, 0).status(now, false);
    assert_eq!(s.multicast.groups.len(), 1, "s0 snooped it");
    let s = sw(&mut net, 1).status(now, false);
    assert!(s.multicast.groups.is_empty(), "s1 learned nothing from it");
    assert_eq!(s.multicast.counters.reports, 0);
}

#[test]
fn what_a_switch_owns_is_published_once_per_change() {
    let (mut net, _) = up(&[0, 1], true);
    // Nodes connected during `up`: each switch homes its own node.
    let drain = |net: &mut Net, k: usize| {
        let mut v = Vec::new();
        while let Some(c) = sw(net, k).poll_local_change() {
            v.push(c);
        }
        v
    };
    let node = |n: &str| NodeRef {
        network: "default".into(),
        node: n.into(),
    };
    assert_eq!(
        drain(&mut net, 0),
        vec![LocalChange::NodeHomed(node("h1"), node_addr(0))],
        "s0 homes h1 only"
    );
    assert_eq!(
        drain(&mut net, 1),
        vec![LocalChange::NodeHomed(node("h2"), node_addr(1))]
    );
    let mac1 = MacRef {
        network: "default".into(),
        vlan: NO_VLAN,
        mac: MacAddr(mac(1)),
    };
    for t in 0..5 {
        net.send(0, &frame(BROADCAST, mac(1), t));
    }
    net.advance(Duration::from_secs(1));
    assert_eq!(
        drain(&mut net, 0),
        vec![LocalChange::MacOwned(mac1.clone(), "h1".into())]
    );
    // s1 saw h1's MAC behind its trunk: not its own.
    assert_eq!(drain(&mut net, 1), vec![]);
    assert_eq!(
        sw(&mut net, 0).local_facts().macs,
        vec![(mac1.clone(), Some("h1".into()))]
    );
    // The MAC ages out: released once.
    net.advance(Duration::from_secs(301));
    let c0 = drain(&mut net, 0);
    assert!(c0.contains(&LocalChange::MacReleased(mac1)), "{c0:?}");
    assert_eq!(c0.len(), 1, "{c0:?}");
}
