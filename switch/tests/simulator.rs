//! A deterministic in-memory network ([`tapmesh_sim::Net`]): one switch core
//! and several node cores, driven with virtual time. It checks behaviour
//! that namespace tests cannot pin down exactly (aging, timers, rekeys over
//! hours).
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use overlay_proto::ethernet::MacAddr;
use overlay_proto::keys::{Psk, PublicKey, StaticSecret};
use overlay_proto::wire::{DATA_HEADER_LEN, DATA_OVERHEAD};
use tapmesh_node::engine::{LinkState, Node, NodeConfig};
use tapmesh_sim::Net;
use tapmesh_sim::frames::{frame, mac, tagged};
use tapmesh_switch::NodeId;
use tapmesh_switch::counters::DropReason;
use tapmesh_switch::fabric::{NodeSpec, Switch, SwitchConfig};
use tapmesh_switch::storm::{Rate, StormConfig};
use tapmesh_switch::vlan::{NO_VLAN, PortVlan};

const SWITCH: &str = "198.18.0.3:7777";

/// The network, the switch's config (to restart or reload it) and every
/// node's public key (admitted and extra).
struct Sim {
    net: Net,
    switch_cfg: SwitchConfig,
    keys: Vec<PublicKey>,
}

impl Deref for Sim {
    type Target = Net;
    fn deref(&self) -> &Net {
        &self.net
    }
}

impl DerefMut for Sim {
    fn deref_mut(&mut self) -> &mut Net {
        &mut self.net
    }
}

impl Sim {
    /// A switch and `n` admitted nodes, plus `extra` nodes with keys the
    /// switch does not know.
    fn new(n: usize, extra: usize) -> Sim {
        Sim::with(n, extra, |_, _| {})
    }

    /// Like [`Sim::new`], with each node's config adjusted by `adjust(i, cfg)`.
    fn with(n: usize, extra: usize, adjust: impl Fn(usize, &mut NodeConfig)) -> Sim {
        Sim::build(n, extra, adjust, |_| {})
    }

    /// Like [`Sim::new`], with the switch's config adjusted by `adjust_switch`.
    fn with_switch(n: usize, adjust_switch: impl Fn(&mut SwitchConfig)) -> Sim {
        Sim::build(n, 0, |_, _| {}, adjust_switch)
    }

    fn build(
        n: usize,
        extra: usize,
        adjust: impl Fn(usize, &mut NodeConfig),
        adjust_switch: impl Fn(&mut SwitchConfig),
    ) -> Sim {
        let t0 = Instant::now();
        let mut rng = rand::rng();
        let switch_key = StaticSecret::generate(&mut rng);
        let keys: Vec<StaticSecret> = (0..n + extra)
            .map(|_| StaticSecret::generate(&mut rng))
            .collect();
        let switch_cfg = SwitchConfig {
            mac_limit_per_node: 16,
            mac_table_limit: 1000,
            ..SwitchConfig::new(
                switch_key.clone(),
                keys[..n]
                    .iter()
                    .enumerate()
                    .map(|(i, k)| NodeSpec::new(format!("h{}", i + 1), k.public_key()))
                    .collect(),
            )
        };
        let mut switch_cfg = switch_cfg;
        adjust_switch(&mut switch_cfg);
        let switch_addr: SocketAddr = SWITCH.parse().unwrap();
        let mut net = Net::new(
            t0,
            switch_addr,
            Some(Switch::new(switch_cfg.clone(), t0, 1)),
        );
        for (i, k) in keys.iter().enumerate() {
            let mut cfg = tapmesh_sim::node_config(k.clone(), switch_key.public_key(), switch_addr);
            adjust(i, &mut cfg);
            let node = Node::new(cfg, t0, Duration::from_secs(1_700_000_000), i as u64);
            net.add_node(node, format!("198.18.0.{}:4000", 10 + i).parse().unwrap());
        }
        let mut sim = Sim {
            net,
            switch_cfg,
            keys: keys.iter().map(StaticSecret::public_key).collect(),
        };
        sim.advance(Duration::from_millis(100));
        sim
    }

    fn clear(&mut self) {
        self.clear_tap();
    }
}

#[test]
fn nodes_connect_and_broadcast_floods_to_all_others() {
    let mut s = Sim::new(3, 0);
    for i in 0..3 {
        assert_eq!(s.nodes[i].link_state(), LinkState::Established);
        assert!(s.switch().is_connected(NodeId(i as u32)));
    }
    s.send(0, &frame([0xff; 6], mac(1), 7));
    assert_eq!(s.received(0, 7), 0, "never back to the sender");
    assert_eq!(s.received(1, 7), 1);
    assert_eq!(s.received(2, 7), 1);
    assert_eq!(s.switch().forwarded().broadcast, 1);
    assert_eq!(s.switch().forwarded().flood_copies, 2);
}

