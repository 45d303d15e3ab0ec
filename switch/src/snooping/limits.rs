//! The bounds of the group table: memberships per node, groups per network
//! and over all networks, sources per membership (`[multicast]` `max-*`).
//!
//! Why: every group, membership and source costs memory and sweep time, and
//! a node chooses how many it reports. Without bounds one node fills the
//! table (a report of 170 group records fits one frame) and every other
//! node's traffic waits behind the switch's work on it. The defaults follow
//! a Linux bridge: 4096 groups per bridge (`mcast_hash_max`), 32 sources per
//! port and group (`PG_SRC_ENT_LIMIT`), and a per-port group limit
//! (`mcast_max_groups`, unlimited there, 1024 here).
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::NodeId;

/// Why a membership or source was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    /// The node has its limit of memberships in this network.
    Node,
    /// This network has its limit of groups.
    Network,
    /// All networks together have their limit of groups.
    Total,
}

/// The number of groups over all networks of a switch, shared by their
/// snoopers (each network's core runs in the same task; the count changes
/// only when a group is created or removed, never per data frame).
///
/// `share` hands out another handle to the same count; `Clone` makes an
/// independent copy (a snapshot of a core, as the fuzz targets take, must
/// not move the original's count).
#[derive(Debug, Default)]
pub struct GroupTotal(Arc<AtomicUsize>);

impl GroupTotal {
    /// Another handle to the same count.
    pub fn share(&self) -> GroupTotal {
        GroupTotal(Arc::clone(&self.0))
    }

    fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

impl Clone for GroupTotal {
    fn clone(&self) -> Self {
        GroupTotal(Arc::new(AtomicUsize::new(self.get())))
    }
}

/// Counts what the limits bound.
#[derive(Debug, Clone)]
pub(super) struct Budget {
    /// Memberships per node (indexed by `NodeId`).
    per_node: Vec<usize>,
    total: GroupTotal,
}

impl Budget {
    pub(super) fn new(nodes: usize) -> Budget {
        Budget {
            per_node: vec![0; nodes],
            total: GroupTotal::default(),
        }
    }

    /// Count this network's groups in `total` from now on.
    pub(super) fn share_total(&mut self, total: GroupTotal, groups_now: usize) {
        self.total.0.fetch_sub(groups_now, Ordering::Relaxed);
        total.0.fetch_add(groups_now, Ordering::Relaxed);
        self.total = total;
    }

    /// May `node` get a new membership? `new_group` says the group does not
    /// exist yet; `groups` is this network's group count.
    pub(super) fn check(
        &self,
        cfg: &super::SnoopConfig,
        node: NodeId,
        new_group: bool,
        groups: usize,
    ) -> Result<(), Refused> {
        if self.per_node.get(node.0 as usize).copied().unwrap_or(0) >= cfg.max_groups_per_node {
            return Err(Refused::Node);
        }
        if new_group && groups >= cfg.max_groups {
            return Err(Refused::Network);
        }
        if new_group && self.total.get() >= cfg.max_groups_total {
            return Err(Refused::Total);
        }
        Ok(())
    }

    /// Room for `nodes` nodes (never fewer than now).
    pub(super) fn grow(&mut self, nodes: usize) {
        if nodes > self.per_node.len() {
            self.per_node.resize(nodes, 0);
        }
    }

    /// A membership of `node` began (`new_group`: and with it a group).
    pub(super) fn joined(&mut self, node: NodeId, new_group: bool) {
        if let Some(n) = self.per_node.get_mut(node.0 as usize) {
            *n += 1;
        }
        if new_group {
            self.total.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A membership of `node` ended.
    pub(super) fn left(&mut self, node: NodeId) {
        if let Some(n) = self.per_node.get_mut(node.0 as usize) {
            *n = n.saturating_sub(1);
        }
    }

    /// `node` has no memberships any more.
    pub(super) fn forget(&mut self, node: NodeId) {
        if let Some(n) = self.per_node.get_mut(node.0 as usize) {
            *n = 0;
        }
    }

    /// `n` groups were removed.
    pub(super) fn groups_removed(&mut self, n: usize) {
        if n > 0 {
            self.total.0.fetch_sub(n, Ordering::Relaxed);
        }
    }

    /// Memberships of `node` now.
    #[cfg(test)]
    pub(super) fn memberships(&self, node: NodeId) -> usize {
        self.per_node.get(node.0 as usize).copied().unwrap_or(0)
    }

    /// Groups over all networks sharing the count.
    pub(super) fn total(&self) -> usize {
        self.total.get()
    }
}
