//! Fixtures shared by the fuzz targets and `make-seeds`: deterministic keys,
//! a switch config admitting one node, and that node's config. Everything is
//! derived from fixed seeds so that a seed file written by `make-seeds` (for
//! example a *valid* handshake initiation) means the same thing to the
//! target that later reads it.
pub mod ip;

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use overlay_proto::handshake::SessionKeys;
use overlay_proto::keys::{Psk, StaticSecret};
use overlay_proto::session::Session;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tapmesh_node::core::NodeConfig;
use tapmesh_switch::core::{NodeSpec, SwitchConfig};

/// The network id. `Config::load` always produces 0, so that is what a real
/// deployment uses.
pub const NETWORK_ID: u32 = 0;
/// Seed for the switch's session-index generator.
pub const SWITCH_SEED: u64 = 0x5717_c400;
/// Seed for the node's session-index generator (so the index its first
/// handshake uses is fixed, and a response seed can name it).
pub const NODE_SEED: u64 = 0x40de_0001;
/// Wall-clock time the node core is created at.
pub const UNIX_NOW: Duration = Duration::from_secs(1_700_000_000);

/// Where datagrams "come from" in the switch target.
pub fn node_addr() -> SocketAddr {
    "198.18.0.10:40000".parse().unwrap()
}

/// The switch's address in the node config.
pub fn switch_addr() -> SocketAddr {
    "198.18.0.3:7777".parse().unwrap()
}

/// Static keys: (switch, node h1, node h2), from one fixed-seed RNG.
pub fn keys() -> &'static (StaticSecret, StaticSecret, StaticSecret) {
    static K: OnceLock<(StaticSecret, StaticSecret, StaticSecret)> = OnceLock::new();
    K.get_or_init(|| {
        let mut rng = StdRng::seed_from_u64(0x7a9e_5eed);
        (
            StaticSecret::generate(&mut rng),
            StaticSecret::generate(&mut rng),
            StaticSecret::generate(&mut rng),
        )
    })
}

/// One `Instant` per process, used as "now" everywhere.
pub fn now() -> Instant {
    static T: OnceLock<Instant> = OnceLock::new();
    *T.get_or_init(Instant::now)
}

/// The switch config: admits h1 and h2, default limits, no PSK.
pub fn switch_config() -> &'static SwitchConfig {
    static C: OnceLock<SwitchConfig> = OnceLock::new();
    C.get_or_init(|| {
        let (sw, h1, h2) = keys();
        SwitchConfig {
            private_key: sw.clone(),
            psk: Psk::default(),
            network_id: NETWORK_ID,
            nodes: vec![
                NodeSpec::new("h1", h1.public_key()),
                NodeSpec::new("h2", h2.public_key()),
            ],
            mac_aging: Duration::from_secs(300),
            node_timeout: Duration::from_secs(30),
            mac_limit_per_node: 1024,
            mac_table_limit: 1 << 20,
            underlay_mtu: 1500,
            multicast: Default::default(),
            storm: Default::default(),
            handshake_guard: Default::default(),
        }
    })
}

/// Node h1's config, pointing at the switch above.
pub fn node_config() -> &'static NodeConfig {
    static C: OnceLock<NodeConfig> = OnceLock::new();
    C.get_or_init(|| {
        let (sw, h1, _) = keys();
        NodeConfig {
            private_key: h1.clone(),
            switch_key: sw.public_key(),
            switch_addr: switch_addr(),
            psk: Psk::default(),
            network_id: NETWORK_ID,
            mtu: 1400,
            offload: true,
            underlay_mtu: 1500,
            rekey_after: overlay_proto::timers::REKEY_AFTER_TIME,
            vouch_lifetime: tapmesh_node::peers::DEFAULT_VOUCH_LIFETIME,
        }
    })
}

