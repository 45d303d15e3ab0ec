//! The `status` snapshot: what `tapmesh-switch status` prints, as a table or
//! as JSON (field names are stable; scripts rely on them).
use serde::{Deserialize, Serialize};

use crate::impair::ImpairStatus;
use crate::stats::{
    Drops, Forwarded, MacCounters, NodeCounters, ReloadCounters, SessionCounters, SnoopCounters,
};
use crate::vlan::Vid;

/// The whole switch.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Seconds since the switch started.
    pub uptime_secs: f64,
    /// Every configured node.
    pub nodes: Vec<NodeStatus>,
    /// Drops by reason.
    pub drops: Drops,
    /// Frames by forwarding decision.
    pub forwarded: Forwarded,
    /// MAC table size and activity.
    pub mac_table: MacTableStatus,
    /// Handshakes and sessions.
    pub sessions: SessionCounters,
    /// Handshake flood defence: under load or not, cookie replies.
    pub handshake_guard: overlay_proto::handshake_guard::GuardStatus,
    /// IGMP/MLD snooping: queriers, router ports, groups and counters.
    pub multicast: MulticastStatus,
    /// The networks this switch hosts (isolated from each other).
    pub networks: Vec<NetworkStatus>,
    /// Config reloads applied and refused.
    pub reloads: ReloadCounters,
    /// The MAC table itself, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub macs: Option<Vec<MacStatus>>,
}

/// One network (`[[network]]`, or the top-level nodes' network).
#[derive(Debug, Clone, Serialize)]
pub struct NetworkStatus {
    /// Its name (`default` for the top-level nodes).
    pub name: String,
    /// The network id its datagrams carry.
    pub id: u32,
    /// `central` or `mesh`.
    pub mode: crate::mesh::Mode,
    /// Nodes configured in it.
    pub nodes: usize,
    /// Of those, nodes with a confirmed session now.
    pub connected: usize,
}

/// One configured node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    /// The network it belongs to (see `networks`).
    pub network: String,
    /// Its name.
    pub name: String,
    /// Its public key.
    pub public_key: String,
    /// Has a confirmed session.
    pub connected: bool,
    /// Its underlay address as last seen.
    pub endpoint: Option<String>,
    /// Age of the current session.
    pub session_age_secs: Option<f64>,
    /// Seconds since its last handshake.
    pub last_handshake_secs_ago: Option<f64>,
    /// Seconds since anything authentic arrived from it.
    pub last_heard_secs_ago: Option<f64>,
    /// MACs learned behind it.
    pub macs: usize,
    /// Its access (native) VLAN; absent on a VLAN-unaware switch or a pure trunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vlan: Option<Vid>,
    /// The VLANs it carries tagged.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trunk: Vec<Vid>,
    /// Traffic.
    #[serde(flatten)]
    pub counters: NodeCounters,
    /// Its link's impairment, if any was ever set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impair: Option<ImpairStatus>,
}

/// MAC table summary.
#[derive(Debug, Clone, Serialize)]
pub struct MacTableStatus {
    /// Entries now.
    pub entries: usize,
    /// The table limit.
    pub limit: usize,
    /// The per-node limit.
    pub limit_per_node: usize,
    /// Aging time.
    pub aging_secs: u64,
    /// Activity.
    #[serde(flatten)]
    pub counters: MacCounters,
}

/// One MAC table entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MacStatus {
    /// The network it belongs to (see `networks`).
    pub network: String,
    /// Its VLAN (0 on a VLAN-unaware switch).
    #[serde(default)]
    pub vlan: Vid,
    /// The MAC, as `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// The node it is behind.
    pub node: String,
    /// Seconds until it ages out.
    pub expires_in_secs: f64,
}

