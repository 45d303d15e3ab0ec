//! tapmesh in memory: switch and node cores wired together by a simulated
//! underlay, in synthetic time. No sockets, no TAP, no sleeping: datagrams
//! move through a queue and the clock jumps, so timers, aging and rekeys
//! over hours run in milliseconds and every run is repeatable.
//!
//! - [`Net`]: one switch core ([`Switch`](tapmesh_switch::fabric::Switch) or
//!   [`Networks`](tapmesh_switch::networks::Networks)) and node cores, each
//!   at an underlay address. [`Net::send`] puts a frame on a node's TAP side,
//!   [`Net::deliver`] moves every queued datagram to the core it is
//!   addressed to, [`Net::advance`] lets time pass and runs due timers, and
//!   what the nodes write to their TAPs is collected in [`Net::tap`].
//! - [`Faults`]: what the underlay does to datagrams: nodes cut off, pairs
//!   blocked, per-link loss, duplication and reordering (seeded), a forgery
//!   put ahead of chosen datagrams.
//! - [`NodeSet`]: node cores behind one endpoint, told apart by session
//!   index, for a driver with a real socket (the load generator).
//!
//! - [`build::network`]: a switch admitting `h1`..`hn` and their nodes.
//!
//! A test and development crate: the daemons do not depend on it.
pub mod build;
pub mod faults;
pub mod frames;
mod net;
mod node_set;

pub use faults::{Faults, LinkFaults};
pub use net::{Datagram, FROM_SWITCH, Net, SwitchCore};
pub use node_set::NodeSet;

use std::net::SocketAddr;
use std::time::Instant;

use overlay_proto::keys::{Psk, PublicKey, StaticSecret};
use tapmesh_node::engine::{Node, NodeConfig, TapWrite};

/// A node's config with the defaults every simulation starts from: no
/// network secret, network 0, TAP MTU 1400 without offload, underlay MTU
/// 1500, default rekey and vouch lifetime.
pub fn node_config(
    private_key: StaticSecret,
    switch_key: PublicKey,
    switch_addr: SocketAddr,
) -> NodeConfig {
    NodeConfig {
        private_key,
        switch_key,
        switch_addr,
        switches: Vec::new(),
        psk: Psk::default(),
        network_id: 0,
        mtu: 1400,
        offload: false,
        underlay_mtu: 1500,
        rekey_after: overlay_proto::timers::REKEY_AFTER_TIME,
        vouch_lifetime: tapmesh_node::peers::DEFAULT_VOUCH_LIFETIME,
    }
}

/// Hand datagram `d` from `from` to `node`: the frame it writes to its TAP,
/// if any (in `d`, or in the node's reassembly buffer).
pub fn node_receive<'a>(
    node: &'a mut Node,
    now: Instant,
    from: SocketAddr,
    d: &'a mut [u8],
) -> Option<&'a [u8]> {
    match node.handle_datagram(now, from, d)? {
        TapWrite::InPlace(r) => Some(&d[r]),
        TapWrite::Reassembled(r) => {
            let node: &'a Node = node;
            Some(&node.reassembled()[r])
        }
    }
}