#[test]
fn learned_unicast_goes_only_to_its_node_and_unknown_unicast_floods() {
    let mut s = Sim::new(3, 0);
    // mac(2) is unknown: flooded.
    s.send(0, &frame(mac(2), mac(1), 1));
    assert_eq!((s.received(1, 1), s.received(2, 1)), (1, 1));
    assert_eq!(s.switch().forwarded().flooded_unicast, 1);
    // h2 answers: now both are learned.
    s.send(1, &frame(mac(1), mac(2), 2));
    assert_eq!((s.received(0, 2), s.received(2, 2)), (1, 0));
    s.send(0, &frame(mac(2), mac(1), 3));
    assert_eq!((s.received(1, 3), s.received(2, 3)), (1, 0));
    assert_eq!(s.switch().forwarded().unicast, 2);
    // Multicast goes to every other node; its source is learned, its group dst is not.
    s.send(2, &frame([1, 0, 0x5e, 1, 2, 3], mac(3), 4));
    assert_eq!(
        (s.received(0, 4), s.received(1, 4), s.received(2, 4)),
        (1, 1, 0)
    );
    assert_eq!(
        s.switch()
            .lookup_mac(s.now, NO_VLAN, &MacAddr([1, 0, 0x5e, 1, 2, 3])),
        None
    );
}

#[test]
fn group_source_macs_are_never_learned() {
    let mut s = Sim::new(2, 0);
    s.send(0, &frame([0xff; 6], [0xff; 6], 1));
    s.send(0, &frame([0xff; 6], [1, 0, 0x5e, 0, 0, 1], 2));
    assert_eq!(s.switch().mac_table().len(), 0);
    assert_eq!(s.switch().drops().get(DropReason::InvalidSource), 2);
    assert_eq!(s.received(1, 1) + s.received(1, 2), 0);
}

#[test]
fn mac_move_takes_effect_at_once() {
    let mut s = Sim::new(3, 0);
    s.send(0, &frame([0xff; 6], mac(9), 1)); // mac 9 behind h1
    s.send(1, &frame(mac(9), mac(2), 2));
    assert_eq!((s.received(0, 2), s.received(2, 2)), (1, 0));
    s.send(2, &frame([0xff; 6], mac(9), 3)); // mac 9 moves behind h3
    s.send(1, &frame(mac(9), mac(2), 4));
    assert_eq!((s.received(0, 4), s.received(2, 4)), (0, 1));
    assert_eq!(s.switch().mac_counters().moves, 1);
}

#[test]
fn macs_age_out_and_per_node_limit_is_counted() {
    let mut s = Sim::new(2, 0);
    for m in 0..20u8 {
        s.send(0, &frame([0xff; 6], [2, 1, 0, 0, 0, m], 1));
    }
    // The per-node limit is 16 in this simulation.
    assert_eq!(s.switch().mac_table().count_for(NodeId(0)), 16);
    assert_eq!(s.switch().drops().get(DropReason::MacLimit), 4);
    assert_eq!(
        s.received(1, 1),
        16,
        "frames from unlearnable sources are dropped"
    );
    s.advance(Duration::from_secs(299));
    assert_eq!(s.switch().mac_table().len(), 16);
    s.advance(Duration::from_secs(2));
    assert_eq!(s.switch().mac_table().len(), 0);
    assert_eq!(s.switch().mac_counters().aged_out, 16);
}

#[test]
fn silent_node_is_forgotten_and_its_macs_flushed() {
    let mut s = Sim::new(2, 0);
    s.send(1, &frame([0xff; 6], mac(2), 1));
    assert_eq!(s.switch().mac_table().count_for(NodeId(1)), 1);
    // h2 vanishes (its datagrams are lost from now on).
    s.set_cut(1, true);
    s.advance(Duration::from_secs(29));
    assert!(
        s.switch().is_connected(NodeId(1)),
        "forgotten before the timeout"
    );
    s.advance(Duration::from_secs(2));
    assert!(!s.switch().is_connected(NodeId(1)));
    assert_eq!(s.switch().mac_table().count_for(NodeId(1)), 0);
}

/// Traffic both ways between h1 and h2, one frame each way every 50 ms for
/// `steps` steps; asserts that every frame arrived.
fn exchange_without_loss(s: &mut Sim, steps: u32) {
    s.send(1, &frame([0xff; 6], mac(2), 0));
    for step in 0..steps {
        s.send(0, &frame(mac(2), mac(1), 1_000_000 + step));
        s.send(1, &frame(mac(1), mac(2), 2_000_000 + step));
        s.advance(Duration::from_millis(50));
    }
    let got1 = s.tap[1]
        .iter()
        .filter(|f| f[14] == 0x00 && f[15] == 0x0f)
        .count();
    let got0 = s.tap[0]
        .iter()
        .filter(|f| f[14] == 0x00 && f[15] == 0x1e)
        .count();
    assert_eq!(got1 as u32, steps, "h1 -> h2 lost frames across rekeys");
    assert_eq!(got0 as u32, steps, "h2 -> h1 lost frames across rekeys");
}

