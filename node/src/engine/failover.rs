//! The node's side of failover: leaving a switch for the next, and
//! announcing the local MACs to the new home (see [`crate::failover`]).

use std::time::Instant;

use overlay_proto::notice::NoticeKey;

use super::{Event, Node, uplink_tunnel};
use crate::counters::DropReason;
use crate::failover::FailoverCause;
use crate::failover::announce::announcement;

impl Node {
    /// The session with the home switch was lost: with several switches,
    /// turn to the next at once.
    pub(super) fn home_lost(&mut self, now: Instant) {
        self.homes.lost(now);
        if self.homes.is_several() {
            self.fail_over(now, FailoverCause::Lost);
        }
    }

    /// A session with the home switch is up (not a rekey).
    pub(super) fn homed(&mut self, now: Instant) {
        self.homes.established();
        if self.homes.take_announce() {
            self.announce(now);
        }
    }

    /// Leave the home switch for the next in the list: a new uplink, whose
    /// first initiation goes out now.
    pub(super) fn fail_over(&mut self, now: Instant, cause: FailoverCause) {
        self.uplink.close(self.peers.endpoint().1);
        self.homes.next(now, cause);
        self.uplink = uplink_tunnel(now, &self.cfg, &self.homes);
        self.notice_key = NoticeKey::derive(&self.cfg.private_key, &self.homes.home().key).ok();
        self.keepalive_sent_at = None;
        self.events.push(Event::FailedOver(cause));
        self.with_uplink(now, |t, ctx, to| t.handle_timeout(now, ctx, to));
    }

    /// Send the new home one RARP frame per recent local MAC, so it learns
    /// where they are before they send again.
    fn announce(&mut self, now: Instant) {
        let macs: Vec<_> = self.local_macs.recent(now).collect();
        let max = self.cfg.max_datagram();
        let mut frame = Vec::new();
        let mut sent = 0;
        for (mac, vlan) in macs {
            if self.tx.is_full() {
                self.drops.add(DropReason::TxQueueFull);
                break;
            }
            announcement(mac, vlan, &mut frame);
            if let Ok(n) = self.uplink.send_reply(now, 0, &[&frame], max, &mut self.tx) {
                self.counters.udp_tx_datagrams += n as u64;
                sent += 1;
            }
        }
        self.counters.announcements += sent as u64;
        self.events.push(Event::Announced(sent));
    }
}
