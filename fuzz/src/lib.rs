//! Fixtures shared by the fuzz targets and `make-seeds`: deterministic keys,
//! a switch config admitting one node, and that node's config. Everything is
//! derived from fixed seeds so that a seed file written by `make-seeds` (for
//! example a *valid* handshake initiation) means the same thing to the
//! target that later reads it.
pub mod ip;
pub mod tap;

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use overlay_proto::ethernet::MacAddr;
use overlay_proto::keys::{Psk, StaticSecret};
use overlay_proto::session::Session;
use overlay_proto::testing::SessionPair;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tapmesh_node::engine::NodeConfig;
use tapmesh_switch::fabric::{NodeSpec, SwitchConfig};

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
            switches: Vec::new(),
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
pub fn node_with_handshake_in_flight() -> (tapmesh_node::engine::Node, Vec<u8>) {
    let mut node =
        tapmesh_node::engine::Node::new(node_config().clone(), now(), UNIX_NOW, NODE_SEED);
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
    SessionPair {
        a_index: SESSION_A_INDEX,
        b_index: SESSION_B_INDEX,
        network_id: NETWORK_ID,
        a_to_b: [0x11; 32],
        b_to_a: [0x22; 32],
    }
    .build(now)
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
    pub switch: tapmesh_switch::fabric::Switch,
    /// h1, h2, h3.
    pub nodes: Vec<tapmesh_node::engine::Node>,
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
        let switch = tapmesh_switch::fabric::Switch::new(cfg, t, SWITCH_SEED);
        let mut net = tapmesh_sim::Net::new(t, switch_addr(), Some(switch));
        for (i, (k, addr)) in [h1, h2, &h3]
            .into_iter()
            .zip(forwarding_addrs())
            .enumerate()
        {
            let cfg = NodeConfig {
                private_key: k.clone(),
                offload: forwarding_offload(i),
                ..node_config().clone()
            };
            let mut n = tapmesh_node::engine::Node::new(cfg, t, UNIX_NOW, NODE_SEED + i as u64);
            n.handle_timeout(t);
            net.add_node(n, addr);
        }
        // Move datagrams until nobody has anything left to say.
        net.deliver();
        let (mut switch, mut nodes) = (net.switch.expect("the switch is up"), net.nodes);
        for (i, n) in nodes.iter_mut().enumerate() {
            assert_eq!(
                n.link_state(),
                tapmesh_node::engine::LinkState::Established,
                "h{} has no session",
                i + 1
            );
            assert!(switch.is_connected(tapmesh_switch::NodeId(i as u32)));
            while n.poll_event().is_some() {}
        }
        let rogue = rogue_session(&mut switch, &h4, forwarding_addrs()[3]);
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
    switch: &mut tapmesh_switch::fabric::Switch,
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
/// learned the others' MACs (02:00:00:00:00:0n behind hn). Chains of answers
/// are cut after 16 hops ([`tapmesh_sim::Net::max_hops`]); datagrams to
/// addresses that are neither a node nor the switch are strays
/// ([`tapmesh_sim::Net::take_strays`]), not delivered.
pub type MeshNet = tapmesh_sim::Net;

/// A mesh switch with `specs` (mesh mode on) and nodes `(key, address,
/// offload)`, no time passed yet.
fn new_mesh(specs: Vec<NodeSpec>, nodes: &[(StaticSecret, SocketAddr, bool)]) -> MeshNet {
    let cfg = SwitchConfig {
        nodes: specs,
        ..switch_config().clone()
    };
    let t = now();
    let mut switch = tapmesh_switch::fabric::Switch::new(cfg, t, SWITCH_SEED);
    switch.enable_mesh();
    let mut m = MeshNet::new(t, switch_addr(), Some(switch));
    m.max_hops = 16;
    for (i, (k, addr, offload)) in nodes.iter().enumerate() {
        let cfg = NodeConfig {
            private_key: k.clone(),
            offload: *offload,
            ..node_config().clone()
        };
        let mut n = tapmesh_node::engine::Node::new(cfg, t, UNIX_NOW, NODE_SEED + i as u64);
        n.set_local_addrs(vec![*addr]);
        m.add_node(n, *addr);
    }
    m
}

/// Node h3's key in the mesh networks.
fn h3_key() -> StaticSecret {
    StaticSecret::generate(&mut StdRng::seed_from_u64(0x0003_5eed))
}

/// Forget the setup's events and TAP writes.
fn settle(m: &mut MeshNet) {
    for n in &mut m.nodes {
        while n.poll_event().is_some() {}
        while n.poll_path_event().is_some() {}
    }
    while m.switch_mut().poll_event().is_some() {}
    m.clear_tap();
}

/// The established mesh of the `mesh_peer` target (built once per process).
pub fn mesh_net() -> &'static MeshNet {
    use tapmesh_node::peers::Path;
    static M: OnceLock<MeshNet> = OnceLock::new();
    M.get_or_init(|| {
        let (_, h1, h2) = keys();
        let node_keys = [h1.clone(), h2.clone(), h3_key()];
        let specs = node_keys
            .iter()
            .enumerate()
            .map(|(i, k)| NodeSpec::new(format!("h{}", i + 1), k.public_key()))
            .collect();
        let nodes: Vec<_> = node_keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let addr = format!("198.18.0.{}:40000", 21 + i).parse().unwrap();
                (k.clone(), addr, false)
            })
            .collect();
        let mut m = new_mesh(specs, &nodes);
        m.advance(Duration::from_secs(2));
        // Each announces its MAC with a broadcast, as ARP would.
        for i in 0..3 {
            m.send(i, &broadcast_from(i as u8 + 1, None));
        }
        m.advance(Duration::from_millis(100));
        for i in 0..3 {
            for j in 0..3 {
                if i != j {
                    let path = m.nodes[i].peers().path_of(m.now, &format!("h{}", j + 1));
                    assert_eq!(path, Some(Path::Direct), "h{} -> h{}", i + 1, j + 1);
                }
            }
        }
        settle(&mut m);
        m
    })
}

