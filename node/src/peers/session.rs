//! Sessions with peers: sealing and opening data, reassembly, handshakes.

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Instant;

use overlay_proto::Error;
use overlay_proto::handshake;
use overlay_proto::handshake_guard::GuardStatus;
use overlay_proto::session::Session;
use overlay_proto::transmit::TxQueue;
use overlay_proto::tunnel::{Ctx, Sealed};
use overlay_proto::wire::Header;

use super::Peers;
use crate::counters::DropReason;

impl Peers {
    /// Seal a payload at `buf[DATA_HEADER_LEN..]` for peer `i`, in place if
    /// it fits in `max` bytes (returns the datagram's range and destination),
    /// else as fragments queued on `tx` (returns `None`).
    // The hot path's buffer, its geometry and the queue: a struct would only rename them.
    #[allow(clippy::too_many_arguments)]
    pub fn seal(
        &mut self,
        now: Instant,
        i: usize,
        flags: u8,
        buf: &mut [u8],
        plen: usize,
        max: usize,
        tx: &mut TxQueue,
    ) -> Result<Option<(SocketAddr, Range<usize>)>, DropReason> {
        // HOT PATH
        let p = self.peers[i].as_mut().ok_or(DropReason::NoSession)?;
        let r = match p.tunnel.seal(now, flags, buf, plen, max, tx)? {
            Sealed::InPlace(r) => Some((p.tunnel.endpoint().ok_or(DropReason::NoSession)?, r)),
            Sealed::Queued(_) => None,
        };
        p.tx_frames += 1;
        Ok(r)
    }

    /// Open a data packet under peer `i`'s session with index `index`.
    /// Confirms a pending session, tracks the peer's endpoint (roaming).
    pub fn open(
        &mut self,
        now: Instant,
        from: SocketAddr,
        i: usize,
        buf: &mut [u8],
        tx: &mut TxQueue,
    ) -> Result<Range<usize>, DropReason> {
        // HOT PATH
        let p = self.peers[i].as_mut().ok_or(DropReason::UnknownSession)?;
        let opened = p.tunnel.open(now, from, &mut self.indices, buf)?;
        self.heard(now, i, tx);
        Ok(opened.range)
    }

    /// A data packet under peer `i`'s session with index `index`, opened
    /// on an opening thread with `result` (through the session's shared
    /// [`Receiver`](overlay_proto::receiver::Receiver)): the rest of
    /// [`open`](Self::open). Only a current session is opened elsewhere,
    /// so this confirms nothing; a session dropped meanwhile makes the
    /// packet unknown.
    pub fn opened_elsewhere(
        &mut self,
        now: Instant,
        from: SocketAddr,
        (i, index): (usize, u32),
        result: Result<Range<usize>, Error>,
        tx: &mut TxQueue,
    ) -> Result<Range<usize>, DropReason> {
        // HOT PATH
        let p = self.peers[i].as_mut().ok_or(DropReason::UnknownSession)?;
        let opened = p.tunnel.opened_elsewhere(now, from, index, result)?;
        self.heard(now, i, tx);
        Ok(opened.range)
    }

    /// An authentic packet came from peer `i`: a suspicion of its direct
    /// path is disproved; act on what its tunnel reports.
    fn heard(&mut self, now: Instant, i: usize, tx: &mut TxQueue) {
        if let Some(p) = self.peers[i].as_mut()
            && p.suspect_until.take().is_some()
        {
            p.hint_disproved = Some(now);
        }
        self.tunnel_events(now, i, tx);
    }

    /// Each peer's live current session: what the opening threads may
    /// open under.
    pub fn sessions(&self, now: Instant) -> impl Iterator<Item = &Session> {
        self.peers
            .iter()
            .flatten()
            .filter_map(|p| p.tunnel.current())
            .filter(move |s| !s.is_expired(now))
    }

    /// A fragment (decrypted payload) from peer `i`: the whole payload
    /// once complete, valid until the next call.
    pub fn reassemble(
        &mut self,
        now: Instant,
        i: usize,
        payload: &[u8],
    ) -> Result<Option<&[u8]>, DropReason> {
        let p = self
            .peers
            .get_mut(i)
            .and_then(Option::as_mut)
            .ok_or(DropReason::UnknownSession)?;
        p.tunnel
            .reassemble(now, payload)
            .map_err(|_| DropReason::Fragment)
    }

    /// A handshake initiation: from a peer the switch vouched for, answer it
    /// (unless we win a simultaneous open) and keep the session pending until
    /// its first packet arrives.
    pub fn handle_init(
        &mut self,
        now: Instant,
        from: SocketAddr,
        h: &Header<&[u8]>,
        tx: &mut TxQueue,
    ) -> Result<(), DropReason> {
        if !self.enabled {
            return Err(DropReason::UnexpectedMessage);
        }
        self.guard.admit(now, from, h, tx)?;
        let inc = handshake::read_init(&self.local.secret, &self.local.psk, h)
            .map_err(|_| DropReason::HandshakeFailed)?;
        let i = self.slot(&inc.peer).ok_or(DropReason::HandshakeFailed)?;
        let p = self.peers[i].as_mut().ok_or(DropReason::HandshakeFailed)?;
        let mut ctx = Ctx {
            local: &self.local,
            indices: &mut self.indices,
            tx,
        };
        // A simultaneous open we win is ignored: our initiation stands.
        p.tunnel.handle_init(now, from, &mut ctx, inc)?;
        Ok(())
    }

    /// A cookie reply: `Ok(false)` if it answers none of our peer
    /// initiations (it may be the switch's). Like the uplink, the next
    /// initiation to that peer carries `mac2`; nothing is resent at once.
    pub fn handle_cookie_reply(
        &mut self,
        now: Instant,
        h: &Header<&[u8]>,
    ) -> Result<bool, DropReason> {
        let Some(i) = self.lookup(h.receiver_index()) else {
            return Ok(false);
        };
        let p = self.peers[i].as_mut().ok_or(DropReason::HandshakeFailed)?;
        p.tunnel.handle_cookie_reply(now, h)?;
        Ok(true)
    }

    /// The guard's state, for `status`.
    pub fn guard_status(&self, now: Instant) -> GuardStatus {
        self.guard.status(now)
    }

    /// A handshake response: `Ok(false)` if it answers none of our peer
    /// initiations (it may be the switch's).
    pub fn handle_resp(
        &mut self,
        now: Instant,
        from: SocketAddr,
        h: &Header<&[u8]>,
        tx: &mut TxQueue,
    ) -> Result<bool, DropReason> {
        let Some(i) = self.lookup(h.receiver_index()) else {
            return Ok(false);
        };
        let p = self.peers[i].as_mut().ok_or(DropReason::HandshakeFailed)?;
        // A forged or corrupted response leaves the initiation in flight.
        p.tunnel.handle_response(now, from, &mut self.indices, h)?;
        // Confirm at once (the responder waits for a packet) and measure RTT.
        self.ping(now, i, tx);
        self.tunnel_events(now, i, tx);
        Ok(true)
    }
}