/// Multicast snooping state.
#[derive(Debug, Clone, Serialize)]
pub struct MulticastStatus {
    /// Snooping is on (else every multicast frame is flooded).
    pub snooping: bool,
    /// Groups nobody joined are flooded (else sent to router ports only).
    pub flood_unregistered: bool,
    /// Group membership interval.
    pub membership_secs: f64,
    /// The built-in querier, per VLAN and family.
    pub queriers: Vec<QuerierStatus>,
    /// Nodes behind which a multicast router or querier was heard.
    pub router_ports: Vec<RouterPortStatus>,
    /// The group table.
    pub groups: Vec<GroupStatus>,
    /// The group table's limits.
    pub limits: SnoopLimits,
    /// Activity.
    pub counters: SnoopCounters,
}

/// The bounds of the group table (`[multicast]` `max-*`, switch-wide
/// settings applied per network, and the shared total).
#[derive(Debug, Clone, Serialize)]
pub struct SnoopLimits {
    /// Memberships one node may hold.
    pub max_groups_per_node: usize,
    /// Groups one network may hold.
    pub max_groups: usize,
    /// Groups all networks may hold together.
    pub max_groups_total: usize,
    /// Sources one node may list for one group.
    pub max_sources_per_group: usize,
    /// Leaves per second per node.
    pub leaves_per_sec: u32,
    /// Groups over all networks now.
    pub groups_total: usize,
}

/// The built-in querier of one VLAN and family.
#[derive(Debug, Clone, Serialize)]
pub struct QuerierStatus {
    /// The network it belongs to (see `networks`).
    pub network: String,
    /// The VLAN.
    pub vlan: Vid,
    /// `ipv4` (IGMP) or `ipv6` (MLD).
    pub family: &'static str,
    /// Sending queries now (no other querier with a lower address heard).
    pub active: bool,
    /// Its source address.
    pub address: String,
    /// The other querier it yields to, if any.
    pub other_querier: Option<String>,
    /// Seconds until the other querier counts as gone.
    pub other_querier_expires_in_secs: Option<f64>,
}

/// A router port.
#[derive(Debug, Clone, Serialize)]
pub struct RouterPortStatus {
    /// The network it belongs to (see `networks`).
    pub network: String,
    /// The VLAN.
    pub vlan: Vid,
    /// The node.
    pub node: String,
    /// Seconds until it ages out.
    pub expires_in_secs: f64,
}

/// One group.
#[derive(Debug, Clone, Serialize)]
pub struct GroupStatus {
    /// The network it belongs to (see `networks`).
    pub network: String,
    /// The VLAN.
    pub vlan: Vid,
    /// The group address.
    pub group: String,
    /// Data frames forwarded to the group.
    pub frames: u64,
    /// Bytes of those frames.
    pub bytes: u64,
    /// Nodes with members.
    pub members: Vec<MemberStatus>,
}

/// A node's membership in a group.
#[derive(Debug, Clone, Serialize)]
pub struct MemberStatus {
    /// The node.
    pub node: String,
    /// Seconds until its any-source membership (v1/v2, EXCLUDE mode) ends;
    /// absent if it has only source-specific ones.
    pub any_source_expires_in_secs: Option<f64>,
    /// INCLUDE-mode sources.
    pub sources: Vec<SourceStatus>,
}

