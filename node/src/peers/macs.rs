//! Frames a peer sent us directly, and the MACs learned behind peers: their
//! limits, the switch's owners list, moves.

use std::time::Instant;

use overlay_proto::ethernet::{Frame, MacAddr};
use overlay_proto::keys::PublicKey;
use overlay_proto::mac_table::{Learned, MAC_AGING};
use overlay_proto::vlan::{self, Ingress, Vid};

use super::{MOVE_LOG_EVERY, MacCounters, MoveReport, OWNER_LIMIT, Peer, Peers};
use crate::counters::DropReason;

impl Peers {
    /// MAC learning counters.
    pub fn mac_counters(&self) -> MacCounters {
        let t = self.macs.counters();
        MacCounters {
            moves: t.moves,
            refused_limit: t.port_limit_hits + t.table_limit_hits,
            ..self.mac_counters
        }
    }

    /// A summary of MAC moves since the last one, at most every
    /// [`MOVE_LOG_EVERY`] (never one log line per move).
    pub fn poll_move_report(&mut self, now: Instant) -> Option<MoveReport> {
        let (n, latest, last) = self.moves_pending;
        if n == 0 || last.is_some_and(|t| now.saturating_duration_since(t) < MOVE_LOG_EVERY) {
            return None;
        }
        let (mac, from, to) = latest?;
        let name = |i: usize| {
            self.peers
                .get(i)
                .and_then(|p| p.as_ref())
                .map_or_else(String::new, |p| p.name.clone())
        };
        let r = MoveReport {
            moves: n,
            latest: (mac, name(from), name(to)),
        };
        self.moves_pending = (0, None, Some(now));
        Some(r)
    }

    /// A frame (or reassembled payload) peer `i` sent us directly, `frame`
    /// starting at the Ethernet header: classify it by the peer's port as
    /// the switch would, refuse it unless we are a member of its VLAN too
    /// (`vlan_filtered`), and learn its source MAC in that VLAN. Returns the
    /// frame's ingress if our port takes it in the other form (a tag to add
    /// or remove), `None` if it goes to the TAP as it is.
    pub fn admit(
        &mut self,
        now: Instant,
        i: usize,
        frame: &[u8],
    ) -> Result<Option<Ingress>, DropReason> {
        // HOT PATH
        if vlan::is_truncated_tag(frame) {
            return Err(DropReason::Runt);
        }
        let p = self
            .peers
            .get_mut(i)
            .and_then(Option::as_mut)
            .ok_or(DropReason::UnknownSession)?;
        let ing = p.vlan.ingress(frame).ok_or(DropReason::VlanFiltered)?;
        let as_is = self
            .vlan
            .egress(ing.vid)
            .keeps_form(ing)
            .ok_or(DropReason::VlanFiltered)?;
        p.rx_frames += 1;
        if let Ok(f) = Frame::new_checked(frame) {
            self.learn_mac(now, i, ing.vid, f.src());
        }
        Ok((!as_is).then_some(ing))
    }

    /// Peer `i` claims `mac` in VLAN `vid`. Refused (and counted): one of
    /// our own MACs, one the switch placed behind another member (in any
    /// VLAN: `MacOwners` carries none), and any past the peer's limit or the
    /// table's (aged entries make room at the next `handle_timeout`).
    pub(super) fn learn_mac(&mut self, now: Instant, i: usize, vid: Vid, mac: MacAddr) {
        // HOT PATH (a refresh is one lookup)
        if !mac.is_valid_source() || self.macs.refresh(now, vid, mac, i) {
            return;
        }
        if self.local_macs.contains_key(&mac) {
            // A peer claiming one of our own hosts' MACs: never.
            self.mac_counters.refused_local += 1;
            return;
        }
        let Some(key) = self.peers[i].as_ref().map(Peer::key) else {
            return;
        };
        if self
            .owners
            .get(&mac)
            .is_some_and(|(k, t)| *k != key && now.saturating_duration_since(*t) < MAC_AGING)
        {
            self.mac_counters.refused_owner += 1;
            return;
        }
        match self.macs.learn(now, vid, mac, i) {
            Learned::New => self.changed(),
            Learned::Moved { from } => {
                self.changed();
                self.moves_pending.0 += 1;
                self.moves_pending.1 = Some((mac, from, i));
            }
            // Nothing learned (a port or the table at its limit): the
            // workers' copy of the routes stays as it is.
            _ => {}
        }
    }

    /// The switch saw `macs` behind the member with `key`: no other peer may
    /// claim them, and one that did loses them. `MacOwners` names no VLAN
    /// (and the switch tells us only of MACs in VLANs we are a member of),
    /// so this holds in every VLAN: a MAC the switch placed behind one
    /// member is claimed by no other peer in any VLAN.
    pub fn set_owners(&mut self, now: Instant, key: PublicKey, mut macs: Vec<MacAddr>) {
        if self.owners.len() + macs.len() > OWNER_LIMIT {
            self.owners
                .retain(|_, (_, t)| now.saturating_duration_since(*t) < MAC_AGING);
        }
        let mut taken = 0;
        for mac in &macs {
            if self.owners.len() >= OWNER_LIMIT && !self.owners.contains_key(mac) {
                break;
            }
            self.owners.insert(*mac, (key, now));
            taken += 1;
        }
        macs.truncate(taken);
        if macs.is_empty() {
            return;
        }
        macs.sort_unstable();
        let peers = &self.peers;
        let gone = self.macs.retain(|_, mac, e| {
            let Some(p) = peers.get(e.port).and_then(|p| p.as_ref()) else {
                return true;
            };
            p.key() == key || macs.binary_search(&mac).is_err()
        });
        if gone > 0 {
            self.changed();
        }
    }
}