/// A fresh node h1 that has just sent its first handshake initiation (the
/// initiation is drained from its transmit queue and returned).
pub fn node_with_handshake_in_flight() -> (tapmesh_node::core::Node, Vec<u8>) {
    let mut node = tapmesh_node::core::Node::new(node_config().clone(), now(), UNIX_NOW, NODE_SEED);
    node.handle_timeout(now());
    let init = node
        .poll_transmit()
        .expect("a new node starts a handshake on its first timeout")
        .contents
        .to_vec();
    assert!(node.poll_transmit().is_none());
    (node, init)
}

/// Session index of A in [`session_pair`].
pub const SESSION_A_INDEX: u32 = 0x0a0a_0a0a;
/// Session index of B in [`session_pair`].
pub const SESSION_B_INDEX: u32 = 0x0b0b_0b0b;

/// Two established sessions with mirrored fixed keys: A sends to B.
pub fn session_pair(now: Instant) -> (Session, Session) {
    let a = SessionKeys {
        send: [0x11; 32],
        recv: [0x22; 32],
    };
    let b = SessionKeys {
        send: [0x22; 32],
        recv: [0x11; 32],
    };
    (
        Session::new(a, SESSION_A_INDEX, SESSION_B_INDEX, NETWORK_ID, now),
        Session::new(b, SESSION_B_INDEX, SESSION_A_INDEX, NETWORK_ID, now),
    )
}

/// A fixed initiation-sized datagram (not a real Noise message) stamped with
/// a valid `mac1` for the fixture switch: cookie replies in the seeds and
/// targets answer this one, so its `mac1` is known to both.
pub fn stamped_init() -> [u8; overlay_proto::wire::HS_INIT_LEN] {
    use overlay_proto::cookie::MacKeys;
    use overlay_proto::wire::{HS_INIT_LEN, Header, MessageType};
    let mut b = [0xa5u8; HS_INIT_LEN];
    let mut h = Header::new_unchecked(&mut b[..]);
    h.set_common(MessageType::HandshakeInit, 0, 0, NETWORK_ID);
    h.set_handshake_indices(0x0102_0304, None);
    MacKeys::new(&keys().0.public_key()).stamp(None, &mut b);
    b
}

/// Seed of the generator that gives the fixture switch's cookie minter its
/// secret and reply nonces.
pub const COOKIE_SEED: u64 = 5;

/// The fixture switch's cookie minter after its first reply, to
/// [`stamped_init`] from [`node_addr`] (written into `reply`): the secret is
/// fixed by [`COOKIE_SEED`], so this reply is a seed file and the cookie in
/// it is what a target can check `mac2` against.
pub fn cookie_minter(
    reply: &mut [u8; overlay_proto::wire::COOKIE_REPLY_LEN],
) -> overlay_proto::cookie::CookieMinter {
    use overlay_proto::cookie::CookieMinter;
    use overlay_proto::wire::Header;
    let mut m = CookieMinter::with_rng(&keys().0.public_key(), StdRng::seed_from_u64(COOKIE_SEED));
    let init = stamped_init();
    m.write_reply(
        now(),
        node_addr(),
        &Header::new_checked(&init[..]).expect("stamped_init is well-formed"),
        reply,
    );
    m
}

/// The `forwarding` target's network: a VLAN-aware switch with three nodes
/// that have finished their handshakes, so every datagram carries a frame
/// the switch decrypts, checks, learns from and forwards.
///
/// - h1 (index 0): trunk, native VLAN 1 and VLAN 7 tagged, offload TAP;
/// - h2 (index 1): access port on VLAN 7, offload TAP;
/// - h3 (index 2): trunk like h1, but without offload (the switch must cut
///   super-frames for it);
/// - h4: a trunk like h1 whose "node" is only its session ([`Forwarding::rogue`]),
///   so it can send what no honest node would: any flags, any payload.
///
/// Built once per process (four real Noise handshakes); targets clone it
/// (the cores are `Clone` only in fuzzing builds).
#[derive(Debug)]
#[cfg_attr(fuzzing, derive(Clone))]
pub struct Forwarding {
    /// The switch.
    pub switch: tapmesh_switch::core::Switch,
    /// h1, h2, h3.
    pub nodes: Vec<tapmesh_node::core::Node>,
    /// h4's session with the switch.
    pub rogue: Session,
}