/// A 60-byte broadcast from 02:00:00:00:00:`n` (ethertype 0x88b5, local
/// experimental), with an 802.1Q tag for `vid` if given.
pub fn broadcast_from(n: u8, vid: Option<u16>) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[2, 0, 0, 0, 0, n]);
    if let Some(v) = vid {
        f.extend_from_slice(&[0x81, 0x00, (v >> 8) as u8, v as u8]);
    }
    f.extend_from_slice(&[0x88, 0xb5]);
    f.resize(60, 0);
    f
}

/// The `peer_session` target's network: a VLAN-aware mesh switch, nodes h1
/// and h3, and h2, a member whose "node" is only its sessions
/// ([`Rogue`]): with the switch, and direct ones with h1 and h3 that it
/// answered as any peer would. So it can seal what no honest node would,
/// under sessions h1 and h3 take for real.
///
/// - h1 (`mesh.nodes[0]`, offload TAP): native VLAN 1, VLANs 7 and 8 tagged;
/// - h2 (the rogue): native VLAN 7, VLANs 8 and 9 tagged;
/// - h3 (`mesh.nodes[1]`, no offload): native VLAN 1, VLAN 8 tagged.
///
/// So h1 and h2 share VLANs 7 (untagged at h2, tagged at h1) and 8, h2 and
/// h3 only 8, h1 and h3 1 and 8. Every node announced its MAC
/// (02:00:00:00:00:0n) in each of its VLANs with a broadcast through the
/// switch, and h2 announced [`PEER_PREFILL`] more to h1 (06:00:00:00:hi:lo),
/// so h1's table behind h2 is near its bounds.
#[derive(Debug)]
#[cfg_attr(fuzzing, derive(Clone))]
pub struct PeerNet {
    /// The switch, h1 and h3 (h2's address is not one of theirs: what goes
    /// there is a stray).
    pub mesh: MeshNet,
    /// h2.
    pub rogue: Rogue,
}

/// MACs h2 announced to h1 in the setup of [`peer_net`].
pub const PEER_PREFILL: usize = 960;

