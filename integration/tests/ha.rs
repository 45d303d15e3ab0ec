//! Two switches serving one LAN with static peering (`[cluster]`, no etcd):
//! the real binaries in namespaces. h1 and h2 are homed on sw1 (the
//! topology's switch), h3 and h4 on sw2, which runs in h5's namespace. Every
//! pair pings over IPv4 and IPv6, a TCP transfer between nodes on different
//! switches arrives byte-identical, status shows the trunk with traffic on
//! it, and a killed switch is noticed by the other within seconds.
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use integration::config::{self, KeyPair, SwitchRef, write_file};
use integration::topology::{SWITCH_PORT, overlay_v4, status_json, underlay_v4};
use integration::traffic::tcp_transfer;
use integration::{Process, Topology, bins, wait_until};
use serde_json::Value;

const UP: Duration = Duration::from_secs(60);

/// The trunk entry for `peer` in a switch's status.
fn trunk<'a>(status: &'a Value, peer: &str) -> &'a Value {
    status["switches"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == peer))
        .unwrap_or_else(|| panic!("no trunk to {peer} in {status}"))
}

/// `own`'s `[cluster]`, statically peered with `peer` (no etcd).
fn cluster_section(own: &str, peer: &str, key: &str, endpoint: SocketAddr) -> String {
    let peer = SwitchRef {
        name: peer.into(),
        public_key: key.into(),
        endpoint,
    };
    config::cluster_section(own, None, &[peer])
}

#[test]
fn two_switches_carry_traffic_between_their_nodes() {
    let mut topo = Topology::central(5);
    // h5's namespace runs sw2; it is no node.
    topo.set_admitted(5, false);
    let sw2_addr = SocketAddr::new(IpAddr::from(underlay_v4(5)), SWITCH_PORT);
    let switch_bin = bins::bin(bins::SWITCH);
    let sw2_key = KeyPair::generate(&switch_bin, &topo.dir().join("sw2.key"));
    let sw1_key = topo.switch_public_key();
    let sw1_addr = topo.switch_addr();
    topo.set_switch_config_extra(&cluster_section(
        "sw1",
        "sw2",
        &sw2_key.public_key,
        sw2_addr,
    ));
    for i in [3, 4] {
        topo.set_node_switch(i, sw2_addr, &sw2_key.public_key);
    }
    // sw2 admits the same nodes.
    let sw2_socket = topo.dir().join("sw2.sock");
    let mut sw2_toml = format!(
        "listen = \"{sw2_addr}\"\nprivate-key-file = \"{}\"\nadmin-socket = \"{}\"\nstate-file = \"{}\"\n{}",
        sw2_key.private_key_file.display(),
        sw2_socket.display(),
        topo.dir().join("sw2.state").display(),
        cluster_section("sw2", "sw1", &sw1_key, sw1_addr),
    );
    for i in 1..=4 {
        let key = topo.node_public_key(i);
        sw2_toml += &format!("\n[[node]]\nname = \"h{i}\"\npublic-key = \"{key}\"\n");
    }
    let sw2_config = topo.dir().join("sw2.toml");
    write_file(&sw2_config, &sw2_toml);
    let config = sw2_config.to_string_lossy().into_owned();
    let mut sw2 = Process::spawn(
        "sw2",
        topo.ns(5),
        &switch_bin,
        &["run", "--config", &config],
        topo.dir().join("sw2.log"),
    );
    let sw2_status = || status_json(&switch_bin, &sw2_socket);
    assert!(
        wait_until(Duration::from_secs(10), || sw2_status().is_ok()),
        "sw2 did not answer status"
    );

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
