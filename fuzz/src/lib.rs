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
    let mut m = CookieMinter::new(&keys().0.public_key());
    let init = stamped_init();
    m.write_reply(
        now(),
        node_addr(),
        &Header::new_checked(&init[..]).expect("stamped_init is well-formed"),
        &mut StdRng::seed_from_u64(COOKIE_SEED),
        reply,
    );
    m
}
