//! The tapmesh node: attaches a TAP device and VMs (over unix sockets) and
//! carries their frames to and from the switch over one encrypted session.
//!
//! # Layout
//! - [`engine`]: the sans-IO state machine (`handle_tap_frame`,
//!   `handle_datagram`, `handle_timeout`, `poll_transmit`, `poll_timeout`):
//!   handshake, rekey, keepalive, liveness, reconnect with backoff.
//! - [`failover`]: nodes with several switches: which one is home, when to
//!   turn to the next, announcing the local MACs to the new one.
//! - [`local_switch`]: the node's own learning switch between its local ports
//!   (TAP, VMs, userspace hosts) and the uplink (the core): where each frame
//!   goes, in which format (virtio header or plain), what is dropped.
//! - [`vm_framing`]: the length-prefixed framing of QEMU's `-netdev stream`.
//! - [`peers`]: mesh mode: direct sessions with other nodes, path choice
//!   (direct or relayed), MACs learned behind peers.
//! - [`capture`]: live capture of the direct paths (`tapmesh-node capture`).
//! - [`counters`]: drop reasons and counters.
//! - [`metrics`]: the status snapshot as Prometheus metrics (names, labels).
//! - [`config`]: `node.toml`, parsed and validated ([`userhost::config`]
//!   validates its `[[host]]` tables).
//! - [`iface`]: interface addresses and MACs as the config writes them
//!   (shared by `[tap]` and `[[host]]`).
//! - [`device`]: what the shell needs from a frame device (the TAP).
//! - [`tap`]: the real TAP device (tokio-tun or our `IFF_VNET_HDR` opener)
//!   and its addresses.
//! - [`vm_port`]: the unix sockets VMs connect to (tokio tasks).
//! - [`vm_peer`]: who may use a VM port (peer credentials, `allow-uid`).
//! - [`userhost`]: userspace hosts on the LAN (smoltcp): ARP, ND, ping and
//!   TCP ports forwarded to local services, without a TAP.
//! - [`daemon`]: the tokio shell: TAP, VM ports, UDP socket, timers, admin
//!   socket, shutdown.

pub mod capture;
pub mod config;
pub mod counters;
pub mod daemon;
pub mod device;
pub mod engine;
pub mod failover;
pub mod iface;
pub mod local_switch;
pub mod metrics;
pub mod peers;
pub mod reload;
pub mod tap;
pub mod userhost;
pub mod vm_framing;
pub mod vm_peer;
pub mod vm_port;
pub mod workers;
