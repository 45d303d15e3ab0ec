//! Two switches serving one LAN with static peering (`[cluster]`, no etcd):
//! the real binaries in namespaces. h1 and h2 are homed on sw1 (the
//! topology's switch), h3 and h4 on sw2, which runs in h5's namespace. Every
//! pair pings over IPv4 and IPv6, a TCP transfer between nodes on different
//! switches arrives byte-identical, status shows the trunk with traffic on
//! it, and a killed switch is noticed by the other within seconds. Without
//! etcd, trunk announcements keep floods of a VLAN and a group's traffic
//! off the trunk to a switch that does not serve or want them.
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use integration::config::{SwitchRef, cluster_section};
use integration::peer_switch::PeerSwitch;
use integration::topology::{SWITCH_PORT, overlay_v4};
use integration::traffic::tcp_transfer;
use integration::{Topology, wait_until};
use serde_json::Value;

const UP: Duration = Duration::from_secs(60);

/// The trunk entry for `peer` in a switch's status.
fn trunk<'a>(status: &'a Value, peer: &str) -> &'a Value {
    status["switches"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == peer))
        .unwrap_or_else(|| panic!("no trunk to {peer} in {status}"))
}

/// sw1 (the topology's switch) and sw2 (in h5's namespace, which is no
/// node) with static peering, both admitting h1..h4: the nodes in `on_sw2`
/// homed on sw2, the others on sw1, with `node_extra(i)` in node `hi`'s
/// entry on both switches. sw2 is running and answers status; the nodes
/// are not started. Declared after the topology, sw2 stops first.
fn two_switches(
    on_sw2: &[usize],
    node_extra: impl Fn(usize) -> &'static str,
) -> (Topology, PeerSwitch) {
    let mut topo = Topology::central(5);
    let mut sw2 = PeerSwitch::new(&mut topo, 5, "sw2");
    let sw1 = SwitchRef {
        name: "sw1".into(),
        public_key: topo.switch_public_key(),
        endpoint: topo.switch_addr(),
    };
    topo.set_switch_config_extra(&cluster_section("sw1", None, &[sw2.switch_ref()]));
    for &i in on_sw2 {
        topo.set_node_switch(i, sw2.addr(), sw2.public_key());
    }
    for i in 1..=4 {
        topo.set_switch_node_entry_extra(i, node_extra(i));
    }
    // sw2 admits the same nodes.
    sw2.start(
        &mut topo,
        &[1, 2, 3, 4],
        &cluster_section("sw2", None, &[sw1]),
    );
    (topo, sw2)
}

