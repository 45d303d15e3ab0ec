//! A tunnel's handshakes: initiations, responses, cookie replies, and
//! answering the remote's initiations.
use std::net::SocketAddr;
use std::time::Instant;

use super::{Ctx, InFlight, IndexTable, InitOutcome, Role, Tunnel, TunnelError, TunnelEvent, bump};
use crate::handshake::{self, IncomingInit};
use crate::session::Session;
use crate::timers::HANDSHAKE_RETRY_MIN;
use crate::wire::{HS_INIT_LEN, HS_RESP_LEN, Header};

impl<T: Copy> Tunnel<T> {
    /// Send a new initiation to `targets` (an earlier one is abandoned).
    /// Reported as [`TunnelEvent::InitiationSent`] or
    /// [`TunnelEvent::InitiationFailed`] as well as returned.
    pub fn start_handshake(
        &mut self,
        now: Instant,
        ctx: &mut Ctx<'_, T>,
        targets: &[SocketAddr],
    ) -> Result<usize, TunnelError> {
        let r = self.initiate(now, ctx, targets);
        self.events.push_back(match r {
            Ok(n) => TunnelEvent::InitiationSent(n),
            Err(e) => TunnelEvent::InitiationFailed(e),
        });
        r
    }

    fn initiate(
        &mut self,
        now: Instant,
        ctx: &mut Ctx<'_, T>,
        targets: &[SocketAddr],
    ) -> Result<usize, TunnelError> {
        if ctx.tx.is_full() {
            return Err(TunnelError::TxQueueFull);
        }
        self.abandon_handshake(ctx.indices);
        let index = ctx.indices.allocate(self.owner);
        let mut ts = ctx.local.timestamp(now);
        // Strictly increasing even if called twice in one clock tick.
        if ts <= self.sent_timestamp {
            ts = bump(self.sent_timestamp);
        }
        self.sent_timestamp = ts;
        let mut out = [0u8; HS_INIT_LEN];
        let Ok(initiation) = handshake::initiate(
            &ctx.local.secret,
            &self.remote,
            &ctx.local.psk,
            ctx.local.network_id,
            index,
            ts,
            ctx.local.caps,
            self.cookies.current(now),
            &mut out,
        ) else {
            ctx.indices.release(index);
            return Err(TunnelError::Handshake);
        };
        self.handshake = Some(InFlight {
            initiation,
            sent_at: now,
        });
        let mut sent = 0;
        for &to in targets {
            if ctx.tx.is_full() {
                break;
            }
            let mut b = ctx.tx.buffer(HS_INIT_LEN);
            b[..HS_INIT_LEN].copy_from_slice(&out);
            b.truncate(HS_INIT_LEN);
            ctx.tx.push(to, b);
            sent += 1;
        }
        Ok(sent)
    }

    /// Start a handshake unless one is in flight (e.g. a frame to send and
    /// no session).
    pub fn ensure_handshake(&mut self, now: Instant, ctx: &mut Ctx<'_, T>, targets: &[SocketAddr]) {
        if self.handshake.is_none() {
            let _ = self.start_handshake(now, ctx, targets);
        }
    }

    pub(super) fn abandon_handshake(&mut self, indices: &mut IndexTable<T>) {
        if let Some(f) = self.handshake.take() {
            indices.release(f.initiation.sender_index());
        }
    }

    /// Forget the initiation in flight and the backoff: the next
    /// [`handle_timeout`](Self::handle_timeout) without a session starts
    /// afresh (e.g. the remote's addresses changed).
    pub fn restart_handshakes(&mut self, now: Instant, indices: &mut IndexTable<T>) {
        self.abandon_handshake(indices);
        self.retry_delay = HANDSHAKE_RETRY_MIN;
        self.next_attempt = now;
    }

