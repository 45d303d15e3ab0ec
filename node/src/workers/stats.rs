//! A worker's counters: atomics the worker adds to, read into the node's
//! status (same counters and drop reasons as the node task's own).
use std::sync::atomic::{AtomicU64, Ordering};

use overlay_proto::counters::{MAX_REASONS, Reason};

use crate::counters::DropReason;
use crate::engine::Status;

/// One worker's counts.
#[derive(Debug, Default)]
pub struct Stats {
    tap_rx_frames: AtomicU64,
    tap_rx_bytes: AtomicU64,
    udp_tx_datagrams: AtomicU64,
    drops: [AtomicU64; MAX_REASONS],
}

impl Stats {
    /// A frame of `bytes` read from the TAP and sealed as `datagrams`.
    pub fn sealed(&self, bytes: usize, datagrams: usize) {
        // HOT PATH
        self.tap_rx_frames.fetch_add(1, Ordering::Relaxed);
        self.tap_rx_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        self.udp_tx_datagrams
            .fetch_add(datagrams as u64, Ordering::Relaxed);
    }

    /// A frame dropped.
    pub fn dropped(&self, r: DropReason) {
        self.drops[r.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Add these counts to a status.
    pub fn add_to(&self, s: &mut Status) {
        let c = &mut s.counters;
        let sealed = self.tap_rx_frames.load(Ordering::Relaxed);
        c.tap_rx_frames += sealed;
        c.worker_sealed_frames += sealed;
        c.tap_rx_bytes += self.tap_rx_bytes.load(Ordering::Relaxed);
        c.udp_tx_datagrams += self.udp_tx_datagrams.load(Ordering::Relaxed);
        for &r in DropReason::ALL {
            s.drops
                .add_n(r, self.drops[r.index()].load(Ordering::Relaxed));
        }
    }
}
