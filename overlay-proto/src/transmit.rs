//! The outgoing datagram queue shared by the switch and node cores.
//!
//! Cores push sealed datagrams; shells drain them with `poll_transmit`-style
//! calls. Buffers are recycled through a free list, so a core in steady state
//! allocates nothing per packet.
use std::collections::VecDeque;
use std::net::SocketAddr;

/// One datagram to send.
#[derive(Debug)]
pub struct Transmit<'a> {
    /// Where to.
    pub destination: SocketAddr,
    /// The UDP payload.
    pub contents: &'a [u8],
}

/// A bounded FIFO of datagrams with recycled buffers.
#[derive(Debug)]
pub struct TxQueue {
    queue: VecDeque<(SocketAddr, Vec<u8>)>,
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
        self.free.push(b);
    }

    /// Queue `b` (its length is the datagram's) for `to`.
    pub fn push(&mut self, to: SocketAddr, b: Vec<u8>) {
        self.queue.push_back((to, b));
    }

    /// The next datagram; its bytes stay valid until the next call.
    pub fn pop(&mut self) -> Option<Transmit<'_>> {
        if let Some(b) = self.in_flight.take() {
            self.free.push(b);
        }
        let (destination, b) = self.queue.pop_front()?;
        let contents = &self.in_flight.insert(b)[..];
        Some(Transmit {
            destination,
            contents,
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
        assert!(q.is_full());
        assert_eq!(q.pop().unwrap().contents, &[0]);
        assert_eq!(q.pop().unwrap().contents, &[1]);
        assert!(q.pop().is_none());
        // Both buffers came back to the free list.
        assert_eq!(q.free.len(), 2);
        assert!(q.buffer(100).len() >= 100);
    }
}