/// The VLAN ports of h1, h2 and h3 in [`PeerNet`].
pub fn peer_vlans() -> [overlay_proto::vlan::PortVlan; 3] {
    use overlay_proto::vlan::PortVlan;
    let port = |native, tagged: &[u16]| PortVlan::Member {
        native: Some(native),
        tagged: tagged.to_vec(),
    };
    [port(1, &[7, 8]), port(7, &[8, 9]), port(1, &[8])]
}

/// A mesh member that is only its sessions: with the switch and with each
/// node of a [`MeshNet`] (by index) that completed a handshake with it.
#[derive(Debug)]
#[cfg_attr(fuzzing, derive(Clone))]
pub struct Rogue {
    /// Its static key (an admitted member's).
    pub key: StaticSecret,
    /// Its underlay address.
    pub addr: SocketAddr,
    /// Its session with the switch.
    pub switch: Session,
    /// Its direct sessions, by node index.
    pub peers: Vec<Option<Session>>,
    next_index: u32,
}

/// What [`Rogue::receive`] made of a datagram.
#[derive(Debug)]
pub struct RogueRx {
    /// The answer to send back (handshake response, `Pong`), if any.
    pub reply: Option<Vec<u8>>,
    /// The flags and plaintext of an authentic data datagram from a node.
    pub opened: Option<(u8, Vec<u8>)>,
}

impl Rogue {
    /// A datagram node `from` (an index, `usize::MAX` for the switch) sent to
    /// the rogue: answer handshake initiations, open data under the session
    /// with its sender and answer `Ping`s.
    pub fn receive(&mut self, now: Instant, from: usize, d: &mut [u8]) -> RogueRx {
        use overlay_proto::control::Control;
        use overlay_proto::handshake::read_init;
        use overlay_proto::wire::{FLAG_CONTROL, HS_RESP_LEN, Header, MessageType};
        let mut rx = RogueRx {
            reply: None,
            opened: None,
        };
        let Ok(h) = Header::new_checked(&d[..]) else {
            return rx;
        };
        match h.message_type() {
            MessageType::HandshakeInit if from < self.peers.len() => {
                let Ok(inc) = read_init(&self.key, &Psk::default(), &h) else {
                    return rx;
                };
                let remote = inc.initiator_index;
                let index = self.next_index;
                self.next_index += 1;
                let mut out = [0u8; HS_RESP_LEN];
                if let Ok(keys) = inc.accept(NETWORK_ID, index, &mut out) {
                    self.peers[from] = Some(Session::new(keys, index, remote, NETWORK_ID, now));
                    rx.reply = Some(out.to_vec());
                }
            }
            MessageType::Data => {
                let flags = h.flags();
                let index = h.receiver_index();
                let s = if from == usize::MAX {
                    Some(&mut self.switch)
                } else {
                    self.peers.get_mut(from).and_then(Option::as_mut)
                };
                let Some(s) = s.filter(|s| s.local_index() == index) else {
                    return rx;
                };
                let Ok(r) = s.open(d) else {
                    return rx;
                };
                let payload = d[r].to_vec();
                if from != usize::MAX
                    && flags & FLAG_CONTROL != 0
                    && let Ok(Control::Ping(id)) = Control::parse(&payload)
                {
                    let mut b = Vec::new();
                    Control::Pong(id).emit(&mut b);
                    rx.reply = self.seal(from, FLAG_CONTROL, &b);
                }
                rx.opened = Some((flags, payload));
            }
            _ => {}
        }
        rx
    }

    /// `payload` sealed as it is with `flags` under the session with node
    /// `to` (`usize::MAX`: the switch), if there is one.
    pub fn seal(&mut self, to: usize, flags: u8, payload: &[u8]) -> Option<Vec<u8>> {
        use overlay_proto::wire::{DATA_HEADER_LEN, DATA_OVERHEAD};
        let s = if to == usize::MAX {
            Some(&mut self.switch)
        } else {
            self.peers.get_mut(to).and_then(Option::as_mut)
        }?;
        let mut buf = vec![0u8; payload.len() + DATA_OVERHEAD];
        buf[DATA_HEADER_LEN..DATA_HEADER_LEN + payload.len()].copy_from_slice(payload);
        let n = s.seal(flags, &mut buf, payload.len()).ok()?;
        buf.truncate(n);
        Some(buf)
    }
}

