//! One network's view of the cluster: which other switch owns which MAC,
//! which switches have members of which group, where nodes are homed, as the
//! store last said. Kept by the network's core; fed [`ClusterUpdate`]s.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use overlay_proto::ethernet::MacAddr;

use super::{ClusterUpdate, GroupRef, MacRef, Name, NodeRef, Snapshot, StoreState};
use crate::vlan::Vid;

/// What an update changed that the engine acts on (its MAC table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewChange {
    /// Nothing the MAC table cares about.
    None,
    /// The MAC is now behind this switch (and this node of it, if said).
    MacOwned(Vid, MacAddr, Name, Option<Name>),
    /// The MAC is no longer behind this switch.
    MacReleased(Vid, MacAddr, Name),
    /// The switch is down: everything behind it is gone.
    SwitchDown(Name),
    /// Everything was replaced (a resync).
    Replaced,
}

/// What one switch owns in this network.
#[derive(Debug, Clone, Default)]
struct Owned {
    macs: BTreeSet<(Vid, MacAddr)>,
    groups: BTreeSet<(Vid, IpAddr)>,
    nodes: BTreeMap<Name, SocketAddr>,
}

/// Who a MAC is behind: a switch, and which of its nodes if it said.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MacOwner {
    switch: Name,
    node: Option<Name>,
}

/// One network's view of the other switches (see the module doc).
#[derive(Debug, Clone)]
pub struct ClusterView {
    network: Name,
    own: Name,
    store: StoreState,
    /// A snapshot arrived since the store (re)connected.
    resynced: bool,
    switches: BTreeMap<Name, Owned>,
    macs: HashMap<(Vid, MacAddr), MacOwner>,
    groups: HashMap<(Vid, IpAddr), Vec<Name>>,
}

/// Counts of what one switch owns, for status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OwnedCounts {
    /// The store says it is up.
    pub up: bool,
    /// MACs behind it.
    pub macs: usize,
    /// Groups (and router entries) behind it.
    pub groups: usize,
    /// Nodes homed on it.
    pub nodes: usize,
}

impl ClusterView {
    /// An empty, unknown view of network `network` for switch `own`.
    pub fn new(network: Name, own: Name) -> ClusterView {
        ClusterView {
            network,
            own,
            store: StoreState::default(),
            resynced: false,
            switches: BTreeMap::new(),
            macs: HashMap::new(),
            groups: HashMap::new(),
        }
    }

    /// Whether the view can be trusted to prune: the store is connected and
    /// a full snapshot arrived once. A store that reconnects watches on from
    /// the last revision it saw (so it replays what it missed), or reads a
    /// new snapshot if that history was compacted: either way the view
    /// catches up, and it is trusted again as soon as the store is
    /// connected. Until then multicast goes to every switch.
    pub fn is_known(&self) -> bool {
        self.store.connected && self.resynced
    }

    /// The store's state as last reported.
    pub fn store(&self) -> StoreState {
        self.store
    }

    /// The switch behind `mac` in VLAN `vlan`, per the store.
    pub fn mac_owner(&self, vlan: Vid, mac: &MacAddr) -> Option<&Name> {
        self.macs.get(&(vlan, *mac)).map(|o| &o.switch)
    }

    /// The node `mac` in VLAN `vlan` is behind, per the store (if its
    /// switch said).
    pub fn mac_node(&self, vlan: Vid, mac: &MacAddr) -> Option<&Name> {
        self.macs.get(&(vlan, *mac))?.node.as_ref()
    }

    /// The switches that want group `group` in VLAN `vlan`: those with
    /// members and those with a multicast router of the family. `None` if
    /// the view is not known (send to every switch).
    pub fn group_switches(
        &self,
        vlan: Vid,
        group: &IpAddr,
    ) -> Option<impl Iterator<Item = &Name> + '_> {
        if !self.is_known() {
            return None;
        }
        let any = match group {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        let members = self.groups.get(&(vlan, *group)).into_iter().flatten();
        let routers = self.groups.get(&(vlan, any)).into_iter().flatten();
        Some(members.chain(routers))
    }

