//! The `status` snapshot: what `tapmesh-switch status` prints, as a table or
//! as JSON (field names are stable; scripts rely on them).
use serde::{Deserialize, Serialize};

use crate::stats::{Drops, Forwarded, MacCounters, NodeCounters, SessionCounters};

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
    /// The MAC table itself, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub macs: Option<Vec<MacStatus>>,
}

/// One configured node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
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
    /// Traffic.
    #[serde(flatten)]
    pub counters: NodeCounters,
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
    /// The MAC, as `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// The node it is behind.
    pub node: String,
    /// Seconds until it ages out.
    pub expires_in_secs: f64,
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// Render a status JSON document as a human table.
pub fn render_table(json: &str) -> String {
    use std::fmt::Write;
    let v: serde_json::Value = match serde_json::from_str(json) {
        Ok(v) => v,
        Err(_) => return format!("{json}\n"),
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<16} {:<5} {:<28} {:>9} {:>12} {:>12} {:>6}",
        "NODE", "UP", "ENDPOINT", "SESSION", "RX FRAMES", "TX FRAMES", "MACS"
    );
    for n in v["nodes"].as_array().into_iter().flatten() {
        let age = n["session_age_secs"]
            .as_f64()
            .map(|s| format!("{s:.0}s"))
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "{:<16} {:<5} {:<28} {:>9} {:>12} {:>12} {:>6}",
            n["name"].as_str().unwrap_or("?"),
            if n["connected"].as_bool() == Some(true) {
                "yes"
            } else {
                "no"
            },
            n["endpoint"].as_str().unwrap_or("-"),
            age,
            n["rx_frames"].to_string(),
            n["tx_frames"].to_string(),
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
    if let Some(macs) = v["macs"].as_array() {
        let _ = writeln!(out, "\n{:<18} {:<16} {:>8}", "MAC", "NODE", "EXPIRES");
        for m in macs {
            let _ = writeln!(
                out,
                "{:<18} {:<16} {:>7.0}s",
                m["mac"].as_str().unwrap_or("?"),
                m["node"].as_str().unwrap_or("?"),
                m["expires_in_secs"].as_f64().unwrap_or(0.0)
            );
        }
    }
    out
}
