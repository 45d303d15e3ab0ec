//! One authenticated relationship with one remote static key: the switch's
//! port for a node, a node's uplink to the switch, a mesh node's direct path
//! to a peer. Sans-IO: time is passed in, datagrams go to the caller's
//! [`TxQueue`].
//!
//! A tunnel keeps three session slots, as WireGuard does:
//! - `current` carries what we send;
//! - `previous` still opens what the remote sealed before a rekey reached it;
//! - `pending`: a responder's new session, used for sending only once the
//!   initiator's first packet under it confirms it (until then the initiator
//!   may not have it, if our response was lost).
//!
//! and at most one initiation in flight, which a response that fails to
//! authenticate leaves in flight (the index in a response is no secret: a
//! forgery must not cancel the handshake the genuine response completes).
//!
//! Timers (all deadlines, all reported by [`Tunnel::poll_timeout`]): an
//! unanswered initiation is retried after a backoff that doubles from
//! [`HANDSHAKE_RETRY_MIN`] up to [`TunnelConfig::retry_max`], plus up to 1/8
//! random jitter so many tunnels do not retry in lockstep; the initiator
//! rekeys after [`TunnelConfig::rekey_after`]; a tunnel that sent something
//! and heard nothing for [`TunnelConfig::probe_after`] asks its owner to
//! probe ([`TunnelEvent::ProbeDue`]), and declares the session lost if the
//! probe stays unanswered for [`TunnelConfig::probe_timeout`] (or four round
//! trips, if longer); after [`KEEPALIVE_INTERVAL`] without sending it asks
//! for a keepalive ([`TunnelEvent::KeepaliveDue`]). What a probe is belongs to
//! the owner: the uplink sends an empty packet the switch answers, a mesh
//! peer a `Ping`.
//!
//! Receiver indices come from the endpoint's one [`IndexTable`], so no two
//! tunnels of an endpoint ever hold the same index.
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::{Duration, Instant};

use crate::Error;
use crate::cookie::{CookieJar, MacKeys};
use crate::frag::{FragError, FragHeader, Reassembler};
use crate::handshake::{self, IncomingInit, Initiation, Timestamp};
use crate::keys::PublicKey;
use crate::session::Session;
use crate::timers::{
    HANDSHAKE_RETRY_MAX, HANDSHAKE_RETRY_MIN, KEEPALIVE_INTERVAL, PENDING_SESSION_TIMEOUT,
    PROBE_AFTER, PROBE_TIMEOUT, REJECT_AFTER_TIME, REKEY_AFTER_MESSAGES, REKEY_AFTER_TIME,
};
use crate::transmit::TxQueue;
use crate::wire::{DATA_HEADER_LEN, DATA_OVERHEAD, HS_INIT_LEN, HS_RESP_LEN, Header};

mod index;
pub use index::{IndexTable, Local};

#[cfg(test)]
mod tests;

/// Which side of handshakes a tunnel takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Only initiates (a node's uplink).
    Initiator,
    /// Only answers (the switch's port for a node): no retries, probes or
    /// keepalives of its own.
    Responder,
    /// Either (mesh peers). On a simultaneous open the side with the lower
    /// public key wins; it also rekeys first, the other only after
    /// [`TunnelConfig::rekey_grace`] more.
    Both,
}

/// A tunnel's timers and role.
#[derive(Debug, Clone, Copy)]
pub struct TunnelConfig {
    /// Which side of handshakes it takes.
    pub role: Role,
    /// Rekey once the current session is this old (never later than
    /// [`REKEY_AFTER_TIME`]).
    pub rekey_after: Duration,
    /// Added to `rekey_after`: with [`Role::Both`], the side with the
    /// higher key waits this much longer, so the lower key rekeys first.
    pub rekey_grace: Duration,
    /// Sent something, heard nothing for this long: probe.
    pub probe_after: Duration,
    /// A probe unanswered this long (or four round trips) loses the session.
    pub probe_timeout: Duration,
    /// The cap on the handshake retry backoff.
    pub retry_max: Duration,
    /// Follow the remote to the address its authentic packets come from.
    pub roaming: bool,
}

