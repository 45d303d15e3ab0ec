//! What the sealing workers ([`crate::workers`]) may decide without the
//! node task: the direct routes, our announced source MACs, and the
//! bookkeeping of what they sealed.
//!
//! [`Peers::route`] decides per frame from the MAC table, each peer's port
//! and path, and our own port. The workers take a copy of what it would
//! decide (a [`DirectRoute`] per peer it would send to, and the (VLAN,
//! MAC) pairs behind them), made again when [`Peers::generation`] or
//! [`Peers::direct_peers`] changes.

use std::net::SocketAddr;
use std::time::Instant;

use overlay_proto::ethernet::MacAddr;
use overlay_proto::session::Session;
use overlay_proto::vlan::{EgressForm, PortVlan, Vid};

use super::{ANNOUNCE_EVERY, Peers};

/// A peer [`Peers::route`] sends to now (direct, not suspect): its
/// current session, where its datagrams go, whether it takes offloaded
/// frames.
#[derive(Debug, Clone, Copy)]
pub struct DirectRoute<'a> {
    /// Its slot.
    pub peer: usize,
    /// The current session with it.
    pub session: &'a Session,
    /// Its endpoint.
    pub to: SocketAddr,
    /// It accepts frames with a virtio header (`FLAG_VNET`).
    pub accepts_vnet: bool,
}

impl Peers {
    /// Counts every change to the MAC table, our port, the peers' ports
    /// and our local MACs: what [`route`](Self::route) and
    /// [`note_local_mac`](Self::note_local_mac) decide by, apart from the
    /// peers' paths ([`direct_peers`](Self::direct_peers)).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub(super) fn changed(&mut self) {
        self.generation = self.generation.wrapping_add(1);
    }

    /// Our own port.
    pub fn port_vlan(&self) -> &PortVlan {
        &self.vlan
    }

    /// The peers [`route`](Self::route) sends to now: a live session, an
    /// endpoint, not suspect.
    pub fn direct_peers(&self, now: Instant) -> impl Iterator<Item = DirectRoute<'_>> {
        let enabled = self.enabled;
        self.peers
            .iter()
            .enumerate()
            .filter(move |_| enabled)
            .filter_map(move |(i, p)| {
                let p = p.as_ref()?;
                if !p.is_direct(now) || p.suspect_until.is_some() {
                    return None;
                }
                Some(DirectRoute {
                    peer: i,
                    session: p.tunnel.current()?,
                    to: p.tunnel.endpoint()?,
                    accepts_vnet: p.accepts_vnet(),
                })
            })
    }

    /// The (VLAN, MAC) pairs learned behind peer slots, unexpired, whose
    /// peer is a member of that VLAN: with [`direct_peers`](Self::direct_peers)
    /// what [`route`](Self::route) looks up.
    pub fn member_macs(&self, now: Instant) -> impl Iterator<Item = (Vid, MacAddr, usize)> + '_ {
        self.macs.iter().filter_map(move |(vid, mac, e)| {
            let p = self.peers.get(e.port)?.as_ref()?;
            (e.expires_at > now && p.vlan.egress(vid) != EgressForm::NotMember)
                .then_some((vid, mac, e.port))
        })
    }

    /// Our source MACs and when each is due to be announced again
    /// ([`note_local_mac`](Self::note_local_mac) announces it then).
    pub fn local_macs_due(&self) -> impl Iterator<Item = (MacAddr, Instant)> + '_ {
        self.local_macs
            .iter()
            .map(|(mac, at)| (*mac, *at + ANNOUNCE_EVERY))
    }

    /// `frames` sealed for peer `i` on another thread (through its
    /// session's shared sender) were sent by `now`: counted as sent
    /// (`tx_frames`), and the peer owes an answer (liveness), as after
    /// [`seal`](Self::seal).
    pub fn sent_elsewhere(&mut self, now: Instant, i: usize, frames: u64) {
        if let Some(p) = self.peers.get_mut(i).and_then(Option::as_mut) {
            p.tx_frames += frames;
            p.tunnel.sent_elsewhere(now);
        }
    }
}