/// Underlay addresses of h1, h2, h3 and h4 in [`Forwarding`].
pub fn forwarding_addrs() -> [SocketAddr; 4] {
    [
        "198.18.0.11:40000".parse().unwrap(),
        "198.18.0.12:40000".parse().unwrap(),
        "198.18.0.13:40000".parse().unwrap(),
        "198.18.0.14:40000".parse().unwrap(),
    ]
}

/// Whether node `i` of [`Forwarding`] has an offload (virtio header) TAP.
pub fn forwarding_offload(i: usize) -> bool {
    i != 2
}

/// The established network of the `forwarding` target.
pub fn forwarding() -> &'static Forwarding {
    use tapmesh_switch::vlan::PortVlan;
    static F: OnceLock<Forwarding> = OnceLock::new();
    F.get_or_init(|| {
        let (_, h1, h2) = keys();
        let mut rng = StdRng::seed_from_u64(0x0003_5eed);
        let h3 = StaticSecret::generate(&mut rng);
        let h4 = StaticSecret::generate(&mut rng);
        let trunk = PortVlan::Member {
            native: Some(1),
            tagged: vec![7],
        };
        let spec = |name: &str, key: &StaticSecret, vlan: &PortVlan| NodeSpec {
            vlan: vlan.clone(),
            ..NodeSpec::new(name, key.public_key())
        };
        let access = PortVlan::Member {
            native: Some(7),
            tagged: vec![],
        };
        let cfg = SwitchConfig {
            nodes: vec![
                spec("h1", h1, &trunk),
                spec("h2", h2, &access),
                spec("h3", &h3, &trunk),
                spec("h4", &h4, &trunk),
            ],
            mac_limit_per_node: 64,
            mac_table_limit: 128,
            ..switch_config().clone()
        };
        let t = now();
        let mut switch = tapmesh_switch::core::Switch::new(cfg, t, SWITCH_SEED);
        let mut nodes: Vec<_> = [h1, h2, &h3]
            .into_iter()
            .enumerate()
            .map(|(i, k)| {
                let cfg = NodeConfig {
                    private_key: k.clone(),
                    offload: forwarding_offload(i),
                    ..node_config().clone()
                };
                tapmesh_node::core::Node::new(cfg, t, UNIX_NOW, NODE_SEED + i as u64)
            })
            .collect();
        let addrs = forwarding_addrs();
        for n in &mut nodes {
            n.handle_timeout(t);
        }
        // Move datagrams until nobody has anything left to say.
        for _ in 0..16 {
            let mut moved = false;
            for (i, n) in nodes.iter_mut().enumerate() {
                while let Some(tx) = n.poll_transmit() {
                    for d in tx.datagrams() {
                        switch.handle_datagram(t, addrs[i], &mut d.to_vec());
                    }
                    moved = true;
                }
            }
            while let Some(tx) = switch.poll_transmit() {
                let i = addrs.iter().position(|a| *a == tx.destination).unwrap();
                for d in tx.datagrams() {
                    let _ = nodes[i].handle_datagram(t, switch_addr(), &mut d.to_vec());
                }
                moved = true;
            }
            if !moved {
                break;
            }
        }
        for (i, n) in nodes.iter_mut().enumerate() {
            assert_eq!(
                n.link_state(),
                tapmesh_node::core::LinkState::Established,
                "h{} has no session",
                i + 1
            );
            assert!(switch.is_connected(tapmesh_switch::NodeId(i as u32)));
            while n.poll_event().is_some() {}
        }
        let rogue = rogue_session(&mut switch, &h4, addrs[3]);
        assert!(switch.is_connected(tapmesh_switch::NodeId(3)));
        while switch.poll_event().is_some() {}
        Forwarding {
            switch,
            nodes,
            rogue,
        }
    })
}

