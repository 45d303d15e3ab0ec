//! A tunnel's data path: opening, reassembling, sealing and sending.
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Instant;

use super::{IndexTable, Opened, Sealed, Tunnel, TunnelError};
use crate::Error;
use crate::frag::{FragError, FragHeader};
use crate::session::Session;
use crate::transmit::TxQueue;
use crate::wire::{DATA_HEADER_LEN, DATA_OVERHEAD, Header};

impl<T: Copy> Tunnel<T> {
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
        self.note_received(now, from);
        Ok(Opened { range, confirmed })
    }

    /// A data datagram under session `index` was opened on another thread
    /// (a multi-core switch's worker, under the session's shared
    /// [`Receiver`](crate::receiver::Receiver)) with `result`: what
    /// [`open`](Self::open) does besides opening. Only a current or previous
    /// session is opened elsewhere, so this confirms nothing; a session
    /// dropped meanwhile makes the datagram unknown.
    pub fn opened_elsewhere(
        &mut self,
        now: Instant,
        from: SocketAddr,
        index: u32,
        result: Result<Range<usize>, Error>,
    ) -> Result<Opened, TunnelError> {
        // HOT PATH
        let known = [self.current.as_deref(), self.previous.as_deref()]
            .into_iter()
            .flatten()
            .any(|s| s.local_index() == index);
        if !known {
            return Err(TunnelError::UnknownSession);
        }
        let range = result?;
        self.note_received(now, from);
        Ok(Opened {
            range,
            confirmed: false,
        })
    }

    /// An authentic datagram came from `from`.
    fn note_received(&mut self, now: Instant, from: SocketAddr) {
        self.last_rx = Some(now);
        self.awaiting_since = None;
        self.probe_sent = false;
        if self.cfg.roaming {
            self.endpoint = Some(from);
        }
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

    /// Data the remote owes an answer for was sealed elsewhere (another
    /// thread, through the current session's shared
    /// [`Sender`](crate::session::Sender)) and sent by `now`: liveness and
    /// keepalives count it as [`send`](Self::send) would.
    pub fn sent_elsewhere(&mut self, now: Instant) {
        self.note_sent(now);
    }

    fn note_sent(&mut self, now: Instant) {
        self.last_tx = Some(now);
        if self.awaiting_since.is_none() {
            self.awaiting_since = Some(now);
        }
    }
}
