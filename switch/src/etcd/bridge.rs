//! Between the engine's cluster types and the etcd key space, sans-IO:
//! a [`LocalChange`] becomes a key to write or delete, a store [`Report`]
//! becomes the [`ClusterUpdate`]s it means. Facts owned by this switch are
//! never handed back to the engine (it knows its own).
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::cluster::{
    ClusterUpdate, GroupRef, LocalChange, MacRef, Name, NodeRef, Snapshot, SwitchFacts,
};

use super::keys::{Key, Value};
use super::outbox::Op;
use super::store::Report;

/// The key this switch writes to say it serves `network`, listening at
/// `endpoint`.
pub fn switch_key(me: &str, network: &str, endpoint: SocketAddr) -> (Key, Value) {
    (
        Key::Switch {
            network: network.into(),
            switch: me.into(),
        },
        Value {
            endpoint: Some(endpoint),
            ..Value::default()
        },
    )
}

/// What `change` means in etcd: a key and its new value (`None`: delete).
pub fn local_op(me: &str, change: &LocalChange) -> Op {
    let mine = || Value {
        switch: Some(me.into()),
        ..Value::default()
    };
    match change {
        LocalChange::MacOwned(m, node) => (
            mac_key(m),
            Some(Value {
                node: Some(node.to_string()),
                ..mine()
            }),
        ),
        LocalChange::MacReleased(m) => (mac_key(m), None),
        LocalChange::GroupJoined(g) => (group_key(me, g), Some(Value::default())),
        LocalChange::GroupLeft(g) => (group_key(me, g), None),
        LocalChange::NodeHomed(n, endpoint) => (
            node_key(n),
            Some(Value {
                endpoint: Some(*endpoint),
                ..mine()
            }),
        ),
        LocalChange::NodeGone(n) => (node_key(n), None),
    }
}

fn mac_key(m: &MacRef) -> Key {
    Key::Mac {
        network: m.network.to_string(),
        vlan: m.vlan,
        mac: m.mac,
    }
}

fn group_key(me: &str, g: &GroupRef) -> Key {
    Key::Mcast {
        network: g.network.to_string(),
        vlan: g.vlan,
        group: g.group,
        switch: me.into(),
    }
}

fn node_key(n: &NodeRef) -> Key {
    Key::Node {
        network: n.network.to_string(),
        node: n.node.to_string(),
    }
}

/// The owner of a key with this value, if the key says.
fn owner<'a>(key: &'a Key, value: &'a Value) -> Option<&'a str> {
    match key {
        Key::Switch { switch, .. } | Key::Mcast { switch, .. } => Some(switch),
        Key::Node { .. } | Key::Mac { .. } => value.switch.as_deref(),
    }
}

/// What a key is about, in the engine's terms.
enum Fact {
    Switch,
    Mac(MacRef),
    Group(GroupRef),
    Node(NodeRef),
}

fn fact(key: &Key) -> Fact {
    match key {
        Key::Switch { .. } => Fact::Switch,
        Key::Mac { network, vlan, mac } => Fact::Mac(MacRef {
            network: Arc::from(network.as_str()),
            vlan: *vlan,
            mac: *mac,
        }),
        Key::Mcast {
            network,
            vlan,
            group,
            ..
        } => Fact::Group(GroupRef {
            network: Arc::from(network.as_str()),
            vlan: *vlan,
            group: *group,
        }),
        Key::Node { network, node } => Fact::Node(NodeRef {
            network: Arc::from(network.as_str()),
            node: Arc::from(node.as_str()),
        }),
    }
}

/// `key` with `value` as the fact "its owner has it"; `None` for a value
/// without an owner or a node value without an endpoint.
fn gained(key: &Key, value: &Value) -> Option<ClusterUpdate> {
    let switch: Name = owner(key, value)?.into();
    Some(match fact(key) {
        Fact::Switch => ClusterUpdate::SwitchUp(switch),
        Fact::Mac(mac) => ClusterUpdate::MacOwned {
            switch,
            mac,
            node: value.node.as_deref().map(Name::from),
        },
        Fact::Group(group) => ClusterUpdate::GroupJoined { switch, group },
        Fact::Node(node) => ClusterUpdate::NodeHomed {
            switch,
            node,
            endpoint: value.endpoint?,
        },
    })
}

/// `key` with `value` (its last value) as the fact "its owner no longer
/// has it".
fn lost(key: &Key, value: &Value) -> Option<ClusterUpdate> {
    let switch: Name = owner(key, value)?.into();
    Some(match fact(key) {
        Fact::Switch => ClusterUpdate::SwitchDown(switch),
        Fact::Mac(mac) => ClusterUpdate::MacReleased { switch, mac },
        Fact::Group(group) => ClusterUpdate::GroupLeft { switch, group },
        Fact::Node(node) => ClusterUpdate::NodeGone { switch, node },
    })
}

/// The updates a store report means for the engine, in order. Reports that
/// are not about the cluster's state (`Written`, `WriteFailed`,
/// `LeaseGranted`) mean none.
pub fn updates(me: &str, report: &Report, out: &mut Vec<ClusterUpdate>) {
    let other = |k: &Key, v: &Value| owner(k, v).is_some_and(|o| o != me);
    match report {
        Report::Put { key, value, prev } => {
            if let Some(p) = prev
                && other(key, p)
                && owner(key, p) != owner(key, value)
            {
                out.extend(lost(key, p));
            }
            if other(key, value) {
                out.extend(gained(key, value));
            }
        }
        Report::Delete { key, prev } => {
            if let Some(p) = prev
                && other(key, p)
            {
                out.extend(lost(key, p));
            }
        }
        Report::Resync { revision, entries } => {
            out.push(ClusterUpdate::Resync(snapshot(me, *revision, entries)));
        }
        Report::Written(_) | Report::WriteFailed | Report::LeaseGranted => {}
    }
}

