//! Whether sharing a receive batch with the opening threads pays, judged
//! by how the last shares went (`worker-opening` in node.toml).
//!
//! The node task opens its part of a split batch, takes back the parts no
//! thread has started ([`super::handoff`]) and waits for the ones a thread
//! is opening; only then can it handle the batch in order. With a core
//! free per thread, a thread starts within microseconds and finishes about
//! when the node task does. Without one (every core busy with the switch,
//! TCP ends and the node itself) a thread starts late, so the node task
//! opens the whole batch after all and the thread's wakeup was for
//! nothing, or is preempted halfway, and the node task, asleep in the
//! wait, does not drain its socket: measured on 2 cores with a fork-join
//! split, the wait was longer than the node task's own part for about 9
//! splits in 10, now and then for milliseconds, and the socket's buffer
//! overflowed under `-P 4` where one worker lost nothing (BENCHMARKS.md
//! "Opening on threads only while it pays").
//!
//! So in `auto` a split that did not pay stops splitting for a pause: one
//! whose wait was longer than opening the threads' parts alone would have
//! taken (the node task's own time for its part, once per thread), or the
//! eighth in a row that had a part taken back (a wakeup of the thread for
//! nothing; a host with cores to spare has those for small batches while
//! its large ones gain). The pause is 20 ms after the first such split,
//! doubling with each that follows up to 1 s, halving again with each
//! split that paid. A host where the threads keep up keeps splitting; one
//! where they cannot opens alone, as one worker does, and tries a split
//! again about once a second.
use std::time::{Duration, Instant};

use serde::Deserialize;

/// `worker-opening`: how a node with `workers > 1` opens large receive
/// batches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Opening {
    /// Share them with the opening threads while that pays (see the module
    /// doc).
    #[default]
    Auto,
    /// Always share them (a host with a core to spare per worker).
    Always,
    /// Never: the node task opens everything, the workers only seal.
    Off,
}

/// The shortest pause after a split that did not pay.
pub const PAUSE_MIN: Duration = Duration::from_millis(20);
/// The longest.
pub const PAUSE_MAX: Duration = Duration::from_secs(1);

/// Splits in a row with a part taken back (and none that paid) before a
/// pause: a part taken back costs the thread a wakeup, not the node task
/// any time, and on a host with cores to spare the small batches of a
/// flow have theirs taken back while its large ones gain.
pub const TAKEN_BACK_RUN: u32 = 8;

/// Whether to split the next batch (see the module doc).
#[derive(Debug)]
pub struct SplitGate {
    opening: Opening,
    /// No split before this.
    resume_at: Option<Instant>,
    /// The next pause.
    pause: Duration,
    /// Pauses begun, for status.
    pauses: u64,
    /// Splits in a row with a part taken back.
    taken_back: u32,
}

impl SplitGate {
    /// A gate for `opening`.
    pub fn new(opening: Opening) -> SplitGate {
        SplitGate {
            opening,
            resume_at: None,
            pause: PAUSE_MIN,
            pauses: 0,
            taken_back: 0,
        }
    }

    /// Whether a batch arriving at `now` is to be split.
    pub fn allows(&self, now: Instant) -> bool {
        match self.opening {
            Opening::Off => false,
            Opening::Always => true,
            Opening::Auto => self.resume_at.is_none_or(|t| now >= t),
        }
    }

    /// Take note of a split that ended at `now`: the node task opened its
    /// part in `own`, then waited `wait` for `threads` threads to open
    /// theirs, and took back a part no thread had started if `taken_back`.
    pub fn note(
        &mut self,
        now: Instant,
        own: Duration,
        wait: Duration,
        threads: usize,
        taken_back: bool,
    ) {
        if self.opening != Opening::Auto {
            return;
        }
        let alone = own.saturating_mul(u32::try_from(threads).unwrap_or(u32::MAX));
        if wait > alone {
            self.pause_now(now);
        } else if taken_back {
            self.taken_back += 1;
            if self.taken_back >= TAKEN_BACK_RUN {
                self.pause_now(now);
            }
        } else {
            self.taken_back = 0;
            self.resume_at = None;
            self.pause = (self.pause / 2).max(PAUSE_MIN);
        }
    }

