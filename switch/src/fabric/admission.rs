//! Admission and sessions: every datagram in, handshakes (after the guard),
//! session confirmation and roaming, forgetting a node, restart notices.

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Instant;

use overlay_proto::handshake::{self, Timestamp};
use overlay_proto::notice::NoticeKey;
use overlay_proto::tunnel::Ctx;
use overlay_proto::wire::{FLAG_CONTROL, FLAG_FRAGMENT, Header, MessageType, RESTART_NOTICE_LEN};

use super::port::drop_reason;
use super::{Event, Switch};
use crate::NodeId;
use crate::counters::DropReason;

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
                self.data(now, from, index, buf, None)
            }
            MessageType::HandshakeInit => self.handshake_init(now, from, &h),
            // Only trunks to other switches initiate.
            MessageType::HandshakeResp | MessageType::CookieReply => {
                self.trunk_handshake(now, from, &h)
            }
            MessageType::RestartNotice => Err(DropReason::UnexpectedMessage),
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
        crate::workers::gate::lock(&self.guard).admit(now, from, h, &mut self.tx)?;
        self.admitted_init(now, from, h)
    }

    /// A handshake initiation the workers' gate ([`crate::workers::gate`])
    /// already checked with this network's guard: the handshake itself.
    pub fn handle_admitted(&mut self, now: Instant, from: SocketAddr, buf: &[u8]) {
        let r = match Header::new_checked(buf) {
            Ok(h) if h.network_id() != self.cfg.network_id => Err(DropReason::UnknownNetwork),
            Ok(h) => self.admitted_init(now, from, &h),
            Err(e) => Err(DropReason::from(e)),
        };
        if let Err(r) = r {
            self.drops.add(r);
        }
    }

    fn admitted_init(
        &mut self,
        now: Instant,
        from: SocketAddr,
        h: &Header<&[u8]>,
    ) -> Result<(), DropReason> {
        let incoming = handshake::read_init(&self.cfg.private_key, &self.cfg.psk, h)
            .map_err(|_| DropReason::HandshakeFailed)?;
        // Unknown keys get no answer at all.
        let id = *self
            .by_key
            .get(&incoming.peer)
            .ok_or(DropReason::UnknownKey)?;
        let port = &mut self.ports[id.0 as usize];
        let mut ctx = Ctx {
            local: &self.local,
            indices: &mut self.indices,
            tx: &mut self.tx,
        };
        // The new session waits for the node's first packet under it; until
        // then the current one keeps carrying traffic.
        port.tunnel
            .handle_init(now, from, &mut ctx, incoming)
            .map_err(drop_reason)?;
        port.last_handshake = Some(now);
        port.counters.handshakes += 1;
        self.sessions.handshakes += 1;
        Ok(())
    }

    /// Process a data datagram a worker opened in place (with `result`)
    /// under a session this core published: everything
    /// [`handle_datagram`](Self::handle_datagram) does after opening.
    pub fn handle_opened(
        &mut self,
        now: Instant,
        from: SocketAddr,
        buf: &mut [u8],
        result: Result<Range<usize>, overlay_proto::Error>,
    ) {
        // HOT PATH
        let index = Header::new_unchecked(&buf[..]).receiver_index();
        if let Err(r) = self.data(now, from, index, buf, Some(result)) {
            self.drops.add(r);
        }
    }

    /// A data datagram to session `index`; `elsewhere` is the result of
    /// opening it on a worker, `None` to open it here.
    fn data(
        &mut self,
        now: Instant,
        from: SocketAddr,
        index: u32,
        buf: &mut [u8],
        elsewhere: Option<Result<Range<usize>, overlay_proto::Error>>,
    ) -> Result<(), DropReason> {
        // HOT PATH
        let id = self.indices.get(index).ok_or(DropReason::UnknownSession)?;
        let port = &mut self.ports[id.0 as usize];
        let flags = Header::new_unchecked(&buf[..]).flags();
        let was_connected = port.is_connected();
        let endpoint = port.tunnel.endpoint();
        let opened = match elsewhere {
            None => port.tunnel.open(now, from, &mut self.indices, buf),
            Some(r) => port.tunnel.opened_elsewhere(now, from, index, r),
        }
        .map_err(drop_reason)?;
        if opened.confirmed || endpoint.is_some_and(|e| e != from) {
            // A new session or endpoint: the workers' fast path is stale.
            self.fast
                .epoch
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        }
        let port = &mut self.ports[id.0 as usize];
        if opened.confirmed && port.is_trunk() {
            self.sessions.confirmed += 1;
            self.trunk_confirmed(now, id, was_connected);
        } else if opened.confirmed {
            // First packet under the new session: it is confirmed.
            self.sessions.confirmed += 1;
            let node = port.spec.name.clone();
            self.sessions.rekeys += u64::from(was_connected);
            if !was_connected {
                self.note_announce_change(now);
            }
            self.events.push_back(if was_connected {
                Event::Rekeyed { node }
            } else {
                Event::Connected {
                    node,
                    endpoint: from,
                }
            });
        }
        let port = &self.ports[id.0 as usize];
        if endpoint.is_some_and(|e| e != from) && !opened.confirmed && !port.is_trunk() {
            self.events.push_back(Event::Roamed {
                node: port.spec.name.clone(),
                endpoint: from,
            });
        }
        let range = opened.range;
        if range.is_empty() {
            self.sessions.keepalives += 1;
            // Switches send their own keepalives: answering would ping-pong.
            if !self.is_trunk(id) {
                self.send_keepalive(now, id);
            }
            return Ok(());
        }
        if flags & FLAG_CONTROL != 0 && self.is_trunk(id) && flags & FLAG_FRAGMENT == 0 {
            return self.handle_trunk_control(id, &buf[range]);
        }
        if flags & FLAG_CONTROL != 0 {
            return self.handle_control(now, id, flags, &buf[range]);
        }
        if flags & FLAG_FRAGMENT == 0 {
            return self.switch_payload(now, id, flags, &buf[range]);
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        let r = match self.ports[id.0 as usize]
            .tunnel
            .reassemble(now, &buf[range])
        {
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

    /// Forget node `id`'s sessions and endpoint, its MACs and memberships.
    pub(super) fn forget(&mut self, id: NodeId) {
        self.revoke_fast_path();
        let port = &mut self.ports[id.0 as usize];
        port.tunnel.close(&mut self.indices);
        port.tunnel.set_endpoint(None);
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
                .find(|p| !p.retired && !p.is_trunk() && p.spec.name == name)
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
            .filter(|p| !p.is_trunk())
            .filter_map(|p| p.tunnel.endpoint().map(|e| (p.spec.name.clone(), e)))
            .collect()
    }
}
