//! Control messages with peers: our MAC announcements, `Ping`/`Pong`.

use std::time::Instant;

use overlay_proto::control::{Control, MAX_MACS};
use overlay_proto::ethernet::MacAddr;
use overlay_proto::transmit::TxQueue;
use overlay_proto::wire::FLAG_CONTROL;

use super::{ANNOUNCE_EVERY, LOCAL_MAC_LIMIT, Peers};
use crate::counters::DropReason;

impl Peers {
    /// A source MAC read from our TAP: announce it to direct peers when it is
    /// new or its last announcement is `ANNOUNCE_EVERY` (a minute) old.
    pub fn note_local_mac(&mut self, now: Instant, src: MacAddr, tx: &mut TxQueue) {
        // HOT PATH (one lookup per frame)
        if !self.enabled || !src.is_valid_source() {
            return;
        }
        if self
            .local_macs
            .get(&src)
            .is_some_and(|t| now.saturating_duration_since(*t) < ANNOUNCE_EVERY)
        {
            return;
        }
        if self.local_macs.len() >= LOCAL_MAC_LIMIT && !self.local_macs.contains_key(&src) {
            return;
        }
        self.local_macs.insert(src, now);
        self.changed();
        let msg = Control::MacAnnounce {
            caps: self.local.caps,
            macs: vec![src],
        };
        for i in 0..self.peers.len() {
            if self.peers[i].as_ref().is_some_and(|p| p.is_direct(now)) {
                self.send_control(now, i, &msg, tx);
            }
        }
    }

    /// All our local MACs and capabilities, to one peer whose path just came up.
    pub(super) fn announce_all(&mut self, now: Instant, i: usize, tx: &mut TxQueue) {
        let macs: Vec<MacAddr> = self.local_macs.keys().copied().collect();
        let caps = self.local.caps;
        if macs.is_empty() {
            let msg = Control::MacAnnounce {
                caps,
                macs: Vec::new(),
            };
            self.send_control(now, i, &msg, tx);
        }
        for chunk in macs.chunks(MAX_MACS) {
            let msg = Control::MacAnnounce {
                caps,
                macs: chunk.to_vec(),
            };
            self.send_control(now, i, &msg, tx);
        }
    }

    pub(super) fn send_control(&mut self, now: Instant, i: usize, msg: &Control, tx: &mut TxQueue) {
        if tx.is_full() {
            return;
        }
        let Some(p) = self.peers[i].as_mut() else {
            return;
        };
        self.control.clear();
        msg.emit(&mut self.control);
        let parts: [&[u8]; 1] = [&self.control];
        // A `Pong` owes the peer nothing, so it does not wait for an answer.
        let _ = if matches!(msg, Control::Pong(_)) {
            p.tunnel
                .send_reply(now, FLAG_CONTROL, &parts, usize::MAX, tx)
        } else {
            p.tunnel.send(now, FLAG_CONTROL, &parts, usize::MAX, tx)
        };
    }

    /// A control message from peer `i`.
    pub fn handle_control(
        &mut self,
        now: Instant,
        i: usize,
        payload: &[u8],
        tx: &mut TxQueue,
    ) -> Result<(), DropReason> {
        match Control::parse(payload).map_err(|_| DropReason::Control)? {
            Control::MacAnnounce { caps, macs } => {
                let Some(p) = self.peers[i].as_mut() else {
                    return Err(DropReason::UnknownSession);
                };
                p.tunnel.set_remote_caps(caps);
                // Announced MACs stand for untagged frames on the peer's
                // port: its native VLAN, if we share it.
                if let Some(vid) = p.vlan.native() {
                    for m in macs {
                        self.learn_mac(now, i, vid, m);
                    }
                }
            }
            Control::Ping(id) => self.send_control(now, i, &Control::Pong(id), tx),
            Control::Pong(id) => {
                if let Some(p) = self.peers[i].as_mut()
                    && let Some((sent_id, at)) = p.ping
                    && sent_id == id
                {
                    p.tunnel.note_rtt(now.saturating_duration_since(at));
                    p.ping = None;
                }
            }
            _ => return Err(DropReason::Control),
        }
        Ok(())
    }
}
