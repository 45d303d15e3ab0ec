//! The `status` snapshot: what `tapmesh-switch status` prints, as a table or
//! as JSON (field names are stable; scripts rely on them). The table is
//! rendered from the JSON read back into [`Status`]; keys missing from it
//! (a daemon older than the command) read as zero or empty.
use serde::{Deserialize, Serialize};

use crate::counters::{
    Drops, Forwarded, MacCounters, NodeCounters, ReloadCounters, SessionCounters, SnoopCounters,
};
use crate::impair::ImpairStatus;
use crate::vlan::Vid;

/// The whole switch.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
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
    /// Port mirroring sessions and what they copied.
    pub mirrors: Vec<crate::mirror::MirrorStatus>,
    /// Live captures: running, frames captured and lost to slow readers.
    pub capture: crate::capture::CaptureCounters,
    /// The etcd store, when the switch is one of a cluster (`[cluster]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd: Option<crate::etcd::status::EtcdStatus>,
    /// The worker threads (`workers` above one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<crate::workers::status::WorkersStatus>,
    /// The other switches of the cluster, per network (empty alone).
    pub switches: Vec<PeerSwitchStatus>,
    /// The MAC table itself, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub macs: Option<Vec<MacStatus>>,
}

/// One network (`[[network]]`, or the top-level nodes' network).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
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

/// The trunk to another switch of the cluster, in one network.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PeerSwitchStatus {
    /// The network.
    pub network: String,
    /// The other switch's name.
    pub name: String,
    /// Its public key.
    pub public_key: String,
    /// The session is up (keepalives answered).
    pub up: bool,
    /// A handshake with it is in flight.
    pub handshaking: bool,
    /// Its underlay address.
    pub endpoint: Option<String>,
    /// Seconds since the trunk came up (absent while down).
    pub up_secs: Option<f64>,
    /// Seconds since the last handshake completed.
    pub last_handshake_secs_ago: Option<f64>,
    /// Seconds since anything authentic arrived from it.
    pub last_heard_secs_ago: Option<f64>,
    /// Times the trunk came up.
    pub ups: u64,
    /// Times it went down (the other switch stopped answering).
    pub downs: u64,
    /// MACs learned behind it (from its frames and the cluster view).
    pub macs: usize,
    /// The store says it is up (holds its lease).
    pub store_up: bool,
    /// MACs it owns, per the store.
    pub store_macs: usize,
    /// Groups with members behind it, per the store.
    pub store_groups: usize,
    /// Nodes homed on it, per the store.
    pub store_nodes: usize,
    /// Frames received from it.
    pub rx_frames: u64,
    /// Bytes of frames received from it.
    pub rx_bytes: u64,
    /// Frames sent to it.
    pub tx_frames: u64,
    /// Bytes of frames sent to it.
    pub tx_bytes: u64,
    /// Handshakes completed with it.
    pub handshakes: u64,
    /// What it announced over the trunk (absent until its first complete
    /// announcement since the trunk came up: it is sent everything).
    pub announced: Option<PeerAnnouncedStatus>,
    /// Frames not sent to it: floods of VLANs it does not serve, groups it
    /// does not want.
    pub pruned_frames: u64,
}

/// What another switch announced over the trunk, in one network.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PeerAnnouncedStatus {
    /// The generation held.
    pub generation: u64,
    /// VLANs it serves.
    pub vlans: usize,
    /// Groups (and router entries) it wants.
    pub groups: usize,
    /// It wants every group of the VLANs it serves (no snooping, or too
    /// many groups to list).
    pub all_groups: bool,
}

/// One configured node.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
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
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
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
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
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
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct MulticastStatus {
    /// Snooping is on (else every multicast frame is flooded).
    pub snooping: bool,
    /// Groups nobody joined are flooded (else sent to router ports only).
    pub flood_unregistered: bool,
    /// Group membership interval.
    pub membership_secs: f64,
    /// The built-in querier's settings per network (as the file or
    /// `tapmesh-switch querier` set them).
    pub querier_settings: Vec<crate::snooping::controls::QuerierSettings>,
    /// Groups with their own counters in the metrics (the busiest by bytes).
    pub metrics_top_groups: usize,
    /// Who queries, per VLAN and family: the built-in querier or another.
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
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
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
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct QuerierStatus {
    /// The network it belongs to (see `networks`).
    pub network: String,
    /// The VLAN.
    pub vlan: Vid,
    /// `ipv4` (IGMP) or `ipv6` (MLD).
    pub family: String,
    /// Who is the querier: `us` (the built-in one), `other` (a querier
    /// heard with a lower address), or `none` (ours is off, nobody heard).
    pub querier: String,
    /// The built-in querier sends queries now (on, and no other querier
    /// with a lower address heard).
    pub active: bool,
    /// The version of the queries: ours when we query, else the other's.
    pub version: u8,
    /// Seconds until our next general query (absent unless we query).
    pub next_query_in_secs: Option<f64>,
    /// Its source address.
    pub address: String,
    /// The other querier it yields to, if any.
    pub other_querier: Option<String>,
    /// Seconds until the other querier counts as gone.
    pub other_querier_expires_in_secs: Option<f64>,
}

/// A router port.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RouterPortStatus {
    /// The network it belongs to (see `networks`).
    pub network: String,
    /// The VLAN.
    pub vlan: Vid,
    /// The node.
    pub node: String,
    /// `learned` (a query or PIM was heard from it) or `static`
    /// (`multicast-router = true`).
    pub kind: String,
    /// Seconds until it ages out (0 for a static port, which does not age).
    pub expires_in_secs: f64,
}

/// One group.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
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
    /// The group timer: seconds until the last membership ends unless
    /// refreshed.
    pub expires_in_secs: f64,
    /// Group-specific queries still to send (after a leave).
    pub group_queries_left: u32,
    /// Nodes with members.
    pub members: Vec<MemberStatus>,
}

/// A node's membership in a group.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct MemberStatus {
    /// The node.
    pub node: String,
    /// Its filter mode: `exclude` (takes every source: v1/v2 or an
    /// EXCLUDE-mode record) or `include` (only the sources listed).
    pub mode: String,
    /// Seconds until its any-source membership (v1/v2, EXCLUDE mode) ends;
    /// absent if it has only source-specific ones.
    pub any_source_expires_in_secs: Option<f64>,
    /// INCLUDE-mode sources.
    pub sources: Vec<SourceStatus>,
}

/// One INCLUDE-mode source of a membership.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SourceStatus {
    /// The source address.
    pub source: String,
    /// Seconds until it ends.
    pub expires_in_secs: f64,
}

pub mod groups;
mod switches;
mod table;
pub use table::{human_bytes, render_table};
