//! The switch's MAC table: which node each source MAC was last seen behind,
//! per VLAN (the key is `(vlan, mac)`: the same MAC may live in two VLANs).
//!
//! Rules (STYLE.md practice 7, and the lessons of VpnCloud issues #13/#255):
//! - learn only from frames that authenticated as coming from that node, never
//!   from frames the switch flooded, never a group (multicast/broadcast) or
//!   all-zero source;
//! - entries age out (`aging`, default 300 s like a Linux bridge), and a MAC
//!   seen behind another node moves at once;
//! - a node may own at most `per_node_limit` MACs and the table at most
//!   `table_limit`; hitting either is reported so it can be counted;
//! - the hasher is keyed per process (`foldhash` random state): tenants choose
//!   MACs, so an attacker must not be able to aim them at one bucket.
//!
//! The table is a `DashMap` so status readers in other tasks can iterate it
//! without asking the switch loop; the switch loop is its only writer.
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use overlay_proto::wire::ethernet::Mac;

use crate::NodeId;
use crate::vlan::Vid;

/// One learned MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacEntry {
    /// The node the MAC was last seen behind.
    pub node: NodeId,
    /// When the entry ages out unless seen again.
    pub expires_at: Instant,
}

/// What [`MacTable::learn`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// A new entry.
    New,
    /// Already known behind this node; its age was reset.
    Refreshed,
    /// Was behind another node; now behind this one.
    Moved {
        /// Where it was.
        from: NodeId,
    },
    /// The node already owns its limit of MACs; nothing learned.
    NodeLimit,
    /// The table is full; nothing learned.
    TableFull,
}

/// The key: a VLAN and a MAC in it.
pub type MacKey = (Vid, Mac);

type Map = DashMap<MacKey, MacEntry, foldhash::fast::RandomState>;

/// The MAC table, with aging and limits.
#[derive(Debug)]
pub struct MacTable {
    map: Arc<Map>,
    per_node: Vec<usize>,
    aging: Duration,
    per_node_limit: usize,
    table_limit: usize,
}

/// Fuzz targets clone a switch with live state for every input. A derived
/// `Clone` would share the map behind the `Arc` between the clones while each
/// kept its own `per_node` counts, so one input's entries would leak into
/// the next and the counts would no longer match the map: the clone copies
/// the map itself.
#[cfg(fuzzing)]
impl Clone for MacTable {
    fn clone(&self) -> Self {
        MacTable {
            map: Arc::new((*self.map).clone()),
            per_node: self.per_node.clone(),
            aging: self.aging,
            per_node_limit: self.per_node_limit,
            table_limit: self.table_limit,
        }
    }
}

impl MacTable {
    /// An empty table for `nodes` nodes.
    pub fn new(nodes: usize, aging: Duration, per_node_limit: usize, table_limit: usize) -> Self {
        MacTable {
            map: Arc::new(DashMap::with_hasher(foldhash::fast::RandomState::default())),
            per_node: vec![0; nodes],
            aging,
            per_node_limit,
            table_limit,
        }
    }

    /// New settings (a reload): room for `nodes` nodes (never fewer than
    /// now), the aging time for what is learned from now on, and limits that
    /// bound new learning (entries beyond a lowered limit stay until they
    /// age out or their node is flushed).
    pub fn reconfigure(
        &mut self,
        nodes: usize,
        aging: Duration,
        per_node_limit: usize,
        table_limit: usize,
    ) {
        if nodes > self.per_node.len() {
            self.per_node.resize(nodes, 0);
        }
        self.aging = aging;
        self.per_node_limit = per_node_limit;
        self.table_limit = table_limit;
    }

    /// A handle other tasks may read (never write) concurrently.
    pub fn reader(&self) -> Arc<Map> {
        Arc::clone(&self.map)
    }

    /// Entries in the table (including ones whose time is up but that the
    /// next [`expire`](Self::expire) has not removed yet).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True if no MAC is known.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// MACs currently owned by `node`.
    pub fn count_for(&self, node: NodeId) -> usize {
        self.per_node.get(node.0 as usize).copied().unwrap_or(0)
    }

    /// Record that `mac` was the source of an authenticated frame from `node`
    /// in VLAN `vlan`. The caller has already refused group and zero MACs.
    pub fn learn(&mut self, now: Instant, vlan: Vid, mac: Mac, node: NodeId) -> Learned {
        // HOT PATH: the common case is a refresh of a known entry.
        let expires_at = now + self.aging;
        if let Some(mut e) = self.map.get_mut(&(vlan, mac)) {
            if e.node == node {
                e.expires_at = expires_at;
                return Learned::Refreshed;
            }
            if self.per_node[node.0 as usize] >= self.per_node_limit {
                return Learned::NodeLimit;
            }
            let from = e.node;
            *e = MacEntry { node, expires_at };
            self.per_node[from.0 as usize] -= 1;
            self.per_node[node.0 as usize] += 1;
            return Learned::Moved { from };
        }
        if self.per_node[node.0 as usize] >= self.per_node_limit {
            return Learned::NodeLimit;
        }
        if self.map.len() >= self.table_limit {
            return Learned::TableFull;
        }
        self.map.insert((vlan, mac), MacEntry { node, expires_at });
        self.per_node[node.0 as usize] += 1;
        Learned::New
    }

