//! What `tapmesh-node status` shows of the engine.

use std::time::Instant;

use serde::Serialize;

use super::{LinkState, Node};
use crate::counters::{Counters, Drops};
use crate::peers::{MacCounters, PeerStatus};

impl Node {
    /// A snapshot for `status`.
    pub fn status(&self, now: Instant, name: &str) -> Status {
        let ago = |t: Option<Instant>| t.map(|t| now.saturating_duration_since(t).as_secs_f64());
        Status {
            name: name.to_owned(),
            switch: self.homes.home().addr.to_string(),
            homes: self.homes.status(now),
            session: self.link_state(),
            session_age_secs: self.uplink.current().map(|s| s.age(now).as_secs_f64()),
            last_handshake_secs_ago: ago(self.uplink.last_handshake()),
            last_rx_secs_ago: ago(self.uplink.last_rx()),
            rtt_secs: self.rtt.last.map(|d| d.as_secs_f64()),
            rtt_samples: self.rtt.samples,
            rtt_sum_secs: self.rtt.sum.as_secs_f64(),
            drops: self.drops.clone(),
            counters: self.counters.clone(),
            mesh: self.peers.is_enabled(),
            peers: self.peers.status(now),
            peer_macs: self.peers.mac_counters(),
            handshake_guard: self.peers.guard_status(now),
            local: None,
            hosts: Vec::new(),
            reloads: Default::default(),
            capture: self.capture_counters(),
        }
    }
}

/// What `tapmesh-node status` prints.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Status {
    /// The node's name.
    pub name: String,
    /// The home switch's address.
    pub switch: String,
    /// The configured switches, which one is home, failovers.
    pub homes: crate::failover::HomeStatus,
    /// The link state.
    pub session: LinkState,
    /// Age of the current session.
    pub session_age_secs: Option<f64>,
    /// Seconds since the last completed handshake.
    pub last_handshake_secs_ago: Option<f64>,
    /// Seconds since anything authentic arrived from the switch.
    pub last_rx_secs_ago: Option<f64>,
    /// The latest round-trip time to the switch (keepalive answered), if any.
    pub rtt_secs: Option<f64>,
    /// Round-trip samples so far.
    pub rtt_samples: u64,
    /// Their sum, in seconds (mean = `rtt_sum_secs / rtt_samples`).
    pub rtt_sum_secs: f64,
    /// Drops by reason.
    pub drops: Drops,
    /// Traffic.
    #[serde(flatten)]
    pub counters: Counters,
    /// The switch runs this network in mesh mode.
    pub mesh: bool,
    /// Mesh peers: path (direct or relayed), endpoint, last handshake, RTT.
    pub peers: Vec<PeerStatus>,
    /// Mesh mode: MAC moves and refused claims, peers dropped for want of
    /// the switch's vouch.
    pub peer_macs: MacCounters,
    /// The flood defence in front of peers' initiations (mesh mode).
    pub handshake_guard: overlay_proto::handshake_guard::GuardStatus,
    /// The local switch: ports (TAP, VMs), MACs (the shell fills it in).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local: Option<crate::local_switch::LocalStatus>,
    /// Userspace hosts: addresses, connections, counters (the shell fills
    /// it in).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<crate::userhost::HostStatus>,
    /// Config reloads applied and refused (the shell fills it in).
    pub reloads: tapmesh_shell::reload::ReloadCounters,
    /// Live captures of the direct paths: running, captured, lost to slow
    /// readers.
    pub capture: tapmesh_shell::capture::CaptureCounters,
}
