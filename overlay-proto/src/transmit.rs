//! The outgoing datagram queue shared by the switch and node cores.
//!
//! Cores push sealed datagrams; shells drain them with `poll_transmit`-style
//! calls. Buffers are recycled through a free list, so a core in steady state
//! allocates nothing per packet.
use std::collections::VecDeque;
use std::net::SocketAddr;

/// Most segments merged into one entry (the kernel's UDP GSO limit is 64).
pub const MAX_BATCH_SEGMENTS: usize = 64;
/// Most bytes merged into one entry (one UDP GSO send carries at most 64 KiB).
pub const MAX_BATCH_BYTES: usize = 65535 - 40 - 8;
/// Spare buffers kept for reuse; beyond this they are freed, which bounds
/// the memory a burst can leave behind.
const MAX_FREE_BUFFERS: usize = 256;

/// One datagram, or a batch of datagrams to one destination, to send.
#[derive(Debug)]
pub struct Transmit<'a> {
    /// Where to.
    pub destination: SocketAddr,
    /// The UDP payload; with `segment_size`, several payloads back to back.
    pub contents: &'a [u8],
    /// `Some(n)`: `contents` is a batch of datagrams of `n` bytes each (the
    /// last may be shorter), for one UDP GSO send or a loop of sends.
    pub segment_size: Option<usize>,
}

impl Transmit<'_> {
    /// The datagrams in this transmit, one by one.
    pub fn datagrams(&self) -> std::slice::Chunks<'_, u8> {
        self.contents
            .chunks(self.segment_size.unwrap_or(self.contents.len()).max(1))
    }
}

/// A bounded FIFO of datagrams with recycled buffers.
#[derive(Debug)]
#[cfg_attr(fuzzing, derive(Clone))]
pub struct TxQueue {
    queue: VecDeque<(SocketAddr, Vec<u8>, Option<usize>)>,
    free: Vec<Vec<u8>>,
    in_flight: Option<Vec<u8>>,
    limit: usize,
}

impl TxQueue {
    /// A queue that holds at most `limit` datagrams.
    pub fn new(limit: usize) -> TxQueue {
        TxQueue {
            queue: VecDeque::new(),
            free: Vec::new(),
            in_flight: None,
            limit,
        }
    }

    /// True if another datagram would exceed the limit.
    pub fn is_full(&self) -> bool {
        self.queue.len() >= self.limit
    }

    /// Datagrams waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// True if nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// A buffer of at least `len` bytes, recycled if possible. Its contents
    /// are unspecified.
    pub fn buffer(&mut self, len: usize) -> Vec<u8> {
        let mut b = self.free.pop().unwrap_or_default();
        if b.len() < len {
            b.resize(len, 0);
        }
        b
    }

    /// Give a buffer back without sending it.
    pub fn recycle(&mut self, b: Vec<u8>) {
        if self.free.len() < MAX_FREE_BUFFERS {
            self.free.push(b);
        }
    }

    /// Queue `b` (its length is the datagram's) for `to`. If the previous
    /// entry goes to the same place and `b` can extend it as one more
    /// segment (all segments but the last of equal size), it is appended, so
    /// the shell sends both with one UDP GSO call.
    pub fn push(&mut self, to: SocketAddr, b: Vec<u8>) {
        // HOT PATH
        if let Some((dst, last, seg)) = self.queue.back_mut()
            && *dst == to
            && !last.is_empty()
        {
            let s = seg.unwrap_or(last.len());
            let count = last.len().div_ceil(s);
            let tail = last.len() - (count - 1) * s;
            if tail == s
                && !b.is_empty()
                && b.len() <= s
                && count < MAX_BATCH_SEGMENTS
                && last.len() + b.len() <= MAX_BATCH_BYTES
            {
                last.extend_from_slice(&b);
                *seg = Some(s);
                self.recycle(b);
                return;
            }
        }
        self.queue.push_back((to, b, None));
    }

    /// Queue a batch: `b` holds datagrams of `segment_size` bytes back to back
    /// (the last may be shorter), all for `to`.
    pub fn push_batch(&mut self, to: SocketAddr, b: Vec<u8>, segment_size: usize) {
        self.queue.push_back((to, b, Some(segment_size)));
    }

    /// The next datagram; its bytes stay valid until the next call.
    pub fn pop(&mut self) -> Option<Transmit<'_>> {
        if let Some(b) = self.in_flight.take() {
            self.recycle(b);
        }
        let (destination, b, segment_size) = self.queue.pop_front()?;
        let contents = &self.in_flight.insert(b)[..];
        Some(Transmit {
            destination,
            contents,
            segment_size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_recycles_buffers() {
        let to: SocketAddr = "198.18.0.1:1".parse().unwrap();
        let mut q = TxQueue::new(2);
        for i in 0..2u8 {
            let mut b = q.buffer(4);
            b[0] = i;
            b.truncate(1);
            q.push(to, b);
        }
        // Same destination, equal sizes: merged into one GSO batch.
        assert_eq!(q.len(), 1);
        let t = q.pop().unwrap();
        assert_eq!((t.contents, t.segment_size), (&[0u8, 1][..], Some(1)));
        assert!(q.pop().is_none());
        // Both buffers came back to the free list.
        assert_eq!(q.free.len(), 2);
        assert!(q.buffer(100).len() >= 100);
    }

    #[test]
    fn batches_only_what_gso_can_send() {
        let a: SocketAddr = "198.18.0.1:1".parse().unwrap();
        let b: SocketAddr = "198.18.0.2:1".parse().unwrap();
        let mut q = TxQueue::new(100);
        let dgram = |q: &mut TxQueue, n: usize| {
            let mut v = q.buffer(n);
            v.truncate(n);
            v
        };
        for (to, n) in [
            (a, 100),
            (a, 100),
            (a, 60),
            (a, 100),
            (b, 100),
            (b, 120),
            (a, 100),
        ] {
            let d = dgram(&mut q, n);
            q.push(to, d);
        }
        let mut got = Vec::new();
        while let Some(t) = q.pop() {
            got.push((t.destination, t.contents.len(), t.segment_size));
        }
        assert_eq!(
            got,
            vec![
                (a, 260, Some(100)), // 100 100 60: a shorter one ends the batch
                (a, 100, None),
                (b, 100, None), // a longer one cannot follow
                (b, 120, None),
                (a, 100, None),
            ]
        );
    }
}