/// One INCLUDE-mode source of a membership.
#[derive(Debug, Clone, Serialize)]
pub struct SourceStatus {
    /// The source address.
    pub source: String,
    /// Seconds until it ends.
    pub expires_in_secs: f64,
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(m: &overlay_proto::ethernet::MacAddr) -> String {
    m.to_string()
}

/// Render a status JSON document as a human table.
pub fn render_table(json: &str) -> String {
    use std::fmt::Write;
    let v: serde_json::Value = match serde_json::from_str(json) {
        Ok(v) => v,
        Err(_) => return format!("{json}\n"),
    };
    let mut out = String::new();
    let networks = v["networks"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if networks.len() > 1 {
        let list: Vec<String> = networks
            .iter()
            .map(|n| {
                format!(
                    "{} (id {}, {}, {}/{} connected)",
                    n["name"].as_str().unwrap_or("?"),
                    n["id"],
                    n["mode"].as_str().unwrap_or("?"),
                    n["connected"],
                    n["nodes"]
                )
            })
            .collect();
        let _ = writeln!(out, "networks: {}\n", list.join(", "));
    }
    let _ = writeln!(
        out,
        "{:<16} {:<4} {:<28} {:>8} {:>9} {:>7} {:>11} {:>9} {:>11} {:>9} {:>6}",
        "NODE",
        "UP",
        "ENDPOINT",
        "SESSION",
        "HANDSHAKE",
        "HEARD",
        "RX FRAMES",
        "RX BYTES",
        "TX FRAMES",
        "TX BYTES",
        "MACS"
    );
    let secs = |n: &serde_json::Value, k: &str| {
        n[k].as_f64()
            .map(|s| format!("{s:.0}s"))
            .unwrap_or_else(|| "-".into())
    };
    let ago = |n: &serde_json::Value, k: &str| {
        n[k].as_f64()
            .map(|s| format!("{s:.0}s ago"))
            .unwrap_or_else(|| "-".into())
    };
    for n in v["nodes"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "{:<16} {:<4} {:<28} {:>8} {:>9} {:>7} {:>11} {:>9} {:>11} {:>9} {:>6}",
            n["name"].as_str().unwrap_or("?"),
            if n["connected"].as_bool() == Some(true) {
                "yes"
            } else {
                "no"
            },
            n["endpoint"].as_str().unwrap_or("-"),
            secs(n, "session_age_secs"),
            ago(n, "last_handshake_secs_ago"),
            ago(n, "last_heard_secs_ago"),
            n["rx_frames"].to_string(),
            human_bytes(n["rx_bytes"].as_u64().unwrap_or(0)),
            n["tx_frames"].to_string(),
            human_bytes(n["tx_bytes"].as_u64().unwrap_or(0)),
            n["macs"].to_string()
        );
    }
    let f = &v["forwarded"];
    let _ = writeln!(
        out,
        "\nforwarded: unicast {} flooded-unicast {} broadcast {} multicast {} (flood copies {})",
        f["unicast"], f["flooded_unicast"], f["broadcast"], f["multicast"], f["flood_copies"]
    );
    let m = &v["mac_table"];
    let _ = writeln!(
        out,
        "mac table: {} entries (limit {}), learned {} moves {} aged out {}",
        m["entries"], m["limit"], m["learned"], m["moves"], m["aged_out"]
    );
    let se = &v["sessions"];
    let _ = writeln!(
        out,
        "sessions: handshakes {} confirmed {} rekeys {} timeouts {} keepalives {}",
        se["handshakes"], se["confirmed"], se["rekeys"], se["node_timeouts"], se["keepalives"]
    );
    let drops: Vec<String> = v["drops"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, c)| c.as_u64().unwrap_or(0) > 0)
        .map(|(k, c)| format!("{k} {c}"))
        .collect();
    let _ = writeln!(
        out,
        "drops: {}",
        if drops.is_empty() {
            "none".into()
        } else {
            drops.join(", ")
        }
    );
    let storm: Vec<String> = v["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| {
            let kinds: Vec<String> = ["broadcast", "multicast", "unknown_unicast"]
                .iter()
                .filter_map(|k| {
                    let c = n[format!("storm_dropped_{k}")].as_u64().unwrap_or(0);
                    (c > 0).then(|| format!("{k} {c}"))
                })
                .collect();
            (!kinds.is_empty()).then(|| {
                format!(
                    "{} ({})",
                    n["name"].as_str().unwrap_or("?"),
                    kinds.join(", ")
                )
            })
        })
        .collect();
    if !storm.is_empty() {
        let _ = writeln!(out, "storm control drops: {}", storm.join("; "));
    }
    render_impair(&mut out, &v["nodes"]);
    render_multicast(&mut out, &v["multicast"]);
    if let Some(macs) = v["macs"].as_array() {
        let _ = writeln!(
            out,
            "\n{:<5} {:<18} {:<16} {:>8}",
            "VLAN", "MAC", "NODE", "EXPIRES"
        );
        for m in macs {
            let _ = writeln!(
                out,
                "{:<5} {:<18} {:<16} {:>7.0}s",
                m["vlan"].as_u64().unwrap_or(0),
                m["mac"].as_str().unwrap_or("?"),
                m["node"].as_str().unwrap_or("?"),
                m["expires_in_secs"].as_f64().unwrap_or(0.0)
            );
        }
    }
    out
}