impl TunnelConfig {
    /// Timers for `role` with the protocol's defaults (see [`crate::timers`]).
    pub fn new(role: Role) -> TunnelConfig {
        TunnelConfig {
            role,
            rekey_after: REKEY_AFTER_TIME,
            rekey_grace: Duration::ZERO,
            probe_after: PROBE_AFTER,
            probe_timeout: PROBE_TIMEOUT,
            retry_max: HANDSHAKE_RETRY_MAX,
            roaming: true,
        }
    }
}

/// Something the owner acts on or logs, drained with [`Tunnel::poll_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelEvent {
    /// An initiation went out to this many addresses.
    InitiationSent(usize),
    /// An initiation could not be made or queued; the timers try again.
    InitiationFailed(TunnelError),
    /// A new session is current: the first (or the first after a loss) if
    /// `rekey` is false. An initiator should send something under it at once
    /// (the responder waits for that to confirm it).
    Established {
        /// A session was up before.
        rekey: bool,
    },
    /// The remote stopped answering (or the session expired): all sessions
    /// are gone, a new handshake follows.
    Lost,
    /// A cookie reply was accepted: the next initiation carries `mac2`.
    CookieStored,
    /// Send a probe the remote answers (it owes us an answer).
    ProbeDue,
    /// Nothing was sent for [`KEEPALIVE_INTERVAL`]: send something.
    KeepaliveDue,
    /// This many incomplete fragmented frames timed out.
    FragmentsExpired(u64),
}

/// Why a tunnel refused a datagram or a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelError {
    /// No session with this receiver index.
    UnknownSession,
    /// The session is past its lifetime.
    Expired,
    /// Nothing to send on (no session, or no address).
    NoSession,
    /// Sealing or opening failed.
    Crypto(Error),
    /// A response or cookie reply answering no initiation in flight.
    NoInitiation,
    /// A response to our initiation that failed to authenticate; the
    /// initiation stays in flight.
    ForgedResponse,
    /// A cookie reply that failed to open.
    BadCookie,
    /// An initiation whose timestamp is not newer than the last accepted.
    StaleTimestamp,
    /// An initiation that could not be answered.
    Handshake,
    /// The transmit queue is full.
    TxQueueFull,
}

impl From<Error> for TunnelError {
    fn from(e: Error) -> TunnelError {
        TunnelError::Crypto(e)
    }
}

/// What [`Tunnel::handle_init`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitOutcome {
    /// Answered; the new session is pending until confirmed.
    Answered,
    /// A simultaneous open we win: ignored, our own initiation stands.
    Ignored,
}

/// Where a sealed frame is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sealed {
    /// In the caller's buffer.
    InPlace(Range<usize>),
    /// Queued as this many fragments.
    Queued(usize),
}

/// What [`Tunnel::open`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The plaintext in the buffer (empty for a keepalive).
    pub range: Range<usize>,
    /// This packet confirmed a pending session.
    pub confirmed: bool,
}

/// The endpoint-wide things a tunnel works with.
#[derive(Debug)]
pub struct Ctx<'a, T> {
    /// This endpoint's identity.
    pub local: &'a Local,
    /// Its receiver indices.
    pub indices: &'a mut IndexTable<T>,
    /// Its outgoing datagrams.
    pub tx: &'a mut TxQueue,
}

#[derive(Debug)]
#[cfg_attr(fuzzing, derive(Clone))]
struct InFlight {
    initiation: Initiation,
    sent_at: Instant,
}