    /// Whether switch `switch` wants group `group` in VLAN `vlan` (members
    /// or a router of the family), per [`group_switches`](Self::group_switches);
    /// `None` if the view is not known.
    pub fn switch_wants(&self, vlan: Vid, group: &IpAddr, switch: &str) -> Option<bool> {
        let mut wanted = self.group_switches(vlan, group)?;
        Some(wanted.any(|s| **s == *switch))
    }

    /// Where node `node` is homed, per the store: its switch and endpoint.
    pub fn node_home(&self, node: &str) -> Option<(&Name, SocketAddr)> {
        self.switches
            .iter()
            .find_map(|(s, o)| o.nodes.get(node).map(|e| (s, *e)))
    }

    /// What switch `switch` owns in this network, per the store.
    pub fn counts(&self, switch: &str) -> OwnedCounts {
        self.switches
            .get(switch)
            .map_or_else(OwnedCounts::default, |o| OwnedCounts {
                up: true,
                macs: o.macs.len(),
                groups: o.groups.len(),
                nodes: o.nodes.len(),
            })
    }

    /// Apply one update; facts of other networks and of this switch itself
    /// are ignored.
    pub fn apply(&mut self, u: &ClusterUpdate) -> ViewChange {
        match u {
            ClusterUpdate::Store(s) => {
                // Losing the store does not void the snapshot: the view is
                // untrusted while disconnected (`is_known`), and on
                // reconnection the watch replays what was missed. (The store
                // also reads the snapshot before it says it is connected, so
                // a "not connected yet" report may come after the snapshot.)
                self.store = *s;
                ViewChange::None
            }
            ClusterUpdate::Resync(snap) => {
                self.resync(snap);
                ViewChange::Replaced
            }
            ClusterUpdate::SwitchUp(s) => {
                if **s != *self.own {
                    self.switches.entry(s.clone()).or_default();
                }
                ViewChange::None
            }
            ClusterUpdate::SwitchDown(s) => {
                if self.drop_switch(s) {
                    ViewChange::SwitchDown(s.clone())
                } else {
                    ViewChange::None
                }
            }
            ClusterUpdate::MacOwned { switch, mac, node } if self.mine(switch, &mac.network) => {
                self.own_mac(switch, mac, node.clone());
                ViewChange::MacOwned(mac.vlan, mac.mac, switch.clone(), node.clone())
            }
            ClusterUpdate::MacReleased { switch, mac } if self.mine(switch, &mac.network) => {
                if self.release_mac(switch, mac) {
                    ViewChange::MacReleased(mac.vlan, mac.mac, switch.clone())
                } else {
                    ViewChange::None
                }
            }
            ClusterUpdate::GroupJoined { switch, group } if self.mine(switch, &group.network) => {
                self.join(switch, group);
                ViewChange::None
            }
            ClusterUpdate::GroupLeft { switch, group } if self.mine(switch, &group.network) => {
                self.leave(switch, group);
                ViewChange::None
            }
            ClusterUpdate::NodeHomed {
                switch,
                node,
                endpoint,
            } if self.mine(switch, &node.network) => {
                self.home(switch, node, *endpoint);
                ViewChange::None
            }
            ClusterUpdate::NodeGone { switch, node } if self.mine(switch, &node.network) => {
                if let Some(o) = self.switches.get_mut(switch) {
                    o.nodes.remove(&node.node);
                }
                ViewChange::None
            }
            _ => ViewChange::None,
        }
    }

    /// A fact of another switch in this network.
    fn mine(&self, switch: &Name, network: &Name) -> bool {
        *network == self.network && *switch != self.own
    }

    fn own_mac(&mut self, switch: &Name, m: &MacRef, node: Option<Name>) {
        let key = (m.vlan, m.mac);
        let owner = MacOwner {
            switch: switch.clone(),
            node,
        };
        // A MAC is behind one switch: the latest owner wins.
        if let Some(old) = self.macs.insert(key, owner)
            && old.switch != *switch
            && let Some(o) = self.switches.get_mut(&old.switch)
        {
            o.macs.remove(&key);
        }
        self.switches
            .entry(switch.clone())
            .or_default()
            .macs
            .insert(key);
    }