/// Every other switch with what it owns, from a full read of the prefix.
pub fn snapshot(me: &str, revision: i64, entries: &[(Key, Value)]) -> Snapshot {
    let mut by_switch: BTreeMap<&str, SwitchFacts> = BTreeMap::new();
    for (key, value) in entries {
        let Some(o) = owner(key, value).filter(|o| *o != me) else {
            continue;
        };
        let facts = by_switch.entry(o).or_default();
        match gained(key, value) {
            Some(ClusterUpdate::MacOwned { mac, node, .. }) => facts.macs.push((mac, node)),
            Some(ClusterUpdate::GroupJoined { group, .. }) => facts.groups.push(group),
            Some(ClusterUpdate::NodeHomed { node, endpoint, .. }) => {
                facts.nodes.push((node, endpoint))
            }
            _ => {}
        }
    }
    Snapshot {
        revision,
        switches: by_switch
            .into_iter()
            .map(|(s, f)| (Name::from(s), f))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac() -> MacRef {
        MacRef {
            network: "default".into(),
            vlan: 0,
            mac: [2, 0, 0, 0, 0, 7].into(),
        }
    }

    fn owned_by(s: &str) -> Value {
        Value {
            switch: Some(s.into()),
            ..Value::default()
        }
    }

    #[test]
    fn local_changes_become_keys_owned_by_this_switch() {
        let ep: SocketAddr = "198.18.0.11:4000".parse().unwrap();
        let node = NodeRef {
            network: "default".into(),
            node: "h1".into(),
        };
        let (k, v) = local_op("sw1", &LocalChange::NodeHomed(node.clone(), ep));
        assert_eq!(
            k,
            Key::Node {
                network: "default".into(),
                node: "h1".into()
            }
        );
        assert_eq!(v.unwrap().endpoint, Some(ep));
        assert_eq!(local_op("sw1", &LocalChange::NodeGone(node)).1, None);
        let (k, v) = local_op("sw1", &LocalChange::MacOwned(mac(), "h1".into()));
        assert_eq!(
            v,
            Some(Value {
                node: Some("h1".into()),
                ..owned_by("sw1")
            })
        );
        assert_eq!(local_op("sw1", &LocalChange::MacReleased(mac())), (k, None));
        let group = GroupRef {
            network: "default".into(),
            vlan: 10,
            group: "239.1.2.3".parse().unwrap(),
        };
        let (k, v) = local_op("sw1", &LocalChange::GroupJoined(group));
        assert!(matches!(k, Key::Mcast { ref switch, .. } if switch == "sw1"));
        assert_eq!(v, Some(Value::default()));
    }

    #[test]
    fn a_moved_mac_releases_the_old_owner_and_own_facts_are_skipped() {
        let key = local_op("x", &LocalChange::MacOwned(mac(), "h1".into())).0;
        let mut out = Vec::new();
        updates(
            "sw1",
            &Report::Put {
                key: key.clone(),
                value: owned_by("sw3"),
                prev: Some(owned_by("sw2")),
            },
            &mut out,
        );
        assert_eq!(
            out,
            vec![
                ClusterUpdate::MacReleased {
                    switch: "sw2".into(),
                    mac: mac()
                },
                ClusterUpdate::MacOwned {
                    switch: "sw3".into(),
                    mac: mac(),
                    node: None,
                },
            ]
        );
        // Taken over by this switch: the old owner is released, nothing
        // about ourselves comes back.
        out.clear();
        updates(
            "sw1",
            &Report::Put {
                key: key.clone(),
                value: owned_by("sw1"),
                prev: Some(owned_by("sw3")),
            },
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert!(matches!(&out[0], ClusterUpdate::MacReleased { switch, .. } if &**switch == "sw3"));
        // Our own key deleted (our lease expired): nothing.
        out.clear();
        updates(
            "sw1",
            &Report::Delete {
                key,
                prev: Some(owned_by("sw1")),
            },
            &mut out,
        );
        assert!(out.is_empty());
    }

    #[test]
    fn a_switch_key_deleted_is_that_switch_down_and_a_resync_skips_ourselves() {
        let (k2, v2) = switch_key("sw2", "default", "198.18.0.4:7777".parse().unwrap());
        let mut out = Vec::new();
        updates(
            "sw1",
            &Report::Delete {
                key: k2.clone(),
                prev: Some(v2.clone()),
            },
            &mut out,
        );
        assert_eq!(out, vec![ClusterUpdate::SwitchDown("sw2".into())]);

        let (k1, v1) = switch_key("sw1", "default", "198.18.0.3:7777".parse().unwrap());
        let mac_key = local_op("x", &LocalChange::MacOwned(mac(), "h1".into())).0;
        let snap = snapshot(
            "sw1",
            9,
            &[
                (k1, v1),
                (k2, v2),
                (
                    mac_key.clone(),
                    Value {
                        node: Some("h2".into()),
                        ..owned_by("sw2")
                    },
                ),
                (mac_key, owned_by("sw1")),
            ],
        );
        assert_eq!(snap.revision, 9);
        assert_eq!(snap.switches.len(), 1);
        assert_eq!(&*snap.switches[0].0, "sw2");
        assert_eq!(snap.switches[0].1.macs, vec![(mac(), Some("h2".into()))]);
    }
}
