//! Overlay fragmentation: a frame too large for one datagram on the underlay
//! travels as several data packets flagged [`crate::wire::FLAG_FRAGMENT`].
//! Each fragment is a complete, separately authenticated data packet (its own
//! counter, tag and replay check), so a forged or replayed fragment is refused
//! before it reaches reassembly, and only admitted peers can hold
//! reassembly memory at all. Its plaintext starts with:
//!
//! ```text
//! | frame_id:32 | offset:32 | total_len:32 | chunk ... |
//! ```
//!
//! `frame_id` is per sender and session direction; `offset` and `total_len`
//! are in bytes of the reassembled payload (which is what an unfragmented
//! packet would carry: the frame, with its virtio header if flagged).
//!
//! Reassembly is bounded: at most [`SLOTS`] frames in progress per peer, each
//! at most [`MAX_TOTAL`] bytes and [`MAX_FRAGMENTS`] pieces, each given up
//! after [`REASSEMBLY_TIMEOUT`]; overlapping or inconsistent fragments drop the
//! whole frame (as RFC 5722 does for IPv6), and every drop is reported.
use std::time::{Duration, Instant};

/// Bytes of fragment header at the start of a fragment's plaintext.
pub const FRAG_HEADER_LEN: usize = 12;
/// Frames being reassembled at once, per peer.
pub const SLOTS: usize = 4;
/// The largest reassembled payload: a 64 KiB GSO frame, its headers and the
/// virtio header, with room to spare.
pub const MAX_TOTAL: usize = 65536 + 256;
/// Most fragments one frame may have.
pub const MAX_FRAGMENTS: usize = 64;
/// A frame not complete after this long is dropped.
pub const REASSEMBLY_TIMEOUT: Duration = Duration::from_secs(1);

/// A parsed fragment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragHeader {
    /// Which frame (per sender).
    pub frame_id: u32,
    /// Where this chunk goes.
    pub offset: u32,
    /// The reassembled length.
    pub total: u32,
}

impl FragHeader {
    /// Split a fragment's plaintext into its header and chunk.
    pub fn parse(b: &[u8]) -> Option<(FragHeader, &[u8])> {
        if b.len() < FRAG_HEADER_LEN {
            return None;
        }
        let u = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Some((
            FragHeader {
                frame_id: u(0),
                offset: u(4),
                total: u(8),
            },
            &b[FRAG_HEADER_LEN..],
        ))
    }

    /// Write into the first [`FRAG_HEADER_LEN`] bytes of `b`.
    pub fn emit(&self, b: &mut [u8]) {
        b[0..4].copy_from_slice(&self.frame_id.to_be_bytes());
        b[4..8].copy_from_slice(&self.offset.to_be_bytes());
        b[8..12].copy_from_slice(&self.total.to_be_bytes());
    }
}

/// Why a fragment (and the frame it belonged to) was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FragError {
    /// Header missing, empty chunk, beyond `total`, `total` too large, or
    /// `total` differs from the frame's other fragments.
    Malformed,
    /// Overlaps a chunk already received: the frame is dropped.
    Overlap,
    /// More than [`MAX_FRAGMENTS`] pieces.
    TooMany,
}

#[derive(Debug)]
#[cfg_attr(fuzzing, derive(Clone))]
struct Slot {
    frame_id: u32,
    total: usize,
    received: usize,
    ranges: Vec<(usize, usize)>,
    buf: Vec<u8>,
    started: Instant,
    in_use: bool,
}

/// Reassembly state for one peer.
#[derive(Debug, Default)]
#[cfg_attr(fuzzing, derive(Clone))]
pub struct Reassembler {
    slots: Vec<Slot>,
    done: Vec<u8>,
    /// Frames dropped because they timed out or were evicted by newer ones.
    pub incomplete_dropped: u64,
}

impl Reassembler {
    /// Add one authenticated fragment. Returns the whole payload when this
    /// fragment completes it; it stays valid until the next call.
    pub fn push(
        &mut self,
        now: Instant,
        h: FragHeader,
        chunk: &[u8],
    ) -> Result<Option<&[u8]>, FragError> {
        let total = h.total as usize;
        let off = h.offset as usize;
        if chunk.is_empty() || total > MAX_TOTAL || off + chunk.len() > total {
            return Err(FragError::Malformed);
        }
        self.expire(now);
        let i = match self
            .slots
            .iter()
            .position(|s| s.in_use && s.frame_id == h.frame_id)
        {
            Some(i) => i,
            None => self.claim(now, h.frame_id, total),
        };
        let slot = &mut self.slots[i];
        if slot.total != total {
            slot.in_use = false;
            return Err(FragError::Malformed);
        }
        let end = off + chunk.len();
        if slot.ranges.iter().any(|&(a, b)| off < b && a < end) {
            slot.in_use = false;
            return Err(FragError::Overlap);
        }
        if slot.ranges.len() >= MAX_FRAGMENTS {
            slot.in_use = false;
            return Err(FragError::TooMany);
        }
        slot.ranges.push((off, end));
        slot.buf[off..end].copy_from_slice(chunk);
        slot.received += chunk.len();
        if slot.received < total {
            return Ok(None);
        }
        slot.in_use = false;
        std::mem::swap(&mut self.done, &mut slot.buf);
        Ok(Some(&self.done[..total]))
    }