    /// Whether the MAC was `switch`'s.
    fn release_mac(&mut self, switch: &Name, m: &MacRef) -> bool {
        let key = (m.vlan, m.mac);
        let Some(o) = self.switches.get_mut(switch) else {
            return false;
        };
        if !o.macs.remove(&key) {
            return false;
        }
        if self.macs.get(&key).is_some_and(|o| o.switch == *switch) {
            self.macs.remove(&key);
        }
        true
    }

    fn join(&mut self, switch: &Name, g: &GroupRef) {
        let key = (g.vlan, g.group);
        let o = self.switches.entry(switch.clone()).or_default();
        if o.groups.insert(key) {
            self.groups.entry(key).or_default().push(switch.clone());
        }
    }

    fn leave(&mut self, switch: &Name, g: &GroupRef) {
        let key = (g.vlan, g.group);
        if let Some(o) = self.switches.get_mut(switch)
            && o.groups.remove(&key)
        {
            self.unlist_group(key, switch);
        }
    }

    fn unlist_group(&mut self, key: (Vid, IpAddr), switch: &Name) {
        if let Some(list) = self.groups.get_mut(&key) {
            list.retain(|s| s != switch);
            if list.is_empty() {
                self.groups.remove(&key);
            }
        }
    }

    fn home(&mut self, switch: &Name, n: &NodeRef, endpoint: SocketAddr) {
        // A node is homed on one switch at a time.
        for o in self.switches.values_mut() {
            o.nodes.remove(&n.node);
        }
        self.switches
            .entry(switch.clone())
            .or_default()
            .nodes
            .insert(n.node.clone(), endpoint);
    }

    /// Forget switch `s` and all it owned; whether it was known.
    fn drop_switch(&mut self, s: &Name) -> bool {
        let Some(o) = self.switches.remove(s) else {
            return false;
        };
        for key in o.macs {
            if self.macs.get(&key).is_some_and(|o| o.switch == *s) {
                self.macs.remove(&key);
            }
        }
        for key in o.groups {
            self.unlist_group(key, s);
        }
        true
    }

    fn resync(&mut self, snap: &Snapshot) {
        self.switches.clear();
        self.macs.clear();
        self.groups.clear();
        let network = self.network.clone();
        for (name, facts) in &snap.switches {
            if *name == self.own {
                continue;
            }
            self.switches.entry(name.clone()).or_default();
            for (m, node) in facts.macs.iter().filter(|(m, _)| m.network == network) {
                self.own_mac(name, m, node.clone());
            }
            for g in facts.groups.iter().filter(|g| g.network == network) {
                self.join(name, g);
            }
            for (n, e) in facts.nodes.iter().filter(|(n, _)| n.network == network) {
                self.home(name, n, *e);
            }
        }
        self.store.revision = self.store.revision.max(snap.revision);
        self.resynced = true;
    }

