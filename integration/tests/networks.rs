//! Isolated networks on one switch (issue 5, acceptance 7): the real binaries
//! in namespaces. Network "red" (central) holds h1 and h2, network "blue"
//! (mesh) holds h3 and h4, and the two networks look the same from inside:
//! h1 and h3 both are 198.19.0.1 with one MAC, h2 and h4 both are 198.19.0.2
//! with another. Unicast and broadcast in each network reach only that
//! network's hosts; a datagram with a network id the switch does not serve is
//! dropped before any handshake work.
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use integration::config::NetworkRef;
use integration::status::counter;
use integration::topology::overlay_v4;
use integration::{Topology, wait_until};
use overlay_proto::wire::{HS_INIT_LEN, Header, MessageType};

const UP: Duration = Duration::from_secs(20);
const UNICAST_PORT: u16 = 5000;
const BROADCAST_PORT: u16 = 5001;
const PER_KIND: usize = 200;

fn network(name: &str, id: u32, mode: &str) -> NetworkRef {
    NetworkRef {
        name: name.into(),
        id,
        mode: mode.into(),
    }
}

/// A UDP socket in host `i`'s namespace bound to `addr`.
fn bind(topo: &Topology, i: usize, addr: SocketAddr) -> UdpSocket {
    topo.ns(i).enter(|| {
        let s = UdpSocket::bind(addr).unwrap_or_else(|e| panic!("h{i}: bind {addr}: {e}"));
        s.set_broadcast(true).expect("SO_BROADCAST");
        s.set_nonblocking(true).expect("non-blocking");
        s
    })
}

/// Every datagram waiting on `s`, by payload prefix ("red" or "blue").
fn drain(s: &UdpSocket) -> (usize, usize) {
    let (mut red, mut blue) = (0, 0);
    let mut buf = [0u8; 64];
    while let Ok(n) = s.recv(&mut buf) {
        match &buf[..n.min(4)] {
            b"red-" => red += 1,
            b"blue" => blue += 1,
            other => panic!("unexpected datagram {other:?}"),
        }
    }
    (red, blue)
}

#[test]
fn two_networks_with_the_same_addresses_stay_apart() {
    let mut topo = Topology::central(4);
    let red = network("red", 1, "central");
    let blue = network("blue", 2, "mesh");
    for (i, net, as_host, mac) in [
        (1, &red, 1, "02:00:00:19:00:01"),
        (2, &red, 2, "02:00:00:19:00:02"),
        (3, &blue, 1, "02:00:00:19:00:01"),
        (4, &blue, 2, "02:00:00:19:00:02"),
    ] {
        topo.set_network(i, net.clone());
        topo.set_tap_identity(i, as_host, mac);
    }
    topo.start_switch();
    for i in 1..=4 {
        topo.start_node(i);
    }
    let h2 = overlay_v4(2);
    for from in [1, 3] {
        assert!(
            topo.ping_ok_within(from, h2, UP),
            "h{from} cannot ping 198.19.0.2 in its network\n{}",
            topo.describe()
        );
    }
    let s = topo.switch_status();
    let nets: Vec<(String, u64, u64)> = s["networks"]
        .as_array()
        .expect("networks in status")
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap_or("?").to_owned(),
                n["id"].as_u64().unwrap_or(0),
                n["connected"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        nets,
        [("red".into(), 1, 2), ("blue".into(), 2, 2)],
        "status: {s}"
    );
    for n in s["nodes"].as_array().into_iter().flatten() {
        let want = if n["name"] == topo.host_name(1) || n["name"] == topo.host_name(2) {
            "red"
        } else {
            "blue"
        };
        assert_eq!(n["network"], want, "node entry {n}");
    }

    // Receivers on both 198.19.0.2 hosts; senders on both 198.19.0.1 hosts.
    let any = |port| SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port));
    let rx: Vec<(usize, UdpSocket, UdpSocket)> = [2, 4]
        .into_iter()
        .map(|i| {
            (
                i,
                bind(&topo, i, SocketAddr::new(h2.into(), UNICAST_PORT)),
                bind(&topo, i, any(BROADCAST_PORT)),
            )
        })
        .collect();
    let tx: Vec<(usize, UdpSocket, &str)> = [(1, "red-"), (3, "blue")]
        .into_iter()
        .map(|(i, tag)| (i, bind(&topo, i, any(0)), tag))
        .collect();
    let unicast = SocketAddr::new(h2.into(), UNICAST_PORT);
    let broadcast = SocketAddr::new(Ipv4Addr::new(198, 19, 0, 255).into(), BROADCAST_PORT);
    for k in 0..PER_KIND {
        for (i, s, tag) in &tx {
            let payload = format!("{tag}{k}");
            for to in [unicast, broadcast] {
                s.send_to(payload.as_bytes(), to)
                    .unwrap_or_else(|e| panic!("h{i}: send to {to}: {e}"));
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_millis(500));
    let mut got = Vec::new();
    for (i, u, b) in &rx {
        got.push((*i, "unicast", drain(u)));
        got.push((*i, "broadcast", drain(b)));
    }
    println!("received (host, kind, (red, blue)): {got:?}");
    let enough = PER_KIND * 9 / 10;
    for (i, kind, (red, blue)) in got {
        let (own, other) = if i == 2 { (red, blue) } else { (blue, red) };
        assert_eq!(
            other, 0,
            "h{i} got {other} {kind} datagrams from the other network"
        );
        assert!(
            own >= enough,
            "h{i} got only {own} of {PER_KIND} {kind} datagrams from its own network"
        );
    }

    // A network id the switch does not serve: dropped before any handshake
    // work (the mac1 check would count these as bad_mac1 otherwise).
    let before = topo.switch_status();
    let s = bind(&topo, 1, any(0));
    let mut init = vec![0x5a; HS_INIT_LEN];
    Header::new_unchecked(&mut init[..]).set_common(MessageType::HandshakeInit, 0, 0, 99);
    for _ in 0..50 {
        s.send_to(&init, topo.switch_addr())
            .expect("send to switch");
    }
    let t0 = Instant::now();
    let counted = wait_until(Duration::from_secs(5), || {
        let now = topo.switch_status();
        counter(&now, &["drops", "unknown_network"])
            >= counter(&before, &["drops", "unknown_network"]) + 50
    });
    let after = topo.switch_status();
    assert!(counted, "unknown network ids not counted: {after}");
    assert_eq!(
        counter(&after, &["drops", "bad_mac1"]),
        counter(&before, &["drops", "bad_mac1"]),
        "a datagram for an unknown network reached a core"
    );
    println!(
        "50 initiations for network 99 counted as unknown_network in {:?}",
        t0.elapsed()
    );
    topo.assert_all_running();
}
