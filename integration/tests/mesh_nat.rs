//! Mesh mode across NATs and underlay address changes (issue 3, acceptance 4
//! and "a node whose underlay address changes is reachable again within
//! 10 s"): the real binaries in network namespaces, the switch with
//! `mode = "mesh"`.
use std::time::{Duration, Instant};

use integration::status::{peer_entry, peer_path, switch_node};
use integration::topology::{nat_host_v4, nat_router_wan_v4, overlay_v4, overlay_v6, underlay_v4};
use integration::traffic::ping_in_background;
use integration::{Topology, wait_until};
use serde_json::Value;

/// How long a fresh overlay gets to pass pings between every pair.
const UP: Duration = Duration::from_secs(20);

/// Frames the switch received from host `i`.
fn switch_rx_frames(topo: &Topology, i: usize) -> u64 {
    let s = topo.switch_status();
    switch_node(&s, topo.host_name(i))
        .and_then(|n| n["rx_frames"].as_u64())
        .unwrap_or_else(|| panic!("no rx_frames for h{i} in {s}"))
}

/// Acceptance 4: h1 and h2 each behind its own masquerading NAT router, the
/// switch on the public side. The path between them becomes direct (UDP hole
/// punching coordinated by the switch), and unicast then bypasses the switch.
#[test]
fn two_nodes_behind_separate_nats_go_direct() {
    let mut topo = Topology::mesh_behind_nats(2);
    // The wiring really separates the hosts: h1 cannot reach h2's private
    // address, only the public side.
    let h2_private = nat_host_v4(2).to_string();
    let out = topo
        .ns(1)
        .exec("ping", &["-n", "-q", "-c", "1", "-W", "1", &h2_private]);
    assert!(
        !out.status.success(),
        "h1 reaches h2's private address {h2_private}: the NAT wiring is wrong"
    );
    let t0 = Instant::now();
    topo.start_all(UP);
    eprintln!("overlay up across the NATs after {:?}", t0.elapsed());
    for (a, b) in [(1, 2), (2, 1)] {
        assert!(topo.ping(a, overlay_v4(b)), "h{a} -> h{b} over IPv4");
        assert!(topo.ping(a, overlay_v6(b)), "h{a} -> h{b} over IPv6");
    }

    let t = Instant::now();
    let direct = wait_until(Duration::from_secs(15), || {
        peer_path(&topo, 1, 2).as_deref() == Some("direct")
            && peer_path(&topo, 2, 1).as_deref() == Some("direct")
    });
    assert!(
        direct,
        "h1 <-> h2 not direct within 15 s: h1 {:?}, h2 {:?}",
        peer_entry(&topo, 1, 2),
        peer_entry(&topo, 2, 1)
    );
    eprintln!(
        "direct both ways {:?} after the overlay was up",
        t.elapsed()
    );

    // The direct endpoint is the other NAT's public address (the hosts'
    // private addresses are not reachable from each other).
    for (a, b) in [(1, 2), (2, 1)] {
        let peer = peer_entry(&topo, a, b).unwrap_or(Value::Null);
        let endpoint = peer["endpoint"].as_str().unwrap_or("");
        assert!(
            endpoint.starts_with(&format!("{}:", nat_router_wan_v4(b))),
            "h{a} reaches h{b} through r{b}'s public address: {peer}"
        );
    }

    let (rx1, rx2) = (switch_rx_frames(&topo, 1), switch_rx_frames(&topo, 2));
    let (sent, got) = ping_in_background(topo.ns(1), overlay_v4(2).into(), "0.05", 50).result();
    assert_eq!(got, sent, "h1 -> h2 pings across the NATs");
    let (d1, d2) = (
        switch_rx_frames(&topo, 1) - rx1,
        switch_rx_frames(&topo, 2) - rx2,
    );
    eprintln!("frames through the switch during {sent} pings: from h1 {d1}, from h2 {d2}");
    // 50 echo requests and 50 replies: none of them may pass the switch
    // (a few ARP / neighbour discovery multicasts may).
    assert!(
        d1 < 10 && d2 < 10,
        "unicast passed the switch: from h1 {d1}, from h2 {d2}"
    );
    assert_eq!(peer_path(&topo, 1, 2).as_deref(), Some("direct"));
    topo.assert_all_running();
}

/// "A node whose underlay address changes is reachable again within 10 s":
/// h1's underlay address changes while h2 pings it.
#[test]
fn node_whose_underlay_address_changes_is_reachable_again_within_10s() {
    let mut topo = Topology::mesh(3);
    topo.start_all(UP);
    assert!(
        wait_until(Duration::from_secs(10), || {
            peer_path(&topo, 2, 1).as_deref() == Some("direct")
        }),
        "h2 -> h1 not direct before the change: {:?}",
        peer_entry(&topo, 2, 1)
    );
    let old = underlay_v4(1);
    let new = "198.18.0.31";

    // Continuous pings h2 -> h1 at 10/s for 20 s across the change.
    let bg = ping_in_background(topo.ns(2), overlay_v4(1).into(), "0.1", 200);
    assert!(
        wait_until(Duration::from_secs(3), || topo.ping(2, overlay_v4(1))),
        "h2 -> h1 before the change"
    );
    topo.ns(1)
        .ip(&["addr", "del", &format!("{old}/24"), "dev", "eth0"]);
    topo.ns(1)
        .ip(&["addr", "add", &format!("{new}/24"), "dev", "eth0"]);
    let changed = Instant::now();

    let back = wait_until(Duration::from_secs(10), || topo.ping(2, overlay_v4(1)));
    let took = changed.elapsed();
    assert!(
        back,
        "h2 -> h1 not answered within 10 s of h1's address change; h2's view {:?}, switch {}",
        peer_entry(&topo, 2, 1),
        topo.switch_status()
    );
    eprintln!("h1 reachable again {took:?} after its address changed");
    // Not a single lucky ping: it stays reachable, from the others too.
    for from in [2, 3] {
        for _ in 0..5 {
            assert!(
                topo.ping_ok_within(from, overlay_v4(1), Duration::from_secs(2)),
                "h{from} -> h1 after recovery"
            );
        }
    }
    assert!(topo.ping_ok_within(1, overlay_v4(2), Duration::from_secs(2)));

    let (sent, got) = bg.result();
    let lost = sent - got;
    eprintln!("continuous h2 -> h1 at 100 ms: {got}/{sent} answered ({lost} lost)");
    assert!(
        lost < 100,
        "{lost} pings at 100 ms lost: a gap of 10 s or more"
    );
    let peer = peer_entry(&topo, 2, 1).unwrap_or(Value::Null);
    eprintln!("h2's view of h1 afterwards: {peer}");
    topo.assert_all_running();
}