/// A session with `switch` for `key`, made by hand (initiation, response,
/// keepalive) from `addr`.
fn rogue_session(
    switch: &mut tapmesh_switch::core::Switch,
    key: &StaticSecret,
    addr: SocketAddr,
) -> Session {
    use overlay_proto::handshake::{self, Timestamp};
    use overlay_proto::wire::{DATA_OVERHEAD, HS_INIT_LEN, Header};
    let t = now();
    let index = 0x4444_0004;
    let mut init = [0u8; HS_INIT_LEN];
    let mut pending = handshake::initiate(
        key,
        &keys().0.public_key(),
        &Psk::default(),
        NETWORK_ID,
        index,
        Timestamp::from_unix(UNIX_NOW.as_secs(), 0),
        handshake::CAP_VNET,
        None,
        &mut init,
    )
    .expect("initiation");
    switch.handle_datagram(t, addr, &mut init);
    let resp = switch
        .poll_transmit()
        .expect("a handshake response")
        .contents
        .to_vec();
    let (session_keys, remote) = pending
        .finish(&Header::new_checked(&resp[..]).expect("well-formed response"))
        .expect("the switch accepted h4");
    let mut s = Session::new(session_keys, index, remote, NETWORK_ID, t);
    let mut keepalive = [0u8; DATA_OVERHEAD];
    let n = s.seal(0, &mut keepalive, 0).expect("seal a keepalive");
    switch.handle_datagram(t, addr, &mut keepalive[..n]);
    while switch.poll_transmit().is_some() {}
    s
}

/// The `mesh_peer` target's network: a switch in mesh mode and nodes h1, h2
/// and h3 (no offload) with direct sessions between every pair, each having
/// learned the others' MACs (02:00:00:00:00:0n behind hn).
#[derive(Debug)]
#[cfg_attr(fuzzing, derive(Clone))]
pub struct MeshNet {
    /// Virtual time after the setup; targets use this as "now".
    pub now: Instant,
    /// The switch.
    pub switch: tapmesh_switch::core::Switch,
    /// h1, h2, h3.
    pub nodes: Vec<tapmesh_node::core::Node>,
    /// Their underlay addresses.
    pub addrs: Vec<SocketAddr>,
    /// Frames each node wrote to its TAP during the setup.
    pub tap: Vec<Vec<Vec<u8>>>,
}

impl MeshNet {
    /// Move datagrams until none is left (at most `rounds` hops deep), and
    /// record TAP writes. Datagrams to addresses that are neither a node nor
    /// the switch are returned, not delivered.
    pub fn deliver(&mut self, rounds: usize) -> Vec<(usize, SocketAddr, Vec<u8>)> {
        self.deliver_from(Vec::new(), rounds)
    }

    /// [`deliver`](Self::deliver), starting with `wire`: (from, to, datagram).
    fn deliver_from(
        &mut self,
        mut wire: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
        rounds: usize,
    ) -> Vec<(usize, SocketAddr, Vec<u8>)> {
        use tapmesh_node::core::TapWrite;
        let mut stray = Vec::new();
        for _ in 0..rounds {
            for (i, n) in self.nodes.iter_mut().enumerate() {
                while let Some(t) = n.poll_transmit() {
                    for d in t.datagrams() {
                        wire.push((self.addrs[i], t.destination, d.to_vec()));
                    }
                }
            }
            while let Some(t) = self.switch.poll_transmit() {
                for d in t.datagrams() {
                    wire.push((switch_addr(), t.destination, d.to_vec()));
                }
            }
            if wire.is_empty() {
                break;
            }
            for (from, to, mut d) in std::mem::take(&mut wire) {
                if to == switch_addr() {
                    self.switch.handle_datagram(self.now, from, &mut d);
                } else if let Some(i) = self.addrs.iter().position(|a| *a == to) {
                    let n = &mut self.nodes[i];
                    match n.handle_datagram(self.now, from, &mut d) {
                        Some(TapWrite::InPlace(r)) => self.tap[i].push(d[r].to_vec()),
                        Some(TapWrite::Reassembled(r)) => {
                            self.tap[i].push(n.reassembled()[r].to_vec())
                        }
                        None => {}
                    }
                } else {
                    let i = self.addrs.iter().position(|a| *a == from);
                    stray.push((i.unwrap_or(usize::MAX), to, d));
                }
            }
        }
        stray
    }

