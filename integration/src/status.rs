//! Reading `tapmesh-switch status --json` and `tapmesh-node status --json`.
//!
//! The helpers treat a missing key as 0, so a test written against today's
//! counters keeps working when counters are added.
use serde_json::Value;

/// The number at `path` (e.g. `["drops", "unknown_key"]`), 0 if missing.
pub fn counter(v: &Value, path: &[&str]) -> u64 {
    let mut cur = v;
    for key in path {
        match cur.get(key) {
            Some(next) => cur = next,
            None => return 0,
        }
    }
    cur.as_u64().unwrap_or(0)
}

/// The sum of every number in the object at `key` (e.g. all drop reasons).
pub fn sum_of(v: &Value, key: &str) -> u64 {
    v.get(key)
        .and_then(Value::as_object)
        .map(|o| o.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0)
}

/// The switch's entry for node `name`, if listed.
pub fn switch_node<'a>(status: &'a Value, name: &str) -> Option<&'a Value> {
    status
        .get("nodes")?
        .as_array()?
        .iter()
        .find(|n| n.get("name").and_then(Value::as_str) == Some(name))
}

/// A mesh node's entry for peer `name` (its `peers`), if listed.
pub fn node_peer<'a>(status: &'a Value, name: &str) -> Option<&'a Value> {
    status
        .get("peers")?
        .as_array()?
        .iter()
        .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
}

/// Whether the switch reports node `name` as connected.
pub fn switch_node_connected(status: &Value, name: &str) -> bool {
    switch_node(status, name)
        .and_then(|n| n.get("connected"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// Host `i`'s status entry for its mesh peer `peer`, or `None` if `i` does
/// not answer or has no such peer.
pub fn peer_entry(topo: &crate::Topology, i: usize, peer: usize) -> Option<Value> {
    let s = topo.try_node_status(i).ok()?;
    node_peer(&s, topo.host_name(peer)).cloned()
}

/// Host `i`'s view of the path to its mesh peer `peer` (`"direct"` or
/// `"relayed"`), or `None` if `i` does not answer or has no such peer.
pub fn peer_path(topo: &crate::Topology, i: usize, peer: usize) -> Option<String> {
    peer_entry(topo, i, peer).and_then(|p| p["path"].as_str().map(str::to_owned))
}
