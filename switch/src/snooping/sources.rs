//! The INCLUDE-mode sources of one membership, each with its timer.
//!
//! Why two indexes: data from S to G asks "is S listed and live?" once per
//! frame and member (a hash lookup), and the group's registration asks "is
//! any source live?" (the latest deadline: the last entry of a set ordered by
//! deadline). Neither scans the sources, however many a report listed; the
//! sweep pops only the entries that expired. The hasher is keyed per process:
//! nodes choose the source addresses.
use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::Instant;

use foldhash::fast::RandomState;

/// Sources and their timers.
#[derive(Debug, Clone, Default)]
pub(super) struct Sources {
    timers: HashMap<IpAddr, Instant, RandomState>,
    by_deadline: BTreeSet<(Instant, IpAddr)>,
}

impl Sources {
    /// Sources listed (live or not yet swept).
    pub(super) fn len(&self) -> usize {
        self.timers.len()
    }

    /// Is `s` listed?
    pub(super) fn contains(&self, s: &IpAddr) -> bool {
        self.timers.contains_key(s)
    }

    /// Is `s` listed with a timer running at `now`?
    pub(super) fn is_live(&self, now: Instant, s: &IpAddr) -> bool {
        // HOT PATH (registered groups with source lists)
        self.timers.get(s).is_some_and(|t| *t > now)
    }

    /// Does any source's timer run at `now`?
    pub(super) fn any_live(&self, now: Instant) -> bool {
        self.by_deadline.last().is_some_and(|(t, _)| *t > now)
    }

    /// The latest deadline of any source.
    pub(super) fn latest(&self) -> Option<Instant> {
        self.by_deadline.last().map(|(t, _)| *t)
    }

    /// Lists `s` until `until` (a report refreshed it).
    pub(super) fn set(&mut self, s: IpAddr, until: Instant) {
        if let Some(old) = self.timers.insert(s, until) {
            self.by_deadline.remove(&(old, s));
        }
        self.by_deadline.insert((until, s));
    }

    /// Lowers `s`'s timer to `deadline` if it runs longer. Returns whether
    /// `s` is listed.
    pub(super) fn lower(&mut self, s: &IpAddr, deadline: Instant) -> bool {
        let Some(t) = self.timers.get_mut(s) else {
            return false;
        };
        if *t > deadline {
            self.by_deadline.remove(&(*t, *s));
            self.by_deadline.insert((deadline, *s));
            *t = deadline;
        }
        true
    }

    /// Lowers every timer to `deadline` if it runs longer (another querier
    /// asked about the group). Touches only the timers it lowers.
    pub(super) fn lower_all(&mut self, deadline: Instant) {
        let later = self
            .by_deadline
            .split_off(&(deadline, IpAddr::from([0u8; 16])));
        for (t, s) in later {
            let d = deadline.min(t);
            self.timers.insert(s, d);
            self.by_deadline.insert((d, s));
        }
    }

    /// Removes the sources whose timer ran out by `now`; returns how many.
    pub(super) fn expire(&mut self, now: Instant) -> usize {
        let mut n = 0;
        while let Some(&(t, s)) = self.by_deadline.first()
            && t <= now
        {
            self.by_deadline.pop_first();
            self.timers.remove(&s);
            n += 1;
        }
        n
    }

    /// The sources and their timers, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (IpAddr, Instant)> + '_ {
        self.timers.iter().map(|(s, t)| (*s, *t))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn lookups_liveness_lowering_and_expiry() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let a = IpAddr::from([198, 19, 0, 1]);
        let b = IpAddr::from([198, 19, 0, 2]);
        let c: IpAddr = "fd00::3".parse().unwrap();
        let mut s = Sources::default();
        assert!(!s.any_live(t0));
        s.set(a, at(10));
        s.set(b, at(20));
        s.set(c, at(30));
        s.set(a, at(40)); // refresh: one entry, new timer
        assert_eq!(s.len(), 3);
        assert!(s.is_live(at(35), &a) && !s.is_live(at(35), &b));
        assert!(s.any_live(at(39)) && !s.any_live(at(40)));
        assert!(s.lower(&a, at(5)));
        assert!(!s.lower(&"198.19.9.9".parse().unwrap(), at(5)));
        assert!(
            s.any_live(at(29)) && !s.any_live(at(30)),
            "c is now the latest"
        );
        s.lower_all(at(25));
        assert!(s.is_live(at(24), &c) && !s.is_live(at(25), &c));
        assert!(s.is_live(at(19), &b), "earlier timers stay");
        assert_eq!(s.expire(at(20)), 2, "a (5) and b (20)");
        assert!(s.contains(&c) && !s.contains(&a));
        assert_eq!(s.expire(at(25)), 1);
        assert_eq!((s.len(), s.by_deadline.len()), (0, 0));
    }
}
