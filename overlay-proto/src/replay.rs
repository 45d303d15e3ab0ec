//! Anti-replay sliding window.
//!
//! A bitmap ring of 128 x 64-bit blocks, the layout of RFC 6479 as WireGuard
//! uses it (linux `drivers/net/wireguard/receive.c`, `counter_validate`): any
//! counter within 8128 of the highest one seen is accepted once, in any order;
//! anything older is refused. The window is generous on purpose: batching,
//! several receive queues and a reordering underlay all deliver out of order.
//!
//! Callers must [`check`](ReplayWindow::check) before decrypting and
//! [`update`](ReplayWindow::update) only after the tag verified, so forged
//! packets can never move the window.
use crate::timers::REJECT_AFTER_MESSAGES;

const BLOCKS: usize = 128;
const BLOCK_BITS: u64 = 64;
/// How far behind the newest counter a packet may arrive and still be accepted.
pub const WINDOW_SIZE: u64 = (BLOCKS as u64 - 1) * BLOCK_BITS;

/// The receive side's replay state for one session.
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    /// One more than the highest counter accepted so far (0: none yet).
    next: u64,
    bitmap: [u64; BLOCKS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        ReplayWindow {
            next: 0,
            bitmap: [0; BLOCKS],
        }
    }
}

impl ReplayWindow {
    /// Would `counter` be accepted? Does not change the window.
    pub fn check(&self, counter: u64) -> bool {
        if counter >= REJECT_AFTER_MESSAGES {
            return false;
        }
        let c = counter + 1;
        if c + WINDOW_SIZE < self.next {
            return false;
        }
        if c > self.next {
            return true;
        }
        let block = ((c / BLOCK_BITS) as usize) % BLOCKS;
        self.bitmap[block] & (1 << (c % BLOCK_BITS)) == 0
    }

    /// Record `counter` as received. Returns false (and changes nothing) if it
    /// was a replay or too old.
    pub fn update(&mut self, counter: u64) -> bool {
        if !self.check(counter) {
            return false;
        }
        let c = counter + 1;
        let index = c / BLOCK_BITS;
        if c > self.next {
            let current = self.next / BLOCK_BITS;
            let top = (index - current).min(BLOCKS as u64);
            for i in 1..=top {
                self.bitmap[((current + i) as usize) % BLOCKS] = 0;
            }
            self.next = c;
        }
        self.bitmap[(index as usize) % BLOCKS] |= 1 << (c % BLOCK_BITS);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_and_duplicates() {
        let mut w = ReplayWindow::default();
        for c in 0..10_000 {
            assert!(w.update(c), "{c}");
            assert!(!w.update(c), "dup {c}");
        }
    }

    #[test]
    fn window_edges() {
        let mut w = ReplayWindow::default();
        let top = 100_000;
        assert!(w.update(top));
        // Exactly at the window's far edge: accepted once.
        assert!(w.update(top - WINDOW_SIZE + 1));
        assert!(!w.update(top - WINDOW_SIZE + 1));
        // One beyond the edge: too old.
        assert!(!w.check(top - WINDOW_SIZE - 1));
        assert!(!w.update(top - WINDOW_SIZE - 1));
        // At least the 2048 the protocol promises, in reverse order.
        for c in (top - 2048..top).rev() {
            assert!(w.update(c), "{c}");
        }
        for c in top - 2048..top {
            assert!(!w.update(c), "replay {c}");
        }
    }

    #[test]
    fn big_jump_clears_old_bits() {
        let mut w = ReplayWindow::default();
        for c in 0..200 {
            assert!(w.update(c));
        }
        assert!(w.update(1_000_000));
        // Counters that land in reused ring blocks are fresh, not falsely replays.
        for c in 1_000_000 - 5_000..1_000_000 {
            assert!(w.update(c), "{c}");
        }
        assert!(!w.update(150));
    }

    #[test]
    fn reject_after_messages() {
        let mut w = ReplayWindow::default();
        assert!(!w.update(REJECT_AFTER_MESSAGES));
        assert!(!w.update(u64::MAX));
        assert!(w.update(REJECT_AFTER_MESSAGES - 1));
    }

    #[test]
    fn check_does_not_move_the_window() {
        let mut w = ReplayWindow::default();
        assert!(w.check(50_000));
        assert!(w.update(1));
        assert!(w.update(2));
        assert!(w.check(50_000));
        assert!(w.update(3));
    }
}