#[test]
fn two_switches_carry_traffic_between_their_nodes() {
    // h1 and h2 on sw1, h3 and h4 on sw2.
    let (mut topo, mut sw2) = two_switches(&[3, 4], |_| "");
    let sw2_status = || sw2.status();
    topo.start_all(UP);

    // Both see the trunk up, with frames both ways.
    let s1 = topo.switch_status();
    let t = trunk(&s1, "sw2");
    assert_eq!(t["up"], true, "{t}");
    assert!(t["rx_frames"].as_u64().unwrap() > 0, "{t}");
    assert!(t["tx_frames"].as_u64().unwrap() > 0, "{t}");
    let s2 = sw2_status().unwrap();
    assert_eq!(trunk(&s2, "sw1")["up"], true);
    // Each switch homes its own nodes only.
    let connected = |s: &Value| -> Vec<String> {
        let mut v: Vec<String> = s["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["connected"] == true)
            .map(|n| n["name"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(connected(&s1), ["h1", "h2"]);
    assert_eq!(connected(&s2), ["h3", "h4"]);

    // Several MiB across the trunk, byte-identical (the helper compares).
    let bytes = 8 << 20;
    for (a, b) in [(1, 3), (4, 2)] {
        let r = tcp_transfer(
            topo.ns(a),
            topo.ns(b),
            IpAddr::from(overlay_v4(b)),
            bytes,
            Duration::from_secs(30),
        )
        .unwrap_or_else(|e| panic!("h{a} -> h{b}: {e}"));
        assert_eq!(r.bytes, bytes);
    }
    let t = trunk(&topo.switch_status(), "sw2").clone();
    assert!(
        t["tx_bytes"].as_u64().unwrap() >= bytes && t["rx_bytes"].as_u64().unwrap() >= bytes,
        "the transfers crossed the trunk: {t}"
    );

    // sw2 dies: sw1 notices within seconds (keepalives every 500 ms, down
    // after 3 s without an answer; generous margin for busy machines).
    sw2.kill9();
    let down = wait_until(Duration::from_secs(10), || {
        trunk(&topo.switch_status(), "sw2")["up"] == false
    });
    let t = trunk(&topo.switch_status(), "sw2").clone();
    assert!(down, "sw1 still sees sw2 up: {t}");
    assert_eq!(t["downs"], 1, "{t}");
    assert_eq!(t["macs"], 0, "the MACs behind sw2 are gone: {t}");
    // h1 and h2 still reach each other.
    topo.wait_mesh(&[1, 2], Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Datagrams over 900 bytes sw1 sent to sw2 since the counter was made
/// (the nft table `tm_trunk` in sw1's namespace): only frames as large as
/// the test's, never keepalives, announcements or the nodes' own chatter.
fn big_to_sw2(topo: &Topology) -> u64 {
    let out = topo
        .switch_ns()
        .exec_ok("nft", &["list", "table", "inet", "tm_trunk"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let n = text
        .split("counter packets ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok());
    n.unwrap_or_else(|| panic!("no counter in {text}"))
}

/// `read` once two reads 200 ms apart agree (what was sent has arrived).
fn settled(read: impl Fn() -> u64) -> u64 {
    let mut last = read();
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(200));
        let now = read();
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("still changing: {last}");
}

/// `n` UDP datagrams of 1000 bytes from host `i` to `to`, port 5001.
fn send_big(topo: &Topology, i: usize, to: std::net::Ipv4Addr, n: usize) {
    let s = integration::multicast::sender(topo, i, false);
    let to: socket2::SockAddr = SocketAddr::from((to, integration::multicast::PORT)).into();
    for _ in 0..n {
        s.send_to(&[0x5a; 1000], &to).expect("send");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn without_etcd_a_switch_gets_only_the_vlans_it_serves_and_the_groups_it_wants() {
    use integration::multicast::join_v4;
    use integration::topology::TAP;
    use std::net::Ipv4Addr;
    // h1 alone in VLAN 10 (on sw1); h2 and h4 on sw1, h3 on sw2, all three
    // in VLAN 20. sw2 serves VLAN 20 only.
    let vlan = |i: usize| if i == 1 { "vlan = 10" } else { "vlan = 20" };
    let (mut topo, sw2) = two_switches(&[3], vlan);
    topo.start_switch();
    for i in 1..=4 {
        topo.start_node(i);
    }
    // h1 is alone in its VLAN: the others ping each other.
    topo.wait_mesh(&[2, 3, 4], UP)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(wait_until(UP, || topo.is_connected(1)), "h1 connected");
    let sw2_addr = sw2.addr().ip();
    topo.switch_ns().nft(&format!(
        "table inet tm_trunk {{\n\
           chain out {{ type filter hook output priority 0; ip daddr {sw2_addr} udp dport {SWITCH_PORT} meta length > 900 counter; }}\n\
         }}\n"
    ));
    // sw1 holds what sw2 announced: one VLAN, no group.
    let announced = || trunk(&topo.switch_status(), "sw2")["announced"].clone();
    assert!(
        wait_until(Duration::from_secs(10), || announced()["vlans"] == 1),
        "sw2's announcement: {}",
        announced()
    );
    assert_eq!(announced()["groups"], 0);

    // Unknown unicast in VLAN 10 (to a neighbour nobody has): flooded on
    // sw1, never to sw2.
    let fake = Ipv4Addr::new(198, 19, 0, 99);
    for i in [1, 2] {
        topo.ns(i).exec_ok(
            "ip",
            &[
                "neigh",
                "replace",
                "198.19.0.99",
                "lladdr",
                "02:00:00:00:00:99",
                "dev",
                TAP,
            ],
        );
    }
    let pruned = |topo: &Topology| {
        trunk(&topo.switch_status(), "sw2")["pruned_frames"]
            .as_u64()
            .unwrap()
    };
    let pruned0 = pruned(&topo);
    send_big(&topo, 1, fake, 20);
    assert!(
        wait_until(Duration::from_secs(5), || pruned(&topo) >= pruned0 + 20),
        "{}",
        pruned(&topo)
    );
    assert_eq!(big_to_sw2(&topo), 0, "VLAN 10 crossed the trunk");
    // The same in VLAN 20, which sw2 serves, does cross: the count sees it.
    send_big(&topo, 2, fake, 20);
    assert!(
        wait_until(Duration::from_secs(5), || big_to_sw2(&topo) > 0),
        "VLAN 20 floods reach sw2"
    );

    // A group with a member behind sw1 only (h4): nothing to sw2.
    let group = Ipv4Addr::new(239, 7, 7, 7);
    let r4 = join_v4(&topo, 4, group, None);
    let groups = |s: &Value| s["multicast"]["groups"].as_array().map_or(0, Vec::len);
    assert!(
        wait_until(Duration::from_secs(10), || groups(&topo.switch_status())
            > 0),
        "sw1 snooped h4's join"
    );
    let before = settled(|| big_to_sw2(&topo));
    let pruned0 = pruned(&topo);
    send_big(&topo, 2, group, 20);
    let mut buf = [std::mem::MaybeUninit::new(0u8); 1500];
    assert!(r4.recv(&mut buf).is_ok(), "h4 gets the group");
    assert!(
        wait_until(Duration::from_secs(5), || pruned(&topo) >= pruned0 + 20),
        "{}",
        pruned(&topo)
    );
    assert_eq!(big_to_sw2(&topo), before, "the group crossed the trunk");
    // h3 joins behind sw2: sw2 announces it, the group flows to it.
    let r3 = join_v4(&topo, 3, group, None);
    let sw2_groups = || groups(&sw2.status().unwrap());
    assert!(
        wait_until(Duration::from_secs(10), || sw2_groups() > 0),
        "sw2 snooped h3's join"
    );
    assert!(
        wait_until(Duration::from_secs(5), || announced()["groups"] == 1),
        "{}",
        announced()
    );
    send_big(&topo, 2, group, 20);
    assert!(r3.recv(&mut buf).is_ok(), "h3 gets the group now");
    assert!(big_to_sw2(&topo) > before, "the group crossed the trunk");
}