#[test]
fn rekeys_every_two_minutes_without_losing_a_frame() {
    let mut s = Sim::new(2, 0);
    // 400 s.
    exchange_without_loss(&mut s, 8000);
    let st = s.switch().status(s.now, false);
    assert!(
        st.sessions.handshakes >= 2 * 3,
        "expected rekeys, got {:?}",
        st.sessions
    );
    assert_eq!(s.switch().drops().total(), 0, "{:?}", s.switch().drops());
}

#[test]
fn rekey_after_shortens_the_rekey_interval() {
    let mut s = Sim::with(2, 0, |_, c| c.rekey_after = Duration::from_secs(10));
    // 65 s: sessions from ~0.1 s, rekeyed at ~10, 20, ... 60 s.
    exchange_without_loss(&mut s, 1300);
    for (i, n) in s.nodes.iter().enumerate() {
        let c = n.counters();
        assert_eq!(c.rekeys, 6, "h{} rekeys", i + 1);
        assert_eq!(c.handshakes_completed, 7, "h{} handshakes", i + 1);
        assert_eq!(c.sessions_lost, 0, "h{} lost its session", i + 1);
    }
    assert_eq!(s.switch().drops().total(), 0, "{:?}", s.switch().drops());
}

#[test]
fn nodes_reconnect_after_switch_restart_within_ten_seconds() {
    let mut s = Sim::new(2, 0);
    s.send(1, &frame([0xff; 6], mac(2), 0));
    // The switch crashes: its state is gone, and it is down for 20 s.
    s.switch = None;
    s.advance(Duration::from_secs(20));
    s.switch = Some(Switch::new(s.switch_cfg.clone(), s.now, 2));
    let restarted = s.now;
    // Traffic resumes: h1 keeps sending frames to h2 every 100 ms.
    let mut first = None;
    for step in 0..200u32 {
        s.send(0, &frame(mac(2), mac(1), 5_000 + step));
        s.send(1, &frame([0xff; 6], mac(2), 9_000 + step));
        if first.is_none()
            && s.tap[1]
                .iter()
                .any(|f| f[14..16] == [0, 0] && f[16] == 0x13)
        {
            first = Some(s.now);
        }
        s.advance(Duration::from_millis(100));
    }
    let first = first.expect("traffic never resumed");
    assert!(
        first - restarted <= Duration::from_secs(10),
        "resumed after {:?}",
        first - restarted
    );
}

#[test]
fn unknown_key_gets_no_answer_and_no_frame_in() {
    let mut s = Sim::new(2, 1);
    s.advance(Duration::from_secs(5));
    assert_eq!(s.nodes[2].link_state(), LinkState::Handshaking);
    assert!(s.switch().drops().get(DropReason::UnknownKey) >= 1);
    assert_eq!(s.nodes[2].counters().handshakes_completed, 0);
    assert_eq!(
        s.nodes[2].counters().udp_rx_datagrams,
        0,
        "the switch answered a stranger"
    );
    s.send(2, &frame([0xff; 6], mac(3), 1));
    assert_eq!(s.received(0, 1) + s.received(1, 1), 0);
}

#[test]
fn garbage_and_replays_are_dropped_and_counted() {
    let mut s = Sim::new(2, 0);
    let from: SocketAddr = "198.18.0.99:1".parse().unwrap();
    let mut x = 0x1234_5678u32;
    let mut count = 0;
    for len in 0..2000usize {
        let mut d: Vec<u8> = (0..len % 200)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        if len % 3 == 0 && !d.is_empty() {
            d[0] = 0x11; // looks like data
        }
        let now = s.now;
        s.switch_mut().handle_datagram(now, from, &mut d);
        count += 1;
    }
    assert_eq!(s.switch().drops().total(), count);
    assert_eq!(s.switch().pending_transmits(), 0, "answered garbage");
    // Replay a captured data datagram.
    let f = frame([0xff; 6], mac(1), 1);
    let mut buf = vec![0u8; DATA_HEADER_LEN + f.len() + DATA_OVERHEAD];
    buf[DATA_HEADER_LEN..DATA_HEADER_LEN + f.len()].copy_from_slice(&f);
    let (now, h1) = (s.now, s.addrs[0]);
    let r = s.nodes[0]
        .handle_tap_frame(now, &mut buf, f.len())
        .unwrap()
        .unwrap();
    let buf = buf[r].to_vec();
    let mut a = buf.clone();
    s.switch_mut().handle_datagram(now, h1, &mut a);
    let mut b = buf.clone();
    s.switch_mut().handle_datagram(now, h1, &mut b);
    assert_eq!(s.switch().drops().get(DropReason::Replay), 1);
}

