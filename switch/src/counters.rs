//! Counters the switch core keeps as plain integers. The shell turns them into
//! status output (and, later, Prometheus metrics); nothing here formats or
//! allocates per frame.
use overlay_proto::counters::DropCounters;
use serde::{Deserialize, Serialize};

overlay_proto::drop_reasons! {
    /// Why a datagram or frame was dropped. The names are stable: they appear in
    /// `status --json` and as metric labels.
    pub enum DropReason {
        /// Shorter than its header.
        Truncated = "truncated",
        /// Unknown protocol version.
        BadVersion = "bad_version",
        /// Unknown message type.
        UnknownType = "unknown_type",
        /// Reserved bits set.
        BadFlags = "bad_flags",
        /// A network id this switch does not serve.
        UnknownNetwork = "unknown_network",
        /// A handshake initiation without a valid `mac1`: not made for this
        /// switch's key (garbage, scanners); dropped before any Diffie-Hellman.
        BadMac1 = "bad_mac1",
        /// Under load: a handshake initiation without a valid `mac2` (it gets a
        /// cookie reply, rate-limited); dropped before any Diffie-Hellman.
        BadMac2 = "bad_mac2",
        /// Under load: more initiations from one source IP than it may have.
        HandshakeRateLimited = "handshake_rate_limited",
        /// A handshake initiation that failed to decrypt (not for us, garbage).
        HandshakeFailed = "handshake_failed",
        /// A valid handshake from a public key not in the config.
        UnknownKey = "unknown_key",
        /// A handshake initiation not newer than the last one from that key.
        HandshakeReplay = "handshake_replay",
        /// A restart notice, or a handshake response or cookie reply that
        /// answers no trunk's initiation: nodes never initiate to nodes.
        UnexpectedMessage = "unexpected_message",
        /// Data for a session index the switch does not have.
        UnknownSession = "unknown_session",
        /// Data whose tag did not verify.
        BadTag = "bad_tag",
        /// Data already received, or older than the replay window.
        Replay = "replay",
        /// Data on a session past its lifetime.
        Expired = "expired",
        /// A decrypted frame shorter than an Ethernet header (or than its
        /// 802.1Q tag, if its ethertype says it has one).
        Runt = "runt",
        /// A frame larger than the switch forwards.
        Oversize = "oversize",
        /// A multicast, broadcast or zero source MAC.
        InvalidSource = "invalid_source",
        /// The sender already owns its limit of MACs.
        MacLimit = "mac_limit",
        /// The MAC table is full.
        TableFull = "table_full",
        /// The outgoing queue was full.
        TxQueueFull = "tx_queue_full",
        /// A bad fragment: malformed, overlapping, too many, or its frame timed out.
        Fragment = "fragment",
        /// An offloaded frame whose virtio header points its checksum into the
        /// Ethernet header or past the frame, or that had to be cut for a node
        /// without offload support but could not be (unsupported or malformed
        /// GSO frame).
        Offload = "offload",
        /// A frame from a node in a VLAN it is not a member of (a tag it may
        /// not send, or untagged on a trunk without a native VLAN).
        VlanFiltered = "vlan_filtered",
        /// A broadcast, multicast or unknown-unicast frame over its node's
        /// storm-control limit (per node and kind in the node's counters).
        StormControl = "storm_control",
        /// Mesh mode: a local address a node announced that peers could not
        /// use (another family than its endpoint, loopback, multicast, ...;
        /// see `overlay_proto::control::check_local_addr`), counted per address.
        MeshAddress = "mesh_address",
        /// Mesh mode: a `local-addrs` announcement over the node's rate.
        MeshRateLimited = "mesh_rate_limited",
        /// IGMP/MLD or PIM from another switch: each switch snoops its own
        /// nodes, snooping control never crosses between switches.
        TrunkControl = "trunk_control",
        /// A trunk announcement from another switch that is malformed,
        /// oversized, or would take what it announced past its bounds (see
        /// `overlay_proto::announce`).
        TrunkAnnounce = "trunk_announce",
        /// A datagram of the core's the kernel refused to send (no route, a
        /// firewall, no buffer space): dropped. The workers' own sends are
        /// counted as `workers.send_failed`.
        SendFailed = "send_failed",
    }
}

/// Drop counters, one per [`DropReason`].
pub type Drops = DropCounters<DropReason>;

/// `a += &b` for a struct of plain counters, field by field: several
/// networks' cores are summed into one status. The destructuring lists every
/// field, so adding a field without summing it does not compile.
macro_rules! summable {
    ($t:ident { $($f:ident),* $(,)? }) => {
        impl std::ops::AddAssign<&$t> for $t {
            fn add_assign(&mut self, other: &$t) {
                let $t { $($f),* } = other;
                $(self.$f += *$f;)*
            }
        }
    };
}

summable!(Forwarded {
    unicast,
    flooded_unicast,
    broadcast,
    multicast,
    filtered,
    flood_copies
});
summable!(MacCounters {
    learned,
    moves,
    aged_out,
    flushed,
    node_limit_hits,
    table_limit_hits
});
summable!(SessionCounters {
    handshakes,
    confirmed,
    rekeys,
    node_timeouts,
    keepalives
});
summable!(SnoopCounters {
    reports,
    leaves,
    fast_leaves,
    queries_received,
    queries_sent,
    joins,
    expired,
    registered_frames,
    unregistered_frames,
    link_local_frames,
    unknown_types,
    unknown_records,
    malformed,
    refused_node_limit,
    refused_network_limit,
    refused_total_limit,
    refused_sources,
    leaves_rate_limited,
    group_queries_deferred
});

