//! A mesh node's paths in synthetic time ([`tapmesh_sim`]): every pair of
//! members goes direct; when the direct path dies the peer falls back to
//! the relay through the switch without losing the flow, and goes direct
//! again once the path is back.
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{mesh, path};
use overlay_proto::timers::REKEY_AFTER_TIME;
use overlay_proto::wire::Header;
use tapmesh_node::counters::DropReason;
use tapmesh_node::engine::{Node, TapWrite};
use tapmesh_node::peers::{PEER_RETRY_MAX, Path, PathEvent};
use tapmesh_sim::Net;
use tapmesh_sim::frames::{frame, mac};

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

/// A datagram from a direct peer opened on another thread (a node's
/// opening thread, through the peer session's shared receive half) is
/// handled by `Node::handle_opened` as `handle_datagram` handles one: the
/// frame delivered and counted for the peer, a forgery and a replay
/// dropped and counted by reason.
#[test]
fn a_peer_datagram_opened_elsewhere_counts_as_the_node_would() {
    let mut net = mesh();
    // h2 moved away for a moment: h1's direct datagrams for it are kept.
    let h2 = net.addrs[1];
    net.addrs[1] = "198.18.200.2:9".parse().unwrap();
    let sent = [7, 8, 9].map(|t| frame(mac(2), mac(1), t));
    for f in &sent {
        assert_eq!(net.send(0, f), Some(h2), "not sent straight to h2");
    }
    net.addrs[1] = h2;
    let direct: Vec<Vec<u8>> = net
        .take_strays()
        .into_iter()
        .filter(|(from, to, _)| *from == 0 && *to == h2)
        .map(|(_, _, d)| d)
        .collect();
    assert_eq!(direct.len(), 3, "h1 sent h2 {} datagrams", direct.len());
    let (now, h1) = (net.now, net.addrs[0]);
    let node = &mut net.nodes[1];
    let index = Header::new_checked(&direct[0][..])
        .unwrap()
        .receiver_index();
    let rx = node
        .open_sessions(now)
        .find(|s| s.local_index() == index)
        .map(|s| Arc::clone(s.receiver()))
        .expect("h1's session with h2 is not one the opening threads may open under");
    let rx_frames = |node: &Node| {
        node.peers()
            .status(now)
            .iter()
            .find(|p| p.name == "h1")
            .map(|p| p.rx_frames)
            .unwrap()
    };
    let counts = |node: &Node| {
        (
            node.counters().udp_rx_datagrams,
            rx_frames(node),
            node.drops().total(),
        )
    };

    // The first as the node task opens it, the second as a thread does.
    let before = counts(node);
    let mut d = direct[0].clone();
    match node.handle_datagram(now, h1, &mut d) {
        Some(TapWrite::InPlace(r)) => assert_eq!(&d[r], &sent[0][..]),
        other => panic!("the node task did not deliver it: {other:?}"),
    }
    let by_node = counts(node);
    let mut d = direct[1].clone();
    let r = rx.open(&mut d);
    match node.handle_opened(now, h1, &mut d, r) {
        Some(TapWrite::InPlace(r)) => assert_eq!(&d[r], &sent[1][..]),
        other => panic!("the opened datagram was not delivered: {other:?}"),
    }
    let by_thread = counts(node);
    assert_eq!(by_node, (before.0 + 1, before.1 + 1, before.2));
    assert_eq!(by_thread, (by_node.0 + 1, by_node.1 + 1, by_node.2));

    let drops = node.drops().clone();
    let mut forged = direct[2].clone();
    *forged.last_mut().unwrap() ^= 1;
    let r = rx.open(&mut forged);
    assert_eq!(r, Err(overlay_proto::Error::BadTag));
    assert!(node.handle_opened(now, h1, &mut forged, r).is_none());
    let mut again = direct[1].clone();
    let r = rx.open(&mut again);
    assert_eq!(r, Err(overlay_proto::Error::Replay));
    assert!(node.handle_opened(now, h1, &mut again, r).is_none());
    assert_eq!(
        node.drops().get(DropReason::BadTag),
        drops.get(DropReason::BadTag) + 1
    );
    assert_eq!(
        node.drops().get(DropReason::Replay),
        drops.get(DropReason::Replay) + 1
    );
    assert_eq!(node.drops().total(), drops.total() + 2);
    assert_eq!(node.counters().udp_rx_datagrams, by_thread.0 + 2);
    assert_eq!(rx_frames(node), by_thread.1);
}

/// What a node lends its opening threads follows its peers' sessions: each
/// direct peer's current session besides the uplink's, and after a rekey
/// the new one, not the old.
#[test]
fn the_sessions_lent_to_the_opening_threads_follow_a_peer_rekey() {
    let mut net = mesh();
    // h2's lent sessions: (owner, receiver index).
    let lent = |net: &Net| -> Vec<(String, u32)> {
        let node = &net.nodes[1];
        node.open_sessions(net.now)
            .map(|s| {
                let owner = node
                    .peers()
                    .lookup(s.local_index())
                    .and_then(|k| node.peers().port(k))
                    .map_or("uplink".to_string(), |(name, _)| name.to_string());
                (owner, s.local_index())
            })
            .collect()
    };
    let index_of = |l: &[(String, u32)], who: &str| {
        l.iter()
            .find(|(o, _)| o == who)
            .map(|(_, i)| *i)
            .unwrap_or_else(|| panic!("{who} not lent: {l:?}"))
    };
    let before = lent(&net);
    assert_eq!(before.len(), 3, "the uplink and two peers: {before:?}");
    let start = net.now;
    let mut t = 0;
    while net.now < start + REKEY_AFTER_TIME + Duration::from_secs(40) {
        net.send(0, &frame(mac(2), mac(1), t));
        net.send(1, &frame(mac(1), mac(2), t));
        net.advance(Duration::from_secs(1));
        t += 1;
    }
    let after = lent(&net);
    assert_eq!(after.len(), 3, "the uplink and two peers: {after:?}");
    assert_ne!(
        index_of(&before, "h1"),
        index_of(&after, "h1"),
        "h1's session was not rekeyed or the old one is still lent: {before:?} -> {after:?}"
    );
}