#[test]
fn restart_notice_brings_idle_nodes_back_at_once_and_cannot_be_replayed() {
    let mut s = Sim::new(2, 0);
    s.advance(Duration::from_secs(3));
    let endpoints = s.switch().endpoints();
    assert_eq!(endpoints.len(), 2);
    // Crash and restart with the saved endpoints; h2 is idle (only receives).
    s.switch = Some(Switch::new(s.switch_cfg.clone(), s.now, 3));
    let ts = overlay_proto::handshake::Timestamp::from_unix(1_700_000_100, 0);
    let sent = s
        .switch
        .as_mut()
        .unwrap()
        .announce_restart(ts, endpoints.iter().map(|(n, a)| (n.as_str(), *a)));
    assert_eq!(sent, 2);
    s.deliver();
    s.advance(Duration::from_millis(50));
    assert!(s.switch().is_connected(NodeId(0)) && s.switch().is_connected(NodeId(1)));
    s.send(0, &frame([0xff; 6], mac(1), 77));
    assert_eq!(
        s.received(1, 77),
        1,
        "idle h2 not reachable right after the restart"
    );
    assert_eq!(s.nodes[1].counters().restart_notices, 1);
    // The same notice again (a replay) is refused and changes nothing.
    let hs = s.nodes[1].counters().handshakes_sent;
    s.switch
        .as_mut()
        .unwrap()
        .announce_restart(ts, endpoints.iter().map(|(n, a)| (n.as_str(), *a)));
    s.deliver();
    assert_eq!(s.nodes[1].counters().restart_notices, 1);
    assert_eq!(s.nodes[1].counters().handshakes_sent, hs);
    assert_eq!(s.nodes[1].link_state(), LinkState::Established);
}

/// An IPv4/TCP frame of `payload` bytes from mac(1) to mac(2), with a valid
/// IP header checksum and the TCP checksum left partial, as an offloading
/// kernel hands it over.
fn tcp_superframe(payload: usize) -> Vec<u8> {
    let mut f = frame(mac(2), mac(1), 0);
    f.truncate(12);
    f.extend_from_slice(&[0x08, 0x00]);
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((40 + payload) as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&[198, 19, 0, 1]);
    ip[16..20].copy_from_slice(&[198, 19, 0, 2]);
    f.extend_from_slice(&ip);
    let mut tcp = [0u8; 20];
    tcp[12] = 5 << 4;
    tcp[13] = 0x18;
    f.extend_from_slice(&tcp);
    f.extend((0..payload).map(|i| (i % 251) as u8));
    f
}

/// [`tcp_superframe`] and the same behind a virtio header asking for TCP
/// segmentation at an MSS of 1360 and the checksum, as an offload TAP reads it.
fn offloaded_superframe(payload: usize) -> (Vec<u8>, Vec<u8>) {
    use overlay_proto::vnet::{F_NEEDS_CSUM, GSO_TCPV4, VNET_HDR_LEN, VnetHdr};
    let sf = tcp_superframe(payload);
    let h = VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_TCPV4,
        hdr_len: 54,
        gso_size: 1360,
        csum_start: 34,
        csum_offset: 16,
    };
    let mut with_hdr = vec![0u8; VNET_HDR_LEN];
    h.emit(&mut with_hdr);
    with_hdr.extend_from_slice(&sf);
    (sf, with_hdr)
}

#[test]
fn jumbo_frames_cross_a_1500_byte_underlay_as_fragments() {
    let mut s = Sim::with(2, 0, |_, c| c.mtu = 9000);
    s.send(1, &frame([0xff; 6], mac(2), 0));
    let mut big = frame(mac(2), mac(1), 42);
    big.resize(9000 + 14, 0xab);
    s.send(0, &big);
    assert_eq!(s.tap[1].last().unwrap(), &big, "reassembled frame differs");
    assert_eq!(s.switch().drops().total(), 0, "{:?}", s.switch().drops());
}

#[test]
fn offloaded_superframes_pass_whole_to_offload_nodes_and_cut_for_others() {
    use overlay_proto::vnet::VNET_HDR_LEN;
    // h1 and h2 have offload TAPs; h3 does not.
    let mut s = Sim::with(3, 0, |i, c| c.offload = i < 2);
    // Everyone announces itself (h3 plain, the others with a plain virtio header).
    let zero = [0u8; VNET_HDR_LEN];
    for (i, m) in [(1usize, mac(2)), (2, mac(3))] {
        let mut f = frame([0xff; 6], m, 0);
        if i < 2 {
            f.splice(0..0, zero);
        }
        s.send(i, &f);
    }
    let (sf, with_hdr) = offloaded_superframe(20_000);
    // To h2 (offload): one write of header + super-frame, unchanged.
    s.clear();
    s.send(0, &with_hdr);
    assert_eq!(s.tap[1].len(), 1);
    assert_eq!(s.tap[1][0], with_hdr);
    // To h3 (no offload): mac(3) is behind h3; the switch cuts MSS-sized segments.
    let mut to_h3 = with_hdr.clone();
    to_h3[VNET_HDR_LEN..VNET_HDR_LEN + 6].copy_from_slice(&mac(3));
    s.clear();
    s.send(0, &to_h3);
    let segs = &s.tap[2];
    assert_eq!(segs.len(), 20_000usize.div_ceil(1360));
    let payload: Vec<u8> = segs.iter().flat_map(|g| g[54..].to_vec()).collect();
    assert_eq!(payload, sf[54..].to_vec());
    assert!(segs.iter().all(|g| g.len() <= 1360 + 54));
    assert_eq!(s.switch().drops().total(), 0, "{:?}", s.switch().drops());
}

