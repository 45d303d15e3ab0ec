//! One established session: the indices both sides chose, the send counter,
//! one AES-256-GCM key per direction, and the receive replay window.
//!
//! Packets are built and opened in place. To send, the caller puts the
//! Ethernet frame at `buf[DATA_HEADER_LEN..]`, leaving [`AEAD_TAG_LEN`] bytes of
//! room after it, and calls [`Session::seal`]; the header is written in front
//! and the tag behind. To receive, [`Session::open`] decrypts in place and
//! returns where the frame is.
//!
//! The sending half ([`Sender`]) can be shared: [`Session::sender`] hands out
//! a handle with the same read-only key and the same atomic send counter, so
//! several threads seal under one session and every counter (the AES-GCM
//! nonce) is still used once.
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::Error;
use crate::crypto::DataCipher;
use crate::frag::{FRAG_HEADER_LEN, FragHeader, MAX_FRAGMENTS, MAX_TOTAL};
use crate::handshake::SessionKeys;
use crate::receiver::Receiver;
use crate::timers::{
    REJECT_AFTER_MESSAGES, REJECT_AFTER_TIME, REKEY_AFTER_MESSAGES, REKEY_AFTER_TIME,
};
use crate::wire::{AEAD_TAG_LEN, DATA_HEADER_LEN, FLAG_FRAGMENT, Header, MessageType};

/// A live session with one peer.
#[derive(Debug)]
pub struct Session {
    local_index: u32,
    send: Sender,
    /// Shared with the switch's workers (see [`crate::receiver`]).
    recv: Arc<Receiver>,
}

#[cfg(fuzzing)]
impl Clone for Session {
    /// A deep copy: cloned cores share neither receive windows nor counters.
    fn clone(&self) -> Session {
        Session {
            local_index: self.local_index,
            send: self.send.clone(),
            recv: Arc::new((*self.recv).clone()),
        }
    }
}

/// The sending half of a [`Session`]: its key, read-only after the
/// handshake, and its send counter, shared by every handle
/// ([`Session::sender`]) and advanced atomically, so no counter is used twice
/// whichever thread seals.
#[derive(Debug)]
pub struct Sender {
    remote_index: u32,
    network_id: u32,
    cipher: Arc<DataCipher>,
    counter: Arc<AtomicU64>,
    created: Instant,
}

/// Cloned cores (fuzzing) get their own counter, as they got their own
/// session before the counter could be shared.
#[cfg(fuzzing)]
impl Clone for Sender {
    fn clone(&self) -> Sender {
        Sender {
            cipher: Arc::new((*self.cipher).clone()),
            counter: Arc::new(AtomicU64::new(self.counter.load(Ordering::Relaxed))),
            ..*self
        }
    }
}

impl Session {
    /// A session from a finished handshake, created at `now`.
    pub fn new(
        keys: SessionKeys,
        local_index: u32,
        remote_index: u32,
        network_id: u32,
        now: Instant,
    ) -> Session {
        Session {
            local_index,
            send: Sender {
                remote_index,
                network_id,
                cipher: Arc::new(DataCipher::new(&keys.send)),
                counter: Arc::new(AtomicU64::new(0)),
                created: now,
            },
            recv: Arc::new(Receiver::new(&keys.recv, local_index, now)),
        }
    }

    /// A handle on this session's sending half, for another thread: same
    /// key, same counter.
    pub fn sender(&self) -> Sender {
        Sender {
            cipher: Arc::clone(&self.send.cipher),
            counter: Arc::clone(&self.send.counter),
            ..self.send
        }
    }

    /// The index this side chose (peers put it in packets they send us).
    pub fn local_index(&self) -> u32 {
        self.local_index
    }

    /// The index the peer chose (we put it in packets we send).
    pub fn remote_index(&self) -> u32 {
        self.send.remote_index
    }

    /// The receive half, for opening on other threads (see
    /// [`crate::receiver`]); it lives as long as the session holds it.
    pub fn receiver(&self) -> &Arc<Receiver> {
        &self.recv
    }

    /// When the handshake finished.
    pub fn created(&self) -> Instant {
        self.send.created
    }

    /// How long ago the handshake finished.
    pub fn age(&self, now: Instant) -> Duration {
        self.send.age(now)
    }

