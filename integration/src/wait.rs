//! Polling with a deadline. Tests wait for a condition, never for a fixed time.
use std::time::{Duration, Instant};

/// How often [`wait_until`] re-checks its condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Calls `cond` until it returns true or `timeout` has passed. Returns whether
/// it became true. `cond` is always called at least once, and once more at
/// the deadline, so a slow `cond` cannot make a true condition look false.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep(POLL_INTERVAL.min(deadline - now));
    }
}