impl PeerNet {
    /// Hand the strays of a delivery to the rogue (datagrams to its address;
    /// others are returned) and deliver its answers, until none is left.
    /// Returns every stray to another address, and every datagram the rogue
    /// opened: (from node, flags, plaintext).
    pub fn settle_strays(
        &mut self,
        mut stray: Vec<(usize, SocketAddr, Vec<u8>)>,
    ) -> (Vec<(usize, SocketAddr, Vec<u8>)>, Vec<(usize, u8, Vec<u8>)>) {
        let mut elsewhere = Vec::new();
        let mut opened = Vec::new();
        for _ in 0..16 {
            if stray.is_empty() {
                break;
            }
            let mut replies = Vec::new();
            for (i, to, mut d) in stray.drain(..) {
                if to != self.rogue.addr {
                    elsewhere.push((i, to, d));
                    continue;
                }
                let rx = self.rogue.receive(self.mesh.now, i, &mut d);
                if let Some(o) = rx.opened {
                    opened.push((i, o.0, o.1));
                }
                if let Some(r) = rx.reply {
                    let back = if i == usize::MAX {
                        switch_addr()
                    } else {
                        self.mesh.addrs[i]
                    };
                    replies.push((self.rogue.addr, back, r));
                }
            }
            for (from, to, d) in replies {
                self.mesh.inject(from, to, d);
            }
            self.mesh.deliver();
            stray = self.mesh.take_strays();
        }
        elsewhere.extend(stray);
        (elsewhere, opened)
    }

    /// The rogue seals `payload` with `flags` for node `to` (`usize::MAX`:
    /// the switch) and sends it from its address; the result is delivered.
    /// Returns the datagram (if there was a session to seal it under) and
    /// what [`settle_strays`](Self::settle_strays) returns.
    #[allow(clippy::type_complexity)]
    pub fn rogue_send(
        &mut self,
        to: usize,
        flags: u8,
        payload: &[u8],
    ) -> (
        Option<Vec<u8>>,
        Vec<(usize, SocketAddr, Vec<u8>)>,
        Vec<(usize, u8, Vec<u8>)>,
    ) {
        let Some(d) = self.rogue.seal(to, flags, payload) else {
            return (None, Vec::new(), Vec::new());
        };
        let (stray, opened) = self.resend(to, d.clone());
        (Some(d), stray, opened)
    }

    /// Send datagram `d` from the rogue's address to node `to` (`usize::MAX`:
    /// the switch) again, as an on-path replay would.
    #[allow(clippy::type_complexity)]
    pub fn resend(
        &mut self,
        to: usize,
        d: Vec<u8>,
    ) -> (Vec<(usize, SocketAddr, Vec<u8>)>, Vec<(usize, u8, Vec<u8>)>) {
        let dst = if to == usize::MAX {
            switch_addr()
        } else {
            self.mesh.addrs[to]
        };
        self.mesh.inject(self.rogue.addr, dst, d);
        self.mesh.deliver();
        let stray = self.mesh.take_strays();
        self.settle_strays(stray)
    }

    /// Let `d` of virtual time pass in steps of at most `step`: due timers
    /// run, and what they send is delivered (the rogue answering as a peer
    /// would).
    #[allow(clippy::type_complexity)]
    pub fn pass(
        &mut self,
        d: Duration,
        step: Duration,
    ) -> (Vec<(usize, SocketAddr, Vec<u8>)>, Vec<(usize, u8, Vec<u8>)>) {
        let (mut stray, mut opened) = (Vec::new(), Vec::new());
        let end = self.mesh.now + d;
        while self.mesh.now < end {
            self.mesh.tick(step.min(end - self.mesh.now));
            let s = self.mesh.take_strays();
            let (s, o) = self.settle_strays(s);
            stray.extend(s);
            opened.extend(o);
        }
        (stray, opened)
    }
}