/// One relationship with one remote static key. `T` names the owner in
/// the endpoint's [`IndexTable`].
#[derive(Debug)]
#[cfg_attr(fuzzing, derive(Clone))]
pub struct Tunnel<T> {
    owner: T,
    remote: PublicKey,
    cfg: TunnelConfig,
    mac_keys: MacKeys,
    endpoint: Option<SocketAddr>,
    // Boxed: a session (keys, replay window) is ~2.5 KB and most slots are
    // empty; the switch keeps a tunnel per configured node.
    current: Option<Box<Session>>,
    previous: Option<Box<Session>>,
    pending: Option<Box<Session>>,
    handshake: Option<InFlight>,
    cookies: CookieJar,
    retry_delay: Duration,
    /// Without a session or initiation: when to start one.
    next_attempt: Instant,
    last_rx: Option<Instant>,
    last_tx: Option<Instant>,
    /// The first send after the last receive: the remote owes an answer.
    awaiting_since: Option<Instant>,
    probe_sent: bool,
    last_handshake: Option<Instant>,
    sent_timestamp: Timestamp,
    accepted_timestamp: Timestamp,
    remote_caps: u32,
    rtt: Option<Duration>,
    reassembly: Reassembler,
    next_frame_id: u32,
    fragments_lost_seen: u64,
    events: VecDeque<TunnelEvent>,
}

impl<T: Copy> Tunnel<T> {
    /// A tunnel with no session to `remote`, owned by `owner`.
    pub fn new(now: Instant, owner: T, remote: PublicKey, cfg: TunnelConfig) -> Tunnel<T> {
        Tunnel {
            owner,
            mac_keys: MacKeys::new(&remote),
            remote,
            cfg,
            endpoint: None,
            current: None,
            previous: None,
            pending: None,
            handshake: None,
            cookies: CookieJar::default(),
            retry_delay: HANDSHAKE_RETRY_MIN,
            next_attempt: now,
            last_rx: None,
            last_tx: None,
            awaiting_since: None,
            probe_sent: false,
            last_handshake: None,
            sent_timestamp: Timestamp::default(),
            accepted_timestamp: Timestamp::default(),
            remote_caps: 0,
            rtt: None,
            reassembly: Reassembler::default(),
            next_frame_id: 0,
            fragments_lost_seen: 0,
            events: VecDeque::new(),
        }
    }

    /// The remote's static key.
    pub fn remote_key(&self) -> &PublicKey {
        &self.remote
    }

    /// Its timers and role.
    pub fn config(&self) -> &TunnelConfig {
        &self.cfg
    }

    /// Where datagrams go (the remote's latest address if roaming).
    pub fn endpoint(&self) -> Option<SocketAddr> {
        self.endpoint
    }

    /// Set where datagrams go.
    pub fn set_endpoint(&mut self, to: Option<SocketAddr>) {
        self.endpoint = to;
    }

    /// The current session, if any (it may have expired).
    pub fn current(&self) -> Option<&Session> {
        self.current.as_deref()
    }

    /// A current session exists and has not expired.
    pub fn is_up(&self, now: Instant) -> bool {
        self.current.as_ref().is_some_and(|s| !s.is_expired(now))
    }

    /// An initiation is in flight.
    pub fn is_handshaking(&self) -> bool {
        self.handshake.is_some()
    }

    /// When a session last became current.
    pub fn last_handshake(&self) -> Option<Instant> {
        self.last_handshake
    }

    /// When an authentic packet last arrived.
    pub fn last_rx(&self) -> Option<Instant> {
        self.last_rx
    }

    /// The capability flags of the remote's latest accepted initiation
    /// (or as its owner set them).
    pub fn remote_caps(&self) -> u32 {
        self.remote_caps
    }

    /// Set the remote's capabilities (learnt another way).
    pub fn set_remote_caps(&mut self, caps: u32) {
        self.remote_caps = caps;
    }

    /// The latest round-trip sample the owner measured.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    /// A round trip measured by the owner (probes wait four of them).
    pub fn note_rtt(&mut self, rtt: Duration) {
        self.rtt = Some(rtt);
    }

