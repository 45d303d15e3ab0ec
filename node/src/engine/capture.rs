//! The core's side of live capture: the hook the direct paths call, and
//! starting a capture (see [`crate::capture`]).

use std::time::Instant;

use tapmesh_shell::capture::{Capture, CaptureCounters, Direction};

use super::Node;
use crate::capture::{Selection, peer_key};

impl Node {
    /// Offer a frame received from (inbound) or sent to (outbound) mesh
    /// peer `peer` to the running captures.
    #[inline]
    pub(super) fn capture(&mut self, now: Instant, peer: usize, dir: Direction, frame: &[u8]) {
        // HOT PATH: one branch when nothing captures.
        if self.captures.is_active()
            && let Some((name, port)) = self.peers.port(peer)
        {
            self.captures
                .offer(now, peer_key(name), name, dir, frame, |want| {
                    want.selects(name, port, frame)
                });
        }
    }

    /// Feed `capture` with the frames on direct paths that `want` selects.
    pub fn add_capture(&mut self, capture: Capture, want: Selection) {
        self.captures.add(capture, want);
    }

    /// The names of the mesh peers now.
    pub fn peer_names(&self) -> Vec<String> {
        self.peers.names()
    }

    /// Capture counters.
    pub fn capture_counters(&self) -> CaptureCounters {
        self.captures.counters()
    }

    /// Forget captures whose reader went away.
    pub(super) fn sweep_captures(&mut self) {
        self.captures.sweep();
    }
}