    /// Let `d` of virtual time pass in 10 ms steps, running due timers.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += Duration::from_millis(10);
            let now = self.now;
            if self.switch.poll_timeout().is_some_and(|t| t <= now) {
                self.switch.handle_timeout(now);
            }
            for n in &mut self.nodes {
                if n.poll_timeout().is_some_and(|t| t <= now) {
                    n.handle_timeout(now);
                }
            }
            self.deliver(16);
        }
    }

    /// Node `i` reads `bytes` from its TAP; the result is delivered as by
    /// [`deliver`](Self::deliver), whose strays are returned.
    pub fn send(&mut self, i: usize, bytes: &[u8]) -> Vec<(usize, SocketAddr, Vec<u8>)> {
        use overlay_proto::wire::{DATA_HEADER_LEN, DATA_OVERHEAD};
        let mut buf = vec![0u8; DATA_HEADER_LEN + bytes.len() + DATA_OVERHEAD];
        buf[DATA_HEADER_LEN..DATA_HEADER_LEN + bytes.len()].copy_from_slice(bytes);
        let mut wire = Vec::new();
        if let Ok(Some(r)) = self.nodes[i].handle_tap_frame(self.now, &mut buf, bytes.len()) {
            wire.push((self.addrs[i], self.nodes[i].destination(), buf[r].to_vec()));
        }
        self.deliver_from(wire, 16)
    }
}

/// The established mesh of the `mesh_peer` target (built once per process).
pub fn mesh_net() -> &'static MeshNet {
    use tapmesh_node::peers::Path;
    static M: OnceLock<MeshNet> = OnceLock::new();
    M.get_or_init(|| {
        let (_, h1, h2) = keys();
        let h3 = StaticSecret::generate(&mut StdRng::seed_from_u64(0x0003_5eed));
        let node_keys = [h1.clone(), h2.clone(), h3];
        let cfg = SwitchConfig {
            nodes: node_keys
                .iter()
                .enumerate()
                .map(|(i, k)| NodeSpec::new(format!("h{}", i + 1), k.public_key()))
                .collect(),
            ..switch_config().clone()
        };
        let t = now();
        let mut switch = tapmesh_switch::core::Switch::new(cfg, t, SWITCH_SEED);
        switch.enable_mesh();
        let addrs: Vec<SocketAddr> = (0..3)
            .map(|i| format!("198.18.0.{}:40000", 21 + i).parse().unwrap())
            .collect();
        let nodes = node_keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let cfg = NodeConfig {
                    private_key: k.clone(),
                    offload: false,
                    ..node_config().clone()
                };
                let mut n = tapmesh_node::core::Node::new(cfg, t, UNIX_NOW, NODE_SEED + i as u64);
                n.set_local_addrs(vec![addrs[i]]);
                n
            })
            .collect();
        let mut m = MeshNet {
            now: t,
            switch,
            nodes,
            addrs,
            tap: vec![Vec::new(); 3],
        };
        m.advance(Duration::from_secs(2));
        // Each announces its MAC with a broadcast, as ARP would.
        for i in 0..3 {
            let mut f = vec![0xff; 6];
            f.extend_from_slice(&[2, 0, 0, 0, 0, i as u8 + 1, 0x88, 0xb5]);
            f.resize(60, 0);
            m.send(i, &f);
        }
        m.advance(Duration::from_millis(100));
        for i in 0..3 {
            for j in 0..3 {
                if i != j {
                    let path = m.nodes[i].peers().path_of(m.now, &format!("h{}", j + 1));
                    assert_eq!(path, Some(Path::Direct), "h{} -> h{}", i + 1, j + 1);
                }
            }
            while m.nodes[i].poll_event().is_some() {}
            while m.nodes[i].poll_path_event().is_some() {}
        }
        while m.switch.poll_event().is_some() {}
        for t in &mut m.tap {
            t.clear();
        }
        m
    })
}
