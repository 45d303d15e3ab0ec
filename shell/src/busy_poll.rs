//! Bounded busy-polling (`busy-poll-us` in `switch.toml` and `node.toml`,
//! off by default): after the last datagram or frame a daemon handled, it
//! keeps asking its descriptors whether more has arrived, for up to the
//! configured time, before it lets the runtime park in `epoll_wait`.
//!
//! Why: on a round trip each daemon is woken once per direction, and a
//! wakeup of a parked thread (scheduler, an idle CPU coming back) costs more
//! than the work done for a small frame. A reply that arrives while the
//! daemon is still polling is taken without that wakeup. The price is CPU:
//! the daemon spins for up to `busy-poll-us` after every burst of traffic
//! (not when idle: the window starts at the last frame handled).
//!
//! Between checks the thread yields (`sched_yield`): on a machine with
//! fewer cores than busy daemons a spinning daemon would otherwise hold the
//! core that the next daemon on the path was woken for (measured: three
//! daemons spinning for 300 µs on two cores made every hop wait about
//! 300 µs; see BENCHMARKS.md, "Where the round trip goes").
//!
//! The check is `poll(2)` with a zero timeout on the daemon's own
//! descriptors; when one is readable, the shell's next `select!` finds it
//! through the runtime's `epoll_wait` without sleeping (the descriptor's edge
//! is still pending there), so nothing about the batching loops changes.
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// The largest `busy-poll-us` accepted: beyond a millisecond a daemon would
/// burn a core for a full tick of timers between frames.
pub const MAX_BUSY_POLL_US: u64 = 1000;

/// Validates a `busy-poll-us` value: `None` or 0 is off; above
/// [`MAX_BUSY_POLL_US`] is refused with the problem for the one-line error.
pub fn parse(us: Option<u64>) -> Result<Option<Duration>, String> {
    match us {
        None | Some(0) => Ok(None),
        Some(us) if us > MAX_BUSY_POLL_US => Err(format!(
            "{us} is out of range 0..={MAX_BUSY_POLL_US} (microseconds; 0 turns busy-polling off)"
        )),
        Some(us) => Ok(Some(Duration::from_micros(us))),
    }
}

/// The busy-poll window of one daemon loop.
#[derive(Debug, Clone)]
pub struct BusyPoll {
    budget: Option<Duration>,
    last_activity: Option<Instant>,
}

impl BusyPoll {
    /// `budget` from [`parse`]; `None` never polls.
    pub fn new(budget: Option<Duration>) -> BusyPoll {
        BusyPoll {
            budget,
            last_activity: None,
        }
    }

    /// Whether busy-polling is on.
    pub fn is_on(&self) -> bool {
        self.budget.is_some()
    }

    /// A datagram or frame was handled at `now`: the window restarts.
    pub fn note_activity(&mut self, now: Instant) {
        if self.budget.is_some() {
            self.last_activity = Some(now);
        }
    }

    /// Until when to poll, if the window is open at `now` (and not past
    /// `timer`, the loop's next timer deadline).
    pub fn window_end(&self, now: Instant, timer: Instant) -> Option<Instant> {
        let end = (self.last_activity? + self.budget?).min(timer);
        (end > now).then_some(end)
    }

    /// Spin until one of `fds` is readable or the window closes; returns
    /// whether one became readable. Returns at once when the window is
    /// closed. Call it just before the loop parks.
    pub fn spin(&self, fds: &[RawFd], timer: Instant) -> bool {
        match self.window_end(Instant::now(), timer) {
            Some(end) => spin_until(fds, end),
            None => false,
        }
    }
}

/// Poll `fds` (at most two) until one is readable or `end` has passed, at
/// least once; returns whether one became readable.
fn spin_until(fds: &[RawFd], end: Instant) -> bool {
    let mut pfds = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; 2];
    let n = fds.len().min(pfds.len());
    for (p, &fd) in pfds.iter_mut().zip(fds) {
        p.fd = fd;
        p.events = libc::POLLIN;
    }
    loop {
        // SAFETY: `pfds[..n]` is a valid array of `n` pollfd structs.
        let r = unsafe { libc::poll(pfds.as_mut_ptr(), n as libc::nfds_t, 0) };
        if r > 0 {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        // Not a bare spin: a thread the scheduler woke on this CPU (the next
        // daemon on the path, the kernel's softirq thread) runs first.
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_the_range_and_refuses_above() {
        assert_eq!(parse(None), Ok(None));
        assert_eq!(parse(Some(0)), Ok(None));
        assert_eq!(parse(Some(50)), Ok(Some(Duration::from_micros(50))));
        assert_eq!(parse(Some(1000)), Ok(Some(Duration::from_millis(1))));
        let e = parse(Some(1001)).unwrap_err();
        assert!(e.contains("1001 is out of range 0..=1000"), "{e}");
    }

    #[test]
    fn the_window_opens_at_activity_and_closes_after_the_budget() {
        let t0 = Instant::now();
        let far = t0 + Duration::from_secs(10);
        let mut b = BusyPoll::new(Some(Duration::from_micros(50)));
        assert_eq!(b.window_end(t0, far), None, "no activity yet: no window");
        b.note_activity(t0);
        let end = t0 + Duration::from_micros(50);
        assert_eq!(b.window_end(t0, far), Some(end));
        assert_eq!(b.window_end(t0 + Duration::from_micros(49), far), Some(end));
        assert_eq!(b.window_end(end, far), None, "closed after the budget");
        let timer = t0 + Duration::from_micros(10);
        assert_eq!(
            b.window_end(t0, timer),
            Some(timer),
            "a timer cuts it short"
        );
        let off = {
            let mut b = BusyPoll::new(None);
            b.note_activity(t0);
            b
        };
        assert!(!off.is_on());
        assert_eq!(off.window_end(t0, far), None, "off: never a window");
    }

    #[test]
    fn spin_sees_a_readable_socket_and_gives_up_on_a_quiet_one() {
        use std::os::fd::AsRawFd;
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let soon = Instant::now() + Duration::from_micros(200);
        assert!(!spin_until(&[a.as_raw_fd()], soon), "nothing sent yet");
        b.send_to(b"x", a.local_addr().unwrap()).unwrap();
        let far = Instant::now() + Duration::from_secs(10);
        assert!(
            spin_until(&[b.as_raw_fd(), a.as_raw_fd()], far),
            "a datagram is waiting"
        );
        let off = BusyPoll::new(None);
        assert!(!off.spin(&[a.as_raw_fd()], far), "off: never polls");
    }
}
