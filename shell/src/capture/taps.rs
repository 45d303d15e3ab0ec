//! The captures a core feeds, with what each wants: the one loop both
//! daemons' data paths call, and the counters for status and metrics.
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{Capture, Direction, Offered, Port};

/// Capture counters (status and metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CaptureCounters {
    /// Captures running now.
    pub active: u64,
    /// Frames written to a capture (once per capture).
    pub captured: u64,
    /// Frames a capture lost because its reader was behind.
    pub dropped: u64,
}

impl CaptureCounters {
    /// The `status` table's line (with its newline), if there was ever a
    /// capture.
    pub fn status_line(&self) -> Option<String> {
        (*self != CaptureCounters::default()).then(|| {
            format!(
                "capture: {} running, frames captured {}, lost to slow readers {}\n",
                self.active, self.captured, self.dropped
            )
        })
    }
}

impl std::ops::AddAssign<&CaptureCounters> for CaptureCounters {
    fn add_assign(&mut self, o: &CaptureCounters) {
        self.active += o.active;
        self.captured += o.captured;
        self.dropped += o.dropped;
    }
}

/// Running captures, each with what it wants (`W`, the daemon's own
/// selection).
#[derive(Debug, Clone)]
pub struct Taps<W> {
    taps: Vec<(Capture, W)>,
    captured: u64,
    dropped: u64,
}

impl<W> Default for Taps<W> {
    fn default() -> Self {
        Taps {
            taps: Vec::new(),
            captured: 0,
            dropped: 0,
        }
    }
}

impl<W> Taps<W> {
    /// Feed `capture` with the frames `want` selects.
    pub fn add(&mut self, capture: Capture, want: W) {
        self.taps.push((capture, want));
    }

    /// Whether any capture is running (the data path's one branch).
    #[inline]
    pub fn is_active(&self) -> bool {
        !self.taps.is_empty()
    }

    /// Offer a frame of the port `key` called `name` to every capture whose
    /// `select` gives a description for that port's interface (`None`: not
    /// wanted); forget captures whose reader went away.
    pub fn offer(
        &mut self,
        now: Instant,
        key: u64,
        name: &str,
        dir: Direction,
        frame: &[u8],
        select: impl Fn(&W) -> Option<&str>,
    ) {
        let mut i = 0;
        while i < self.taps.len() {
            let (capture, want) = &self.taps[i];
            let Some(description) = select(want) else {
                i += 1;
                continue;
            };
            let port = Port {
                key,
                name,
                description,
            };
            match capture.offer(now, port, dir, frame) {
                Offered::Captured => self.captured += 1,
                Offered::Dropped => self.dropped += 1,
                Offered::Filtered => {}
                Offered::Closed => {
                    self.taps.swap_remove(i);
                    continue;
                }
            }
            i += 1;
        }
    }

    /// Forget captures whose reader went away.
    pub fn sweep(&mut self) {
        self.taps.retain(|(c, _)| !c.is_closed());
    }

    /// The counters, `active` counting these captures.
    pub fn counters(&self) -> CaptureCounters {
        CaptureCounters {
            active: self.taps.len() as u64,
            captured: self.captured,
            dropped: self.dropped,
        }
    }
}
