//! Datagrams from the switch or a mesh peer: handshakes, restart notices,
//! data and control, each to its handler.

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Instant;

use overlay_proto::wire::{FLAG_CONTROL, FLAG_FRAGMENT, FLAG_RELAYED, Header, MessageType};

use super::{Event, Node, TapWrite};
use crate::counters::DropReason;
use crate::peers::IndexOwner;

impl Node {
    /// Process one received datagram, decrypting in place. Returns the range of
    /// `buf` holding a frame to write to the TAP, if any.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        buf: &mut [u8],
    ) -> Option<TapWrite> {
        // HOT PATH
        self.counters.udp_rx_datagrams += 1;
        match self.datagram(now, from, buf) {
            Ok(r) => r,
            Err(d) => {
                self.drops.add(d);
                None
            }
        }
    }

    fn datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        buf: &mut [u8],
    ) -> Result<Option<TapWrite>, DropReason> {
        let h = Header::new_checked(&buf[..])?;
        if h.network_id() != self.cfg.network_id {
            return Err(DropReason::UnknownNetwork);
        }
        match h.message_type() {
            MessageType::Data => {}
            MessageType::HandshakeResp => {
                let h = Header::new_checked(&buf[..])?;
                if !self.peers.handle_resp(now, from, &h, &mut self.tx)? {
                    let r = self
                        .uplink
                        .handle_response(now, from, self.peers.endpoint().1, &h);
                    self.uplink_events(now);
                    r.map_err(DropReason::from)?;
                }
                return Ok(None);
            }
            // Only mesh peers initiate to a node.
            MessageType::HandshakeInit => {
                let h = Header::new_checked(&buf[..])?;
                self.peers.handle_init(now, from, &h, &mut self.tx)?;
                return Ok(None);
            }
            MessageType::CookieReply => {
                let h = Header::new_checked(&buf[..])?;
                if !self.peers.handle_cookie_reply(now, &h)? {
                    let r = self.uplink.handle_cookie_reply(now, &h);
                    self.uplink_events(now);
                    r.map_err(DropReason::from)?;
                }
                return Ok(None);
            }
            MessageType::RestartNotice => {
                let h = Header::new_checked(&buf[..])?;
                self.restart_notice(now, &h)?;
                return Ok(None);
            }
            MessageType::Unknown(_) => return Err(DropReason::UnknownType),
        }
        let index = h.receiver_index();
        let flags = h.flags();
        if self.peers.index_owner(index) != Some(IndexOwner::Uplink) {
            let peer = self.peers.lookup(index).ok_or(DropReason::UnknownSession)?;
            let range = self.peers.open(now, from, peer, buf, &mut self.tx)?;
            return self.peer_data(now, peer, flags, buf, range);
        }
        let range = self
            .uplink
            .open(now, from, self.peers.endpoint().1, buf)
            .map_err(DropReason::from)?
            .range;
        self.switch_data(now, flags, buf, range)
    }

    /// A data datagram from mesh peer `peer`, opened: a keepalive, a
    /// control message, or a frame to deliver.
    pub(super) fn peer_data(
        &mut self,
        now: Instant,
        peer: usize,
        flags: u8,
        buf: &mut [u8],
        range: Range<usize>,
    ) -> Result<Option<TapWrite>, DropReason> {
        // HOT PATH
        if range.is_empty() {
            return Ok(None);
        }
        if flags & FLAG_CONTROL != 0 {
            if flags & FLAG_FRAGMENT != 0 {
                return Err(DropReason::Control);
            }
            let payload = &buf[range];
            self.peers
                .handle_control(now, peer, payload, &mut self.tx)?;
            return Ok(None);
        }
        self.deliver(now, Some(peer), flags, buf, range)
    }

    /// A data datagram from the switch, opened: an answer to a keepalive, a
    /// control message, or a frame to deliver.
    pub(super) fn switch_data(
        &mut self,
        now: Instant,
        flags: u8,
        buf: &mut [u8],
        range: Range<usize>,
    ) -> Result<Option<TapWrite>, DropReason> {
        // HOT PATH
        self.peers.switch_heard(now);
        if range.is_empty() {
            // The switch sends empty packets only to answer our keepalives.
            if let Some(sent) = self.keepalive_sent_at.take() {
                self.rtt.record(now.saturating_duration_since(sent));
            }
            return Ok(None);
        }
        if flags & FLAG_CONTROL != 0 {
            if flags & FLAG_FRAGMENT != 0 {
                return Err(DropReason::Control);
            }
            return self.switch_control(now, range, buf).map(|()| None);
        }
        if flags & FLAG_RELAYED != 0 {
            self.counters.relayed_rx_frames += 1;
        }
        self.deliver(now, None, flags, buf, range)
    }

    fn restart_notice(&mut self, now: Instant, h: &Header<&[u8]>) -> Result<(), DropReason> {
        let key = self.notice_key.as_ref().ok_or(DropReason::BadTag)?;
        let ts = key.open(h)?;
        if ts <= self.last_notice {
            return Err(DropReason::Replay);
        }
        self.last_notice = ts;
        self.counters.restart_notices += 1;
        self.events.push(Event::SwitchRestarted);
        // The switch has no session with us any more: start over at once.
        if self.uplink.close(self.peers.endpoint().1) {
            self.counters.sessions_lost += 1;
            self.homes.lost(now);
        }
        self.with_uplink(now, |t, ctx, to| {
            let _ = t.start_handshake(now, ctx, to);
        });
        Ok(())
    }
}