/// Frames forwarded, by kind (counted once per received frame).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Forwarded {
    /// Unicast to a learned MAC: sent to its node only.
    pub unicast: u64,
    /// Unicast to an unknown MAC: flooded.
    pub flooded_unicast: u64,
    /// Broadcast: flooded.
    pub broadcast: u64,
    /// Multicast: flooded.
    pub multicast: u64,
    /// Unicast to a MAC behind the sending node itself: not sent anywhere.
    pub filtered: u64,
    /// Copies sent by floods (fan-out), summed.
    pub flood_copies: u64,
}

/// MAC table activity.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct MacCounters {
    /// New entries.
    pub learned: u64,
    /// Entries that moved to another node.
    pub moves: u64,
    /// Entries removed by aging.
    pub aged_out: u64,
    /// Entries removed because their node left.
    pub flushed: u64,
    /// Per-node limit hits.
    pub node_limit_hits: u64,
    /// Table limit hits.
    pub table_limit_hits: u64,
}

/// Handshake and session activity.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SessionCounters {
    /// Handshakes answered (first sessions and rekeys).
    pub handshakes: u64,
    /// New sessions confirmed by the node's first packet.
    pub confirmed: u64,
    /// Confirmed sessions that replaced a live one (rekeys; part of `confirmed`).
    pub rekeys: u64,
    /// Nodes forgotten after the silence timeout.
    pub node_timeouts: u64,
    /// Keepalives answered.
    pub keepalives: u64,
}

pub use tapmesh_shell::reload::ReloadCounters;

/// Per-node traffic counters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeCounters {
    /// Frames received from the node.
    pub rx_frames: u64,
    /// Bytes of frames received from the node.
    pub rx_bytes: u64,
    /// Frames sent to the node.
    pub tx_frames: u64,
    /// Bytes of frames sent to the node.
    pub tx_bytes: u64,
    /// Handshakes completed with the node.
    pub handshakes: u64,
    /// Broadcast frames from the node dropped by storm control.
    pub storm_dropped_broadcast: u64,
    /// Multicast frames from the node dropped by storm control.
    pub storm_dropped_multicast: u64,
    /// Unknown-unicast frames from the node dropped by storm control.
    pub storm_dropped_unknown_unicast: u64,
}

/// IGMP/MLD snooping activity (see `snooping`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SnoopCounters {
    /// Reports received (v1/v2 joins, v3/MLDv2 reports).
    pub reports: u64,
    /// Leaves received (v2 leave, MLD done, v3 change to include {}).
    pub leaves: u64,
    /// Leaves applied at once (fast-leave nodes).
    pub fast_leaves: u64,
    /// Queries received from nodes.
    pub queries_received: u64,
    /// Queries the built-in querier sent (general and group-specific).
    pub queries_sent: u64,
    /// New memberships (a node joined a group).
    pub joins: u64,
    /// Memberships that timed out or were left.
    pub expired: u64,
    /// Multicast data frames to a registered group (sent to members and routers).
    pub registered_frames: u64,
    /// Multicast data frames to a group nobody joined.
    pub unregistered_frames: u64,
    /// Frames to link-local groups (always flooded).
    pub link_local_frames: u64,
    /// IGMP/MLD messages of an unknown type (flooded).
    pub unknown_types: u64,
    /// IGMPv3/MLDv2 group records of an unknown type (skipped).
    pub unknown_records: u64,
    /// Truncated IGMP/MLD messages or bad checksums (flooded, not learned from).
    pub malformed: u64,
    /// Memberships refused: the node had `max-groups-per-node`.
    pub refused_node_limit: u64,
    /// New groups refused: the network had `max-groups`.
    pub refused_network_limit: u64,
    /// New groups refused: the switch had `max-groups-total`.
    pub refused_total_limit: u64,
    /// Sources refused over `max-sources-per-group` (the membership took
    /// every source instead).
    pub refused_sources: u64,
    /// Leaves ignored over a node's `leaves-per-sec`.
    pub leaves_rate_limited: u64,
    /// Leaves that did not trigger a group-specific query at once because
    /// the group was being queried or had been less than an interval ago.
    pub group_queries_deferred: u64,
}

#[cfg(test)]
mod tests {
    use super::DropReason;
    use overlay_proto::counters::Reason;

    /// The `reason` label values: dashboards and alerts select on them, so a
    /// rename or a reorder must fail here, and no two reasons share a name.
    #[test]
    fn drop_reason_names_are_unique_and_stable() {
        const LABELS: [&str; 31] = [
            "truncated",
            "bad_version",
            "unknown_type",
            "bad_flags",
            "unknown_network",
            "bad_mac1",
            "bad_mac2",
            "handshake_rate_limited",
            "handshake_failed",
            "unknown_key",
            "handshake_replay",
            "unexpected_message",
            "unknown_session",
            "bad_tag",
            "replay",
            "expired",
            "runt",
            "oversize",
            "invalid_source",
            "mac_limit",
            "table_full",
            "tx_queue_full",
            "fragment",
            "offload",
            "vlan_filtered",
            "storm_control",
            "mesh_address",
            "mesh_rate_limited",
            "trunk_control",
            "trunk_announce",
            "send_failed",
        ];
        let names: Vec<&str> = DropReason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names, LABELS);
        let unique: std::collections::HashSet<&str> = names.iter().copied().collect();
        assert_eq!(unique.len(), names.len());
        assert_eq!(DropReason::COUNT, LABELS.len());
    }
}