    /// The receiver indices this tunnel holds (sessions and initiation).
    pub fn indices(&self) -> impl Iterator<Item = u32> + '_ {
        [&self.current, &self.previous, &self.pending]
            .into_iter()
            .flatten()
            .map(|s| s.local_index())
            .chain(self.handshake.as_ref().map(|f| f.initiation.sender_index()))
    }

    fn probe_timeout(&self) -> Duration {
        self.cfg.probe_timeout.max(self.rtt.unwrap_or_default() * 4)
    }

    fn initiates(&self) -> bool {
        self.cfg.role != Role::Responder
    }

    /// The age at which this side rekeys.
    fn rekey_age(&self) -> Duration {
        self.cfg.rekey_after.min(REKEY_AFTER_TIME) + self.cfg.rekey_grace
    }

    /// Whether this side should rekey `s` now.
    fn rekey_due(&self, s: &Session, now: Instant) -> bool {
        s.sent() >= REKEY_AFTER_MESSAGES || s.age(now) >= self.rekey_age()
    }

    // ---- handshakes ----

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

    fn abandon_handshake(&mut self, indices: &mut IndexTable<T>) {
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

    fn make_current(&mut self, now: Instant, indices: &mut IndexTable<T>, s: Session) {
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

    // ---- data ----

    /// Verify and decrypt a data datagram (its receiver index is one of this
    /// tunnel's) in place. The first packet under a pending session makes it
    /// current.
    pub fn open(
        &mut self,
        now: Instant,
        from: SocketAddr,
        indices: &mut IndexTable<T>,
        buf: &mut [u8],
    ) -> Result<Opened, TunnelError> {
        // HOT PATH
        if buf.len() < DATA_HEADER_LEN {
            return Err(TunnelError::Crypto(Error::Truncated));
        }
        let index = Header::new_unchecked(&buf[..]).receiver_index();
        let confirmed = self
            .pending
            .as_ref()
            .is_some_and(|s| s.local_index() == index);
        let session = [
            self.current.as_deref_mut(),
            self.pending.as_deref_mut(),
            self.previous.as_deref_mut(),
        ]
        .into_iter()
        .flatten()
        .find(|s| s.local_index() == index)
        .ok_or(TunnelError::UnknownSession)?;
        if session.is_expired(now) {
            return Err(TunnelError::Expired);
        }
        let range = session.open(buf)?;
        if confirmed && let Some(s) = self.pending.take() {
            self.make_current(now, indices, *s);
        }
        self.last_rx = Some(now);
        self.awaiting_since = None;
        self.probe_sent = false;
        if self.cfg.roaming {
            self.endpoint = Some(from);
        }
        Ok(Opened { range, confirmed })
    }

    /// Add a decrypted fragment; returns the whole payload once complete
    /// (valid until the next call).
    pub fn reassemble(&mut self, now: Instant, payload: &[u8]) -> Result<Option<&[u8]>, FragError> {
        let (fh, chunk) = FragHeader::parse(payload).ok_or(FragError::Malformed)?;
        self.reassembly.push(now, fh, chunk)
    }

    fn sendable(&mut self, now: Instant) -> Result<(SocketAddr, &mut Session), TunnelError> {
        let to = self.endpoint.ok_or(TunnelError::NoSession)?;
        let s = self
            .current
            .as_deref_mut()
            .filter(|s| !s.is_expired(now))
            .ok_or(TunnelError::NoSession)?;
        Ok((to, s))
    }

    /// Seal the `plen` bytes at `buf[DATA_HEADER_LEN..]` for datagrams of at
    /// most `max` bytes: in place if they fit, else as fragments queued on
    /// `tx`.
    pub fn seal(
        &mut self,
        now: Instant,
        flags: u8,
        buf: &mut [u8],
        plen: usize,
        max: usize,
        tx: &mut TxQueue,
    ) -> Result<Sealed, TunnelError> {
        // HOT PATH
        if plen + DATA_OVERHEAD <= max {
            let (_, s) = self.sendable(now)?;
            let n = s.seal(flags, buf, plen)?;
            self.note_sent(now);
            return Ok(Sealed::InPlace(0..n));
        }
        let n = self.send_inner(
            now,
            flags,
            &[&buf[DATA_HEADER_LEN..DATA_HEADER_LEN + plen]],
            max,
            tx,
            true,
        )?;
        Ok(Sealed::Queued(n))
    }

    /// Seal a payload given in `parts` (fragmented to `max`-byte datagrams
    /// if needed) and queue it. Returns how many datagrams. The remote owes
    /// an answer to it (liveness); see [`send_reply`](Self::send_reply).
    pub fn send(
        &mut self,
        now: Instant,
        flags: u8,
        parts: &[&[u8]],
        max: usize,
        tx: &mut TxQueue,
    ) -> Result<usize, TunnelError> {
        // HOT PATH
        self.send_inner(now, flags, parts, max, tx, true)
    }

    /// As [`send`](Self::send), for an answer the remote owes nothing for.
    pub fn send_reply(
        &mut self,
        now: Instant,
        flags: u8,
        parts: &[&[u8]],
        max: usize,
        tx: &mut TxQueue,
    ) -> Result<usize, TunnelError> {
        self.send_inner(now, flags, parts, max, tx, false)
    }

    /// Send an empty data packet (a keepalive or probe).
    pub fn send_keepalive(&mut self, now: Instant, tx: &mut TxQueue) -> Result<(), TunnelError> {
        self.send(now, 0, &[], usize::MAX, tx).map(drop)
    }

    fn send_inner(
        &mut self,
        now: Instant,
        flags: u8,
        parts: &[&[u8]],
        max: usize,
        tx: &mut TxQueue,
        expect_answer: bool,
    ) -> Result<usize, TunnelError> {
        // The owner decides whether a full queue drops (and counts) it.
        let mut frame_id = self.next_frame_id;
        let (to, s) = self.sendable(now)?;
        let mut b = tx.buffer(0);
        match s.seal_frame(flags, parts, max, &mut frame_id, &mut b) {
            Ok(stride) => {
                let count = b.len().div_ceil(stride.unwrap_or(b.len()).max(1));
                match stride {
                    Some(st) => tx.push_batch(to, b, st),
                    None => tx.push(to, b),
                }
                self.next_frame_id = frame_id;
                if expect_answer {
                    self.note_sent(now);
                }
                Ok(count)
            }
            Err(e) => {
                tx.recycle(b);
                Err(e.into())
            }
        }
    }

    fn note_sent(&mut self, now: Instant) {
        self.last_tx = Some(now);
        if self.awaiting_since.is_none() {
            self.awaiting_since = Some(now);
        }
    }

    // ---- timers ----

    /// Drop every session and the initiation in flight; an initiator
    /// handshakes again from `now`. Returns whether a session was up.
    pub fn close(&mut self, now: Instant, indices: &mut IndexTable<T>) -> bool {
        let was_up = self.current.is_some();
        for s in [
            self.current.take(),
            self.previous.take(),
            self.pending.take(),
        ]
        .into_iter()
        .flatten()
        {
            indices.release(s.local_index());
        }
        self.abandon_handshake(indices);
        self.awaiting_since = None;
        self.probe_sent = false;
        self.retry_delay = HANDSHAKE_RETRY_MIN;
        self.next_attempt = now;
        was_up
    }

    /// The remote is gone: drop everything, report [`TunnelEvent::Lost`];
    /// an initiator handshakes again at its next timeout.
    pub fn lose(&mut self, now: Instant, indices: &mut IndexTable<T>) {
        self.close(now, indices);
        self.events.push_back(TunnelEvent::Lost);
    }

    /// Run timers. `targets` are where an initiation goes.
    pub fn handle_timeout(&mut self, now: Instant, ctx: &mut Ctx<'_, T>, targets: &[SocketAddr]) {
        self.reassembly.expire(now);
        let lost = self.reassembly.incomplete_dropped - self.fragments_lost_seen;
        if lost > 0 {
            self.fragments_lost_seen += lost;
            self.events.push_back(TunnelEvent::FragmentsExpired(lost));
        }
        if let Some(s) = self
            .pending
            .take_if(|s| s.age(now) >= PENDING_SESSION_TIMEOUT)
        {
            ctx.indices.release(s.local_index());
        }
        if let Some(s) = self.previous.take_if(|s| s.is_expired(now)) {
            ctx.indices.release(s.local_index());
        }
        if self.current.as_ref().is_some_and(|s| s.is_expired(now)) {
            if self.initiates() {
                self.lose(now, ctx.indices);
            } else if let Some(s) = self.current.take() {
                ctx.indices.release(s.local_index());
            }
        }
        if !self.initiates() {
            return;
        }
        // Liveness: an unanswered probe means the remote lost us.
        let mut probed = false;
        if self.current.is_some()
            && let Some(since) = self.awaiting_since
        {
            if now >= since + self.cfg.probe_after + self.probe_timeout() {
                self.lose(now, ctx.indices);
            } else if now >= since + self.cfg.probe_after && !self.probe_sent {
                self.probe_sent = true;
                probed = true;
                self.events.push_back(TunnelEvent::ProbeDue);
            }
        }
        match &self.handshake {
            Some(f) if now >= f.sent_at + self.retry_delay => {
                let max = self.cfg.retry_max;
                self.retry_delay = (self.retry_delay * 2).min(max);
                // Up to 1/8 jitter so many tunnels do not retry in lockstep.
                let jitter = ctx.indices.jitter(self.retry_delay / 8);
                self.retry_delay = (self.retry_delay + jitter).min(max);
                let _ = self.start_handshake(now, ctx, targets);
            }
            Some(_) => {}
            None => {
                let need = match self.current.as_deref() {
                    None => now >= self.next_attempt,
                    Some(s) => self.rekey_due(s, now),
                };
                if need {
                    let _ = self.start_handshake(now, ctx, targets);
                }
            }
        }
        if !probed
            && self.current.is_some()
            && self.last_tx.is_none_or(|t| now >= t + KEEPALIVE_INTERVAL)
        {
            self.events.push_back(TunnelEvent::KeepaliveDue);
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut at = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        if let Some(s) = &self.pending {
            at(s.created() + PENDING_SESSION_TIMEOUT);
        }
        if let Some(s) = &self.previous {
            at(s.created() + REJECT_AFTER_TIME);
        }
        if let Some(s) = &self.current {
            at(s.created() + REJECT_AFTER_TIME);
        }
        if !self.initiates() {
            return next;
        }
        match (&self.current, &self.handshake) {
            (_, Some(f)) => at(f.sent_at + self.retry_delay),
            // Due now: a failed start (queue full) is retried at once.
            (None, None) => at(self.next_attempt),
            (Some(s), None) => at(s.created() + self.rekey_age()),
        }
        if let Some(s) = &self.current {
            at(self.last_tx.map_or(s.created(), |t| t + KEEPALIVE_INTERVAL));
            if let Some(since) = self.awaiting_since {
                at(if self.probe_sent {
                    since + self.cfg.probe_after + self.probe_timeout()
                } else {
                    since + self.cfg.probe_after
                });
            }
        }
        next
    }

    /// The next event for the owner. Drain after every `handle_*` and send.
    pub fn poll_event(&mut self) -> Option<TunnelEvent> {
        self.events.pop_front()
    }
}

/// The timestamp right after `t` (initiations must strictly increase).
pub fn bump(t: Timestamp) -> Timestamp {
    let mut b = t.0;
    for i in (0..12).rev() {
        b[i] = b[i].wrapping_add(1);
        if b[i] != 0 {
            break;
        }
    }
    Timestamp(b)
}