    /// A handshake response addressed to this tunnel's index.
    pub fn handle_response(
        &mut self,
        now: Instant,
        from: SocketAddr,
        indices: &mut IndexTable<T>,
        h: &Header<&[u8]>,
    ) -> Result<(), TunnelError> {
        let inflight = self
            .handshake
            .as_mut()
            .filter(|f| f.initiation.sender_index() == h.receiver_index())
            .ok_or(TunnelError::NoInitiation)?;
        let local_index = inflight.initiation.sender_index();
        // A forged or corrupted response leaves the initiation in flight.
        let (keys, remote_index) = inflight
            .initiation
            .finish(h)
            .map_err(|_| TunnelError::ForgedResponse)?;
        self.handshake = None;
        let session = Session::new(keys, local_index, remote_index, h.network_id(), now);
        self.make_current(now, indices, session);
        if self.cfg.roaming {
            self.endpoint = Some(from);
        }
        Ok(())
    }

    /// A cookie reply addressed to this tunnel's index. Like WireGuard, the
    /// initiation is not resent at once: the retry timer does it (so a forged
    /// reply cannot make us spin).
    pub fn handle_cookie_reply(
        &mut self,
        now: Instant,
        h: &Header<&[u8]>,
    ) -> Result<(), TunnelError> {
        let inflight = self
            .handshake
            .as_ref()
            .filter(|f| f.initiation.sender_index() == h.receiver_index())
            .ok_or(TunnelError::NoInitiation)?;
        let cookie = self
            .mac_keys
            .open_reply(&inflight.initiation.mac1(), h)
            .map_err(|_| TunnelError::BadCookie)?;
        self.cookies.store(now, cookie);
        self.events.push_back(TunnelEvent::CookieStored);
        Ok(())
    }

    /// An initiation from this tunnel's remote (the owner read it with
    /// [`handshake::read_init`] and found the tunnel by its key): answer it
    /// to `from` and keep the new session pending until its first packet.
    pub fn handle_init(
        &mut self,
        now: Instant,
        from: SocketAddr,
        ctx: &mut Ctx<'_, T>,
        init: IncomingInit,
    ) -> Result<InitOutcome, TunnelError> {
        if init.timestamp <= self.accepted_timestamp {
            return Err(TunnelError::StaleTimestamp);
        }
        if self.cfg.role == Role::Both
            && self.handshake.is_some()
            && ctx.local.public.0 < self.remote.0
        {
            return Ok(InitOutcome::Ignored);
        }
        if ctx.tx.is_full() {
            return Err(TunnelError::TxQueueFull);
        }
        let index = ctx.indices.allocate(self.owner);
        let timestamp = init.timestamp;
        let (caps, remote_index) = (init.caps, init.initiator_index);
        let mut out = [0u8; HS_RESP_LEN];
        let keys = match init.accept(ctx.local.network_id, index, &mut out) {
            Ok(k) => k,
            Err(_) => {
                ctx.indices.release(index);
                return Err(TunnelError::Handshake);
            }
        };
        self.accepted_timestamp = timestamp;
        self.remote_caps = caps;
        self.abandon_handshake(ctx.indices);
        let session = Session::new(keys, index, remote_index, ctx.local.network_id, now);
        if let Some(old) = self.pending.replace(Box::new(session)) {
            ctx.indices.release(old.local_index());
        }
        let mut b = ctx.tx.buffer(HS_RESP_LEN);
        b[..HS_RESP_LEN].copy_from_slice(&out);
        b.truncate(HS_RESP_LEN);
        ctx.tx.push(from, b);
        Ok(InitOutcome::Answered)
    }

    pub(super) fn make_current(&mut self, now: Instant, indices: &mut IndexTable<T>, s: Session) {
        let rekey = self.is_up(now);
        if let Some(old) = self.previous.take() {
            indices.release(old.local_index());
        }
        self.previous = self.current.replace(Box::new(s));
        self.retry_delay = HANDSHAKE_RETRY_MIN;
        self.last_rx = Some(now);
        self.awaiting_since = None;
        self.probe_sent = false;
        self.last_handshake = Some(now);
        self.events.push_back(TunnelEvent::Established { rekey });
    }
}