    /// Every MAC the store places behind another switch.
    pub fn macs(&self) -> impl Iterator<Item = (Vid, MacAddr, &Name)> + '_ {
        self.macs.iter().map(|(&(v, m), o)| (v, m, &o.switch))
    }

    /// The switches the store says are up.
    pub fn switches_up(&self) -> impl Iterator<Item = &Name> + '_ {
        self.switches.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::super::SwitchFacts;
    use super::*;

    fn n(s: &str) -> Name {
        s.into()
    }

    fn mac(b: u8) -> MacRef {
        MacRef {
            network: n("lan"),
            vlan: 1,
            mac: MacAddr([2, 0, 0, 0, 0, b]),
        }
    }

    fn group(g: &str) -> GroupRef {
        GroupRef {
            network: n("lan"),
            vlan: 1,
            group: g.parse().unwrap(),
        }
    }

    fn connected() -> ClusterUpdate {
        ClusterUpdate::Store(StoreState {
            connected: true,
            revision: 7,
        })
    }

    fn names<'a>(it: Option<impl Iterator<Item = &'a Name>>) -> Option<Vec<String>> {
        it.map(|i| {
            let mut v: Vec<String> = i.map(|s| s.to_string()).collect();
            v.sort();
            v
        })
    }

    #[test]
    fn macs_move_and_go_with_their_switch() {
        let mut v = ClusterView::new(n("lan"), n("a"));
        let own = |s: &str, m| ClusterUpdate::MacOwned {
            switch: n(s),
            mac: m,
            node: None,
        };
        assert_eq!(
            v.apply(&own("b", mac(1))),
            ViewChange::MacOwned(1, mac(1).mac, n("b"), None)
        );
        assert_eq!(v.mac_owner(1, &mac(1).mac).map(|s| &**s), Some("b"));
        assert_eq!(v.mac_node(1, &mac(1).mac), None, "b did not say");
        // Moved to c: b's release afterwards does not take it from c.
        v.apply(&own("c", mac(1)));
        let rel = ClusterUpdate::MacReleased {
            switch: n("b"),
            mac: mac(1),
        };
        assert_eq!(v.apply(&rel), ViewChange::None);
        assert_eq!(v.mac_owner(1, &mac(1).mac).map(|s| &**s), Some("c"));
        v.apply(&own("c", mac(2)));
        assert_eq!(v.counts("c").macs, 2);
        assert_eq!(
            v.apply(&ClusterUpdate::SwitchDown(n("c"))),
            ViewChange::SwitchDown(n("c"))
        );
        assert_eq!(v.mac_owner(1, &mac(1).mac), None);
        assert_eq!(v.mac_owner(1, &mac(2).mac), None);
        assert_eq!(v.counts("c"), OwnedCounts::default());
        // Own facts and other networks' are not ours to keep.
        v.apply(&own("a", mac(3)));
        let mut other = mac(4);
        other.network = n("other");
        v.apply(&own("b", other));
        assert_eq!(v.mac_owner(1, &mac(3).mac), None);
        assert_eq!(v.mac_owner(1, &mac(4).mac), None);
    }

    #[test]
    fn a_mac_names_its_node_when_its_switch_said_so() {
        let mut v = ClusterView::new(n("lan"), n("a"));
        let own = |s: &str, node: Option<&str>| ClusterUpdate::MacOwned {
            switch: n(s),
            mac: mac(1),
            node: node.map(n),
        };
        let node = |v: &ClusterView| v.mac_node(1, &mac(1).mac).map(|s| s.to_string());
        v.apply(&own("b", Some("h2")));
        assert_eq!(node(&v).as_deref(), Some("h2"));
        v.apply(&own("c", Some("h3")));
        assert_eq!(node(&v).as_deref(), Some("h3"), "moved to c's h3");
        v.apply(&own("c", None));
        assert_eq!(node(&v), None, "c no longer says which node");
        v.apply(&ClusterUpdate::Resync(Snapshot {
            revision: 2,
            switches: vec![(
                n("b"),
                SwitchFacts {
                    macs: vec![(mac(1), Some(n("h2")))],
                    ..Default::default()
                },
            )],
        }));
        assert_eq!(node(&v).as_deref(), Some("h2"), "from a snapshot");
        v.apply(&ClusterUpdate::SwitchDown(n("b")));
        assert_eq!(node(&v), None);
    }

    #[test]
    fn groups_prune_only_when_known() {
        let mut v = ClusterView::new(n("lan"), n("a"));
        let join = |s: &str, g| ClusterUpdate::GroupJoined {
            switch: n(s),
            group: g,
        };
        v.apply(&join("b", group("239.1.1.1")));
        let g: IpAddr = "239.1.1.1".parse().unwrap();
        // Not connected, no snapshot: unknown.
        assert_eq!(names(v.group_switches(1, &g)), None);
        v.apply(&connected());
        assert_eq!(names(v.group_switches(1, &g)), None, "no snapshot yet");
        v.apply(&ClusterUpdate::Resync(Snapshot {
            revision: 9,
            switches: vec![
                (
                    n("b"),
                    SwitchFacts {
                        groups: vec![group("239.1.1.1")],
                        ..Default::default()
                    },
                ),
                (n("c"), SwitchFacts::default()),
            ],
        }));
        assert_eq!(v.store().revision, 9);
        assert_eq!(names(v.group_switches(1, &g)), Some(vec!["b".into()]));
        let other: IpAddr = "239.2.2.2".parse().unwrap();
        assert_eq!(names(v.group_switches(1, &other)), Some(vec![]));
        // A router behind c wants every IPv4 group, no IPv6 one.
        v.apply(&join("c", group("0.0.0.0")));
        assert_eq!(names(v.group_switches(1, &other)), Some(vec!["c".into()]));
        let v6: IpAddr = "ff0e::1".parse().unwrap();
        assert_eq!(names(v.group_switches(1, &v6)), Some(vec![]));
        v.apply(&ClusterUpdate::GroupLeft {
            switch: n("b"),
            group: group("239.1.1.1"),
        });
        assert_eq!(names(v.group_switches(1, &g)), Some(vec!["c".into()]));
        // The store lost: unknown while it is gone.
        v.apply(&ClusterUpdate::Store(StoreState {
            connected: false,
            revision: 9,
        }));
        assert_eq!(names(v.group_switches(1, &g)), None);
    }

    #[test]
    fn a_reconnected_store_is_trusted_again_without_a_new_snapshot() {
        let mut v = ClusterView::new(n("lan"), n("a"));
        let g: IpAddr = "239.1.1.1".parse().unwrap();
        v.apply(&connected());
        v.apply(&ClusterUpdate::Resync(Snapshot {
            revision: 9,
            switches: vec![(n("b"), SwitchFacts::default())],
        }));
        assert_eq!(names(v.group_switches(1, &g)), Some(vec![]));
        v.apply(&store(false, 9));
        assert_eq!(names(v.group_switches(1, &g)), None, "untrusted while gone");
        // Back: the watch resumes from revision 9 and replays a join that
        // happened meanwhile; the view prunes again at once.
        v.apply(&store(true, 9));
        v.apply(&ClusterUpdate::GroupJoined {
            switch: n("b"),
            group: group("239.1.1.1"),
        });
        assert_eq!(names(v.group_switches(1, &g)), Some(vec!["b".into()]));
    }

    fn store(connected: bool, revision: i64) -> ClusterUpdate {
        ClusterUpdate::Store(StoreState {
            connected,
            revision,
        })
    }

    #[test]
    fn a_snapshot_read_while_connecting_makes_the_view_known_once_connected() {
        let mut v = ClusterView::new(n("lan"), n("a"));
        let g: IpAddr = "239.1.1.1".parse().unwrap();
        v.apply(&store(false, 0));
        // The store reads the snapshot, then the engine hears of the
        // revision it read (still connecting), then of the connection.
        v.apply(&ClusterUpdate::Resync(Snapshot {
            revision: 9,
            switches: vec![(
                n("b"),
                SwitchFacts {
                    groups: vec![group("239.1.1.1")],
                    ..Default::default()
                },
            )],
        }));
        v.apply(&store(false, 9));
        v.apply(&store(true, 9));
        assert_eq!(names(v.group_switches(1, &g)), Some(vec!["b".into()]));
    }

    #[test]
    fn a_node_is_homed_once() {
        let mut v = ClusterView::new(n("lan"), n("a"));
        let node = NodeRef {
            network: n("lan"),
            node: n("h1"),
        };
        let e1: SocketAddr = "198.18.0.5:1000".parse().unwrap();
        let e2: SocketAddr = "198.18.0.5:1001".parse().unwrap();
        v.apply(&ClusterUpdate::NodeHomed {
            switch: n("b"),
            node: node.clone(),
            endpoint: e1,
        });
        v.apply(&ClusterUpdate::NodeHomed {
            switch: n("c"),
            node: node.clone(),
            endpoint: e2,
        });
        assert_eq!(v.node_home("h1"), Some((&n("c"), e2)));
        assert_eq!(v.counts("b").nodes, 0);
        v.apply(&ClusterUpdate::NodeGone {
            switch: n("c"),
            node,
        });
        assert_eq!(v.node_home("h1"), None);
    }
}
