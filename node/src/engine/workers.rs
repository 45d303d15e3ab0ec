//! What the sealing workers ([`crate::workers`]) may take over from the
//! core: frames from the TAP for the uplink's current session, when nothing
//! else decides where they go.

use std::net::SocketAddr;
use std::time::Instant;

use overlay_proto::session::Session;

use super::Node;

impl Node {
    /// The uplink's live session, if a frame from the TAP needs nothing
    /// of the core but sealing under it: central mode (mesh peers would
    /// route some frames elsewhere) and one switch (several learn local
    /// MACs for failover announcements). `None` otherwise, or while no
    /// session is up.
    pub fn plain_uplink(&self, now: Instant) -> Option<&Session> {
        if self.peers.is_enabled() || self.homes.is_several() {
            return None;
        }
        self.uplink.current().filter(|s| !s.is_expired(now))
    }

    /// Where the uplink's datagrams go: the home switch.
    pub fn uplink_destination(&self) -> SocketAddr {
        self.homes.home().addr
    }

    /// The largest datagram towards the switch; longer payloads travel as
    /// fragments.
    pub fn max_datagram(&self) -> usize {
        self.cfg.max_datagram()
    }

    /// The largest IP MTU of the node's local ports (frames above it are
    /// dropped).
    pub fn mtu(&self) -> usize {
        self.cfg.mtu
    }
}