/// The VLAN tag of a frame a node received, if any.
fn vid_of(f: &[u8]) -> Option<u16> {
    (f.len() >= 18 && f[12..14] == [0x81, 0x00]).then(|| u16::from_be_bytes([f[14], f[15]]) & 0xfff)
}

#[test]
fn vlans_isolate_and_trunks_carry_tags() {
    // h1 access 10, h2 access 20, h3 trunk [10, 20], h4 access 10.
    let mut s = Sim::with_switch(4, |c| {
        let vlans = [
            PortVlan::Member {
                native: Some(10),
                tagged: vec![],
            },
            PortVlan::Member {
                native: Some(20),
                tagged: vec![],
            },
            PortVlan::Member {
                native: None,
                tagged: vec![10, 20],
            },
            PortVlan::Member {
                native: Some(10),
                tagged: vec![],
            },
        ];
        for (n, v) in c.nodes.iter_mut().zip(vlans) {
            n.vlan = v;
        }
    });
    // A broadcast in VLAN 10 reaches h4 untagged and h3 tagged 10, never h2.
    s.send(0, &frame([0xff; 6], mac(1), 1));
    assert_eq!((s.received(1, 1), s.received(3, 1)), (0, 1));
    let on_trunk: Vec<_> = s.tap[2]
        .iter()
        .filter(|f| f.len() >= 22 && f[18..22] == 1u32.to_be_bytes())
        .collect();
    assert_eq!(on_trunk.len(), 1);
    assert_eq!(vid_of(on_trunk[0]), Some(10));
    // The trunk's VLAN 20 broadcast reaches h2 untagged only.
    s.send(2, &tagged([0xff; 6], mac(3), 20, 2));
    assert_eq!(
        (s.received(0, 2), s.received(1, 2), s.received(3, 2)),
        (0, 1, 0)
    );
    // Same MAC in two VLANs: two entries, unicast stays in its VLAN.
    s.send(2, &tagged(mac(1), mac(3), 10, 3));
    assert_eq!(
        (s.received(0, 3), s.received(1, 3)),
        (1, 0),
        "known unicast in VLAN 10, untagged"
    );
    s.send(1, &frame(mac(1), mac(2), 4));
    assert_eq!(
        s.received(0, 4),
        0,
        "h1's MAC is not known in VLAN 20: never crosses"
    );
    // Tagged frames from an access port and foreign tags from a trunk are dropped.
    s.send(0, &tagged([0xff; 6], mac(1), 20, 5));
    s.send(2, &tagged([0xff; 6], mac(3), 30, 6));
    s.send(2, &frame([0xff; 6], mac(3), 7));
    assert_eq!(s.switch().drops().get(DropReason::VlanFiltered), 3);
    assert_eq!(
        (0..4)
            .map(|i| s.received(i, 5) + s.received(i, 6) + s.received(i, 7))
            .sum::<usize>(),
        0
    );
    assert_eq!(
        s.switch().lookup_mac(s.now, 10, &MacAddr(mac(3))),
        Some(NodeId(2))
    );
    assert_eq!(
        s.switch().lookup_mac(s.now, 20, &MacAddr(mac(3))),
        Some(NodeId(2))
    );
}

#[test]
fn storm_control_cuts_one_node_and_spares_the_others() {
    let mut s = Sim::with_switch(3, |c| {
        c.storm = StormConfig {
            broadcast: Some(Rate {
                per_sec: 100,
                burst: 10,
            }),
            multicast: None,
            unknown_unicast: Some(Rate {
                per_sec: 100,
                burst: 10,
            }),
            exempt_link_local: true,
        };
    });
    for _ in 0..1000 {
        s.send(0, &frame([0xff; 6], mac(1), 1));
    }
    assert_eq!(
        s.received(1, 1),
        10,
        "a burst, then nothing in the same instant"
    );
    s.advance(Duration::from_millis(500));
    for _ in 0..1000 {
        s.send(0, &frame([0xff; 6], mac(1), 1));
    }
    assert_eq!(
        s.received(1, 1),
        20,
        "the bucket refills to its burst, no more"
    );
    // h2's broadcasts are not affected by h1's storm.
    for _ in 0..10 {
        s.send(1, &frame([0xff; 6], mac(2), 2));
    }
    assert_eq!(s.received(2, 2), 10);
    let st = s.switch().status(s.now, false);
    assert_eq!(st.nodes[0].counters.storm_dropped_broadcast, 2000 - 20);
    assert_eq!(st.nodes[1].counters.storm_dropped_broadcast, 0);
    assert_eq!(
        s.switch().drops().get(DropReason::StormControl),
        st.nodes[0].counters.storm_dropped_broadcast
    );
}

