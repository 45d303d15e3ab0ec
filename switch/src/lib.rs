//! The tapmesh central switch.
//!
//! Nodes hold a Noise session with the switch; the switch decrypts each frame,
//! learns its source MAC, and re-encrypts it towards the node(s) that should
//! get it, like a learning Ethernet switch whose ports are encrypted tunnels.
//!
//! # Layout
//! - [`fabric`]: the per-network switching engine, sans-IO (`handle_datagram`,
//!   `handle_timeout`, `poll_transmit`, `poll_timeout`): sessions per node
//!   and forwarding.
//! - [`cluster`]: several switches serving the same networks: the config,
//!   what the engine learns from the shared store and reports to it.
//! - [`networks`]: several isolated networks in one process, one core each;
//!   datagrams are dispatched by network id before any crypto.
//!   Its MAC table is overlay-proto's `MacTable<NodeId>` (learning, aging,
//!   moves and limits, per VLAN).
//! - [`snooping`]: IGMP/MLD snooping (group table, router ports, the
//!   built-in querier); [`snooping::wire`] parses IGMP/MLD and builds queries.
//! - [`storm`]: per-node storm control (broadcast, multicast, unknown unicast).
//! - [`impair`]: link impairment per node and direction (loss, delay, jitter,
//!   reordering, duplication, corruption, rate, link down) for labs.
//! - [`mirror`]: port mirroring (SPAN): copies of a node's frames on another
//!   node's TAP, per session, rate-bounded.
//! - [`capture`]: live capture (`tapmesh-switch capture`): which frames go
//!   to which capture; pcapng and the stream are the shell crate's.
//! - [`vlan`]: 802.1Q access and trunk ports, tagging and untagging.
//! - [`metrics`]: the [`status::Status`] snapshot as Prometheus metrics (names, labels).
//! - [`counters`]: drop reasons and counters, plain integers.
//! - [`etcd`]: shared state of several switches in etcd: the key space,
//!   the outbox of local changes, the store task (lease, writes, watch).
//! - [`endpoints_file`]: the state file (nodes' last endpoints) for restart notices.
//! - [`status`]: the snapshot `tapmesh-switch status` prints ([`status::render_table`]
//!   renders it as a table).
//! - [`config`]: `switch.toml`, parsed and validated into a [`fabric::SwitchConfig`].
//! - [`reload`]: `tapmesh-switch reload` and SIGHUP: what may change live,
//!   the summary line; each core applies its part (`Switch::apply_config`).
//! - [`workers`]: `workers = N`: receive sockets on other threads that open
//!   data datagrams under the sessions the core publishes.
//! - [`server`]: the tokio shell: UDP socket, timers, admin socket, metrics
//!   snapshots, shutdown.

pub mod capture;
pub mod cluster;
pub mod config;
pub mod counters;
pub mod endpoints_file;
pub mod etcd;
pub mod fabric;
pub mod impair;
pub mod mesh;
pub mod metrics;
pub mod mirror;
pub mod networks;
pub mod reload;
pub mod server;
pub mod snooping;
pub mod status;
pub mod storm;
pub mod workers;
pub use overlay_proto::vlan;

/// A node's position in the configured node list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl overlay_proto::mac_table::PortIndex for NodeId {
    fn index(self) -> usize {
        self.0 as usize
    }
}
