//! The tapmesh central switch.
//!
//! Nodes hold a Noise session with the switch; the switch decrypts each frame,
//! learns its source MAC, and re-encrypts it towards the node(s) that should
//! get it, like a learning Ethernet switch whose ports are encrypted tunnels.
//!
//! # Layout
//! - [`core`]: the sans-IO state machine (`handle_datagram`, `handle_timeout`,
//!   `poll_transmit`, `poll_timeout`): sessions per node and forwarding.
//! - [`mac_table`]: learning, aging, moves and limits.
//! - [`state`]: the state file (nodes' last endpoints) for restart notices.
//! - [`stats`]: drop reasons and counters, plain integers.
//! - [`status`]: the snapshot `tapmesh-switch status` prints.
//! - [`config`]: `switch.toml`, parsed and validated into a [`core::SwitchConfig`].
//! - [`server`]: the tokio shell: UDP socket, timers, admin socket, shutdown.

pub mod config;
pub mod core;
pub mod mac_table;
pub mod server;
pub mod state;
pub mod stats;
pub mod status;

/// A node's position in the configured node list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);