/// An IGMPv2 message in a frame from `src_mac`.
fn igmp_frame(src_mac: [u8; 6], kind: u8, group: [u8; 4], from_ip: [u8; 4]) -> Vec<u8> {
    let mut m = vec![kind, 0, 0, 0, group[0], group[1], group[2], group[3]];
    let c = inet_checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    let mut f = vec![1, 0, 0x5e, group[1] & 0x7f, group[2], group[3]];
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 28, 0, 0, 0, 0, 1, 2, 0, 0]);
    f.extend_from_slice(&from_ip);
    f.extend_from_slice(&group);
    f.extend_from_slice(&m);
    f
}

fn inet_checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A UDP datagram to `group`, tagged `tag` in its payload at bytes 14..18
/// (where [`Sim::received`] looks).
fn mcast_frame(src_mac: [u8; 6], group: [u8; 4], tag: u32) -> Vec<u8> {
    let mut f = vec![1, 0, 0x5e, group[1] & 0x7f, group[2], group[3]];
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    // The tag overlaps the IPv4 header's first bytes, so build it around them.
    let mut ip = vec![0x45, 0, 0, 32, 0, 0, 0, 0, 1, 17, 0, 0, 198, 19, 0, 1];
    ip.extend_from_slice(&group);
    ip.extend_from_slice(&[0x30, 0x39, 0x30, 0x39, 0, 12, 0, 0]);
    ip.extend_from_slice(&tag.to_be_bytes());
    f.extend_from_slice(&ip);
    f
}

fn got_udp(s: &Sim, i: usize, tag: u32) -> usize {
    s.tap[i]
        .iter()
        .filter(|f| f.len() >= 46 && f[42..46] == tag.to_be_bytes())
        .count()
}

#[test]
fn snooping_end_to_end_with_the_builtin_querier() {
    let mut s = Sim::with_switch(4, |c| {
        c.multicast.membership = Duration::from_secs(8);
        c.multicast.query_interval = Duration::from_secs(2);
        c.multicast.query_response = Duration::from_secs(1);
    });
    let g = [239, 1, 2, 3];
    s.send(1, &igmp_frame(mac(2), 0x16, g, [198, 19, 0, 2]));
    s.send(2, &igmp_frame(mac(3), 0x16, g, [198, 19, 0, 3]));
    assert_eq!(
        s.tap[0].len() + s.tap[3].len(),
        0,
        "reports go to router ports only"
    );
    s.send(0, &mcast_frame(mac(1), g, 1));
    assert_eq!(
        (got_udp(&s, 1, 1), got_udp(&s, 2, 1), got_udp(&s, 3, 1)),
        (1, 1, 0)
    );
    // The querier's general queries reach every node's TAP.
    s.clear();
    s.advance(Duration::from_secs(3));
    let queries = |s: &Sim, i: usize| {
        s.tap[i]
            .iter()
            .filter(|f| f.len() > 23 && f[23] == 2 && f[38] == 0x11)
            .count()
    };
    assert!((0..4).all(|i| queries(&s, i) >= 1));
    // Without answers, memberships end after 8 s; then the group floods again.
    s.advance(Duration::from_secs(6));
    s.send(0, &mcast_frame(mac(1), g, 2));
    assert_eq!(got_udp(&s, 3, 2), 1);
    let st = s.switch().status(s.now, false);
    assert!(st.multicast.groups.is_empty());
    assert!(st.multicast.counters.queries_sent >= 4);
}

#[test]
fn frames_too_short_for_their_vlan_tag_are_runts() {
    let mut s = Sim::new(2, 0);
    let mut f = frame([0xff; 6], mac(1), 0);
    f.truncate(12);
    f.extend_from_slice(&[0x81, 0x00, 0x00]); // TPID and 1 byte of a tag
    s.send(0, &f);
    assert!(s.tap[1].is_empty(), "forwarded: {:?}", s.tap[1]);
    assert_eq!(s.switch().drops().get(DropReason::Runt), 1);
    // With the whole tag (and nothing after it) it is a frame again.
    f.extend_from_slice(&[0x07, 0x08, 0x00]);
    s.send(0, &f);
    assert_eq!(s.tap[1].len(), 1);
}

