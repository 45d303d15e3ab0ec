//! A deterministic in-memory network: one switch core and several node cores,
//! driven with virtual time. No sockets, no TAP, no sleeping: datagrams move
//! through a queue and the clock jumps. It checks behaviour that namespace
//! tests cannot pin down exactly (aging, timers, rekeys over hours).
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use overlay_proto::keys::{Psk, StaticSecret};
use overlay_proto::wire::{DATA_HEADER_LEN, DATA_OVERHEAD};
use tapmesh_node::core::{LinkState, Node, NodeConfig};
use tapmesh_switch::NodeId;
use tapmesh_switch::core::{NodeSpec, Switch, SwitchConfig};
use tapmesh_switch::stats::DropReason;

const SWITCH: &str = "198.18.0.3:7777";

struct Sim {
    now: Instant,
    switch: Option<Switch>,
    switch_cfg: SwitchConfig,
    nodes: Vec<Node>,
    addrs: Vec<SocketAddr>,
    wire: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>,
    /// Frames each node wrote to its TAP.
    tap: Vec<Vec<Vec<u8>>>,
    /// Nodes cut off the network: their datagrams (both ways) are lost.
    cut: Vec<bool>,
}

fn mac(n: u8) -> [u8; 6] {
    [2, 0, 0, 0, 0, n]
}

fn frame(dst: [u8; 6], src: [u8; 6], tag: u32) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x88, 0xb5]); // local experimental ethertype
    f.extend_from_slice(&tag.to_be_bytes());
    f.resize(60, 0);
    f
}

impl Sim {
    /// A switch and `n` admitted nodes, plus `extra` nodes with keys the
    /// switch does not know.
    fn new(n: usize, extra: usize) -> Sim {
        let t0 = Instant::now();
        let mut rng = rand::rng();
        let switch_key = StaticSecret::generate(&mut rng);
        let keys: Vec<StaticSecret> = (0..n + extra)
            .map(|_| StaticSecret::generate(&mut rng))
            .collect();
        let switch_cfg = SwitchConfig {
            private_key: switch_key.clone(),
            psk: Psk::default(),
            network_id: 0,
            nodes: keys[..n]
                .iter()
                .enumerate()
                .map(|(i, k)| NodeSpec {
                    name: format!("h{}", i + 1),
                    public_key: k.public_key(),
                })
                .collect(),
            mac_aging: Duration::from_secs(300),
            node_timeout: Duration::from_secs(30),
            mac_limit_per_node: 16,
            mac_table_limit: 1000,
        };
        let addrs: Vec<SocketAddr> = (0..n + extra)
            .map(|i| format!("198.18.0.{}:4000", 10 + i).parse().unwrap())
            .collect();
        let nodes = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                Node::new(
                    NodeConfig {
                        private_key: k.clone(),
                        switch_key: switch_key.public_key(),
                        switch_addr: SWITCH.parse().unwrap(),
                        psk: Psk::default(),
                        network_id: 0,
                        mtu: 1400,
                    },
                    t0,
                    Duration::from_secs(1_700_000_000),
                    i as u64,
                )
            })
            .collect();
        let mut sim = Sim {
            now: t0,
            switch: Some(Switch::new(switch_cfg.clone(), t0, 1)),
            switch_cfg,
            nodes,
            addrs,
            wire: VecDeque::new(),
            tap: vec![Vec::new(); n + extra],
            cut: vec![false; n + extra],
        };
        sim.advance(Duration::from_millis(100));
        sim
    }

    fn switch(&self) -> &Switch {
        self.switch.as_ref().unwrap()
    }

    /// Node `i` reads `f` from its TAP.
    fn send(&mut self, i: usize, f: &[u8]) {
        let mut buf = vec![0u8; DATA_HEADER_LEN + f.len() + DATA_OVERHEAD];
        buf[DATA_HEADER_LEN..DATA_HEADER_LEN + f.len()].copy_from_slice(f);
        if let Ok(n) = self.nodes[i].handle_tap_frame(self.now, &mut buf, f.len()) {
            buf.truncate(n);
            self.wire
                .push_back((self.addrs[i], SWITCH.parse().unwrap(), buf));
        }
        self.deliver();
    }

    fn drain_node(&mut self, i: usize) {
        while let Some(t) = self.nodes[i].poll_transmit() {
            let d = (self.addrs[i], t.destination, t.contents.to_vec());
            self.wire.push_back(d);
        }
    }

    fn drain_switch(&mut self) {
        let Some(sw) = self.switch.as_mut() else {
            return;
        };
        while let Some(t) = sw.poll_transmit() {
            self.wire
                .push_back((SWITCH.parse().unwrap(), t.destination, t.contents.to_vec()));
        }
    }

    /// Move datagrams until the wire is empty.
    fn deliver(&mut self) {
        for i in 0..self.nodes.len() {
            self.drain_node(i);
        }
        self.drain_switch();
        while let Some((from, to, mut d)) = self.wire.pop_front() {
            let is_cut = |a: &SocketAddr| {
                self.addrs
                    .iter()
                    .position(|x| x == a)
                    .is_some_and(|i| self.cut[i])
            };
            if is_cut(&from) || is_cut(&to) {
                continue;
            }
            if to == SWITCH.parse().unwrap() {
                if let Some(sw) = self.switch.as_mut() {
                    sw.handle_datagram(self.now, from, &mut d);
                }
                self.drain_switch();
            } else if let Some(i) = self.addrs.iter().position(|a| *a == to) {
                if let Some(r) = self.nodes[i].handle_datagram(self.now, from, &mut d) {
                    self.tap[i].push(d[r].to_vec());
                }
                self.drain_node(i);
            }
        }
    }

    /// Let virtual time pass in 10 ms steps, running every due timer.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += Duration::from_millis(10);
            let now = self.now;
            if let Some(sw) = self.switch.as_mut()
                && sw.poll_timeout().is_some_and(|t| t <= now)
            {
                sw.handle_timeout(now);
            }
            for n in &mut self.nodes {
                if n.poll_timeout().is_some_and(|t| t <= now) {
                    n.handle_timeout(now);
                }
            }
            self.deliver();
        }
    }

    fn received(&self, i: usize, tag: u32) -> usize {
        self.tap[i]
            .iter()
            .filter(|f| f.len() >= 18 && f[14..18] == tag.to_be_bytes())
            .count()
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
    assert_eq!(s.switch().lookup_mac(s.now, &[1, 0, 0x5e, 1, 2, 3]), None);
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
    s.cut[1] = true;
    s.advance(Duration::from_secs(29));
    assert!(
        s.switch().is_connected(NodeId(1)),
        "forgotten before the timeout"
    );
    s.advance(Duration::from_secs(2));
    assert!(!s.switch().is_connected(NodeId(1)));
    assert_eq!(s.switch().mac_table().count_for(NodeId(1)), 0);
}