/// The multicast part of the human table: queriers, router ports, groups.
fn render_multicast(out: &mut String, m: &serde_json::Value) {
    use std::fmt::Write;
    if m.is_null() {
        return;
    }
    let c = &m["counters"];
    let _ = writeln!(
        out,
        "multicast: snooping {}, unregistered {}; reports {} leaves {} queries in {} out {}, frames registered {} unregistered {} link-local {}, malformed {} unknown {}",
        if m["snooping"].as_bool() == Some(true) {
            "on"
        } else {
            "off"
        },
        if m["flood_unregistered"].as_bool() == Some(true) {
            "flooded"
        } else {
            "to routers only"
        },
        c["reports"],
        c["leaves"],
        c["queries_received"],
        c["queries_sent"],
        c["registered_frames"],
        c["unregistered_frames"],
        c["link_local_frames"],
        c["malformed"],
        c["unknown_types"].as_u64().unwrap_or(0) + c["unknown_records"].as_u64().unwrap_or(0),
    );
    let l = &m["limits"];
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let _ = writeln!(
        out,
        "multicast limits: {} groups (max {} per network, {} of {} in all), {} per node, {} sources per group, {} leaves/s per node; refused: node-limit {} network-limit {} total-limit {} sources {}; leaves rate-limited {}, group queries deferred {}",
        m["groups"].as_array().map_or(0, Vec::len),
        n(&l["max_groups"]),
        n(&l["groups_total"]),
        n(&l["max_groups_total"]),
        n(&l["max_groups_per_node"]),
        n(&l["max_sources_per_group"]),
        n(&l["leaves_per_sec"]),
        n(&c["refused_node_limit"]),
        n(&c["refused_network_limit"]),
        n(&c["refused_total_limit"]),
        n(&c["refused_sources"]),
        n(&c["leaves_rate_limited"]),
        n(&c["group_queries_deferred"]),
    );
    for q in m["queriers"].as_array().into_iter().flatten() {
        let state = match q["other_querier"].as_str() {
            Some(o) => format!("silent, other querier {o}"),
            None => "active".into(),
        };
        let _ = writeln!(
            out,
            "querier vlan {} {}: {} from {}",
            q["vlan"],
            q["family"].as_str().unwrap_or("?"),
            state,
            q["address"].as_str().unwrap_or("?")
        );
    }
    for r in m["router_ports"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "router port vlan {}: {} ({:.0}s)",
            r["vlan"],
            r["node"].as_str().unwrap_or("?"),
            r["expires_in_secs"].as_f64().unwrap_or(0.0)
        );
    }
    let groups = m["groups"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if groups.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n{:<5} {:<28} {:>10} {:>12}  MEMBERS",
        "VLAN", "GROUP", "FRAMES", "BYTES"
    );
    for g in groups {
        let members: Vec<String> = g["members"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|mb| {
                let name = mb["node"].as_str().unwrap_or("?");
                let sources: Vec<&str> = mb["sources"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s["source"].as_str())
                    .collect();
                match (
                    mb["any_source_expires_in_secs"].as_f64(),
                    sources.is_empty(),
                ) {
                    (Some(t), true) => format!("{name} ({t:.0}s)"),
                    (Some(t), false) => format!("{name} ({t:.0}s, +{})", sources.join(" ")),
                    (None, _) => format!("{name} (from {})", sources.join(" ")),
                }
            })
            .collect();
        let _ = writeln!(
            out,
            "{:<5} {:<28} {:>10} {:>12}  {}",
            g["vlan"],
            g["group"].as_str().unwrap_or("?"),
            g["frames"],
            g["bytes"],
            members.join(", ")
        );
    }
}

/// `1234567` → `1.2M` (powers of 1024), for tables.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["", "K", "M", "G", "T"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n}")
    } else {
        format!("{v:.1}{}", UNITS[u])
    }
}

