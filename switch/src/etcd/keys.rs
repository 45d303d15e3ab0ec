//! The etcd key space of a cluster of switches: encoding and parsing, sans-IO.
//!
//! Every switch writes, under its own lease, what it owns in one network:
//!
//! | key | value |
//! |---|---|
//! | `PREFIX/NETWORK/switch/SWITCH` | `{"endpoint": "…"}` (the switch itself) |
//! | `PREFIX/NETWORK/node/NODE` | `{"switch": "…", "endpoint": "…"}` (a node homed on it) |
//! | `PREFIX/NETWORK/mac/VLAN/MAC` | `{"switch": "…", "node": "…"}` (a MAC learned behind one of its nodes, and which) |
//! | `PREFIX/NETWORK/mcast/VLAN/GROUP/SWITCH` | `{}` (it has members of `GROUP`) |
//!
//! Names (network, switch, node) are free text in the config, so a segment
//! is escaped: `%` becomes `%25` and `/` becomes `%2F`; anything else is
//! kept. VLAN is decimal 0..=4094 (0 on a VLAN-unaware network), MAC is `aa:bb:cc:dd:ee:ff`, GROUP an IPv4
//! or IPv6 address. The owner of a `mac` key is in its value; for `mcast`
//! the switch is the last segment, so two switches with members of one group
//! write two keys and neither overwrites the other.
//!
//! A key or value from etcd is untrusted input (another switch, an operator
//! with `etcdctl`): [`parse_key`] and [`parse_value`] return `None` for
//! anything they do not recognise, never panic; the store counts and
//! ignores those.
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use overlay_proto::ethernet::MacAddr;
use serde::{Deserialize, Serialize};

use crate::vlan::Vid;

/// One key of the key space, without the prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// A switch of the cluster, present while its lease lives.
    Switch { network: String, switch: String },
    /// A node connected to (homed on) some switch.
    Node { network: String, node: String },
    /// A MAC learned behind a node of some switch.
    Mac {
        network: String,
        vlan: Vid,
        mac: MacAddr,
    },
    /// Switch `switch` has members of `group` in `vlan`.
    Mcast {
        network: String,
        vlan: Vid,
        group: IpAddr,
        switch: String,
    },
}

impl Key {
    /// The network the key belongs to.
    pub fn network(&self) -> &str {
        match self {
            Key::Switch { network, .. }
            | Key::Node { network, .. }
            | Key::Mac { network, .. }
            | Key::Mcast { network, .. } => network,
        }
    }
}

/// A value: who owns the key, and what it says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Value {
    /// The switch that wrote it (absent in `switch` and `mcast` values, where
    /// the key names it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch: Option<String>,
    /// A UDP endpoint: the switch's for `switch`, the node's for `node`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<SocketAddr>,
    /// The node a `mac` is behind (absent elsewhere, and in values of
    /// switches that did not say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl Value {
    /// The value as written to etcd (compact JSON).
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }
}

/// Parses a value read from etcd; `None` if it is not one this version
/// writes.
pub fn parse_value(bytes: &[u8]) -> Option<Value> {
    serde_json::from_slice(bytes).ok()
}

/// Where every key of `network` starts: `PREFIX/NETWORK/`.
pub fn network_prefix(prefix: &str, network: &str) -> String {
    let mut s = String::with_capacity(prefix.len() + network.len() + 2);
    s.push_str(prefix.trim_end_matches('/'));
    s.push('/');
    escape_into(&mut s, network);
    s.push('/');
    s
}

/// The full key: `PREFIX/NETWORK/…`.
pub fn encode_key(prefix: &str, key: &Key) -> String {
    let mut s = network_prefix(prefix, key.network());
    match key {
        Key::Switch { switch, .. } => {
            s.push_str("switch/");
            escape_into(&mut s, switch);
        }
        Key::Node { node, .. } => {
            s.push_str("node/");
            escape_into(&mut s, node);
        }
        Key::Mac { vlan, mac, .. } => {
            let _ = write!(s, "mac/{vlan}/{mac}");
        }
        Key::Mcast {
            vlan,
            group,
            switch,
            ..
        } => {
            let _ = write!(s, "mcast/{vlan}/{group}/");
            escape_into(&mut s, switch);
        }
    }
    s
}

/// Parses a full key under `prefix`; `None` if it is not one of ours (wrong
/// prefix, unknown kind, bad VLAN, MAC, group or escape).
pub fn parse_key(prefix: &str, key: &[u8]) -> Option<Key> {
    let key = std::str::from_utf8(key).ok()?;
    let rest = key.strip_prefix(prefix.trim_end_matches('/'))?;
    let rest = rest.strip_prefix('/')?;
    let parts: Vec<&str> = rest.split('/').collect();
    let network = unescape(parts.first()?)?;
    match parts.as_slice() {
        [_, "switch", name] => Some(Key::Switch {
            network,
            switch: unescape(name)?,
        }),
        [_, "node", name] => Some(Key::Node {
            network,
            node: unescape(name)?,
        }),
        [_, "mac", vlan, mac] => Some(Key::Mac {
            network,
            vlan: parse_vlan(vlan)?,
            mac: MacAddr::parse_unicast(mac).ok()?,
        }),
        [_, "mcast", vlan, group, switch] => Some(Key::Mcast {
            network,
            vlan: parse_vlan(vlan)?,
            group: group.parse().ok()?,
            switch: unescape(switch)?,
        }),
        _ => None,
    }
}

