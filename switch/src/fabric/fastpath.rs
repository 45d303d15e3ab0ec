//! The core's side of the workers' fast path ([`crate::workers::fastpath`]):
//! which ports a worker may forward between, revoking that when something
//! changes, and folding what the workers forwarded into this network's
//! counters.
//!
//! Conservative: a network in mesh mode or in a cluster, with a mirror or a
//! running capture, publishes no port; a port is eligible only if it is a
//! VLAN-unaware node (no trunk, no VLAN rules), not impaired, connected
//! under a current session. Everything else stays the core's.
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::Switch;
use super::port::Port;
use crate::NodeId;
use crate::counters::{Forwarded, NodeCounters};
use crate::vlan::PortVlan;
use crate::workers::fastpath::{FastNet, FastPort};

/// The counters of this network the workers add to (shared with them).
#[derive(Debug, Default, Clone)]
pub(super) struct FastShared {
    /// Bumped whenever what decides eligibility changes.
    pub(super) epoch: Arc<AtomicU64>,
    /// Unicast frames the workers forwarded.
    pub(super) unicast: Arc<AtomicU64>,
}

impl Switch {
    /// What the workers may forward on their own now, or `None` if nothing.
    pub fn fast_path(&self, now: Instant) -> Option<FastNet> {
        let whole = self.mesh.is_none()
            && self.cluster.is_none()
            && self.mirrors.is_empty()
            && !self.captures.is_active();
        if !whole {
            return None;
        }
        let mut by_index = HashMap::new();
        let ports: Vec<Option<FastPort>> = (self.ports.iter().enumerate())
            .map(|(i, p)| {
                let eligible = !p.retired
                    && !p.is_trunk()
                    && p.impair.is_none()
                    && matches!(p.spec.vlan, PortVlan::Transparent);
                let s = p.tunnel.current().filter(|s| !s.is_expired(now))?;
                let endpoint = p.tunnel.endpoint()?;
                if !eligible {
                    return None;
                }
                by_index.insert(s.local_index(), NodeId(i as u32));
                Some(FastPort {
                    sender: s.sender(),
                    index: s.local_index(),
                    endpoint,
                    max_datagram: self.cfg.max_datagram(endpoint),
                    accepts_vnet: p.accepts_vnet(),
                    tally: p.tally.clone(),
                })
            })
            .collect();
        if by_index.is_empty() {
            return None;
        }
        Some(FastNet {
            epoch: self.fast_epoch(),
            live: self.fast.epoch.clone(),
            macs: self.macs.map().clone(),
            aging: self.cfg.mac_aging,
            ports,
            by_index,
            unicast: self.fast.unicast.clone(),
            base: self.started,
        })
    }

    /// The epoch of this network's fast path.
    pub fn fast_epoch(&self) -> u64 {
        self.fast.epoch.load(Ordering::Acquire)
    }

    /// Workers stop forwarding on their own until the fast path is
    /// published again.
    pub fn revoke_fast_path(&self) {
        self.fast.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// When port `p` was last heard, by the core or a worker.
    pub(super) fn last_heard(&self, p: &Port) -> Option<Instant> {
        let fast = p.tally.last_heard(self.started);
        p.tunnel.last_rx().max(fast)
    }

    /// Port `p`'s counters with what the workers forwarded for it.
    pub(super) fn counters_with_fast(p: &Port) -> NodeCounters {
        let mut c = p.counters.clone();
        let t = &p.tally;
        c.rx_frames += t.rx_frames.load(Ordering::Relaxed);
        c.rx_bytes += t.rx_bytes.load(Ordering::Relaxed);
        c.tx_frames += t.tx_frames.load(Ordering::Relaxed);
        c.tx_bytes += t.tx_bytes.load(Ordering::Relaxed);
        c
    }

    /// The forwarding counters with the workers' unicast frames.
    pub(super) fn forwarded_with_fast(&self) -> Forwarded {
        let mut f = self.forwarded.clone();
        f.unicast += self.fast.unicast.load(Ordering::Relaxed);
        f
    }
}