/// The established network of the `peer_session` target (built once per
/// process).
pub fn peer_net() -> &'static PeerNet {
    use overlay_proto::control::Control;
    use overlay_proto::wire::FLAG_CONTROL;
    use tapmesh_node::peers::Path;
    static P: OnceLock<PeerNet> = OnceLock::new();
    P.get_or_init(|| {
        let (_, h1, h2) = keys();
        let h3 = h3_key();
        let vlans = peer_vlans();
        let specs = [h1, h2, &h3]
            .iter()
            .zip(vlans)
            .enumerate()
            .map(|(i, (k, vlan))| NodeSpec {
                vlan,
                ..NodeSpec::new(format!("h{}", i + 1), k.public_key())
            })
            .collect();
        let addr =
            |i: usize| -> SocketAddr { format!("198.18.0.{}:40000", 31 + i).parse().unwrap() };
        let mut mesh = new_mesh(specs, &[(h1.clone(), addr(0), true), (h3, addr(2), false)]);
        let switch = rogue_session(mesh.switch_mut(), h2, addr(1));
        let mut p = PeerNet {
            mesh,
            rogue: Rogue {
                key: h2.clone(),
                addr: addr(1),
                switch,
                peers: vec![None, None],
                next_index: 0x2222_0000,
            },
        };
        // Handshakes, the switch's lists, h1's and h3's handshakes with h2.
        let tick = Duration::from_millis(10);
        p.pass(Duration::from_secs(2), tick);
        // Every port's MAC in each of its VLANs, with broadcasts through the
        // switch (h1's offload TAP takes a virtio header in front).
        let vnet0 = [0u8; overlay_proto::vnet::VNET_HDR_LEN];
        for vid in [None, Some(7), Some(8)] {
            let mut f = vnet0.to_vec();
            f.extend_from_slice(&broadcast_from(1, vid));
            p.mesh.send(0, &f);
            let s = p.mesh.take_strays();
            p.settle_strays(s);
        }
        for vid in [None, Some(8)] {
            p.mesh.send(1, &broadcast_from(3, vid));
            let s = p.mesh.take_strays();
            p.settle_strays(s);
        }
        for vid in [None, Some(8)] {
            let (d, ..) = p.rogue_send(usize::MAX, 0, &broadcast_from(2, vid));
            assert!(d.is_some());
        }
        // h2's own MAC, then the prefill, to h1 directly.
        let mut macs = vec![MacAddr([2, 0, 0, 0, 0, 2])];
        macs.extend((0..PEER_PREFILL).map(|i| MacAddr([6, 0, 0, 0, (i >> 8) as u8, i as u8])));
        for chunk in macs.chunks(overlay_proto::control::MAX_MACS) {
            let mut b = Vec::new();
            Control::MacAnnounce {
                caps: 0,
                macs: chunk.to_vec(),
            }
            .emit(&mut b);
            let (d, ..) = p.rogue_send(0, FLAG_CONTROL, &b);
            assert!(d.is_some(), "h2 has a session with h1");
        }
        // Until every probe those sends started has been answered, so that
        // time passing in a target loses no path by itself.
        p.pass(Duration::from_secs(3), tick);
        for (i, n) in p.mesh.nodes.iter().enumerate() {
            let me = [1, 3][i];
            for other in [1, 2, 3].into_iter().filter(|o| *o != me) {
                let path = n.peers().path_of(p.mesh.now, &format!("h{other}"));
                assert_eq!(path, Some(Path::Direct), "h{me} -> h{other}");
            }
        }
        let macs: usize = p.mesh.nodes[0]
            .peers()
            .status(p.mesh.now)
            .iter()
            .filter(|s| s.name == "h2")
            .map(|s| s.macs)
            .sum();
        assert_eq!(macs, 1 + PEER_PREFILL, "h1 learned h2's MACs");
        settle(&mut p.mesh);
        p
    })
}