fn parse_vlan(s: &str) -> Option<Vid> {
    // Canonical decimal only, so that one VLAN has one key.
    let canonical = !s.is_empty() && s.len() <= 4 && !(s.len() > 1 && s.starts_with('0'));
    if !canonical || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: Vid = s.parse().ok()?;
    (v <= 4094).then_some(v)
}

fn escape_into(out: &mut String, name: &str) {
    for c in name.chars() {
        match c {
            '%' => out.push_str("%25"),
            '/' => out.push_str("%2F"),
            c => out.push(c),
        }
    }
}

/// Undoes [`escape_into`]; `None` for an empty segment or a `%` not
/// followed by `25` or `2F`.
fn unescape(seg: &str) -> Option<String> {
    if seg.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(seg.len());
    let mut rest = seg;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let esc = rest.get(i..i + 3)?;
        out.push(match esc {
            "%25" => '%',
            "%2F" => '/',
            _ => return None,
        });
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(s: &str) -> MacAddr {
        s.parse().unwrap()
    }

    fn all_kinds() -> Vec<Key> {
        vec![
            Key::Switch {
                network: "default".into(),
                switch: "s1".into(),
            },
            Key::Node {
                network: "lab/a%b".into(),
                node: "h/1".into(),
            },
            Key::Mac {
                network: "default".into(),
                vlan: 4094,
                mac: mac("02:00:00:00:00:01"),
            },
            Key::Mcast {
                network: "default".into(),
                vlan: 0,
                group: "ff02::fb".parse().unwrap(),
                switch: "s2".into(),
            },
            Key::Mcast {
                network: "n".into(),
                vlan: 10,
                group: "239.1.2.3".parse().unwrap(),
                switch: "s%2F".into(),
            },
        ]
    }

    #[test]
    fn keys_round_trip_and_look_as_documented() {
        for k in all_kinds() {
            let s = encode_key("/tapmesh", &k);
            assert_eq!(parse_key("/tapmesh", s.as_bytes()), Some(k.clone()), "{s}");
            assert_eq!(parse_key("/tapmesh/", s.as_bytes()), Some(k), "{s}");
        }
        let k = &all_kinds();
        assert_eq!(encode_key("/tapmesh", &k[0]), "/tapmesh/default/switch/s1");
        assert_eq!(
            encode_key("/tapmesh/", &k[1]),
            "/tapmesh/lab%2Fa%25b/node/h%2F1"
        );
        assert_eq!(
            encode_key("/t", &k[2]),
            "/t/default/mac/4094/02:00:00:00:00:01"
        );
        assert_eq!(encode_key("/t", &k[3]), "/t/default/mcast/0/ff02::fb/s2");
        assert!(encode_key("/t", &k[1]).starts_with(&network_prefix("/t", "lab/a%b")));
    }

    #[test]
    fn foreign_and_malformed_keys_are_refused() {
        for bad in [
            "/other/default/switch/s1",
            "/tapmeshx/default/switch/s1",
            "/tapmesh/default/switch",
            "/tapmesh/default/switch/",
            "/tapmesh//switch/s1",
            "/tapmesh/default/switch/s1/extra",
            "/tapmesh/default/router/s1",
            "/tapmesh/default/mac/00/02:00:00:00:00:01",
            "/tapmesh/default/mac/4095/02:00:00:00:00:01",
            "/tapmesh/default/mac/+1/02:00:00:00:00:01",
            "/tapmesh/default/mac/1/ff:ff:ff:ff:ff:ff",
            "/tapmesh/default/mac/1/zz",
            "/tapmesh/default/mcast/1/notanip/s1",
            "/tapmesh/default/node/a%2",
            "/tapmesh/default/node/a%41",
            "/tapmesh/def%/node/a",
        ] {
            assert_eq!(parse_key("/tapmesh", bad.as_bytes()), None, "{bad}");
        }
        assert_eq!(parse_key("/tapmesh", b"/tapmesh/\xff/switch/s1"), None);
    }

    #[test]
    fn values_round_trip_and_unknown_fields_are_refused() {
        let v = Value {
            switch: Some("s1".into()),
            endpoint: Some("198.18.0.11:4000".parse().unwrap()),
            node: None,
        };
        let s = v.encode();
        assert_eq!(s, r#"{"switch":"s1","endpoint":"198.18.0.11:4000"}"#);
        assert_eq!(parse_value(s.as_bytes()), Some(v));
        let m = Value {
            switch: Some("s1".into()),
            node: Some("h/1".into()),
            ..Value::default()
        };
        assert_eq!(m.encode(), r#"{"switch":"s1","node":"h/1"}"#);
        assert_eq!(parse_value(m.encode().as_bytes()), Some(m));
        assert_eq!(parse_value(b"{}"), Some(Value::default()));
        assert_eq!(Value::default().encode(), "{}");
        assert_eq!(parse_value(br#"{"switch":1}"#), None);
        assert_eq!(parse_value(br#"{"evil":"x"}"#), None);
        assert_eq!(parse_value(b"\xff"), None);
    }
}
