//! The sessions the core published for workers to open under, by network id
//! and receiver index. Entries are weak: a session the core dropped cannot
//! be upgraded, so nothing else is needed to revoke it; [`OpenTable::prune`]
//! only reclaims the entries.
use std::sync::{Arc, Weak};
use std::time::Instant;

use dashmap::DashMap;
use overlay_proto::receiver::Receiver;

/// Published receive halves, shared by the core (writes) and the workers
/// (reads, on every datagram).
#[derive(Debug, Default)]
pub struct OpenTable {
    by_index: DashMap<(u32, u32), Weak<Receiver>>,
}

impl OpenTable {
    /// Publish `r` for datagrams of network `network`.
    pub fn publish(&self, network: u32, r: &Arc<Receiver>) {
        let key = (network, r.local_index());
        let stale = self
            .by_index
            .get(&key)
            .is_none_or(|w| !std::ptr::eq(w.as_ptr(), Arc::as_ptr(r)));
        if stale {
            self.by_index.insert(key, Arc::downgrade(r));
        }
    }

    /// The live, unexpired session for a datagram of `network` to `index`.
    pub fn get(&self, now: Instant, network: u32, index: u32) -> Option<Arc<Receiver>> {
        // HOT PATH: one shard read lock, one atomic increment.
        let r = self.by_index.get(&(network, index))?.upgrade()?;
        (!r.is_expired(now)).then_some(r)
    }

    /// Forget the entries of sessions the core dropped.
    pub fn prune(&self) {
        self.by_index.retain(|_, w| w.strong_count() > 0);
    }

    /// Entries held (live or not yet pruned).
    pub fn len(&self) -> usize {
        self.by_index.len()
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.by_index.is_empty()
    }
}