/// Live reload: h1 and h2 exchange frames every 50 ms across a reload that
/// removes h3 and admits h4 (an extra node until then).
#[test]
fn reload_admits_and_removes_nodes_and_spares_the_others() {
    let mut s = Sim::new(3, 1);
    s.send(2, &frame([0xff; 6], mac(3), 1));
    assert_eq!(s.switch().mac_table().count_for(NodeId(2)), 1);
    let before = s.switch().status(s.now, false);
    let mut cfg = s.switch_cfg.clone();
    cfg.nodes.remove(2);
    cfg.nodes.push(NodeSpec::new("h4", s.keys[3]));
    let now = s.now;
    let changes = s
        .switch
        .as_mut()
        .unwrap()
        .apply_config(now, cfg.clone())
        .unwrap();
    assert_eq!(changes.added, ["h4"]);
    assert_eq!(changes.removed, ["h3"]);
    assert!(
        changes.changed.is_empty() && !changes.settings,
        "{changes:?}"
    );
    // h3 is gone at once: not listed, MACs flushed, its frames dropped.
    let st = s.switch().status(s.now, false);
    let names: Vec<&str> = st.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["h1", "h2", "h4"]);
    assert_eq!(
        s.switch().lookup_mac(s.now, NO_VLAN, &MacAddr(mac(3))),
        None
    );
    s.clear();
    s.send(2, &frame([0xff; 6], mac(3), 2));
    assert_eq!(s.received(0, 2) + s.received(1, 2), 0, "h3 still forwarded");
    assert!(s.switch().drops().get(DropReason::UnknownSession) >= 1);
    // h1 and h2 lose nothing and do not handshake again; h4 connects (its
    // next handshake attempt is answered) and gets broadcasts.
    exchange_without_loss(&mut s, 200);
    let after = s.switch().status(s.now, false);
    for name in ["h1", "h2"] {
        let hs = |st: &tapmesh_switch::status::Status| {
            st.nodes
                .iter()
                .find(|n| n.name == name)
                .unwrap()
                .counters
                .handshakes
        };
        assert_eq!(hs(&before), hs(&after), "{name} handshook again");
    }
    assert!(
        s.switch().is_connected(NodeId(2)),
        "h4 took h3's slot and connected"
    );
    assert_eq!(s.nodes[3].link_state(), LinkState::Established);
    s.send(0, &frame([0xff; 6], mac(1), 3));
    assert_eq!((s.received(3, 3), s.received(2, 3)), (1, 0));
    // h3 is admitted again: a new slot, and it may handshake again.
    cfg.nodes.push(NodeSpec::new("h3", s.keys[2]));
    let now = s.now;
    let changes = s.switch.as_mut().unwrap().apply_config(now, cfg).unwrap();
    assert_eq!(changes.added, ["h3"]);
    s.advance(Duration::from_secs(30));
    assert!(s.switch().is_connected(NodeId(3)));
}

#[test]
fn reload_moves_a_node_to_another_vlan_and_applies_limits() {
    let access = |v| PortVlan::Member {
        native: Some(v),
        tagged: vec![],
    };
    let mut s = Sim::with_switch(3, |c| {
        for (n, v) in c.nodes.iter_mut().zip([10, 10, 20]) {
            n.vlan = access(v);
        }
    });
    s.send(1, &frame([0xff; 6], mac(2), 1));
    assert_eq!(s.received(0, 1), 1);
    let mut cfg = s.switch_cfg.clone();
    cfg.nodes[1].vlan = access(20);
    cfg.mac_limit_per_node = 2;
    let now = s.now;
    let changes = s.switch.as_mut().unwrap().apply_config(now, cfg).unwrap();
    assert_eq!(changes.changed, ["h2"]);
    assert!(changes.settings);
    assert_eq!(
        s.switch().mac_table().count_for(NodeId(1)),
        0,
        "h2's VLAN 10 MACs stay"
    );
    // h2 is in VLAN 20 now: it hears h3, not h1, and h1 does not hear it.
    s.send(0, &frame([0xff; 6], mac(1), 2));
    s.send(2, &frame([0xff; 6], mac(3), 3));
    s.send(1, &frame([0xff; 6], mac(2), 4));
    assert_eq!((s.received(1, 2), s.received(1, 3)), (0, 1));
    assert_eq!((s.received(0, 4), s.received(2, 4)), (0, 1));
    // The lowered MAC limit holds for what is learned now.
    for m in 10..14 {
        s.send(2, &frame([0xff; 6], mac(m), 5));
    }
    assert_eq!(s.switch().mac_table().count_for(NodeId(2)), 2);
}

#[test]
fn reload_refuses_a_new_secret_or_key_and_changes_nothing() {
    let mut s = Sim::new(2, 1);
    let mut cfg = s.switch_cfg.clone();
    cfg.nodes.remove(1);
    cfg.psk = Psk::from_base64("AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=").unwrap();
    let now = s.now;
    let sw = s.switch.as_mut().unwrap();
    assert_eq!(
        sw.apply_config(now, cfg.clone()).unwrap_err(),
        tapmesh_switch::fabric::Unchangeable("network-secret-file")
    );
    cfg.psk = Psk::default();
    cfg.private_key = StaticSecret::generate(&mut rand::rng());
    assert_eq!(
        sw.apply_config(now, cfg).unwrap_err(),
        tapmesh_switch::fabric::Unchangeable("private-key-file")
    );
    // Both nodes are still there, connected.
    assert_eq!(s.switch().status(s.now, false).nodes.len(), 2);
    exchange_without_loss(&mut s, 20);
}