    /// The node behind `mac` in VLAN `vlan`, if known and not aged out.
    pub fn lookup(&self, now: Instant, vlan: Vid, mac: &Mac) -> Option<NodeId> {
        // HOT PATH
        self.map
            .get(&(vlan, *mac))
            .filter(|e| e.expires_at > now)
            .map(|e| e.node)
    }

    /// Forget every MAC behind `node` (it left or timed out). Returns how many.
    pub fn flush_node(&mut self, node: NodeId) -> usize {
        let before = self.map.len();
        self.map.retain(|_, e| e.node != node);
        self.per_node[node.0 as usize] = 0;
        before - self.map.len()
    }

    /// Remove entries whose time is up. Returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let per_node = &mut self.per_node;
        let before = self.map.len();
        self.map.retain(|_, e| {
            if e.expires_at <= now {
                per_node[e.node.0 as usize] -= 1;
                false
            } else {
                true
            }
        });
        before - self.map.len()
    }

    /// The aging time.
    pub fn aging(&self) -> Duration {
        self.aging
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: NodeId = NodeId(0);
    const B: NodeId = NodeId(1);
    const V: Vid = 1;

    fn mac(n: u32) -> Mac {
        let b = n.to_be_bytes();
        overlay_proto::ethernet::MacAddr([2, 0, b[0], b[1], b[2], b[3]])
    }

    #[test]
    fn learn_refresh_and_age_out() {
        let t0 = Instant::now();
        let mut t = MacTable::new(2, Duration::from_secs(300), 10, 100);
        assert_eq!(t.learn(t0, V, mac(1), A), Learned::New);
        assert_eq!(t.lookup(t0, V, &mac(1)), Some(A));
        let t1 = t0 + Duration::from_secs(200);
        assert_eq!(t.learn(t1, V, mac(1), A), Learned::Refreshed);
        // Refreshed at t1, so still there at t0 + 400 s, gone at t1 + 300 s.
        assert_eq!(t.lookup(t0 + Duration::from_secs(400), V, &mac(1)), Some(A));
        assert_eq!(t.lookup(t1 + Duration::from_secs(300), V, &mac(1)), None);
        assert_eq!(t.expire(t1 + Duration::from_secs(299)), 0);
        assert_eq!(t.expire(t1 + Duration::from_secs(300)), 1);
        assert!(t.is_empty());
        assert_eq!(t.count_for(A), 0);
    }

    #[test]
    fn move_takes_effect_at_once() {
        let t0 = Instant::now();
        let mut t = MacTable::new(2, Duration::from_secs(300), 10, 100);
        t.learn(t0, V, mac(1), A);
        assert_eq!(t.learn(t0, V, mac(1), B), Learned::Moved { from: A });
        assert_eq!(t.lookup(t0, V, &mac(1)), Some(B));
        assert_eq!((t.count_for(A), t.count_for(B)), (0, 1));
    }

    #[test]
    fn per_node_limit_and_table_limit() {
        let t0 = Instant::now();
        let mut t = MacTable::new(2, Duration::from_secs(300), 3, 5);
        for i in 0..3 {
            assert_eq!(t.learn(t0, V, mac(i), A), Learned::New);
        }
        assert_eq!(t.learn(t0, V, mac(3), A), Learned::NodeLimit);
        assert_eq!(t.lookup(t0, V, &mac(3)), None);
        // Known MACs of a full node still refresh.
        assert_eq!(t.learn(t0, V, mac(0), A), Learned::Refreshed);
        // A move into a full node is refused too.
        t.learn(t0, V, mac(10), B);
        assert_eq!(t.learn(t0, V, mac(10), A), Learned::NodeLimit);
        t.learn(t0, V, mac(11), B);
        assert_eq!(t.len(), 5);
        assert_eq!(t.learn(t0, V, mac(12), B), Learned::TableFull);
        assert_eq!(t.flush_node(A), 3);
        assert_eq!(t.learn(t0, V, mac(12), B), Learned::New);
    }

    #[test]
    fn vlans_are_separate_tables() {
        let t0 = Instant::now();
        let mut t = MacTable::new(2, Duration::from_secs(300), 10, 100);
        assert_eq!(t.learn(t0, 10, mac(1), A), Learned::New);
        assert_eq!(
            t.learn(t0, 20, mac(1), B),
            Learned::New,
            "same MAC, other VLAN: no move"
        );
        assert_eq!(t.lookup(t0, 10, &mac(1)), Some(A));
        assert_eq!(t.lookup(t0, 20, &mac(1)), Some(B));
        assert_eq!(t.lookup(t0, 30, &mac(1)), None);
    }
}
