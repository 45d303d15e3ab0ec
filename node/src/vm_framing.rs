//! The framing of QEMU's `-netdev stream` (and the older `-netdev socket`):
//! each Ethernet frame is preceded by its length as a 4-byte big-endian
//! integer (QEMU `net/stream.c`, `net_stream_receive`, and the shared
//! `net_fill_rstate` reader in `net/net.c`). `-netdev dgram` needs no framing:
//! one datagram is one frame.
//!
//! The decoder is sans-IO and never trusts the peer: a frame shorter than an
//! Ethernet header or longer than the port takes is skipped (its bytes are
//! consumed without being buffered) and reported, so the stream stays in
//! step; a length no QEMU would send means the stream is garbage or out of
//! step, and the shell closes that connection (the node itself carries on).
use crate::counters::DropReason;

/// Bytes of the length prefix.
pub const LEN_PREFIX: usize = 4;

/// The longest length accepted as a frame QEMU could send and skipped if
/// over the port's limit: QEMU's `NET_BUFSIZE` (4096 + 65536) bounds what
/// its stream reader accepts.
pub const MAX_SANE_LEN: usize = 4096 + 65536;

/// Why a frame of `len` bytes from a VM is dropped at a port that takes
/// frames of at most `max_frame` bytes, if it is.
pub fn bad_len(len: usize, max_frame: usize) -> Option<DropReason> {
    if len < overlay_proto::ethernet::HEADER_LEN {
        Some(DropReason::Runt)
    } else if len > max_frame {
        Some(DropReason::Oversize)
    } else {
        None
    }
}

/// What [`StreamDecoder::next`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A complete frame.
    Frame(&'a [u8]),
    /// A frame that was skipped: too short or too long (count it).
    Dropped(DropReason),
    /// A length no QEMU sends: close the connection.
    Garbage,
}

/// Reassembles frames from stream reads.
#[derive(Debug)]
pub struct StreamDecoder {
    buf: Vec<u8>,
    /// Where undecoded bytes start in `buf`.
    start: usize,
    /// Bytes still to discard of a frame being skipped.
    skip: usize,
    max_frame: usize,
    broken: bool,
}

impl StreamDecoder {
    /// A decoder for frames of at most `max_frame` bytes.
    pub fn new(max_frame: usize) -> StreamDecoder {
        StreamDecoder {
            buf: Vec::with_capacity(LEN_PREFIX + max_frame),
            start: 0,
            skip: 0,
            max_frame,
            broken: false,
        }
    }

    /// Append bytes read from the stream. Call [`next`](Self::next) until
    /// it returns `None` before pushing more.
    pub fn push(&mut self, data: &[u8]) {
        if self.broken {
            return;
        }
        // Discard what was consumed, so the buffer holds at most one frame
        // plus one read.
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let skipped = self.skip.min(data.len());
        self.skip -= skipped;
        self.buf.extend_from_slice(&data[skipped..]);
    }

    /// The next complete frame or event, or `None` if more bytes are needed.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Decoded<'_>> {
        if self.broken {
            return None;
        }
        let rest = &self.buf[self.start..];
        if rest.len() < LEN_PREFIX {
            return None;
        }
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len > MAX_SANE_LEN {
            self.broken = true;
            self.buf.clear();
            self.start = 0;
            return Some(Decoded::Garbage);
        }
        if let Some(reason) = bad_len(len, self.max_frame) {
            // Skip it: what is buffered now, and the rest as it arrives.
            let have = rest.len() - LEN_PREFIX;
            let now = have.min(len);
            self.start += LEN_PREFIX + now;
            self.skip = len - now;
            return Some(Decoded::Dropped(reason));
        }
        if rest.len() < LEN_PREFIX + len {
            return None;
        }
        let at = self.start + LEN_PREFIX;
        self.start = at + len;
        Some(Decoded::Frame(&self.buf[at..at + len]))
    }

    /// Whether the stream turned out to be garbage.
    pub fn is_broken(&self) -> bool {
        self.broken
    }
}

/// The length prefix for a frame of `len` bytes.
pub fn prefix(len: usize) -> [u8; LEN_PREFIX] {
    (len as u32).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(frames: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for f in frames {
            v.extend_from_slice(&prefix(f.len()));
            v.extend_from_slice(f);
        }
        v
    }

    /// Decode `bytes` pushed in chunks of `step`.
    fn decode(bytes: &[u8], step: usize) -> Vec<Result<Vec<u8>, String>> {
        let mut d = StreamDecoder::new(1514);
        let mut got = Vec::new();
        for chunk in bytes.chunks(step) {
            d.push(chunk);
            got.extend(drain(&mut d));
        }
        got
    }

    fn drain(d: &mut StreamDecoder) -> Vec<Result<Vec<u8>, String>> {
        let mut out = Vec::new();
        while let Some(x) = d.next() {
            out.push(match x {
                Decoded::Frame(f) => Ok(f.to_vec()),
                Decoded::Dropped(r) => Err(format!("{r:?}")),
                Decoded::Garbage => Err("garbage".into()),
            });
        }
        out
    }

    #[test]
    fn frames_split_anywhere() {
        let a = [1u8; 60];
        let b = [2u8; 1514];
        let bytes = framed(&[&a, &b, &a]);
        for step in [1, 3, 4, 5, 64, 1000, bytes.len()] {
            let mut d = StreamDecoder::new(1514);
            let mut got = Vec::new();
            for chunk in bytes.chunks(step) {
                d.push(chunk);
                got.extend(drain(&mut d));
            }
            assert_eq!(
                got,
                vec![Ok(a.to_vec()), Ok(b.to_vec()), Ok(a.to_vec())],
                "step {step}"
            );
        }
    }

    #[test]
    fn bad_lengths_are_skipped_and_garbage_stops() {
        let good = [7u8; 64];
        let big = vec![9u8; 3000];
        let bytes = framed(&[&[0u8; 5], &big, &good]);
        for step in [1, 7, 2000, bytes.len()] {
            let got = decode(&bytes, step);
            assert_eq!(
                got,
                vec![
                    Err("Runt".into()),
                    Err("Oversize".into()),
                    Ok(good.to_vec())
                ],
                "step {step}"
            );
        }
        let mut d = StreamDecoder::new(1514);
        d.push(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
        assert_eq!(d.next(), Some(Decoded::Garbage));
        assert!(d.is_broken());
        d.push(&framed(&[&good]));
        assert_eq!(d.next(), None);
    }
}