    /// Packets sent so far (by every handle on the sending half).
    pub fn sent(&self) -> u64 {
        self.send.sent()
    }

    /// Too old or too used to send or receive on.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.send.is_expired(now)
    }

    /// The initiator should start a new handshake.
    pub fn needs_rekey(&self, now: Instant) -> bool {
        self.age(now) >= REKEY_AFTER_TIME || self.sent() >= REKEY_AFTER_MESSAGES
    }

    /// Seal the `payload_len` bytes at `buf[DATA_HEADER_LEN..]`
    /// ([`Sender::seal`]).
    pub fn seal(&mut self, flags: u8, buf: &mut [u8], payload_len: usize) -> Result<usize, Error> {
        // HOT PATH
        self.send.seal(flags, buf, payload_len)
    }

    /// Seal a payload as one datagram or fragments ([`Sender::seal_frame`]).
    pub fn seal_frame(
        &mut self,
        flags: u8,
        parts: &[&[u8]],
        max_datagram: usize,
        frame_id: &mut u32,
        out: &mut Vec<u8>,
    ) -> Result<Option<usize>, Error> {
        // HOT PATH
        self.send
            .seal_frame(flags, parts, max_datagram, frame_id, out)
    }

    /// Verify and decrypt a data datagram in place. The caller has checked the
    /// header and picked this session by its receiver index. Returns the
    /// range of `buf` holding the plaintext frame (empty for a keepalive).
    pub fn open(&mut self, buf: &mut [u8]) -> Result<Range<usize>, Error> {
        // HOT PATH
        self.recv.open(buf)
    }
}

