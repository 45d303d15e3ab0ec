//! What the simulated underlay does to datagrams on their way.
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Random faults on one direction of a link, each a probability in 0..=1.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LinkFaults {
    /// The datagram is lost.
    pub loss: f64,
    /// A copy arrives after everything queued now.
    pub duplicate: f64,
    /// The datagram arrives after everything queued now instead of in turn.
    pub reorder: f64,
}

/// What [`Faults::judge`] decided for one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Delivered now.
    Deliver,
    /// Delivered now, and a copy later.
    Duplicate,
    /// Delivered later.
    Reorder,
    /// Never delivered.
    Drop,
}

/// Makes a forgery of a datagram (or none).
pub type Forger = fn(&[u8]) -> Option<Vec<u8>>;

/// The underlay's faults: addresses cut off, pairs that cannot reach each
/// other, random per-link faults from a seeded generator, and a forger.
#[derive(Debug, Clone)]
pub struct Faults {
    cut: HashSet<SocketAddr>,
    blocked: HashSet<(SocketAddr, SocketAddr)>,
    links: HashMap<(SocketAddr, SocketAddr), LinkFaults>,
    rng: StdRng,
    /// Called with each datagram before it is delivered; a datagram it
    /// returns is delivered (on the same link) just ahead of it, as an
    /// on-path attacker racing the genuine one would.
    pub forge: Option<Forger>,
    /// Datagrams this predicate accepts are lost (chosen by what is in
    /// clear, such as the header's flags).
    pub lose: Option<fn(&[u8]) -> bool>,
}

impl Default for Faults {
    fn default() -> Faults {
        Faults::seeded(0)
    }
}

impl Faults {
    /// No faults; random ones (once set) drawn from `seed`.
    pub fn seeded(seed: u64) -> Faults {
        Faults {
            cut: HashSet::new(),
            blocked: HashSet::new(),
            links: HashMap::new(),
            rng: StdRng::seed_from_u64(seed),
            forge: None,
            lose: None,
        }
    }

    /// Cut `addr` off (`true`) or reconnect it: everything it sends or is
    /// sent is lost.
    pub fn set_cut(&mut self, addr: SocketAddr, cut: bool) {
        if cut {
            self.cut.insert(addr);
        } else {
            self.cut.remove(&addr);
        }
    }

    /// Block (`true`) or unblock datagrams between `a` and `b`, both ways.
    pub fn set_blocked(&mut self, a: SocketAddr, b: SocketAddr, blocked: bool) {
        let key = if a <= b { (a, b) } else { (b, a) };
        if blocked {
            self.blocked.insert(key);
        } else {
            self.blocked.remove(&key);
        }
    }

    /// Random faults on datagrams from `from` to `to` (replacing any set).
    pub fn set_link(&mut self, from: SocketAddr, to: SocketAddr, f: LinkFaults) {
        self.links.insert((from, to), f);
    }

    /// Whether a datagram from `from` to `to` can arrive at all.
    pub fn passes(&self, from: SocketAddr, to: SocketAddr) -> bool {
        let key = if from <= to { (from, to) } else { (to, from) };
        !self.cut.contains(&from) && !self.cut.contains(&to) && !self.blocked.contains(&key)
    }

    /// The fate of one datagram from `from` to `to`.
    pub fn judge(&mut self, from: SocketAddr, to: SocketAddr) -> Fate {
        if !self.passes(from, to) {
            return Fate::Drop;
        }
        let Some(f) = self.links.get(&(from, to)).copied() else {
            return Fate::Deliver;
        };
        if f.loss > 0.0 && self.rng.random_bool(f.loss.min(1.0)) {
            Fate::Drop
        } else if f.reorder > 0.0 && self.rng.random_bool(f.reorder.min(1.0)) {
            Fate::Reorder
        } else if f.duplicate > 0.0 && self.rng.random_bool(f.duplicate.min(1.0)) {
            Fate::Duplicate
        } else {
            Fate::Deliver
        }
    }
}
