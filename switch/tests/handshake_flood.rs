//! The handshake flood defence end to end, with a real `Switch` and `Node`
//! core and virtual time: garbage and initiations for another key cost no
//! Diffie-Hellman (`bad_mac1`); under load a node without a cookie gets a
//! cookie reply, and its next initiation, with `mac2`, is admitted.
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use overlay_proto::handshake::{Timestamp, initiate};
use overlay_proto::keys::{Psk, StaticSecret};
use overlay_proto::wire::{COOKIE_REPLY_LEN, HS_INIT_LEN, HS_RESP_LEN};
use tapmesh_node::core::{LinkState, Node, NodeConfig};
use tapmesh_switch::core::{NodeSpec, Switch, SwitchConfig};
use tapmesh_switch::handshake_guard::GuardConfig;
use tapmesh_switch::stats::DropReason;

fn switch_config(sw: &StaticSecret, node: &StaticSecret, threshold: u32) -> SwitchConfig {
    SwitchConfig {
        mac_limit_per_node: 16,
        mac_table_limit: 1000,
        handshake_guard: GuardConfig {
            load_threshold: threshold,
            cookie_replies_per_sec: 100,
        },
        ..SwitchConfig::new(sw.clone(), vec![NodeSpec::new("h1", node.public_key())])
    }
}

/// Drains the switch's transmit queue: (destination, bytes).
fn drain(sw: &mut Switch) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut v = Vec::new();
    while let Some(t) = sw.poll_transmit() {
        v.push((t.destination, t.contents.to_vec()));
    }
    v
}

#[test]
fn floods_cost_no_dh_and_a_node_under_load_gets_in_with_a_cookie() {
    let mut rng = rand::rng();
    let (sw_key, node_key, stranger) = (
        StaticSecret::generate(&mut rng),
        StaticSecret::generate(&mut rng),
        StaticSecret::generate(&mut rng),
    );
    let t0 = Instant::now();
    let mut sw = Switch::new(switch_config(&sw_key, &node_key, 3), t0, 1);
    let attacker: SocketAddr = "198.18.0.66:1000".parse().unwrap();
    let node_addr: SocketAddr = "198.18.0.11:4000".parse().unwrap();

    // Forged: right length and type, random body; and a genuine initiation
    // made for another switch. Neither passes mac1; no DH is attempted.
    let mut forged = [0x5au8; HS_INIT_LEN];
    forged[..8].copy_from_slice(&[0x12, 0, 0, 0, 0, 0, 0, 0]);
    sw.handle_datagram(t0, attacker, &mut forged.clone());
    let mut other = [0u8; HS_INIT_LEN];
    initiate(
        &stranger,
        &stranger.public_key(),
        &Psk::default(),
        0,
        1,
        Timestamp::from_unix(1, 0),
        0,
        None,
        &mut other,
    )
    .unwrap();
    sw.handle_datagram(t0, attacker, &mut other.clone());
    assert_eq!(sw.drops().get(DropReason::BadMac1), 2);
    assert_eq!(sw.drops().get(DropReason::HandshakeFailed), 0);
    assert!(drain(&mut sw).is_empty());

    // Valid mac1 from an unknown key, 4 times in one second: the 4th puts the
    // switch under load and gets a cookie reply instead of a DH.
    let mut unknown = [0u8; HS_INIT_LEN];
    initiate(
        &stranger,
        &sw_key.public_key(),
        &Psk::default(),
        0,
        1,
        Timestamp::from_unix(1, 0),
        0,
        None,
        &mut unknown,
    )
    .unwrap();
    for _ in 0..4 {
        sw.handle_datagram(t0, attacker, &mut unknown.clone());
    }
    assert_eq!(sw.drops().get(DropReason::UnknownKey), 3);
    assert_eq!(sw.drops().get(DropReason::BadMac2), 1);
    let out = drain(&mut sw);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, attacker);
    assert_eq!(out[0].1.len(), COOKIE_REPLY_LEN);

    // The admitted node, still under load: cookie reply first, then in.
    let cfg = NodeConfig {
        private_key: node_key.clone(),
        switch_key: sw_key.public_key(),
        switch_addr: "198.18.0.3:7777".parse().unwrap(),
        psk: Psk::default(),
        network_id: 0,
        mtu: 1400,
        offload: false,
        underlay_mtu: 1500,
        rekey_after: overlay_proto::timers::REKEY_AFTER_TIME,
        vouch_lifetime: tapmesh_node::peers::DEFAULT_VOUCH_LIFETIME,
    };
    let mut node = Node::new(cfg, t0, Duration::from_secs(1_700_000_000), 7);
    let mut now = t0;
    let mut cookie_replies = 0;
    for _ in 0..20 {
        node.handle_timeout(now);
        while let Some(t) = node.poll_transmit() {
            let mut d = t.contents.to_vec();
            sw.handle_datagram(now, node_addr, &mut d);
        }
        for (to, mut d) in drain(&mut sw) {
            assert_eq!(to, node_addr);
            cookie_replies += usize::from(d.len() == COOKIE_REPLY_LEN);
            assert!(d.len() == COOKIE_REPLY_LEN || d.len() == HS_RESP_LEN || d.len() == 36);
            node.handle_datagram(now, "198.18.0.3:7777".parse().unwrap(), &mut d);
        }
        if node.link_state() == LinkState::Established {
            break;
        }
        now += Duration::from_millis(100);
        // Keep the switch under load meanwhile.
        sw.handle_datagram(now, attacker, &mut unknown.clone());
        sw.handle_datagram(now, attacker, &mut unknown.clone());
        sw.handle_datagram(now, attacker, &mut unknown.clone());
        sw.handle_datagram(now, attacker, &mut unknown.clone());
        drain(&mut sw);
    }
    assert!(sw.status(now, false).handshake_guard.under_load);
    assert_eq!(cookie_replies, 1, "one cookie, then mac2 gets the node in");
    assert_eq!(node.counters().cookie_replies, 1);
    assert_eq!(node.link_state(), LinkState::Established);
}