#[test]
fn rekeys_every_two_minutes_without_losing_a_frame() {
    let mut s = Sim::new(2, 0);
    s.send(1, &frame([0xff; 6], mac(2), 0));
    let mut sent = 0u32;
    // 400 s of traffic both ways, one frame each way every 50 ms.
    for step in 0..8000u32 {
        s.send(0, &frame(mac(2), mac(1), 1_000_000 + step));
        s.send(1, &frame(mac(1), mac(2), 2_000_000 + step));
        sent += 1;
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
    assert_eq!(got1 as u32, sent, "h1 -> h2 lost frames across rekeys");
    assert_eq!(got0 as u32, sent, "h2 -> h1 lost frames across rekeys");
    let st = s.switch().status(s.now, false);
    assert!(
        st.sessions.handshakes >= 2 * 3,
        "expected rekeys, got {:?}",
        st.sessions
    );
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
        s.switch
            .as_mut()
            .unwrap()
            .handle_datagram(s.now, from, &mut d);
        count += 1;
    }
    assert_eq!(s.switch().drops().total(), count);
    assert_eq!(s.switch().pending_transmits(), 0, "answered garbage");
    // Replay a captured data datagram.
    let f = frame([0xff; 6], mac(1), 1);
    let mut buf = vec![0u8; DATA_HEADER_LEN + f.len() + DATA_OVERHEAD];
    buf[DATA_HEADER_LEN..DATA_HEADER_LEN + f.len()].copy_from_slice(&f);
    let n = s.nodes[0]
        .handle_tap_frame(s.now, &mut buf, f.len())
        .unwrap();
    buf.truncate(n);
    let mut a = buf.clone();
    s.switch
        .as_mut()
        .unwrap()
        .handle_datagram(s.now, s.addrs[0], &mut a);
    let mut b = buf.clone();
    s.switch
        .as_mut()
        .unwrap()
        .handle_datagram(s.now, s.addrs[0], &mut b);
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