    fn claim(&mut self, now: Instant, frame_id: u32, total: usize) -> usize {
        let i = match self.slots.iter().position(|s| !s.in_use) {
            Some(i) => i,
            None if self.slots.len() < SLOTS => {
                self.slots.push(Slot {
                    frame_id,
                    total,
                    received: 0,
                    ranges: Vec::with_capacity(MAX_FRAGMENTS),
                    buf: Vec::new(),
                    started: now,
                    in_use: false,
                });
                self.slots.len() - 1
            }
            None => {
                // All busy: the oldest frame gives way.
                self.incomplete_dropped += 1;
                let (i, _) = self
                    .slots
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, s)| s.started)
                    .expect("SLOTS > 0");
                i
            }
        };
        let s = &mut self.slots[i];
        s.frame_id = frame_id;
        s.total = total;
        s.received = 0;
        s.ranges.clear();
        if s.buf.len() < total {
            // Exactly: `resize` alone grows by doubling, and a slot that held
            // a 40 KB frame would take 80 KB for the next, above the bound
            // `memory` promises.
            s.buf.reserve_exact(total - s.buf.len());
            s.buf.resize(total, 0);
        }
        s.started = now;
        s.in_use = true;
        i
    }

    /// Drop frames older than [`REASSEMBLY_TIMEOUT`]. Returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut n = 0;
        for s in &mut self.slots {
            if s.in_use && now.saturating_duration_since(s.started) >= REASSEMBLY_TIMEOUT {
                s.in_use = false;
                n += 1;
            }
        }
        self.incomplete_dropped += n as u64;
        n
    }

    /// Bytes of buffer held (bounded by `(SLOTS + 1) * MAX_TOTAL`).
    pub fn memory(&self) -> usize {
        self.slots.iter().map(|s| s.buf.capacity()).sum::<usize>() + self.done.capacity()
    }
}

/// Cut `payload` into chunks of at most `chunk` bytes, with their headers.
pub fn split(
    payload: &[u8],
    frame_id: u32,
    chunk: usize,
) -> impl Iterator<Item = (FragHeader, &[u8])> {
    let total = payload.len() as u32;
    payload.chunks(chunk.max(1)).enumerate().map(move |(i, c)| {
        (
            FragHeader {
                frame_id,
                offset: (i * chunk.max(1)) as u32,
                total,
            },
            c,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7) as u8).collect()
    }

    #[test]
    fn header_byte_vector() {
        let mut b = [0u8; 12];
        FragHeader {
            frame_id: 1,
            offset: 0x0102,
            total: 0x0a0b0c,
        }
        .emit(&mut b);
        assert_eq!(b, [0, 0, 0, 1, 0, 0, 1, 2, 0, 0x0a, 0x0b, 0x0c]);
        assert_eq!(FragHeader::parse(&b).unwrap().0.total, 0x0a0b0c);
        assert!(FragHeader::parse(&b[..11]).is_none());
    }

    #[test]
    fn reassembles_in_any_order() {
        let t0 = Instant::now();
        let p = payload(5000);
        let mut frags: Vec<_> = split(&p, 9, 1400).collect();
        assert_eq!(frags.len(), 4);
        frags.reverse();
        let mut r = Reassembler::default();
        for (k, (h, c)) in frags.iter().enumerate() {
            let got = r.push(t0, *h, c).unwrap();
            if k < 3 {
                assert!(got.is_none());
            } else {
                assert_eq!(got.unwrap(), &p[..]);
            }
        }
    }

    #[test]
    fn overlap_and_inconsistency_drop_the_frame() {
        let t0 = Instant::now();
        let p = payload(3000);
        let frags: Vec<_> = split(&p, 1, 1000).collect();
        let mut r = Reassembler::default();
        r.push(t0, frags[0].0, frags[0].1).unwrap();
        let overlapping = FragHeader {
            offset: 500,
            ..frags[1].0
        };
        assert_eq!(r.push(t0, overlapping, frags[1].1), Err(FragError::Overlap));
        // The frame is gone: the rest never completes it.
        assert!(r.push(t0, frags[1].0, frags[1].1).unwrap().is_none());
        let other_total = FragHeader {
            total: 2999,
            ..frags[2].0
        };
        assert_eq!(
            r.push(t0, other_total, frags[2].1),
            Err(FragError::Malformed)
        );
        let beyond = FragHeader {
            offset: 2999,
            ..frags[2].0
        };
        assert_eq!(r.push(t0, beyond, frags[2].1), Err(FragError::Malformed));
        let huge = FragHeader {
            total: (MAX_TOTAL + 1) as u32,
            offset: 0,
            frame_id: 5,
        };
        assert_eq!(r.push(t0, huge, b"x"), Err(FragError::Malformed));
    }

    #[test]
    fn a_slot_never_holds_more_than_max_total() {
        // Found by the `reassembly` fuzz target: a slot reused for a larger
        // frame doubled its buffer (40,000 -> 80,000 bytes).
        let t0 = Instant::now();
        let mut r = Reassembler::default();
        let h = |frame_id, total| FragHeader {
            frame_id,
            offset: 0,
            total,
        };
        assert!(r.push(t0, h(1, 40_000), b"x").unwrap().is_none());
        let t1 = t0 + REASSEMBLY_TIMEOUT;
        assert!(r.push(t1, h(2, MAX_TOTAL as u32), b"x").unwrap().is_none());
        assert_eq!(r.incomplete_dropped, 1);
        assert!(r.memory() <= MAX_TOTAL, "{} bytes", r.memory());
    }

    #[test]
    fn first_fragment_flood_stays_bounded_and_times_out() {
        let t0 = Instant::now();
        let mut r = Reassembler::default();
        for id in 0..100_000u32 {
            let h = FragHeader {
                frame_id: id,
                offset: 0,
                total: MAX_TOTAL as u32,
            };
            assert!(r.push(t0, h, &[1; 1000]).unwrap().is_none());
        }
        assert!(r.memory() <= (SLOTS + 1) * MAX_TOTAL);
        assert_eq!(r.incomplete_dropped, 100_000 - SLOTS as u64);
        assert_eq!(r.expire(t0 + REASSEMBLY_TIMEOUT), SLOTS);
    }
}
