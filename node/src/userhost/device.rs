//! smoltcp's `phy::Device` over two in-memory queues: frames the node hands
//! the host wait in `rx`, frames smoltcp emits wait in `tx` until the caller
//! takes them. Both are bounded: when `tx` is full, `transmit` says so and
//! smoltcp keeps the segment for a later poll (its own backpressure).
use std::collections::VecDeque;

use smoltcp::phy::{self, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// Ethernet header length: smoltcp's `max_transmission_unit` counts it.
pub const ETHERNET_HEADER_LEN: usize = 14;

/// In-memory frame queues with a size limit each.
#[derive(Debug)]
pub struct QueueDevice {
    rx: VecDeque<Vec<u8>>,
    tx: VecDeque<Vec<u8>>,
    limit: usize,
    mtu: usize,
}

impl QueueDevice {
    /// Queues of at most `limit` frames each, for an IP MTU of `mtu`.
    pub fn new(mtu: usize, limit: usize) -> QueueDevice {
        QueueDevice {
            rx: VecDeque::new(),
            tx: VecDeque::new(),
            limit,
            mtu,
        }
    }

    /// Queue a received frame; false (and nothing queued) if `rx` is full.
    pub fn push_rx(&mut self, frame: &[u8]) -> bool {
        if self.rx.len() >= self.limit {
            return false;
        }
        self.rx.push_back(frame.to_vec());
        true
    }

    /// The oldest frame smoltcp sent.
    pub fn pop_tx(&mut self) -> Option<Vec<u8>> {
        self.tx.pop_front()
    }
}

impl phy::Device for QueueDevice {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken, TxToken<'_>)> {
        // A received frame may need an answer (ARP, echo): only hand it over
        // when there is room for one.
        if self.tx.len() >= self.limit {
            return None;
        }
        let frame = self.rx.pop_front()?;
        Some((
            RxToken { frame },
            TxToken {
                queue: &mut self.tx,
            },
        ))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
        (self.tx.len() < self.limit).then_some(TxToken {
            queue: &mut self.tx,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.mtu + ETHERNET_HEADER_LEN;
        // Frames come from other hosts over the LAN: verify every checksum.
        caps.checksum = ChecksumCapabilities::default();
        caps
    }
}

/// One received frame.
#[derive(Debug)]
pub struct RxToken {
    frame: Vec<u8>,
}

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.frame)
    }
}

/// Room for one frame in the transmit queue.
#[derive(Debug)]
pub struct TxToken<'a> {
    queue: &'a mut VecDeque<Vec<u8>>,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0u8; len];
        let r = f(&mut frame);
        self.queue.push_back(frame);
        r
    }
}