impl Sender {
    /// How long ago the handshake finished.
    pub fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.created)
    }

    /// Packets sent so far (by every handle).
    pub fn sent(&self) -> u64 {
        self.counter.load(Ordering::Relaxed)
    }

    /// Too old or too used to send on.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.age(now) >= REJECT_AFTER_TIME || self.sent() >= REJECT_AFTER_MESSAGES
    }

    /// Seal the `payload_len` bytes at `buf[DATA_HEADER_LEN..]`: write the
    /// header, encrypt in place, append the tag. Returns the datagram length.
    pub fn seal(&self, flags: u8, buf: &mut [u8], payload_len: usize) -> Result<usize, Error> {
        // HOT PATH
        let total = DATA_HEADER_LEN + payload_len + AEAD_TAG_LEN;
        if buf.len() < total {
            return Err(Error::BufferTooSmall);
        }
        // Each caller takes its own counter; one past the limit stays past it.
        let counter = self.counter.fetch_add(1, Ordering::Relaxed);
        if counter >= REJECT_AFTER_MESSAGES {
            return Err(Error::CounterExhausted);
        }
        let (head, rest) = buf.split_at_mut(DATA_HEADER_LEN);
        let mut h = Header::new_unchecked(&mut head[..]);
        h.set_common(MessageType::Data, flags, 0, self.network_id);
        h.set_data_fields(self.remote_index, counter);
        let (payload, tail) = rest.split_at_mut(payload_len);
        let tag = self.cipher.seal(counter, head, payload);
        tail[..AEAD_TAG_LEN].copy_from_slice(&tag);
        Ok(total)
    }

    /// Seal a payload given in `parts` (e.g. a virtio header and a frame) for
    /// a path whose datagrams may be at most `max_datagram` bytes: as one
    /// datagram if it fits, else as fragments (see [`crate::frag`]) of exactly
    /// `max_datagram` bytes each but the last, back to back in `out`, ready
    /// for one UDP GSO send. Returns the datagrams' length stride: `None` for
    /// a single datagram, `Some(max_datagram)` for a batch. `frame_id` is the
    /// sender's fragment id counter for this peer. `flags` may include
    /// `FLAG_VNET`; `FLAG_FRAGMENT` is added as needed.
    pub fn seal_frame(
        &self,
        flags: u8,
        parts: &[&[u8]],
        max_datagram: usize,
        frame_id: &mut u32,
        out: &mut Vec<u8>,
    ) -> Result<Option<usize>, Error> {
        // HOT PATH
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let overhead = DATA_HEADER_LEN + AEAD_TAG_LEN;
        if total + overhead <= max_datagram {
            out.resize(total + overhead, 0);
            let mut at = DATA_HEADER_LEN;
            for p in parts {
                out[at..at + p.len()].copy_from_slice(p);
                at += p.len();
            }
            self.seal(flags, out, total)?;
            return Ok(None);
        }
        let chunk = max_datagram
            .checked_sub(overhead + FRAG_HEADER_LEN)
            .filter(|c| *c > 0)
            .ok_or(Error::BufferTooSmall)?;
        let count = total.div_ceil(chunk);
        if total > MAX_TOTAL || count > MAX_FRAGMENTS {
            return Err(Error::BufferTooSmall);
        }
        let last = total - (count - 1) * chunk;
        out.resize(
            (count - 1) * max_datagram + last + FRAG_HEADER_LEN + overhead,
            0,
        );
        let id = *frame_id;
        *frame_id = frame_id.wrapping_add(1);
        // Copy the payload, chunk by chunk, into place behind each fragment header.
        let (mut part, mut in_part) = (0usize, 0usize);
        for i in 0..count {
            let n = if i + 1 == count { last } else { chunk };
            let base = i * max_datagram;
            let d = &mut out[base..base + n + FRAG_HEADER_LEN + overhead];
            FragHeader {
                frame_id: id,
                offset: (i * chunk) as u32,
                total: total as u32,
            }
            .emit(&mut d[DATA_HEADER_LEN..]);
            let mut at = DATA_HEADER_LEN + FRAG_HEADER_LEN;
            let mut need = n;
            while need > 0 {
                let src = &parts[part][in_part..];
                let k = src.len().min(need);
                d[at..at + k].copy_from_slice(&src[..k]);
                at += k;
                need -= k;
                in_part += k;
                if in_part == parts[part].len() {
                    part += 1;
                    in_part = 0;
                }
            }
            self.seal(flags | FLAG_FRAGMENT, d, n + FRAG_HEADER_LEN)?;
        }
        Ok(Some(max_datagram))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::{seal_datagram as packet, session_pair as pair};

    #[test]
    fn seal_open_round_trip_and_replay() {
        let t0 = Instant::now();
        let (mut a, mut b) = pair(t0);
        let p = packet(&mut a, b"hello frame");
        assert_eq!(Header::new_checked(&p[..]).unwrap().receiver_index(), 20);
        let mut q = p.clone();
        let r = b.open(&mut q).unwrap();
        assert_eq!(&q[r], b"hello frame");
        let mut q = p.clone();
        assert_eq!(b.open(&mut q), Err(Error::Replay));
    }

    #[test]
    fn forged_packet_does_not_move_window() {
        let t0 = Instant::now();
        let (mut a, mut b) = pair(t0);
        let good = packet(&mut a, b"x");
        // Forge counter 5000 with a garbage tag: refused, and the real counter 0 still accepted.
        let mut forged = good.clone();
        forged[12..20].copy_from_slice(&5000u64.to_be_bytes());
        assert_eq!(b.open(&mut forged), Err(Error::BadTag));
        let mut g = good.clone();
        assert!(b.open(&mut g).is_ok());
    }

    #[test]
    fn keepalive_is_empty() {
        let t0 = Instant::now();
        let (mut a, mut b) = pair(t0);
        let mut p = packet(&mut a, b"");
        assert_eq!(p.len(), 36);
        assert!(b.open(&mut p).unwrap().is_empty());
    }

    #[test]
    fn rekey_and_expiry_times() {
        let t0 = Instant::now();
        let (a, _) = pair(t0);
        assert!(!a.needs_rekey(t0 + Duration::from_secs(119)));
        assert!(a.needs_rekey(t0 + REKEY_AFTER_TIME));
        assert!(!a.is_expired(t0 + Duration::from_secs(179)));
        assert!(a.is_expired(t0 + REJECT_AFTER_TIME));
    }

    #[test]
    fn seal_frame_fits_or_fragments_and_reassembles() {
        use crate::frag::Reassembler;
        let t0 = Instant::now();
        let (mut a, mut b) = pair(t0);
        let hdr = [9u8; 10];
        let frame: Vec<u8> = (0..5000).map(|i| i as u8).collect();
        let mut out = Vec::new();
        let mut id = 7;
        // Fits: one datagram.
        assert_eq!(
            a.seal_frame(0, &[&hdr, &frame[..100]], 1472, &mut id, &mut out)
                .unwrap(),
            None
        );
        assert_eq!(out.len(), 110 + 36);
        let r = b.open(&mut out).unwrap();
        assert_eq!(&out[r.clone()][..10], &hdr);
        assert_eq!(&out[r][10..], &frame[..100]);
        // Too big: fragments of exactly 1472 bytes but the last.
        let stride = a
            .seal_frame(0, &[&hdr, &frame], 1472, &mut id, &mut out)
            .unwrap();
        assert_eq!(stride, Some(1472));
        assert_eq!(id, 8);
        let mut re = Reassembler::default();
        let mut whole = None;
        let copy = out.clone();
        for d in copy.chunks(1472) {
            let mut d = d.to_vec();
            let h = Header::new_checked(&d[..]).unwrap();
            assert_eq!(h.flags() & FLAG_FRAGMENT, FLAG_FRAGMENT);
            let r = b.open(&mut d).unwrap();
            let (fh, chunk) = FragHeader::parse(&d[r]).unwrap();
            assert_eq!(fh.frame_id, 7);
            if let Some(p) = re.push(t0, fh, chunk).unwrap() {
                whole = Some(p.to_vec());
            }
        }
        let whole = whole.expect("reassembled");
        assert_eq!(&whole[..10], &hdr);
        assert_eq!(&whole[10..], &frame[..]);
    }

    #[test]
    fn senders_on_several_threads_never_reuse_a_counter() {
        let t0 = Instant::now();
        let (mut a, mut b) = pair(t0);
        let per_thread = 2000;
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let s = a.sender();
                std::thread::spawn(move || {
                    (0..per_thread)
                        .map(|i: u32| {
                            let frame = i.to_be_bytes();
                            let mut buf = vec![0u8; DATA_HEADER_LEN + 4 + AEAD_TAG_LEN];
                            buf[DATA_HEADER_LEN..DATA_HEADER_LEN + 4].copy_from_slice(&frame);
                            s.seal(0, &mut buf, 4).unwrap();
                            buf
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        // The session itself seals too, at the same time.
        let own: Vec<_> = (0..per_thread).map(|_| packet(&mut a, b"core")).collect();
        let mut all: Vec<Vec<u8>> = own;
        for t in threads {
            all.extend(t.join().unwrap());
        }
        let mut counters: Vec<u64> = all
            .iter()
            .map(|p| Header::new_checked(&p[..]).unwrap().counter())
            .collect();
        counters.sort_unstable();
        counters.dedup();
        assert_eq!(counters.len(), all.len(), "a counter was used twice");
        assert_eq!(a.sent(), all.len() as u64);
        // Every packet opens once (in counter order: the threads' packets
        // are further apart than the replay window would take).
        all.sort_by_key(|p| Header::new_checked(&p[..]).unwrap().counter());
        for mut p in all {
            assert!(b.open(&mut p).is_ok());
        }
    }

    #[test]
    fn small_buffer_is_an_error() {
        let (mut a, _) = pair(Instant::now());
        let mut buf = [0u8; 40];
        assert_eq!(a.seal(0, &mut buf, 10), Err(Error::BufferTooSmall));
    }
}
#[cfg(test)]
mod seal_frame_more {
    use super::*;
    use crate::testing::SessionPair;
    #[test]
    fn empty_first_part_and_reused_buffer() {
        let t0 = Instant::now();
        let (mut a, mut b) = SessionPair {
            a_index: 1,
            b_index: 2,
            ..SessionPair::default()
        }
        .build(t0);
        let frame: Vec<u8> = (0..9014).map(|i| i as u8).collect();
        let mut out = vec![0xee; 20000];
        let mut id = 0;
        let stride = a
            .seal_frame(0, &[&[], &frame], 1472, &mut id, &mut out)
            .unwrap()
            .unwrap();
        for (i, d) in out.clone().chunks(stride).enumerate() {
            let mut d = d.to_vec();
            assert!(
                b.open(&mut d).is_ok(),
                "fragment {i} of {}",
                out.len().div_ceil(stride)
            );
        }
    }
}
