//! Who is a peer: the switch's list of members, their vouches, and dropping
//! the ones it no longer vouches for.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use overlay_proto::control::{MAX_ENDPOINTS, check_local_addr};
use overlay_proto::keys::PublicKey;
use overlay_proto::tunnel::Tunnel;
use overlay_proto::vlan::PortVlan;

use super::{IndexOwner, Peer, Peers, UNLISTED_GRACE};

impl Peers {
    /// How long peers stay vouched after the switch was last heard.
    pub fn set_vouch_lifetime(&mut self, d: Duration) {
        self.vouch_lifetime = d;
    }

    /// The switch began its full list (`Mesh`): peers not in it will be
    /// dropped when `PeerListEnd` confirms it is complete.
    pub fn begin_list(&mut self) {
        self.apply_renewal();
        self.list = Some(0);
        self.list_complete = false;
        for p in self.peers.iter_mut().flatten() {
            p.listed = false;
        }
    }

    /// The switch's full list ended with `count` updates. If we got them
    /// all, every peer missing from it is dropped after [`UNLISTED_GRACE`];
    /// if not (a lost datagram), the list is not used and vouches run down
    /// until a complete one arrives (with the next session, at the latest).
    pub fn end_list(&mut self, now: Instant, count: u16) {
        self.ends_seen = true;
        if self.list.take() != Some(count) {
            return;
        }
        self.list_complete = true;
        self.renewed_at = Some(now);
        for p in self.peers.iter_mut().flatten() {
            if !p.listed && p.unlisted_since.is_none() {
                p.unlisted_since = Some(now);
            }
        }
    }

    /// An authenticated packet from the switch: it is reachable, and (if its
    /// latest list was complete) still vouches for the peers it listed.
    pub fn switch_heard(&mut self, now: Instant) {
        // HOT PATH
        if self.list_complete || !self.ends_seen {
            self.renewed_at = Some(now);
        }
    }

    /// The switch announced (or re-announced) a member, with its port as
    /// far as we share VLANs. A new peer, or one that moved while we have no
    /// direct path, gets handshakes at once. A member that shares no VLAN
    /// with us is not a peer (the switch does not announce such members;
    /// this holds even if it did).
    pub fn update(
        &mut self,
        now: Instant,
        key: PublicKey,
        name: String,
        endpoints: Vec<SocketAddr>,
        vlan: PortVlan,
    ) {
        // Every update the switch sent counts towards its list's end, even
        // one refused here.
        if let Some(n) = self.list.as_mut() {
            *n = n.saturating_add(1);
        }
        if key == self.local.public {
            return;
        }
        let Some(vlan) = vlan.shared_with(&self.vlan) else {
            self.remove(&key);
            return;
        };
        let i = match self.slot(&key) {
            Some(i) => i,
            None => {
                let i = self
                    .peers
                    .iter()
                    .position(Option::is_none)
                    .unwrap_or(self.peers.len());
                let cfg = self.tunnel_config(&key);
                let peer = Peer {
                    tunnel: Tunnel::new(now, IndexOwner::Peer(i), key, cfg),
                    name: String::new(),
                    vlan: PortVlan::Transparent,
                    candidates: Vec::new(),
                    ping: None,
                    tx_frames: 0,
                    rx_frames: 0,
                    path_changes: 0,
                    listed: true,
                    unlisted_since: None,
                    vouched_until: now + self.vouch_lifetime,
                    suspect_until: None,
                    hint_disproved: None,
                };
                if i == self.peers.len() {
                    self.peers.push(Some(peer));
                } else {
                    self.peers[i] = Some(peer);
                }
                i
            }
        };
        let lifetime = self.vouch_lifetime;
        let Some(p) = self.peers[i].as_mut() else {
            return;
        };
        p.name = name;
        let vlan_changed = p.vlan != vlan;
        p.vlan = vlan;
        p.listed = true;
        p.unlisted_since = None;
        p.vouched_until = p.vouched_until.max(now + lifetime);
        // Only addresses a handshake can usefully go to (the switch checks
        // too; an older switch does not).
        let mut endpoints = endpoints;
        if let Some(&observed) = endpoints.first() {
            endpoints.retain(|a| *a == observed || check_local_addr(observed, *a).is_ok());
        }
        let moved = p.candidates != endpoints;
        p.candidates = endpoints;
        p.candidates.truncate(MAX_ENDPOINTS);
        if moved && !p.is_direct(now) {
            // Try the new addresses now (and punch our side of the NAT).
            p.tunnel.restart_handshakes(now, &mut self.indices);
        }
        if vlan_changed {
            self.changed();
        }
    }

    /// The switch said a member left.
    pub fn remove(&mut self, key: &PublicKey) {
        let Some(i) = self.slot(key) else { return };
        if let Some(mut p) = self.peers[i].take() {
            p.tunnel.close(&mut self.indices);
        }
        self.macs.flush_port(i);
        self.changed();
    }

    /// Apply renewals from the switch to the vouches of the peers it listed.
    fn apply_renewal(&mut self) {
        let Some(until) = self.renewed_at.map(|t| t + self.vouch_lifetime) else {
            return;
        };
        let all = !self.ends_seen;
        for p in self.peers.iter_mut().flatten() {
            if p.listed || all {
                p.vouched_until = p.vouched_until.max(until);
            }
        }
    }

    /// Drop the peers the switch no longer vouches for: missing from its
    /// complete list for [`UNLISTED_GRACE`], or whose vouch ran out.
    pub(super) fn drop_unvouched(&mut self, now: Instant) {
        self.apply_renewal();
        let mut gone = Vec::new();
        for p in self.peers.iter().flatten() {
            if p.unlisted_since.is_some_and(|t| now >= t + UNLISTED_GRACE) {
                self.mac_counters.peers_unlisted += 1;
                gone.push(p.key());
            } else if now >= p.vouched_until {
                self.mac_counters.peers_expired += 1;
                gone.push(p.key());
            }
        }
        for key in gone {
            self.remove(&key);
        }
    }
}
