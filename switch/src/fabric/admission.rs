//! Admission and sessions: every datagram in, handshakes (after the guard),
//! session confirmation and roaming, forgetting a node, restart notices.

use std::net::SocketAddr;
use std::time::Instant;

use overlay_proto::frag::FragHeader;
use overlay_proto::handshake::{self, CAP_VNET, Timestamp};
use overlay_proto::notice::NoticeKey;
use overlay_proto::session::Session;

use overlay_proto::wire::{
    FLAG_CONTROL, FLAG_FRAGMENT, HS_RESP_LEN, Header, MessageType, RESTART_NOTICE_LEN,
};
use rand::Rng;

use super::{Event, Switch};
use crate::NodeId;
use crate::stats::DropReason;

impl Switch {
    /// Process one received UDP datagram. `buf` is decrypted in place.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, buf: &mut [u8]) {
        // HOT PATH
        if let Err(r) = self.datagram(now, from, buf) {
            self.drops.add(r);
        }
    }

    fn datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        buf: &mut [u8],
    ) -> Result<(), DropReason> {
        let h = Header::new_checked(&buf[..])?;
        if h.network_id() != self.cfg.network_id {
            return Err(DropReason::UnknownNetwork);
        }
        match h.message_type() {
            MessageType::Data => {
                let index = h.receiver_index();
                self.data(now, from, index, buf)
            }
            MessageType::HandshakeInit => self.handshake_init(now, from, &h),
            MessageType::HandshakeResp | MessageType::RestartNotice | MessageType::CookieReply => {
                Err(DropReason::UnexpectedMessage)
            }
            MessageType::Unknown(_) => Err(DropReason::UnknownType),
        }
    }

    fn handshake_init(
        &mut self,
        now: Instant,
        from: SocketAddr,
        h: &Header<&[u8]>,
    ) -> Result<(), DropReason> {
        // Cheap checks first: no Diffie-Hellman for floods (see handshake_guard).
        self.guard.admit(now, from, h, &mut self.tx)?;
        let incoming = handshake::read_init(&self.cfg.private_key, &self.cfg.psk, h)
            .map_err(|_| DropReason::HandshakeFailed)?;
        // Unknown keys get no answer at all.
        let id = *self
            .by_key
            .get(&incoming.peer)
            .ok_or(DropReason::UnknownKey)?;
        if incoming.timestamp <= self.ports[id.0 as usize].last_timestamp {
            return Err(DropReason::HandshakeReplay);
        }
        if self.tx.is_full() {
            return Err(DropReason::TxQueueFull);
        }
        let index = self.new_index();
        let timestamp = incoming.timestamp;
        let caps = incoming.caps;
        let mut out = [0u8; HS_RESP_LEN];
        let keys = incoming
            .accept(self.cfg.network_id, index, &mut out)
            .map_err(|_| DropReason::HandshakeFailed)?;
        let remote_index = h.sender_index();
        let session = Box::new(Session::new(
            keys,
            index,
            remote_index,
            self.cfg.network_id,
            now,
        ));
        let port = &mut self.ports[id.0 as usize];
        port.last_timestamp = timestamp;
        port.last_handshake = Some(now);
        port.accepts_vnet = caps & CAP_VNET != 0;
        port.counters.handshakes += 1;
        // The new session waits for the node's first packet under it; until
        // then the current one keeps carrying traffic.
        if let Some(old) = port.pending.replace(session) {
            self.by_index.remove(&old.local_index());
        }
        self.by_index.insert(index, id);
        self.sessions.handshakes += 1;
        let mut b = self.tx.buffer(HS_RESP_LEN);
        b[..HS_RESP_LEN].copy_from_slice(&out);
        b.truncate(HS_RESP_LEN);
        self.tx.push(from, b);
        Ok(())
    }

    fn new_index(&mut self) -> u32 {
        loop {
            let i: u32 = self.rng.random();
            if !self.by_index.contains_key(&i) {
                return i;
            }
        }
    }

    fn data(
        &mut self,
        now: Instant,
        from: SocketAddr,
        index: u32,
        buf: &mut [u8],
    ) -> Result<(), DropReason> {
        // HOT PATH
        let id = *self
            .by_index
            .get(&index)
            .ok_or(DropReason::UnknownSession)?;
        let port = &mut self.ports[id.0 as usize];
        let (session, is_pending) = if port
            .current
            .as_ref()
            .is_some_and(|s| s.local_index() == index)
        {
            (port.current.as_mut(), false)
        } else if port
            .pending
            .as_ref()
            .is_some_and(|s| s.local_index() == index)
        {
            (port.pending.as_mut(), true)
        } else {
            (port.previous.as_mut(), false)
        };
        let session = session.ok_or(DropReason::UnknownSession)?;
        if session.is_expired(now) {
            return Err(DropReason::Expired);
        }
        let flags = Header::new_unchecked(&buf[..]).flags();
        let range = session.open(buf)?;
        if is_pending {
            // First packet under the new session: it is confirmed.
            let new = port.pending.take();
            if let Some(old) = port.previous.take() {
                self.by_index.remove(&old.local_index());
            }
            let was_connected = port.is_connected();
            port.previous = std::mem::replace(&mut port.current, new);
            self.sessions.confirmed += 1;
            let node = port.spec.name.clone();
            self.sessions.rekeys += u64::from(was_connected);
            self.events.push_back(if was_connected {
                Event::Rekeyed { node }
            } else {
                Event::Connected {
                    node,
                    endpoint: from,
                }
            });
        }
        port.last_heard = Some(now);
        if port.endpoint != Some(from) {
            if port.endpoint.is_some() && !is_pending {
                self.events.push_back(Event::Roamed {
                    node: port.spec.name.clone(),
                    endpoint: from,
                });
            }
            port.endpoint = Some(from);
        }
        if range.is_empty() {
            self.sessions.keepalives += 1;
            self.send_keepalive(id);
            return Ok(());
        }
        if flags & FLAG_CONTROL != 0 {
            return self.handle_control(now, id, flags, &buf[range]);
        }
        if flags & FLAG_FRAGMENT == 0 {
            return self.switch_payload(now, id, flags, &buf[range]);
        }
        let (fh, chunk) = FragHeader::parse(&buf[range]).ok_or(DropReason::Fragment)?;
        let mut scratch = std::mem::take(&mut self.scratch);
        let r = match port.reassembly.push(now, fh, chunk) {
            Err(_) => Err(DropReason::Fragment),
            Ok(None) => Ok(()),
            Ok(Some(whole)) => {
                scratch.clear();
                scratch.extend_from_slice(whole);
                self.switch_payload(now, id, flags, &scratch)
            }
        };
        self.scratch = scratch;
        r
    }

    pub(super) fn forget(&mut self, id: NodeId) {
        let port = &mut self.ports[id.0 as usize];
        for i in port.indices().collect::<Vec<_>>() {
            self.by_index.remove(&i);
        }
        port.current = None;
        port.previous = None;
        port.pending = None;
        port.endpoint = None;
        self.macs.flush_port(id);
        self.snoop.forget_node(id);
    }

    /// After a restart: tell every node at its last known endpoint to
    /// handshake again now (see `overlay_proto::notice`). `timestamp` is the
    /// wall-clock time; `endpoints` come from the state file, by node name.
    /// Returns how many notices were queued.
    pub fn announce_restart<'a>(
        &mut self,
        timestamp: Timestamp,
        endpoints: impl IntoIterator<Item = (&'a str, SocketAddr)>,
    ) -> usize {
        let mut sent = 0;
        for (name, addr) in endpoints {
            let Some(port) = self
                .ports
                .iter()
                .find(|p| !p.retired && p.spec.name == name)
            else {
                continue;
            };
            let Ok(key) = NoticeKey::derive(&self.cfg.private_key, &port.spec.public_key) else {
                continue;
            };
            if self.tx.is_full() {
                break;
            }
            let mut out = [0u8; RESTART_NOTICE_LEN];
            key.seal(self.cfg.network_id, timestamp, &mut out);
            let mut b = self.tx.buffer(RESTART_NOTICE_LEN);
            b[..RESTART_NOTICE_LEN].copy_from_slice(&out);
            b.truncate(RESTART_NOTICE_LEN);
            self.tx.push(addr, b);
            sent += 1;
        }
        sent
    }

    /// Every connected node's name and endpoint (for the state file).
    pub fn endpoints(&self) -> Vec<(String, SocketAddr)> {
        self.ports
            .iter()
            .filter_map(|p| p.endpoint.map(|e| (p.spec.name.clone(), e)))
            .collect()
    }
}
