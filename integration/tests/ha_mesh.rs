//! Mesh mode across two switches on a real etcd ([`Cluster::mesh`]): h1 is
//! homed on sw1, h2 and h3 on sw2. Every switch vouches for members homed
//! on the others, so h1 holds direct sessions with h2 and h3 and their
//! unicast passes neither switch. Removing h3 from sw1's config (reload)
//! takes h3 from h1 (`peer-gone`) and h1 refuses its handshakes from then
//! on, while h3 keeps its direct path to h2, whose switch still lists it.
use std::time::Duration;

use integration::Topology;
use integration::cluster::Cluster;
use integration::status::{counter, peer_path as path};
use integration::topology::overlay_v4;
use integration::wait_until;

const UP: Duration = Duration::from_secs(30);

/// Unicast frames both switches forwarded.
fn unicast(c: &Cluster) -> u64 {
    (1..=2)
        .map(|k| counter(&c.switch_status(k).unwrap(), &["forwarded", "unicast"]))
        .sum()
}

#[test]
fn nodes_on_different_switches_go_direct_and_a_node_removed_from_one_switch_loses_its_nodes() {
    let started = std::time::Instant::now();
    let mut c = Cluster::mesh(2, &[1, 2, 2]);
    for i in 1..=3 {
        c.topo_mut().start_node(i);
    }
    c.wait_pairs(&[1, 2, 3], UP)
        .unwrap_or_else(|e| panic!("overlay did not come up: {e}"));
    let topo = c.topo();
    for (a, b) in [(1, 2), (2, 1), (1, 3), (3, 1), (2, 3)] {
        assert!(
            wait_until(Duration::from_secs(10), || path(topo, a, b).as_deref()
                == Some("direct")),
            "h{a} -> h{b} not direct: {}",
            topo.node_status(a)
        );
    }
    assert_eq!(c.node_home(1).as_deref(), Some("sw1"));
    assert_eq!(c.node_home(2).as_deref(), Some("sw2"));
    // Known unicast between h1 and h2 passes neither switch: 20 pings
    // relayed would be 40 frames through each.
    assert!(topo.ping(1, overlay_v4(2)), "h1 -> h2 learns the MACs");
    let before = unicast(&c);
    for _ in 0..20 {
        assert!(topo.ping(1, overlay_v4(2)), "h1 -> h2");
    }
    let through = unicast(&c) - before;
    assert!(
        through < 10,
        "{through} unicast frames through the switches"
    );

    // sw1 no longer admits h3 (h3 stays homed on sw2, which still does).
    let r = c.reload_switch_without(1, &[3]);
    assert_eq!(r.code, 0, "reload: {} {}", r.stdout, r.stderr);
    let topo = c.topo();
    let dropped = std::time::Instant::now();
    assert!(
        wait_until(Duration::from_secs(5), || path(topo, 1, 3).is_none()),
        "h1 still has h3: {}",
        topo.node_status(1)
    );
    eprintln!("h1 dropped h3 {:?} after the reload", dropped.elapsed());
    // h3's initiations (sw2 still vouches h1 to it) are refused, and h3
    // never gets a direct path to h1.
    let refused = |topo: &Topology| counter(&topo.node_status(1), &["drops", "handshake_failed"]);
    let before = refused(topo);
    assert!(
        wait_until(Duration::from_secs(15), || refused(topo) > before),
        "h3's handshakes reach h1 unrefused: {}",
        topo.node_status(1)
    );
    assert!(path(topo, 1, 3).is_none(), "h3 got back into h1's peers");
    assert_ne!(path(topo, 3, 1).as_deref(), Some("direct"));
    // h3 and h2, and h1 and h2, keep their direct paths.
    assert_eq!(path(topo, 3, 2).as_deref(), Some("direct"));
    assert!(topo.ping(3, overlay_v4(2)), "h3 -> h2");
    assert_eq!(path(topo, 1, 2).as_deref(), Some("direct"));
    assert!(topo.ping(1, overlay_v4(2)), "h1 -> h2");
    eprintln!("wall time {:?}", started.elapsed());
}