fn impair(s: &mut Sim, node: &str, line: &str) {
    use tapmesh_switch::impair::Request;
    let sw = s.switch.as_mut().unwrap();
    let r = Request::parse(line).unwrap();
    let now = r.apply(sw.impair_of(node).unwrap());
    assert!(sw.set_impair(node, &now));
}

#[test]
fn impaired_link_delays_corrupts_and_goes_down_in_both_directions() {
    let mut s = Sim::new(2, 0);
    s.send(0, &frame([0xff; 6], mac(1), 0));
    s.send(1, &frame([0xff; 6], mac(2), 0));
    // Egress delay: held in the switch, sealed when released.
    impair(&mut s, "h2", "impair h2 egress delay=30ms");
    s.send(0, &frame(mac(2), mac(1), 1));
    assert_eq!(s.received(1, 1), 0, "held for 30 ms");
    s.advance(Duration::from_millis(20));
    assert_eq!(s.received(1, 1), 0, "still held after 20 ms");
    s.advance(Duration::from_millis(20));
    assert_eq!(s.received(1, 1), 1, "released after 30 ms");
    // Ingress delay: from h2, before learning and forwarding.
    impair(&mut s, "h2", "impair h2 ingress delay=30ms");
    s.send(1, &frame(mac(1), mac(2), 2));
    assert_eq!(s.received(0, 2), 0);
    s.advance(Duration::from_millis(40));
    assert_eq!(s.received(0, 2), 1);
    // Corruption: the frame is authenticated under h2's session, and one
    // bit of its Ethernet payload differs.
    impair(&mut s, "h2", "impair h2 both corrupt=100%");
    let sent = frame(mac(2), mac(1), 3);
    s.clear();
    s.send(0, &sent);
    s.advance(Duration::from_millis(10));
    assert_eq!(s.tap[1].len(), 1, "delivered, authenticated");
    let got = &s.tap[1][0];
    assert_eq!(got[..14], sent[..14]);
    let flipped: u32 = got
        .iter()
        .zip(&sent)
        .map(|(a, b)| (a ^ b).count_ones())
        .sum();
    assert_eq!(flipped, 1);
    // Link down: nothing either way; up: at once.
    impair(&mut s, "h2", "impair h2 clear");
    impair(&mut s, "h2", "link h2 down");
    s.clear();
    s.send(0, &frame(mac(2), mac(1), 4));
    s.send(1, &frame(mac(1), mac(2), 5));
    s.advance(Duration::from_millis(100));
    assert_eq!((s.received(1, 4), s.received(0, 5)), (0, 0));
    impair(&mut s, "h2", "link h2 up");
    s.send(0, &frame(mac(2), mac(1), 6));
    s.send(1, &frame(mac(1), mac(2), 7));
    assert_eq!((s.received(1, 6), s.received(0, 7)), (1, 1));
    // Cleared and up: the port drops its impairment, counters stay.
    s.advance(Duration::from_millis(10));
    let st = s.switch().status(s.now, false);
    let i = st.nodes[1].impair.as_ref().unwrap();
    assert_eq!((i.link.as_str(), i.egress.as_str()), ("up", "none"));
    assert_eq!(i.egress_counters.link_down, 1);
    assert_eq!(i.ingress_counters.link_down, 1);
    assert_eq!(i.egress_counters.corrupted, 1);
    assert!(st.nodes[0].impair.is_none());
}

#[test]
fn impaired_egress_cuts_superframes_into_checksummed_segments() {
    use overlay_proto::vnet::{VNET_HDR_LEN, internet_checksum};
    let mut s = Sim::with(2, 0, |_, c| c.offload = true);
    let zero = [0u8; VNET_HDR_LEN];
    for (i, m) in [(0usize, mac(1)), (1, mac(2))] {
        let mut f = frame([0xff; 6], m, 0);
        f.splice(0..0, zero);
        s.send(i, &f);
    }
    impair(&mut s, "h2", "impair h2 egress duplicate=0.001%");
    let (sf, with_hdr) = offloaded_superframe(20_000);
    s.clear();
    s.send(0, &with_hdr);
    // Without impairment h2 would get one super-frame (see above); on an
    // impaired link it gets wire-sized frames, each with a complete
    // checksum, so a corrupted one fails the receiver's check.
    let segs = &s.tap[1];
    assert_eq!(segs.len(), 20_000usize.div_ceil(1360));
    for g in segs {
        assert_eq!(g[..VNET_HDR_LEN], zero, "a plain frame");
        let f = &g[VNET_HDR_LEN..];
        assert!(f.len() <= 1360 + 54);
        // TCP checksum over pseudo-header and segment verifies to zero.
        let tcp = &f[34..];
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&f[26..34]);
        pseudo.extend_from_slice(&[0, 6]);
        pseudo.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
        pseudo.extend_from_slice(tcp);
        assert_eq!(internet_checksum(&pseudo), 0);
    }
    let payload: Vec<u8> = segs
        .iter()
        .flat_map(|g| g[VNET_HDR_LEN + 54..].to_vec())
        .collect();
    assert_eq!(payload, sf[54..].to_vec());
}