    fn pause_now(&mut self, now: Instant) {
        self.taken_back = 0;
        self.resume_at = Some(now + self.pause);
        self.pause = self.pause.saturating_mul(2).min(PAUSE_MAX);
        self.pauses += 1;
    }

    /// How many times splitting paused because it did not pay.
    pub fn pauses(&self) -> u64 {
        self.pauses
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Duration = Duration::from_micros(1);
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn auto_pauses_after_a_split_that_did_not_pay_and_doubles_to_a_second() {
        let t0 = Instant::now();
        let mut g = SplitGate::new(Opening::Auto);
        assert!(g.allows(t0));
        // The node task opened its part in 100 µs and waited 80 µs for
        // one thread: 180 µs, where opening both parts alone takes 200 µs.
        g.note(t0, 100 * US, 80 * US, 1, false);
        assert!(g.allows(t0));
        assert_eq!(g.pauses(), 0);
        // A wait longer than opening the thread's part too: 20 ms without
        // splits.
        g.note(t0, 100 * US, 101 * US, 1, false);
        assert!(!g.allows(t0 + 19 * MS));
        assert!(g.allows(t0 + 20 * MS));
        // Each further split that does not pay doubles the pause, up to 1 s.
        let mut now = t0 + 20 * MS;
        let mut pauses = vec![];
        for _ in 0..8 {
            g.note(now, 10 * US, 5 * MS, 1, false);
            let mut p = MS;
            while !g.allows(now + p) {
                p += MS;
            }
            pauses.push(p.as_millis());
            now += p;
        }
        assert_eq!(pauses, [40, 80, 160, 320, 640, 1000, 1000, 1000]);
        assert_eq!(g.pauses(), 9);
        // A split that pays ends the pause at once and halves the next one.
        g.note(now, 100 * US, 10 * US, 1, false);
        assert!(g.allows(now));
        g.note(now, 100 * US, MS, 1, false);
        assert!(!g.allows(now + 499 * MS));
        assert!(g.allows(now + 500 * MS));
    }

    #[test]
    fn parts_taken_back_in_a_row_pause_auto() {
        let t0 = Instant::now();
        let mut g = SplitGate::new(Opening::Auto);
        // Seven in a row, then one that paid: no pause.
        for _ in 1..TAKEN_BACK_RUN {
            g.note(t0, 100 * US, Duration::ZERO, 1, true);
            assert!(g.allows(t0));
        }
        g.note(t0, 100 * US, 10 * US, 1, false);
        // Eight in a row: a pause, however short the waits.
        for _ in 1..TAKEN_BACK_RUN {
            g.note(t0, 100 * US, Duration::ZERO, 1, true);
            assert!(g.allows(t0));
        }
        g.note(t0, 100 * US, Duration::ZERO, 1, true);
        assert!(!g.allows(t0));
        assert!(g.allows(t0 + PAUSE_MIN));
        assert_eq!(g.pauses(), 1);
    }

    #[test]
    fn more_threads_may_take_longer_in_auto() {
        let t0 = Instant::now();
        let mut g = SplitGate::new(Opening::Auto);
        // Three threads' parts alone: 300 µs; a 250 µs wait still paid.
        g.note(t0, 100 * US, 250 * US, 3, false);
        assert!(g.allows(t0));
        g.note(t0, 100 * US, 301 * US, 3, false);
        assert!(!g.allows(t0));
    }

    #[test]
    fn always_and_off_ignore_how_splits_went() {
        let t0 = Instant::now();
        let mut always = SplitGate::new(Opening::Always);
        let mut off = SplitGate::new(Opening::Off);
        for g in [&mut always, &mut off] {
            g.note(t0, US, 100 * MS, 1, true);
            assert_eq!(g.pauses(), 0);
        }
        assert!(always.allows(t0));
        assert!(!off.allows(t0));
        assert!(!off.allows(t0 + PAUSE_MAX));
    }
}