/// One line per node whose link is impaired (or ever was): what is set and
/// what it did.
fn render_impair(out: &mut String, nodes: &serde_json::Value) {
    use std::fmt::Write;
    for n in nodes.as_array().into_iter().flatten() {
        let i = &n["impair"];
        if i.is_null() {
            continue;
        }
        let _ = write!(
            out,
            "impairment {}: link {}",
            n["name"].as_str().unwrap_or("?"),
            i["link"].as_str().unwrap_or("?")
        );
        for d in ["egress", "ingress"] {
            let c = &i[format!("{d}_counters")];
            let counts: Vec<String> = [
                "lost",
                "link_down",
                "queue_full",
                "delayed",
                "reordered",
                "duplicated",
                "corrupted",
            ]
            .iter()
            .filter_map(|k| {
                let v = c[*k].as_u64().unwrap_or(0);
                (v > 0).then(|| format!("{k} {v}"))
            })
            .collect();
            let _ = write!(
                out,
                "; {d} {} ({} frames{}{})",
                i[d].as_str().unwrap_or("?"),
                c["frames"].as_u64().unwrap_or(0),
                if counts.is_empty() { "" } else { ": " },
                counts.join(", ")
            );
        }
        let _ = writeln!(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_rounds_to_one_decimal() {
        assert_eq!(human_bytes(0), "0");
        assert_eq!(human_bytes(1023), "1023");
        assert_eq!(human_bytes(1536), "1.5K");
        assert_eq!(human_bytes(5 << 30), "5.0G");
    }

    #[test]
    fn table_lists_every_node_and_survives_missing_keys() {
        let t = render_table(
            r#"{"nodes":[{"name":"h1","connected":true,"endpoint":"198.18.0.11:4000","session_age_secs":3.2,"last_handshake_secs_ago":3.2,"last_heard_secs_ago":0.4,"rx_frames":5,"rx_bytes":2048,"tx_frames":6,"tx_bytes":100,"macs":1},{"name":"h2","connected":false}],"drops":{"bad_tag":2,"replay":0}}"#,
        );
        assert!(t.contains("h1 "), "{t}");
        assert!(t.contains("2.0K"), "{t}");
        assert!(t.contains("198.18.0.11:4000"), "{t}");
        assert!(
            t.lines()
                .any(|l| l.starts_with("h2 ") && l.contains(" no ")),
            "{t}"
        );
        assert!(t.contains("drops: bad_tag 2\n"), "{t}");
        assert_eq!(render_table("not json"), "not json\n");
    }

    #[test]
    fn table_shows_impaired_links() {
        let t = render_table(
            r#"{"nodes":[{"name":"h1"},{"name":"h2","impair":{"link":"down","egress":"loss=5% delay=20ms","ingress":"none","egress_counters":{"frames":100,"lost":5,"link_down":2},"ingress_counters":{"frames":7}}}]}"#,
        );
        let line = t
            .lines()
            .find(|l| l.starts_with("impairment "))
            .unwrap_or_else(|| panic!("{t}"));
        assert_eq!(
            line,
            "impairment h2: link down; egress loss=5% delay=20ms (100 frames: lost 5, link_down 2); ingress none (7 frames)"
        );
        assert_eq!(t.matches("impairment ").count(), 1, "{t}");
    }

    #[test]
    fn table_shows_the_snooping_limits_and_refusals() {
        let t = render_table(
            r#"{"nodes":[],"multicast":{"snooping":true,"groups":[],"limits":{"max_groups_per_node":1024,"max_groups":4096,"max_groups_total":16384,"max_sources_per_group":32,"leaves_per_sec":100,"groups_total":7},"counters":{"refused_node_limit":5,"refused_sources":9,"leaves_rate_limited":3}}}"#,
        );
        let line = t
            .lines()
            .find(|l| l.starts_with("multicast limits:"))
            .unwrap_or_else(|| panic!("{t}"));
        assert!(line.contains("7 of 16384 in all"), "{line}");
        assert!(line.contains("node-limit 5 network-limit 0"), "{line}");
        assert!(line.contains("sources 9; leaves rate-limited 3"), "{line}");
    }
}
