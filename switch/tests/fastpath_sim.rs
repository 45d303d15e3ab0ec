//! The workers' fast path against a real switch core and real node cores
//! ([`tapmesh_sim::Net`]): what the core publishes, what a worker forwards
//! on its own, how a change revokes it, and that the core and a worker
//! sealing under one session never reuse a counter.
use std::net::SocketAddr;
use std::time::Duration;

use overlay_proto::ethernet::MacAddr;
use overlay_proto::wire::{DATA_HEADER_LEN, DATA_OVERHEAD};
use tapmesh_sim::Net;
use tapmesh_sim::build::{network, node_addr, switch_addr};
use tapmesh_sim::frames::{frame, mac};
use tapmesh_switch::NodeId;
use tapmesh_switch::mirror::MirrorSpec;
use tapmesh_switch::vlan::NO_VLAN;
use tapmesh_switch::workers::OpenTable;
use tapmesh_switch::workers::batch::Opening;
use tapmesh_switch::workers::fastpath::FastTable;
use tapmesh_switch::workers::forward::{Forwarder, Step};
use tapmesh_switch::workers::thread::open;

const NETWORK: u32 = 0;

/// `h1`..`hn` connected, h1 and h2 learned through the core.
fn learned(n: usize) -> Net {
    let (mut net, _) = network(n, false);
    net.advance(Duration::from_millis(100));
    net.send(0, &frame([0xff; 6], mac(1), 900));
    net.send(1, &frame([0xff; 6], mac(2), 901));
    net
}

/// What a worker would have: the core's published sessions and fast path.
fn published(net: &Net) -> (OpenTable, FastTable) {
    let (open, fast) = (OpenTable::default(), FastTable::default());
    for r in net.switch().receivers() {
        open.publish(NETWORK, r);
    }
    let epoch = net.switch().fast_epoch();
    fast.publish(NETWORK, epoch, net.switch().fast_path(net.now));
    (open, fast)
}

/// Node `i` sealed `f` for the switch: the datagram, not delivered.
fn from_node(net: &mut Net, i: usize, f: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; DATA_HEADER_LEN + f.len() + DATA_OVERHEAD];
    buf[DATA_HEADER_LEN..DATA_HEADER_LEN + f.len()].copy_from_slice(f);
    let r = (net.nodes[i].handle_tap_frame(net.now, &mut buf, f.len()))
        .expect("sealed")
        .expect("a datagram");
    assert_eq!(net.nodes[i].destination(), switch_addr());
    buf[r].to_vec()
}

/// A worker's step for datagram `d` from node `i`; a forwarded datagram is
/// put on the wire from the switch.
fn worker(
    net: &mut Net,
    tables: &(OpenTable, FastTable),
    fwd: &mut Forwarder,
    i: usize,
    mut d: Vec<u8>,
) -> Step {
    let Opening::Opened(Ok(range)) = open(&tables.0, net.now, &mut d) else {
        panic!("the worker opens it");
    };
    let step = fwd.step(net.now, &tables.1, node_addr(i), &d, range);
    if let Step::Send { to, stride } = step {
        assert_eq!(stride, None, "one small datagram");
        net.inject(switch_addr(), to, fwd.out().to_vec());
        net.deliver();
    }
    step
}

#[test]
fn a_worker_forwards_known_unicast_and_leaves_the_rest_to_the_core() {
    let mut net = learned(3);
    let tables = published(&net);
    let mut fwd = Forwarder::new(1);
    let d = from_node(&mut net, 0, &frame(mac(2), mac(1), 1));
    let step = worker(&mut net, &tables, &mut fwd, 0, d);
    assert_eq!(
        step,
        Step::Send {
            to: node_addr(1),
            stride: None
        }
    );
    assert_eq!((net.received(1, 1), net.received(2, 1)), (1, 0));
    // The core's counters include it.
    let s = net.switch().status(net.now, false);
    let h1 = s.nodes.iter().find(|n| n.name == "h1").unwrap();
    let h2 = s.nodes.iter().find(|n| n.name == "h2").unwrap();
    assert_eq!((h1.counters.rx_frames, h2.counters.tx_frames), (2, 2));
    assert_eq!(s.forwarded.unicast, 1);
    // Every reader agrees.
    assert_eq!(net.switch().forwarded().unicast, 1);

    // Unknown destination, broadcast, an unlearned source: the core's.
    for (k, f) in [
        frame(mac(3), mac(1), 2),
        frame([0xff; 6], mac(1), 3),
        frame(mac(2), mac(9), 4),
    ]
    .into_iter()
    .enumerate()
    {
        let d = from_node(&mut net, 0, &f);
        assert_eq!(
            worker(&mut net, &tables, &mut fwd, 0, d),
            Step::Core,
            "frame {k}"
        );
    }
    // From a different address than the port's endpoint (roaming): the core's.
    let mut d = from_node(&mut net, 0, &frame(mac(2), mac(1), 5));
    let Opening::Opened(Ok(range)) = open(&tables.0, net.now, &mut d) else {
        panic!("opened");
    };
    let elsewhere = SocketAddr::from(([198, 18, 0, 99], 4000));
    assert_eq!(
        fwd.step(net.now, &tables.1, elsewhere, &d, range),
        Step::Core
    );
}

