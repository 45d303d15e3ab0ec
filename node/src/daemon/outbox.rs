//! The datagrams one drain of the TAP (or of the VM ports) sealed in place,
//! waiting to go out together when the drain ends.
//!
//! Consecutive datagrams of equal size to the same place merge into one UDP
//! GSO send (the [`TxQueue`]); what does not merge (frames of different
//! sizes, mesh peers) is still kept until the drain ends or the queue is
//! full, and then leaves with as few system calls as the kernel allows:
//! single datagrams many per `sendmmsg` ([`SendBatch`]). Nothing is sent per
//! frame.
use std::net::SocketAddr;

use overlay_proto::transmit::TxQueue;
use tapmesh_shell::udp::{SendBatch, UdpLink};

/// Sealed datagrams of one drain.
#[derive(Debug)]
pub(super) struct Outbox {
    queue: TxQueue,
    sends: SendBatch,
}

impl Outbox {
    /// An outbox that holds at most `limit` queue entries before it must be sent.
    pub(super) fn new(limit: usize) -> Outbox {
        Outbox {
            queue: TxQueue::new(limit),
            sends: SendBatch::default(),
        }
    }

    /// Queue a copy of `datagram` for `to`. Returns true once the outbox is
    /// full and must be sent before the next push.
    pub(super) fn push(&mut self, to: SocketAddr, datagram: &[u8]) -> bool {
        // HOT PATH
        let len = datagram.len();
        let mut d = self.queue.buffer(len);
        d[..len].copy_from_slice(datagram);
        d.truncate(len);
        self.queue.push(to, d);
        self.queue.is_full()
    }

    /// Send everything queued, in order.
    pub(super) async fn send_all(&mut self, udp: &UdpLink) {
        while let Some(t) = self.queue.pop() {
            self.sends.send(udp, &t).await;
        }
        self.sends.flush(udp).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames of growing sizes (no two can share a GSO batch) do not make
    /// the drain send per frame: they wait until the queue is full.
    #[test]
    fn mixed_sizes_wait_until_the_queue_is_full() {
        let switch: SocketAddr = "198.18.0.1:7777".parse().unwrap();
        let mut out = Outbox::new(4);
        for (k, len) in [84usize, 100, 120, 140].into_iter().enumerate() {
            let full = out.push(switch, &vec![k as u8; len]);
            assert_eq!(full, k == 3, "after datagram {k}");
        }
        let mut got = Vec::new();
        while let Some(t) = out.queue.pop() {
            got.push((t.contents.len(), t.segment_size, t.contents[0]));
        }
        assert_eq!(
            got,
            [
                (84, None, 0),
                (100, None, 1),
                (120, None, 2),
                (140, None, 3)
            ]
        );
    }

    /// Equal sizes to one place still merge into one GSO batch.
    #[test]
    fn equal_sizes_merge_into_one_entry() {
        let switch: SocketAddr = "198.18.0.1:7777".parse().unwrap();
        let mut out = Outbox::new(4);
        for k in 0..10u8 {
            assert!(!out.push(switch, &[k; 84]));
        }
        let t = out.queue.pop().unwrap();
        assert_eq!((t.contents.len(), t.segment_size), (840, Some(84)));
        assert!(out.queue.pop().is_none());
    }
}
