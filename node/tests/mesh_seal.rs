//! Sealing for mesh peers on the workers, in synthetic time
//! ([`tapmesh_sim`]): the copy of the routes the node task publishes
//! ([`MeshRoutes`], [`MeshPath`]) sends a frame to a peer exactly when the
//! node task would and has nothing else to do for it, follows rekeys and
//! path changes, and what the workers seal keeps the peer's counters and
//! the direct path's liveness as the node task's own sends do.
mod common;

use std::time::Duration;

use common::{mesh, path};
use overlay_proto::timers::REKEY_AFTER_TIME;
use overlay_proto::wire::{DATA_HEADER_LEN, DATA_OVERHEAD, Header};
use tapmesh_node::engine::Node;
use tapmesh_node::peers::Path;
use tapmesh_node::workers::mesh::{FOLD_EVERY, Geometry, MeshPath, MeshRoutes};
use tapmesh_sim::Net;
use tapmesh_sim::frames::{frame, group_frame, mac};

/// What node `i`'s workers are to seal by now, if it changed since the
/// last call.
fn refresh(net: &Net, i: usize, routes: &mut MeshRoutes) -> Option<Option<MeshPath>> {
    let node = &net.nodes[i];
    routes.refresh(node.mesh_for_workers(), Geometry::of(node, false), net.now)
}

/// Seal `f` as a worker would by `path` for node `i` and put it on the
/// wire; returns the datagram, or `None` if the copy leaves `f` to the
/// node task.
fn seal_as_worker(net: &mut Net, i: usize, path: &MeshPath, f: &[u8]) -> Option<Vec<u8>> {
    let r = path.route(net.now, f)?.peer;
    let mut buf = vec![0u8; DATA_HEADER_LEN + f.len() + DATA_OVERHEAD];
    buf[DATA_HEADER_LEN..DATA_HEADER_LEN + f.len()].copy_from_slice(f);
    let n = r.sender.seal(0, &mut buf, f.len()).unwrap();
    buf.truncate(n);
    r.tx.sealed();
    net.inject(net.addrs[i], r.to, buf.clone());
    Some(buf)
}

fn tx_frames(node: &Node, now: std::time::Instant, peer: &str) -> u64 {
    node.peers()
        .status(now)
        .iter()
        .find(|p| p.name == peer)
        .map_or(0, |p| p.tx_frames)
}

#[test]
fn the_copy_routes_known_unicast_to_a_direct_peer_and_leaves_the_rest() {
    let mut net = mesh();
    let mut routes = MeshRoutes::default();
    let p = refresh(&net, 0, &mut routes)
        .expect("nothing published")
        .expect("no direct peer published");
    assert!(refresh(&net, 0, &mut routes).is_none(), "nothing changed");

    // Known unicast from an announced MAC: to h2, and h2 takes it.
    let to_h2 = frame(mac(2), mac(1), 1);
    let to = |p: &MeshPath, at, f: &[u8]| p.route(at, f).map(|r| (r.peer.to, r.announce));
    assert_eq!(to(&p, net.now, &to_h2), Some((net.addrs[1], None)));
    assert_eq!(
        to(&p, net.now, &frame(mac(3), mac(1), 2)),
        Some((net.addrs[2], None))
    );
    seal_as_worker(&mut net, 0, &p, &to_h2).unwrap();
    net.deliver();
    assert_eq!(
        net.received(1, 1),
        1,
        "h2 did not take the worker's datagram"
    );

    // Left to the node task: broadcast, multicast, unknown unicast, a
    // source MAC it never announced, a runt.
    let leave = [
        frame([0xff; 6], mac(1), 3),
        group_frame(1, [239, 1, 2, 3], 4),
        frame(mac(9), mac(1), 5),
        frame(mac(2), mac(7), 6),
        frame(mac(2), mac(1), 7)[..13].to_vec(),
    ];
    for f in &leave {
        assert!(p.route(net.now, f).is_none(), "routed {f:02x?}");
    }
    // A source MAC due to be announced again: sealed (its flows stay on
    // the worker), and the node task asked once to announce it.
    let due = net.now + Duration::from_secs(61);
    assert_eq!(
        to(&p, due, &to_h2),
        Some((net.addrs[1], Some(mac(1).into())))
    );
    assert_eq!(to(&p, due, &to_h2), Some((net.addrs[1], None)));
    net.advance(Duration::from_secs(61));
    let announced = net.nodes[0].peers().generation();
    let now = net.now;
    net.nodes[0].note_local_mac(now, mac(1).into());
    assert_ne!(
        net.nodes[0].peers().generation(),
        announced,
        "not announced"
    );
    let p = refresh(&net, 0, &mut routes)
        .expect("announced, no new copy")
        .unwrap();
    assert_eq!(to(&p, net.now, &to_h2), Some((net.addrs[1], None)));

    // The node task announces the new local MAC: a new copy routes it.
    assert_eq!(net.send(0, &leave[3]), Some(net.addrs[1]));
    let p = refresh(&net, 0, &mut routes)
        .expect("a new local MAC, no new copy")
        .unwrap();
    assert_eq!(to(&p, net.now, &leave[3]), Some((net.addrs[1], None)));
}

