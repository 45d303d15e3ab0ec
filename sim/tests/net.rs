//! The simulated underlay itself: seeded faults repeat, and what they do
//! to datagrams reaches the cores as it would on a real network.
use std::time::Duration;

use tapmesh_node::counters::DropReason;
use tapmesh_node::engine::LinkState;
use tapmesh_sim::build::{network, node_addr, switch_addr};
use tapmesh_sim::faults::Fate;
use tapmesh_sim::frames::{frame, mac};
use tapmesh_sim::{Faults, LinkFaults, Net};
use tapmesh_switch::mesh::Mode;
use tapmesh_switch::networks::{NetworkConfig, Networks};

fn lossy(loss: f64) -> LinkFaults {
    LinkFaults {
        loss,
        ..LinkFaults::default()
    }
}

#[test]
fn the_same_seed_gives_the_same_fates() {
    let fates = |seed| {
        let mut f = Faults::seeded(seed);
        f.set_link(switch_addr(), node_addr(0), lossy(0.3));
        (0..1000)
            .map(|_| f.judge(switch_addr(), node_addr(0)))
            .collect::<Vec<_>>()
    };
    let a = fates(7);
    assert_eq!(a, fates(7));
    assert_ne!(a, fates(8));
    let lost = a.iter().filter(|f| **f == Fate::Drop).count();
    assert!((200..400).contains(&lost), "{lost} of 1000 lost at 30 %");
    // The other direction has no faults.
    let mut f = Faults::seeded(7);
    f.set_link(switch_addr(), node_addr(0), lossy(1.0));
    assert_eq!(f.judge(node_addr(0), switch_addr()), Fate::Deliver);
}

#[test]
fn a_node_whose_answers_are_lost_never_connects() {
    let (mut net, _) = network(2, false);
    net.faults.set_link(switch_addr(), node_addr(0), lossy(1.0));
    net.advance(Duration::from_secs(5));
    assert_eq!(net.nodes[0].link_state(), LinkState::Handshaking);
    assert_eq!(net.nodes[1].link_state(), LinkState::Established);
}

#[test]
fn duplicated_datagrams_reach_the_node_and_are_dropped_as_replays() {
    let (mut net, _) = network(2, false);
    net.advance(Duration::from_millis(100));
    net.faults.set_link(
        switch_addr(),
        node_addr(1),
        LinkFaults {
            duplicate: 1.0,
            ..LinkFaults::default()
        },
    );
    let replays = net.nodes[1].drops().get(DropReason::Replay);
    net.send(0, &frame([0xff; 6], mac(1), 7));
    assert_eq!(net.received(1, 7), 1);
    assert_eq!(net.nodes[1].drops().get(DropReason::Replay), replays + 1);
}

#[test]
fn reordered_datagrams_all_arrive_out_of_order() {
    let (mut net, _) = network(2, false);
    net.advance(Duration::from_millis(100));
    net.faults.set_link(
        switch_addr(),
        node_addr(1),
        LinkFaults {
            reorder: 0.5,
            ..LinkFaults::default()
        },
    );
    // Frames read at once, so reordered ones fall behind later ones.
    for t in 0..50 {
        assert_eq!(
            net.read_tap(0, &frame([0xff; 6], mac(1), t)),
            Some(switch_addr())
        );
    }
    net.deliver();
    let order: Vec<u32> = net.tap[1]
        .iter()
        .map(|f| u32::from_be_bytes(f[14..18].try_into().unwrap()))
        .collect();
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..50).collect::<Vec<_>>(), "every frame, once");
    assert_ne!(order, sorted, "nothing was reordered");
}

#[test]
fn a_multi_network_switch_runs_under_the_same_pump() {
    let (net, cfg) = network(2, false);
    let networks = Networks::new(
        vec![NetworkConfig {
            name: "default".into(),
            mode: Mode::Central,
            core: cfg,
            impair: Vec::new(),
            mirrors: Vec::new(),
        }],
        net.now,
        1,
    );
    let mut multi: Net<Networks> = Net::new(net.now, switch_addr(), Some(networks));
    for (n, a) in net.nodes.into_iter().zip(net.addrs) {
        multi.add_node(n, a);
    }
    multi.advance(Duration::from_millis(100));
    multi.send(0, &frame([0xff; 6], mac(1), 3));
    assert_eq!(multi.received(1, 3), 1);
    let st = multi.switch().status(multi.now, false);
    assert_eq!(st.networks.len(), 1, "{st:?}");
}
