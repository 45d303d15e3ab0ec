//! A mesh node's paths in synthetic time ([`tapmesh_sim`]): every pair of
//! members goes direct; when the direct path dies the peer falls back to
//! the relay through the switch without losing the flow, and goes direct
//! again once the path is back.
use std::time::Duration;

use tapmesh_node::peers::{PEER_RETRY_MAX, Path, PathEvent};
use tapmesh_sim::Net;
use tapmesh_sim::build::network;
use tapmesh_sim::frames::{frame, mac};

/// Three connected mesh nodes that announced their MACs.
fn mesh() -> Net {
    let (mut net, _) = network(3, true);
    net.advance(Duration::from_secs(2));
    for i in 0..3u8 {
        net.send(i.into(), &frame([0xff; 6], mac(i + 1), 1000 + u32::from(i)));
    }
    net.advance(Duration::from_millis(100));
    net
}

fn path(net: &Net, i: usize, peer: usize) -> Option<Path> {
    net.nodes[i]
        .peers()
        .path_of(net.now, &format!("h{}", peer + 1))
}

/// Node `i`'s path changes for `peer` since the last call.
fn events(net: &mut Net, i: usize, peer: usize) -> Vec<Path> {
    let name = format!("h{}", peer + 1);
    std::iter::from_fn(|| net.nodes[i].poll_path_event())
        .filter(|e: &PathEvent| e.peer == name)
        .map(|e| e.path)
        .collect()
}

#[test]
fn direct_paths_between_every_pair_carry_unicast_past_the_switch() {
    let mut net = mesh();
    for i in 0..3 {
        for j in (0..3).filter(|j| *j != i) {
            assert_eq!(
                path(&net, i, j),
                Some(Path::Direct),
                "h{} -> h{}",
                i + 1,
                j + 1
            );
        }
    }
    let relayed = net.nodes[1].counters().relayed_rx_frames;
    let to = net.send(0, &frame(mac(2), mac(1), 1));
    assert_eq!(to, Some(net.addrs[1]), "sent straight to h2");
    assert_eq!(net.received(1, 1), 1);
    assert_eq!(net.nodes[1].counters().relayed_rx_frames, relayed);
}

#[test]
fn a_dead_direct_path_falls_back_to_the_relay_and_comes_back() {
    let mut net = mesh();
    events(&mut net, 0, 1);
    net.set_blocked(0, 1, true);
    // h1 sends h2 a frame every 100 ms; none may be lost for long.
    let mut t = 0;
    let mut lost = Duration::ZERO;
    let start = net.now;
    while net.now < start + Duration::from_secs(5) {
        net.send(0, &frame(mac(2), mac(1), t));
        net.advance(Duration::from_millis(100));
        if net.received(1, t) == 0 {
            lost += Duration::from_millis(100);
        }
        t += 1;
    }
    assert!(lost <= Duration::from_secs(1), "frames lost for {lost:?}");
    assert_eq!(path(&net, 0, 1), Some(Path::Relayed));
    assert_eq!(path(&net, 0, 2), Some(Path::Direct), "h1 -> h3 untouched");
    assert_eq!(events(&mut net, 0, 1), [Path::Relayed]);
    let relayed = net.nodes[1].counters().relayed_rx_frames;
    let to = net.send(0, &frame(mac(2), mac(1), t));
    assert_eq!(to, Some(net.switch_addr), "relayed through the switch");
    assert_eq!(net.received(1, t), 1);
    assert_eq!(net.nodes[1].counters().relayed_rx_frames, relayed + 1);
    t += 1;
    // The path is back: direct again within a few retries, with no loss.
    net.set_blocked(0, 1, false);
    let back = net.now;
    while path(&net, 0, 1) != Some(Path::Direct) && net.now < back + 4 * PEER_RETRY_MAX {
        net.send(0, &frame(mac(2), mac(1), t));
        net.advance(Duration::from_millis(100));
        assert_eq!(net.received(1, t), 1, "frame {t} lost while going direct");
        t += 1;
    }
    assert_eq!(path(&net, 0, 1), Some(Path::Direct), "never direct again");
    assert!(
        net.now - back <= 2 * PEER_RETRY_MAX,
        "direct after {:?}",
        net.now - back
    );
    assert_eq!(events(&mut net, 0, 1), [Path::Direct]);
    let to = net.send(0, &frame(mac(2), mac(1), t));
    assert_eq!(to, Some(net.addrs[1]), "straight to h2 again");
    assert_eq!(net.received(1, t), 1);
}
