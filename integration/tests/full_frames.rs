//! Full-size frames (issue #6): a LAN with the standard 1500-byte MTU over a
//! 1500-byte underlay. A 1500-byte IP packet makes a 1514-byte frame and a
//! 1550-byte datagram, which does not fit; the overlay carries it as two
//! authenticated fragments and the far node reassembles it.
use std::time::Duration;

use integration::Topology;
use integration::status::counter;
use integration::topology::overlay_v4;

const UP: Duration = Duration::from_secs(20);

/// Two hosts whose TAPs have the standard 1500-byte MTU (the underlay veths
/// have 1500 too). ICMP frames of 1514 bytes cross as two fragments; TCP goes
/// as offloaded super-frames, cut into full-size fragments.
fn topology_1500() -> Topology {
    let mut topo = Topology::central(2);
    topo.set_tap_mtu(1500);
    topo
}

#[test]
fn dont_fragment_1472_byte_ping_crosses_a_1500_byte_underlay() {
    let mut topo = topology_1500();
    topo.start_all(UP);
    // The underlay really is 1500 bytes.
    let mtu = topo.ns(1).exec_ok("cat", &["/sys/class/net/eth0/mtu"]);
    assert_eq!(String::from_utf8_lossy(&mtu.stdout).trim(), "1500");
    let sent_before = counter(&topo.node_status(1), &["udp_tx_datagrams"]);
    let out = topo.ns(1).exec(
        "ping",
        &[
            "-n",
            "-c",
            "5",
            "-i",
            "0.2",
            "-W",
            "2",
            "-M",
            "do",
            "-s",
            "1472",
            &overlay_v4(2).to_string(),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "1472-byte DF ping failed:\n{text}");
    assert!(text.contains("5 received"), "{text}");
    // Each 1514-byte request frame left h1 as (at least) two fragments.
    let sent = counter(&topo.node_status(1), &["udp_tx_datagrams"]) - sent_before;
    assert!(sent >= 10, "5 full-size pings made only {sent} datagrams");
    // 1473 bytes exceed the 1500-byte TAP MTU: refused locally, as on any LAN.
    let too_big = topo.ns(1).exec(
        "ping",
        &[
            "-n",
            "-c",
            "1",
            "-W",
            "1",
            "-M",
            "do",
            "-s",
            "1473",
            &overlay_v4(2).to_string(),
        ],
    );
    assert!(!too_big.status.success());
    let st = topo.switch_status();
    assert_eq!(counter(&st, &["drops", "fragment"]), 0, "{}", st["drops"]);
}

#[test]
fn tcp_64_mib_with_full_size_segments_arrives_intact() {
    let mut topo = topology_1500();
    topo.start_all(UP);
    let r = topo
        .tcp_transfer(1, 2, overlay_v4(2), 64 << 20)
        .expect("64 MiB transfer over 1500-byte TAPs");
    eprintln!("{r:?}");
    for i in 1..=2 {
        let st = topo.node_status(i);
        assert_eq!(
            counter(&st, &["drops", "fragment"]),
            0,
            "h{i}: {}",
            st["drops"]
        );
        assert_eq!(
            counter(&st, &["drops", "oversize"]),
            0,
            "h{i}: {}",
            st["drops"]
        );
    }
}
