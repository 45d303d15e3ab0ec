//! What one endpoint (a switch, a node) shares between all its tunnels: its
//! identity ([`Local`]) and the receiver indices it has handed out
//! ([`IndexTable`]).
use std::collections::HashMap;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::handshake::Timestamp;
use crate::keys::{Psk, PublicKey, StaticSecret};

/// This endpoint's side of every handshake: its static key, the network
/// secret and id, the capabilities it announces, and the wall clock that
/// corresponds to an `Instant` (initiation timestamps come from it, so they
/// increase across restarts).
#[derive(Debug, Clone)]
pub struct Local {
    /// The static private key.
    pub secret: StaticSecret,
    /// Its public key.
    pub public: PublicKey,
    /// The network secret (all zeros if none).
    pub psk: Psk,
    /// The network id.
    pub network_id: u32,
    /// Capability flags sent in initiations (`handshake::CAP_*`).
    pub caps: u32,
    wall_base: (Instant, Duration),
}

impl Local {
    /// `unix_now` is the wall-clock time (since the Unix epoch) at `now`.
    pub fn new(
        secret: StaticSecret,
        psk: Psk,
        network_id: u32,
        caps: u32,
        now: Instant,
        unix_now: Duration,
    ) -> Local {
        Local {
            public: secret.public_key(),
            secret,
            psk,
            network_id,
            caps,
            wall_base: (now, unix_now),
        }
    }

    /// The wall-clock TAI64N time at `now`.
    pub fn timestamp(&self, now: Instant) -> Timestamp {
        let t = self.wall_base.1 + now.saturating_duration_since(self.wall_base.0);
        Timestamp::from_unix(t.as_secs(), t.subsec_nanos())
    }
}

/// The receiver indices one endpoint has handed out, and who owns each.
///
/// Every datagram names the session it belongs to by the index its receiver
/// chose, so an endpoint must never hand out one index twice: the switch's
/// ports, a node's uplink and its mesh peers all allocate here. Indices are
/// random (they travel in clear; guessing one gains nothing without the
/// keys, but sequential ones would tell an observer how many sessions exist).
#[derive(Debug)]
#[cfg_attr(fuzzing, derive(Clone))]
pub struct IndexTable<T> {
    owners: HashMap<u32, T>,
    rng: StdRng,
}

impl<T: Copy> IndexTable<T> {
    /// An empty table whose indices (and backoff jitter) come from `seed`.
    pub fn new(seed: u64) -> IndexTable<T> {
        IndexTable {
            owners: HashMap::new(),
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// A fresh index for `owner`, colliding with no index in use.
    pub fn allocate(&mut self, owner: T) -> u32 {
        loop {
            let i: u32 = self.rng.random();
            if let std::collections::hash_map::Entry::Vacant(e) = self.owners.entry(i) {
                e.insert(owner);
                return i;
            }
        }
    }

    /// Give `index` back (its session or initiation is gone).
    pub fn release(&mut self, index: u32) {
        self.owners.remove(&index);
    }

    /// Who owns `index`.
    pub fn get(&self, index: u32) -> Option<T> {
        // HOT PATH
        self.owners.get(&index).copied()
    }

    /// Indices in use.
    pub fn len(&self) -> usize {
        self.owners.len()
    }

    /// True if no index is in use.
    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }

    /// A random delay in `0..=max` (backoff jitter).
    pub fn jitter(&mut self, max: Duration) -> Duration {
        Duration::from_millis(self.rng.random_range(0..=max.as_millis() as u64))
    }

    /// A random number (ping ids and the like).
    pub fn random(&mut self) -> u64 {
        self.rng.random()
    }
}
