//! Trunk announcements between switch cores wired in memory, without etcd
//! ([`tapmesh_sim::build::cluster_with_vlans`]): a flood goes only to the
//! switches serving its VLAN, group traffic only to switches with members,
//! a join on the far side resumes delivery within the announcement gap, and
//! until a switch heard an announcement (or after its trunk went down and
//! up) it sends everything.
use std::time::Duration;

use tapmesh_sim::Net;
use tapmesh_sim::build::{ClusterSetup, cluster_with_vlans, nth_switch_addr};
use tapmesh_sim::frames::{
    carries_frame, count_group_tag, group_frame, igmp_join, is_control, mac,
};
use tapmesh_switch::fabric::ANNOUNCE_REFRESH;
use tapmesh_switch::status::PeerSwitchStatus;
use tapmesh_switch::vlan::PortVlan;

const BROADCAST: [u8; 6] = [0xff; 6];
const GROUP: [u8; 4] = [239, 1, 2, 3];

/// An access port in VLAN `v`.
fn access(v: u16) -> PortVlan {
    PortVlan::Member {
        native: Some(v),
        tagged: vec![],
    }
}

/// A cluster with node `i` homed on `homes[i]` in VLAN `vlans[i]`, every
/// node and trunk connected, frames between switches counted; with
/// `silent`, announcements are lost on the way.
fn up(homes: &[usize], vlans: &[u16], silent: bool) -> (Net, ClusterSetup) {
    let vlans = vlans.to_vec();
    let (mut net, setup) = cluster_with_vlans(homes, false, move |i| access(vlans[i]));
    net.observe = Some(carries_frame);
    if silent {
        net.faults.lose = Some(is_control);
    }
    net.advance(Duration::from_secs(3));
    for k in 0..setup.switches.len() {
        for t in status(&mut net, k) {
            assert!(t.up, "s{k}'s trunk to {} is up: {t:?}", t.name);
        }
    }
    (net, setup)
}

/// Switch `k`'s trunks in status.
fn status(net: &mut Net, k: usize) -> Vec<PeerSwitchStatus> {
    let now = net.now;
    net.nth_switch(k).status(now, false).switches
}

/// Switch `k`'s trunk to switch `j`.
fn trunk(net: &mut Net, k: usize, j: usize) -> PeerSwitchStatus {
    let name = format!("s{j}");
    (status(net, k).into_iter().find(|t| t.name == name)).expect("a trunk to s{j}")
}

/// Datagrams carrying frames from switch `a` to switch `b`.
fn between(net: &Net, a: usize, b: usize) -> u64 {
    net.observed(nth_switch_addr(a), nth_switch_addr(b))
}

/// A broadcast frame from `mac(src)` with `tag`.
fn broadcast(src: u8, tag: u32) -> Vec<u8> {
    tapmesh_sim::frames::frame(BROADCAST, mac(src), tag)
}

#[test]
fn a_flood_goes_only_to_the_switches_serving_its_vlan() {
    // h1 (VLAN 10) and h2 (VLAN 20) on s0; h3 (VLAN 10) on s1; h4 (VLAN
    // 20) on s2.
    let (mut net, _) = up(&[0, 0, 1, 2], &[10, 20, 10, 20], false);
    let a = trunk(&mut net, 0, 1).announced.expect("s1 announced");
    assert_eq!((a.vlans, a.groups, a.all_groups), (1, 0, false), "{a:?}");
    net.send(0, &broadcast(1, 1));
    assert_eq!(net.received(2, 1), 1, "h3 gets h1's broadcast");
    assert_eq!(net.received(3, 1), 0);
    assert_eq!((between(&net, 0, 1), between(&net, 0, 2)), (1, 0));
    net.send(1, &broadcast(2, 2));
    assert_eq!(net.received(3, 2), 1, "h4 gets h2's broadcast");
    assert_eq!((between(&net, 0, 1), between(&net, 0, 2)), (1, 1));
    // Unknown unicast is a flood too.
    net.send(0, &tapmesh_sim::frames::frame(mac(9), mac(1), 3));
    assert_eq!((between(&net, 0, 1), between(&net, 0, 2)), (2, 1));
    assert_eq!(trunk(&mut net, 0, 2).pruned_frames, 2);
    assert_eq!(trunk(&mut net, 0, 1).pruned_frames, 1);
    // h4 is gone (timed out): s2 serves nothing, and says so.
    net.set_cut(3, true);
    net.advance(Duration::from_secs(35));
    let a = trunk(&mut net, 0, 2).announced.expect("s2 announced");
    assert_eq!(a.vlans, 0, "{a:?}");
}