#[test]
fn a_revoked_or_mirrored_network_goes_through_the_core() {
    let mut net = learned(3);
    let tables = published(&net);
    let mut fwd = Forwarder::new(1);
    // Revoked: what was published no longer counts.
    net.switch().revoke_fast_path();
    let d = from_node(&mut net, 0, &frame(mac(2), mac(1), 1));
    assert_eq!(worker(&mut net, &tables, &mut fwd, 0, d), Step::Core);
    // Published again: forwarded.
    let tables = published(&net);
    let d = from_node(&mut net, 0, &frame(mac(2), mac(1), 2));
    assert!(matches!(
        worker(&mut net, &tables, &mut fwd, 0, d),
        Step::Send { .. }
    ));
    // A mirror: nothing is published.
    net.switch_mut()
        .add_mirror(MirrorSpec::new("m", "h1", "h3"))
        .unwrap();
    assert!(net.switch().fast_path(net.now).is_none());
    // A forgotten node: its frames and frames to it go to the core.
    net.switch_mut().remove_mirror("m");
    let tables = published(&net);
    assert!(tables.1.get(NETWORK).is_some());
    net.faults.set_cut(node_addr(1), true);
    net.advance(Duration::from_secs(40));
    assert!(!net.switch().is_connected(tapmesh_switch::NodeId(1)));
    assert!(tables.1.get(NETWORK).is_none(), "the timeout revoked it");
}

#[test]
fn the_core_and_a_worker_sealing_under_one_session_never_reuse_a_counter() {
    let mut net = learned(3);
    let tables = published(&net);
    let mut fwd = Forwarder::new(1);
    // Interleave: h1 -> h2 by the worker, h3 -> h2 by the core, both sealed
    // under h2's one session. Had they two counters, h2 would refuse the
    // second of each pair as a replay.
    net.send(2, &frame([0xff; 6], mac(3), 902));
    for t in 0..50u32 {
        let d = from_node(&mut net, 0, &frame(mac(2), mac(1), 1000 + t));
        assert!(matches!(
            worker(&mut net, &tables, &mut fwd, 0, d),
            Step::Send { .. }
        ));
        net.send(2, &frame(mac(2), mac(3), 2000 + t));
    }
    for t in 0..50u32 {
        assert_eq!(net.received(1, 1000 + t), 1, "worker's {t}");
        assert_eq!(net.received(1, 2000 + t), 1, "core's {t}");
    }
}

#[test]
fn a_node_heard_only_by_a_worker_outlives_the_node_timeout() {
    let mut net = learned(3);
    let mut tables = published(&net);
    let mut fwd = Forwarder::new(1);
    // Count every datagram a node gets to the core itself: h1 and h2 must
    // send it none (their frames go to the worker, and as both send and
    // hear every 500 ms they owe no keepalive and no probe), so only what
    // the worker heard can keep them connected.
    net.observe = Some(|_| true);
    // h3 really goes silent.
    net.set_cut(2, true);
    let start = net.now;
    let mut tag = 3000;
    while net.now < start + Duration::from_secs(45) {
        // As the shell does: publish again once the core revoked (h3's
        // timeout does).
        if tables.1.epoch(NETWORK) != Some(net.switch().fast_epoch()) {
            tables = published(&net);
        }
        for (i, dst, src) in [(0, mac(2), mac(1)), (1, mac(1), mac(2))] {
            let t = net.now - start;
            let id = NodeId(i as u32);
            assert!(
                net.switch().is_connected(id),
                "h{} timed out at {t:?}",
                i + 1
            );
            let d = from_node(&mut net, i, &frame(dst, src, tag));
            let step = worker(&mut net, &tables, &mut fwd, i, d);
            assert!(matches!(step, Step::Send { .. }), "frame {tag}: {step:?}");
            assert_eq!(net.received(1 - i, tag), 1, "frame {tag}");
            tag += 1;
        }
        net.tick(Duration::from_millis(500));
    }
    assert_eq!(net.observed(node_addr(0), switch_addr()), 0);
    assert_eq!(net.observed(node_addr(1), switch_addr()), 0);
    let sw = net.switch();
    assert!(sw.is_connected(NodeId(0)), "h1 timed out");
    assert!(sw.is_connected(NodeId(1)), "h2 timed out");
    assert_eq!(
        sw.lookup_mac(net.now, NO_VLAN, &MacAddr(mac(1))),
        Some(NodeId(0))
    );
    assert_eq!(
        sw.lookup_mac(net.now, NO_VLAN, &MacAddr(mac(2))),
        Some(NodeId(1))
    );
    // The silent one did time out, in the same 45 s.
    assert!(!sw.is_connected(NodeId(2)), "h3 did not time out");
    assert_eq!(sw.status(net.now, false).sessions.node_timeouts, 1);
}
