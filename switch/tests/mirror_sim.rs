//! Port mirroring in a simulated network ([`tapmesh_sim::Net`]): a switch
//! core with real sessions to node cores; which TAP gets which copy, in
//! which VLAN form, and that copies never loop.
use std::time::Duration;

use tapmesh_sim::Net;
use tapmesh_sim::build::{network, switch};
use tapmesh_sim::frames::{frame, mac, tagged};
use tapmesh_switch::mirror::{MirrorDirection, MirrorSpec};
use tapmesh_switch::vlan::PortVlan;

/// `h1`..`hn` connected; `vlans`, if given, are their ports.
fn net(n: usize, vlans: Option<Vec<PortVlan>>) -> Net {
    let (mut net, mut cfg) = network(n, false);
    if let Some(v) = vlans {
        for (node, v) in cfg.nodes.iter_mut().zip(v) {
            node.vlan = v;
        }
        net.switch = Some(switch(&cfg, net.now, false));
    }
    net.advance(Duration::from_millis(100));
    net
}

fn add(net: &mut Net, spec: MirrorSpec) {
    net.switch_mut().add_mirror(spec).unwrap();
}

/// Frames on node `i`'s TAP carrying `tag`: untagged (the tag at 14..18)
/// and 802.1Q-tagged (at 18..22) with their VLAN.
fn seen(net: &Net, i: usize, tag: u32) -> (usize, Vec<u16>) {
    let t = tag.to_be_bytes();
    let untagged = net.tap[i]
        .iter()
        .filter(|f| f[12..14] != [0x81, 0] && f[14..18] == t)
        .count();
    let vids = net.tap[i]
        .iter()
        .filter(|f| f[12..14] == [0x81, 0] && f[18..22] == t)
        .map(|f| u16::from_be_bytes([f[14], f[15]]) & 0x0fff)
        .collect();
    (untagged, vids)
}

fn counters(net: &Net, name: &str) -> (u64, u64) {
    let s = net.switch().mirror_status();
    let m = s.iter().find(|m| m.name == name).expect("session listed");
    (m.counters.mirrored, m.counters.dropped_rate)
}

#[test]
fn the_destination_gets_the_sources_frames_both_ways_and_nobody_else_more() {
    let mut s = net(4, None);
    add(&mut s, MirrorSpec::new("m", "h1", "h3"));
    // Learn h1 and h2; a flood from h1 reaches h3 twice: as a flood and as
    // its mirror copy (a SPAN port gets copies of frames it gets anyway).
    s.send(0, &frame([0xff; 6], mac(1), 1));
    s.send(1, &frame([0xff; 6], mac(2), 2));
    assert_eq!([1, 2].map(|t| s.received(2, t)), [2, 2]);
    assert_eq!([1, 2].map(|t| s.received(3, t)), [1, 1]);
    // Unicast h1 -> h2 and back: h3 gets a copy of each, h4 nothing.
    s.send(0, &frame(mac(2), mac(1), 3));
    s.send(1, &frame(mac(1), mac(2), 4));
    for t in [3, 4] {
        assert_eq!(
            (0..4).map(|i| s.received(i, t)).collect::<Vec<_>>(),
            [usize::from(t == 4), usize::from(t == 3), 1, 0],
            "tag {t}"
        );
    }
    // h3's own frame to h1 is not mirrored back to h3.
    s.send(2, &frame(mac(1), mac(3), 5));
    assert_eq!((s.received(0, 5), s.received(2, 5)), (1, 0));
    // Frames between others are not the session's.
    s.send(3, &frame(mac(2), mac(4), 6));
    assert_eq!(s.received(2, 6), 0);
    // 1 and 2 (both floods), 3, 4 copied; 5 and 6 not.
    assert_eq!(counters(&s, "m"), (4, 0));

    // Copies are not mirrored again: h3's sent frames go to h4, but not
    // the copies h3 gets as a mirror port.
    add(
        &mut s,
        MirrorSpec {
            direction: MirrorDirection::Sent,
            ..MirrorSpec::new("m2", "h3", "h4")
        },
    );
    s.send(0, &frame(mac(2), mac(1), 7));
    assert_eq!((s.received(2, 7), s.received(3, 7)), (1, 0));
    s.send(1, &frame(mac(3), mac(2), 8));
    assert_eq!((s.received(2, 8), s.received(3, 8)), (1, 1));

    // Removed: no more copies.
    assert!(s.switch_mut().remove_mirror("m"));
    s.send(0, &frame(mac(2), mac(1), 9));
    assert_eq!((s.received(1, 9), s.received(2, 9)), (1, 0));
}

