//! The uplink to the switch: its control messages, its events, keepalives.

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Instant;

use overlay_proto::control::Control;
use overlay_proto::tunnel::{Ctx, Tunnel, TunnelEvent};
use overlay_proto::wire::FLAG_CONTROL;

use super::{Event, Node};
use crate::counters::DropReason;
use crate::peers::IndexOwner;

impl Node {
    /// A control message from the switch (mesh mode).
    pub(super) fn switch_control(
        &mut self,
        now: Instant,
        range: Range<usize>,
        buf: &[u8],
    ) -> Result<(), DropReason> {
        match Control::parse(&buf[range]).map_err(|_| DropReason::Control)? {
            Control::Mesh { vlan } => {
                self.peers.enable(vlan);
                self.peers.begin_list();
                let msg = Control::LocalAddrs(self.local_addrs.clone());
                self.send_control(now, &msg);
            }
            Control::PeerUpdate {
                key,
                name,
                endpoints,
                vlan,
            } if self.peers.is_enabled() => self.peers.update(now, key, name, endpoints, vlan),
            Control::PeerGone { key } => self.peers.remove(&key),
            Control::PeerListEnd { count } if self.peers.is_enabled() => {
                self.peers.end_list(now, count)
            }
            Control::MacOwners { key, macs } if self.peers.is_enabled() => {
                self.peers.set_owners(now, key, macs)
            }
            _ => return Err(DropReason::Control),
        }
        Ok(())
    }

    /// Seal a control message for the switch and queue it.
    fn send_control(&mut self, now: Instant, msg: &Control) {
        if self.uplink.current().is_none() {
            return;
        }
        if self.tx.is_full() {
            self.drops.add(DropReason::TxQueueFull);
            return;
        }
        let mut payload = Vec::with_capacity(msg.buffer_len());
        msg.emit(&mut payload);
        let sent = self
            .uplink
            .send(now, FLAG_CONTROL, &[&payload], usize::MAX, &mut self.tx);
        if sent.is_ok() {
            self.counters.udp_tx_datagrams += 1;
        }
    }

    /// Run `f` on the uplink with the node's identity, index table and
    /// queue, and the switch as the target of initiations; then act on
    /// what the uplink reports.
    pub(super) fn with_uplink(
        &mut self,
        now: Instant,
        f: impl FnOnce(&mut Tunnel<IndexOwner>, &mut Ctx<'_, IndexOwner>, &[SocketAddr]),
    ) {
        let (local, indices) = self.peers.endpoint();
        let mut ctx = Ctx {
            local,
            indices,
            tx: &mut self.tx,
        };
        let home = self.homes.home().addr;
        f(&mut self.uplink, &mut ctx, &[home]);
        self.uplink_events(now);
    }

    /// Count and act on what the uplink reports: sends keepalives and
    /// probes (empty packets the switch answers), confirms new sessions.
    pub(super) fn uplink_events(&mut self, now: Instant) {
        let mut lost = false;
        while let Some(e) = self.uplink.poll_event() {
            match e {
                TunnelEvent::InitiationSent(n) => {
                    self.counters.handshakes_sent += 1;
                    self.counters.udp_tx_datagrams += n as u64;
                }
                TunnelEvent::InitiationFailed(e) => self.drops.add(DropReason::from(e)),
                TunnelEvent::Established { rekey } => {
                    self.counters.handshakes_completed += 1;
                    self.counters.rekeys += u64::from(rekey);
                    self.events.push(if rekey {
                        Event::Rekeyed
                    } else {
                        Event::Connected
                    });
                    // Confirm the session to the switch at once: it keeps
                    // using the old one until it sees a packet under the new one.
                    self.send_keepalive(now);
                    if !rekey {
                        self.homed(now);
                    }
                }
                TunnelEvent::Lost => {
                    self.counters.sessions_lost += 1;
                    self.events.push(Event::Lost);
                    lost = true;
                }
                TunnelEvent::CookieStored => self.counters.cookie_replies += 1,
                TunnelEvent::ProbeDue | TunnelEvent::KeepaliveDue => self.send_keepalive(now),
                TunnelEvent::FragmentsExpired(n) => self.drops.add_n(DropReason::Fragment, n),
            }
        }
        if lost {
            self.home_lost(now);
        }
    }

    fn send_keepalive(&mut self, now: Instant) {
        if self.tx.is_full() {
            self.drops.add(DropReason::TxQueueFull);
            return;
        }
        if self.uplink.send_keepalive(now, &mut self.tx).is_ok() {
            self.counters.keepalives_sent += 1;
            self.keepalive_sent_at = Some(now);
            self.counters.udp_tx_datagrams += 1;
        }
    }
}
