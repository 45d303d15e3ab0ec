//! Path choice per peer: direct or relayed, liveness probes, path events.

use std::time::{Duration, Instant};

use overlay_proto::control::Control;
use overlay_proto::ethernet::Frame;
use overlay_proto::transmit::TxQueue;
use overlay_proto::tunnel::TunnelEvent;
use overlay_proto::vlan::{self, EgressForm};

use super::{HINT_HOLDOFF, PEER_PROBE_TIMEOUT, Path, PathEvent, Peers};

impl Peers {
    /// Where to send `frame` (read from our TAP, starting at the Ethernet
    /// header): the peer behind its destination in its VLAN, if it is known,
    /// a member of that VLAN, and its direct path is up. `vnet` frames go
    /// direct only to peers that accept them. A frame our port would not
    /// admit goes to the switch, which drops and counts it.
    pub fn route(&self, now: Instant, frame: &[u8], vnet: bool) -> Option<usize> {
        // HOT PATH
        if !self.enabled || vlan::is_truncated_tag(frame) {
            return None;
        }
        let dst = Frame::new_checked(frame).ok()?.dst();
        let vid = self.vlan.ingress(frame)?.vid;
        let i = self.macs.lookup(now, vid, &dst)?;
        let p = self.peers.get(i)?.as_ref()?;
        let member = p.vlan.egress(vid) != EgressForm::NotMember;
        (member && p.is_direct(now) && p.suspect_until.is_none() && (!vnet || p.accepts_vnet()))
            .then_some(i)
    }

    /// Act on what peer `i`'s tunnel reports.
    pub(super) fn tunnel_events(&mut self, now: Instant, i: usize, tx: &mut TxQueue) {
        while let Some(e) = self.peers[i].as_mut().and_then(|p| p.tunnel.poll_event()) {
            match e {
                TunnelEvent::Established { rekey: false } => self.path_up(now, i, tx),
                TunnelEvent::Lost => {
                    if let Some(p) = self.peers[i].as_mut() {
                        p.suspect_until = None;
                        p.path_changes += 1;
                        self.events.push(PathEvent {
                            peer: p.name.clone(),
                            path: Path::Relayed,
                        });
                    }
                }
                TunnelEvent::ProbeDue | TunnelEvent::KeepaliveDue => self.ping(now, i, tx),
                _ => {}
            }
        }
    }

    fn path_up(&mut self, now: Instant, i: usize, tx: &mut TxQueue) {
        if let Some(p) = self.peers[i].as_mut() {
            p.path_changes += 1;
            self.events.push(PathEvent {
                peer: p.name.clone(),
                path: Path::Direct,
            });
        }
        self.announce_all(now, i, tx);
    }

    /// A frame the switch relayed to us (`frame` starts at the Ethernet
    /// header, in our port's form). Unicast from a MAC we route to a peer
    /// (in the frame's VLAN) over a direct path
    /// means that peer sends to us through the switch: its direct path is
    /// probably down. Relay to it at once and `Ping` it; the path is lost
    /// unless it answers within [`PEER_PROBE_TIMEOUT`].
    pub fn note_relayed(&mut self, now: Instant, frame: &[u8], tx: &mut TxQueue) {
        // HOT PATH (one lookup per relayed frame)
        let Ok(f) = Frame::new_checked(frame) else {
            return;
        };
        if f.dst().is_group() {
            return; // group traffic always goes via the switch
        }
        let Some(ing) = self.vlan.ingress(frame) else {
            return;
        };
        let Some(i) = self.macs.lookup(now, ing.vid, &f.src()) else {
            return;
        };
        let timeout = self.probe_timeout(i);
        let Some(p) = self.peers.get_mut(i).and_then(|p| p.as_mut()) else {
            return;
        };
        if !p.is_direct(now)
            || p.suspect_until.is_some()
            || p.hint_disproved
                .is_some_and(|t| now.saturating_duration_since(t) < HINT_HOLDOFF)
        {
            return;
        }
        p.suspect_until = Some(now + timeout);
        self.ping(now, i, tx);
    }

    /// How long a `Ping` to peer `i` may stay unanswered.
    fn probe_timeout(&self, i: usize) -> Duration {
        let rtt = self
            .peers
            .get(i)
            .and_then(|p| p.as_ref())
            .and_then(|p| p.tunnel.rtt())
            .unwrap_or_default();
        PEER_PROBE_TIMEOUT.max(rtt * 4)
    }

    pub(super) fn ping(&mut self, now: Instant, i: usize, tx: &mut TxQueue) {
        let id = self.indices.random();
        if let Some(p) = self.peers[i].as_mut() {
            p.ping = Some((id, now));
        }
        self.send_control(now, i, &Control::Ping(id), tx);
    }
}