#[test]
fn group_traffic_goes_only_to_switches_with_members_and_a_join_resumes_it_promptly() {
    // One VLAN; h1 on s0, h2 on s1, h3 on s2. h2 joins the group.
    let (mut net, _) = up(&[0, 1, 2], &[10, 10, 10], false);
    net.send(1, &igmp_join(2, GROUP));
    net.advance(Duration::from_millis(200));
    let a = trunk(&mut net, 0, 1).announced.expect("s1 announced");
    assert_eq!(a.groups, 1, "{a:?}");
    net.send(0, &group_frame(1, GROUP, 1));
    assert_eq!(count_group_tag(&net.tap[1], 1), 1, "h2 gets the group");
    assert_eq!(count_group_tag(&net.tap[2], 1), 0, "h3 has not joined");
    assert_eq!((between(&net, 0, 1), between(&net, 0, 2)), (1, 0));
    assert_eq!(trunk(&mut net, 0, 2).pruned_frames, 1);
    // h3 joins: the next frame, 200 ms later, reaches it.
    let generation = trunk(&mut net, 0, 2).announced.unwrap().generation;
    net.send(2, &igmp_join(3, GROUP));
    net.advance(Duration::from_millis(200));
    let a = trunk(&mut net, 0, 2).announced.unwrap();
    assert_eq!((a.groups, a.generation), (1, generation + 1), "{a:?}");
    net.send(0, &group_frame(1, GROUP, 2));
    assert_eq!(count_group_tag(&net.tap[2], 2), 1, "h3 gets it now");
    assert_eq!((between(&net, 0, 1), between(&net, 0, 2)), (2, 1));
    // Refreshes do not make new generations.
    net.advance(ANNOUNCE_REFRESH * 3);
    assert_eq!(
        trunk(&mut net, 0, 2).announced.unwrap().generation,
        a.generation
    );
}

#[test]
fn until_the_first_announcement_and_after_a_trunk_bounce_everything_is_sent() {
    // h1 on s0 in VLAN 10, h2 on s1 in VLAN 20: s1 wants nothing of VLAN 10.
    let (mut net, _) = up(&[0, 1], &[10, 20], true);
    assert!(trunk(&mut net, 0, 1).announced.is_none());
    net.send(0, &broadcast(1, 1));
    net.send(0, &group_frame(1, GROUP, 2));
    assert_eq!(between(&net, 0, 1), 2, "no announcement: s1 gets both");
    // Announcements get through: at the next refresh s1 is pruned.
    net.faults.lose = None;
    net.advance(ANNOUNCE_REFRESH + Duration::from_millis(600));
    assert!(trunk(&mut net, 0, 1).announced.is_some());
    net.send(0, &broadcast(1, 3));
    net.send(0, &group_frame(1, GROUP, 4));
    assert_eq!(between(&net, 0, 1), 2, "pruned");
    // s1 is cut off until the trunk goes down, then comes back while its
    // announcements are lost: s0 must not keep the old one.
    net.faults.lose = Some(is_control);
    net.faults.set_cut(nth_switch_addr(1), true);
    net.advance(Duration::from_secs(5));
    assert!(!trunk(&mut net, 0, 1).up);
    assert!(trunk(&mut net, 0, 1).announced.is_none(), "forgotten");
    net.faults.set_cut(nth_switch_addr(1), false);
    net.advance(Duration::from_secs(5));
    assert!(trunk(&mut net, 0, 1).up);
    let before = between(&net, 0, 1);
    net.send(0, &broadcast(1, 5));
    assert_eq!(between(&net, 0, 1), before + 1, "everything again");
}