#[test]
fn direction_received_or_sent_only() {
    let mut s = net(3, None);
    add(
        &mut s,
        MirrorSpec {
            direction: MirrorDirection::Received,
            ..MirrorSpec::new("rx", "h1", "h3")
        },
    );
    s.send(0, &frame([0xff; 6], mac(1), 1));
    s.send(1, &frame([0xff; 6], mac(2), 2));
    s.clear_tap();
    s.send(0, &frame(mac(2), mac(1), 3));
    s.send(1, &frame(mac(1), mac(2), 4));
    assert_eq!((s.received(2, 3), s.received(2, 4)), (1, 0));
    add(
        &mut s,
        MirrorSpec {
            direction: MirrorDirection::Sent,
            ..MirrorSpec::new("rx", "h1", "h3")
        },
    );
    s.send(0, &frame(mac(2), mac(1), 5));
    s.send(1, &frame(mac(1), mac(2), 6));
    assert_eq!((s.received(2, 5), s.received(2, 6)), (0, 1));
}

#[test]
fn copies_take_the_destinations_form_and_a_vlan_filter_picks_one_vlan() {
    let access = |v| PortVlan::Member {
        native: Some(v),
        tagged: vec![],
    };
    // h1, h2 access 10; h3 trunk 10, 20; h4 access 30; h5 trunk 20 native 30.
    let vlans = vec![
        access(10),
        access(10),
        PortVlan::Member {
            native: None,
            tagged: vec![10, 20],
        },
        access(30),
        PortVlan::Member {
            native: Some(30),
            tagged: vec![20],
        },
    ];
    let mut s = net(5, Some(vlans));
    add(&mut s, MirrorSpec::new("to-access", "h1", "h4"));
    add(&mut s, MirrorSpec::new("to-trunk", "h1", "h5"));
    // h1's VLAN 10 frame: untagged on the access port of VLAN 30, tagged 10
    // on the trunk, though neither is a member of VLAN 10.
    s.send(0, &frame([0xff; 6], mac(1), 1));
    assert_eq!(seen(&s, 3, 1), (1, vec![]));
    assert_eq!(seen(&s, 4, 1), (0, vec![10]));
    // A VLAN filter on the trunk h3: only its VLAN 20 frames, to h4 untagged
    // (h1's sessions end: h3's VLAN 10 flood reaches h1).
    assert!(s.switch_mut().remove_mirror("to-access"));
    assert!(s.switch_mut().remove_mirror("to-trunk"));
    add(
        &mut s,
        MirrorSpec {
            vlan: Some(20),
            ..MirrorSpec::new("v20", "h3", "h4")
        },
    );
    s.send(2, &tagged([0xff; 6], mac(3), 10, 2));
    s.send(2, &tagged([0xff; 6], mac(3), 20, 3));
    assert_eq!(seen(&s, 3, 2), (0, vec![]));
    assert_eq!(seen(&s, 3, 3), (1, vec![]));
    // h5 gets 20 tagged as a member, and nothing more.
    assert_eq!(seen(&s, 4, 3), (0, vec![20]));
    let e = s
        .switch_mut()
        .add_mirror(MirrorSpec {
            vlan: Some(20),
            ..MirrorSpec::new("bad", "h1", "h4")
        })
        .unwrap_err();
    assert!(e.contains("not a member of VLAN 20"), "{e}");
}

#[test]
fn the_rate_bounds_copies_and_counts_the_rest() {
    let mut s = net(3, None);
    add(
        &mut s,
        MirrorSpec {
            rate: 5,
            direction: MirrorDirection::Received,
            ..MirrorSpec::new("slow", "h1", "h3")
        },
    );
    s.send(1, &frame([0xff; 6], mac(2), 0));
    for _ in 0..50 {
        s.send(0, &frame(mac(2), mac(1), 1));
    }
    assert_eq!((s.received(1, 1), s.received(2, 1)), (50, 5));
    assert_eq!(counters(&s, "slow"), (5, 45));
    s.advance(Duration::from_secs(1));
    for _ in 0..50 {
        s.send(0, &frame(mac(2), mac(1), 2));
    }
    assert_eq!(s.received(2, 2), 5);
}