#[test]
fn a_new_copy_follows_a_peer_rekey() {
    let mut net = mesh();
    let mut routes = MeshRoutes::default();
    let mut copy = refresh(&net, 0, &mut routes).unwrap().unwrap();
    let index = |d: &[u8]| Header::new_checked(d).unwrap().receiver_index();
    // The receiver index h1's own session with h2 seals for now.
    let current = |net: &Net| {
        let d = net.nodes[0]
            .peers()
            .direct_peers(net.now)
            .find(|d| d.to == net.addrs[1])
            .expect("h2 not direct");
        let mut buf = vec![0u8; DATA_HEADER_LEN + DATA_OVERHEAD];
        d.session.sender().seal(0, &mut buf, 0).unwrap();
        index(&buf)
    };
    let first = current(&net);
    let start = net.now;
    let mut t = 10;
    while net.now < start + REKEY_AFTER_TIME + Duration::from_secs(40) {
        net.advance(Duration::from_secs(1));
        // The node task's turn (it announces h1's MAC again when due).
        net.send(0, &frame(mac(2), mac(1), t));
        net.send(1, &frame(mac(1), mac(2), t));
        if let Some(p) = refresh(&net, 0, &mut routes) {
            copy = p.expect("h2 left the copy");
        }
        // After each turn the copy seals under h1's current session.
        let d = seal_as_worker(&mut net, 0, &copy, &frame(mac(2), mac(1), t))
            .unwrap_or_else(|| panic!("not routed at {:?}", net.now - start));
        assert_eq!(index(&d), current(&net), "at {:?}", net.now - start);
        net.deliver();
        assert_eq!(net.received(1, t), 2, "h2 did not take both");
        t += 1;
    }
    assert_ne!(current(&net), first, "never rekeyed");
}

#[test]
fn a_suspect_or_relayed_peer_leaves_the_copy() {
    let mut net = mesh();
    let mut routes = MeshRoutes::default();
    refresh(&net, 0, &mut routes).unwrap().unwrap();
    // h2 loses its direct path to h1 and relays to it; h1, which sent
    // nothing, only suspects the path: h2 is no longer in h1's copy.
    net.set_blocked(0, 1, true);
    let relayed = |net: &Net| net.nodes[0].counters().relayed_rx_frames;
    let before = relayed(&net);
    let mut t = 0;
    let start = net.now;
    while relayed(&net) == before && net.now < start + Duration::from_secs(3) {
        net.send(1, &frame(mac(1), mac(2), t));
        net.advance(Duration::from_millis(50));
        t += 1;
    }
    assert!(relayed(&net) > before, "h2 never relayed");
    assert_eq!(path(&net, 0, 1), Some(Path::Direct), "suspect only");
    let p = refresh(&net, 0, &mut routes)
        .expect("h2 suspect, no new copy")
        .unwrap();
    assert!(p.route(net.now, &frame(mac(2), mac(1), 1)).is_none());
    assert!(p.route(net.now, &frame(mac(3), mac(1), 2)).is_some());
    // Then relayed, as before: still out.
    net.advance(Duration::from_secs(2));
    assert_eq!(path(&net, 0, 1), Some(Path::Relayed));
    if let Some(p) = refresh(&net, 0, &mut routes) {
        assert!(
            p.unwrap()
                .route(net.now, &frame(mac(2), mac(1), 1))
                .is_none()
        );
    }
    assert!(
        refresh(&net, 0, &mut routes).is_none(),
        "a new copy though nothing changed"
    );
}

#[test]
fn what_the_workers_seal_counts_and_keeps_the_direct_path_alive() {
    let mut net = mesh();
    let mut routes = MeshRoutes::default();
    let p = refresh(&net, 0, &mut routes).unwrap().unwrap();
    let before = tx_frames(&net.nodes[0], net.now, "h2");
    let r = p.route(net.now, &frame(mac(2), mac(1), 1)).unwrap().peer;
    assert!(r.tx.sealed(), "the first send does not wake the node task");
    assert!(!r.tx.sealed(), "woken again before it took note");
    let now = net.now;
    routes.fold(&mut net.nodes[0], now);
    assert_eq!(tx_frames(&net.nodes[0], net.now, "h2"), before + 2);
    assert!(r.tx.sealed(), "not woken after it took note");
    // The next note is taken no sooner than FOLD_EVERY later (the node
    // task wakes for it then).
    assert_eq!(routes.poll_timeout(), Some(now + FOLD_EVERY));
    routes.fold(&mut net.nodes[0], now);
    assert_eq!(tx_frames(&net.nodes[0], net.now, "h2"), before + 2);
    // A status snapshot takes note at once.
    routes.fold_now(&mut net.nodes[0], now);
    assert_eq!(tx_frames(&net.nodes[0], net.now, "h2"), before + 3);

    // Only the workers send to h2, and h2 no longer hears: h1 notices as
    // if it had sent them itself, and relays within a second.
    net.set_blocked(0, 1, true);
    let start = net.now;
    let mut t = 10;
    while path(&net, 0, 1) == Some(Path::Direct) && net.now < start + Duration::from_secs(3) {
        seal_as_worker(&mut net, 0, &p, &frame(mac(2), mac(1), t)).unwrap();
        let now = net.now;
        routes.fold(&mut net.nodes[0], now);
        net.advance(Duration::from_millis(50));
        t += 1;
    }
    assert_eq!(path(&net, 0, 1), Some(Path::Relayed));
    assert!(
        net.now - start <= Duration::from_secs(1),
        "relayed after {:?}",
        net.now - start
    );
    assert_eq!(
        tx_frames(&net.nodes[0], net.now, "h2"),
        before + 3 + u64::from(t - 10)
    );
}
