//! What the workers ([`crate::workers`]) may take over from the core:
//! sealing frames from the TAP for the uplink's current session, when
//! nothing else decides where they go, or in mesh mode for the peers on a
//! direct path, and opening the datagrams of the uplink's and the mesh
//! peers' current sessions.

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Instant;

use overlay_proto::Error;
use overlay_proto::ethernet::MacAddr;
use overlay_proto::session::Session;
use overlay_proto::wire::Header;

use super::{Node, TapWrite};
use crate::counters::DropReason;
use crate::peers::{IndexOwner, Peers};

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

    /// The mesh peers, if the workers may seal frames from the TAP for
    /// those on a direct path ([`Peers::direct_peers`]): mesh mode, one
    /// switch (several learn local MACs for failover announcements), and
    /// no live capture (it sees each frame sent on a direct path). `None`
    /// otherwise.
    pub fn mesh_for_workers(&self) -> Option<&Peers> {
        let plain = self.peers.is_enabled() && !self.homes.is_several();
        (plain && !self.captures.is_active()).then_some(&self.peers)
    }

    /// `frames` for mesh peer `peer` were sealed and sent by a worker by
    /// `now` ([`Peers::sent_elsewhere`]).
    pub fn sent_elsewhere(&mut self, now: Instant, peer: usize, frames: u64) {
        self.peers.sent_elsewhere(now, peer, frames);
    }

    /// A worker sealed a frame from our source MAC `mac`, due to be
    /// announced again: announce it as if the node task had read the frame
    /// ([`Peers::note_local_mac`]).
    pub fn note_local_mac(&mut self, now: Instant, mac: MacAddr) {
        self.peers.note_local_mac(now, mac, &mut self.tx);
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

    /// The network id datagrams for this node carry.
    pub fn network_id(&self) -> u32 {
        self.cfg.network_id
    }

    /// The live sessions whose datagrams the opening threads may open:
    /// the uplink's current one (with one switch), then each mesh peer's
    /// current one. A pending or previous session is left to the node
    /// task (its first datagram confirms a pending one).
    pub fn open_sessions(&self, now: Instant) -> impl Iterator<Item = &Session> {
        let uplink = self
            .uplink
            .current()
            .filter(|s| !self.homes.is_several() && !s.is_expired(now));
        uplink.into_iter().chain(self.peers.sessions(now))
    }

    /// A data datagram under the uplink's session or a mesh peer's,
    /// opened in place on another thread with `result` (through the
    /// session's shared [`Receiver`](overlay_proto::receiver::Receiver)):
    /// the rest of [`handle_datagram`](Self::handle_datagram), with the
    /// same counters, drop reasons and path bookkeeping. `buf` passed the
    /// header checks `handle_datagram` makes (a data datagram of this
    /// network).
    pub fn handle_opened(
        &mut self,
        now: Instant,
        from: SocketAddr,
        buf: &mut [u8],
        result: Result<Range<usize>, Error>,
    ) -> Option<TapWrite> {
        // HOT PATH
        self.counters.udp_rx_datagrams += 1;
        let h = Header::new_unchecked(&buf[..]);
        let (index, flags) = (h.receiver_index(), h.flags());
        let opened = if self.peers.index_owner(index) == Some(IndexOwner::Uplink) {
            self.uplink
                .opened_elsewhere(now, from, index, result)
                .map_err(DropReason::from)
                .and_then(|o| self.switch_data(now, flags, buf, o.range))
        } else {
            self.peers
                .lookup(index)
                .ok_or(DropReason::UnknownSession)
                .and_then(|peer| {
                    let r = (self.peers).opened_elsewhere(
                        now,
                        from,
                        (peer, index),
                        result,
                        &mut self.tx,
                    )?;
                    self.peer_data(now, peer, flags, buf, r)
                })
        };
        match opened {
            Ok(w) => w,
            Err(d) => {
                self.drops.add(d);
                None
            }
        }
    }
}
