//! Userspace hosts: a host on the virtual LAN with no TAP, no root and no
//! kernel configuration, built on smoltcp (the "localhost tunnel").
//!
//! A `[[host]]` in `node.toml` gets a MAC and addresses on the LAN, answers
//! ARP, IPv6 neighbour discovery and ping (ICMP and ICMPv6 echo), and each
//! `[[host.forward]]` accepts TCP connections on a port and splices them to
//! a local address (`to = "127.0.0.1:8080"`), so a service on the node's
//! machine is reachable from the LAN as `http://198.19.0.50/`.
//!
//! Why smoltcp and not a TAP: a TAP needs `CAP_NET_ADMIN` and puts the
//! address into the machine's routing; a userspace stack needs neither and
//! exposes only the forwarded ports. It is a control-plane-sized path (a few
//! hundred Mbit/s, frames copied once per hop, TCP in software), not the
//! data path.
//!
//! # Layout
//! - [`config`]: `[[host]]` and `[[host.forward]]`, validated.
//! - [`host`]: [`UserHost`], the sans-IO state machine: frames in
//!   (`handle_frame`), frames out (`poll_frame`), `poll_timeout` /
//!   `handle_timeout`, and per-connection calls for the shell.
//! - [`device`]: smoltcp's `phy::Device` over bounded in-memory queues.
//! - [`shell`]: the tokio task that owns a host and the local `TcpStream`s
//!   and moves bytes between them with bounded buffers.
//!
//! # Connections
//! Each forward keeps [`LISTENERS_PER_FORWARD`] listening sockets (so that
//! many clients can be in the handshake at once) and at most
//! `max-connections` connections. A client's SYN is held (no SYN-ACK) until
//! the shell has connected to `to`: if that fails the client gets a RST,
//! exactly what a closed port on a real host answers. A client that does
//! not complete the handshake (a SYN from a forged address) is bounded in
//! time and number: it is forgotten, without a RST, [`HANDSHAKE_TIMEOUT`]
//! after its SYN-ACK, and at most [`HALF_OPEN_PER_FORWARD`] connections per
//! forward and [`HALF_OPEN_PER_HOST`] per host are in the handshake at once,
//! a new SYN displacing the oldest; so forged SYNs hold a few slots and
//! local connections for a few seconds, never the whole forward, and a real
//! client gets in meanwhile. Data moves only as
//! far as the next buffer has room: the client's bytes stay in the
//! socket's receive buffer (its window closes) while the local side does not
//! read, and the local side is read only while the socket's send buffer has
//! room. A FIN on either side is passed on as a half-close (shutdown of the
//! write half); a RST or a failure on either side resets the other.

pub mod config;
pub mod device;
pub mod host;
pub mod shell;

#[cfg(test)]
mod tests;

pub use config::{Forward, HostConfig};
pub use host::{
    ConnId, HALF_OPEN_PER_FORWARD, HALF_OPEN_PER_HOST, HANDSHAKE_TIMEOUT, HostCounters, HostEvent,
    HostStatus, LISTENERS_PER_FORWARD, Recv, UserHost,
};
