//! Node counters, plain integers; the shell exports them.
use overlay_proto::counters::DropCounters;
use serde::{Deserialize, Serialize};

overlay_proto::drop_reasons! {
    /// Why the node dropped a frame or datagram. Names are stable (status JSON,
    /// metric labels).
    pub enum DropReason {
        /// Shorter than its header.
        Truncated = "truncated",
        /// Unknown protocol version.
        BadVersion = "bad_version",
        /// Unknown message type.
        UnknownType = "unknown_type",
        /// Reserved bits set.
        BadFlags = "bad_flags",
        /// Not our network id.
        UnknownNetwork = "unknown_network",
        /// Data for a session index we do not have.
        UnknownSession = "unknown_session",
        /// Tag did not verify.
        BadTag = "bad_tag",
        /// Replayed or too old.
        Replay = "replay",
        /// Session past its lifetime.
        Expired = "expired",
        /// A handshake message that did not complete or start a handshake: a
        /// response or cookie reply for no initiation of ours, an initiation
        /// that failed to decrypt or came from a key the switch did not vouch for.
        HandshakeFailed = "handshake_failed",
        /// A handshake initiation while not in mesh mode (only mesh peers
        /// initiate to a node).
        UnexpectedMessage = "unexpected_message",
        /// A frame larger than the MTU of the port it came from or goes to.
        Oversize = "oversize",
        /// A frame shorter than an Ethernet header.
        Runt = "runt",
        /// A TAP frame while no session with the switch exists.
        NoSession = "no_session",
        /// The outgoing queue was full.
        TxQueueFull = "tx_queue_full",
        /// A bad fragment: malformed, overlapping, too many, or its frame timed out.
        Fragment = "fragment",
        /// An offloaded frame although we did not announce offload support, or
        /// one whose virtio header points its checksum into the Ethernet header
        /// or past the frame.
        Offload = "offload",
        /// A malformed, unknown or unexpected control message (mesh mode).
        Control = "control",
        /// A super-frame for a VM port that could not be cut into segments.
        Segment = "segment",
        /// A VM stream connection sent a length no QEMU sends: it was closed.
        Framing = "framing",
        /// A VM port's send queue was full (the VM does not read fast enough).
        PortQueueFull = "port_queue_full",
        /// The kernel refused a frame written to the TAP.
        TapWrite = "tap_write",
        /// A VM port connection or datagram from a uid and gid the port does
        /// not allow (`allow-uid`, `allow-gid`): closed or dropped.
        VmPeerRefused = "vm_peer_refused",
        /// A frame a mesh peer sent directly in a VLAN the two do not share.
        VlanFiltered = "vlan_filtered",
        /// A handshake response with the index of our in-flight initiation that
        /// failed to authenticate (forged or corrupted); the initiation stays.
        ForgedResponse = "forged_response",
        /// A peer's handshake initiation without a valid `mac1`.
        BadMac1 = "bad_mac1",
        /// Under load: a peer's initiation without a valid `mac2` (it gets a
        /// cookie reply if its source prefix has budget left).
        BadMac2 = "bad_mac2",
        /// Under load: more initiations from one source prefix than it may have.
        HandshakeRateLimited = "handshake_rate_limited",
    }
}

impl From<overlay_proto::tunnel::TunnelError> for DropReason {
    fn from(e: overlay_proto::tunnel::TunnelError) -> Self {
        use overlay_proto::tunnel::TunnelError as T;
        match e {
            T::UnknownSession => DropReason::UnknownSession,
            T::Expired => DropReason::Expired,
            T::NoSession => DropReason::NoSession,
            T::Crypto(e) => DropReason::from(e),
            T::ForgedResponse => DropReason::ForgedResponse,
            T::StaleTimestamp => DropReason::Replay,
            T::TxQueueFull => DropReason::TxQueueFull,
            T::NoInitiation | T::BadCookie | T::Handshake => DropReason::HandshakeFailed,
        }
    }
}

/// Drop counters, one per [`DropReason`].
pub type Drops = DropCounters<DropReason>;

/// Traffic and session counters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Counters {
    /// Frames read from the TAP.
    pub tap_rx_frames: u64,
    /// Bytes read from the TAP.
    pub tap_rx_bytes: u64,
    /// Frames for the TAP (decrypted from the switch).
    pub tap_tx_frames: u64,
    /// Bytes for the TAP.
    pub tap_tx_bytes: u64,
    /// Datagrams received on the underlay.
    pub udp_rx_datagrams: u64,
    /// Datagrams sent on the underlay.
    pub udp_tx_datagrams: u64,
    /// Handshake initiations sent (including retries).
    pub handshakes_sent: u64,
    /// Handshakes completed (first sessions and rekeys).
    pub handshakes_completed: u64,
    /// Handshakes that replaced a live session (part of `handshakes_completed`).
    pub rekeys: u64,
    /// Sessions declared dead because the switch stopped answering.
    pub sessions_lost: u64,
    /// Keepalives sent (idle keepalives and liveness probes).
    pub keepalives_sent: u64,
    /// Authentic restart notices from the switch.
    pub restart_notices: u64,
    /// Frames the switch relayed to us in mesh mode (flag `RELAYED`).
    pub relayed_rx_frames: u64,
    /// Authentic cookie replies from the switch (it was under load).
    pub cookie_replies: u64,
    /// Local MACs announced to a new home switch after a failover.
    pub announcements: u64,
    /// Frames from the TAP sealed by a worker thread (`workers`), not the
    /// node task; part of `tap_rx_frames`.
    pub worker_sealed_frames: u64,
    /// Datagrams from the switch opened by an opening thread (`workers`),
    /// not the node task; part of `udp_rx_datagrams`.
    pub worker_opened_datagrams: u64,
    /// Times the node task stopped sharing receive batches with the opening
    /// threads for a while because sharing did not pay: waiting for them
    /// took longer than opening their parts alone, or eight splits in a row
    /// had a part no thread started in time (`worker-opening = "auto"`).
    pub worker_open_pauses: u64,
}

/// Round-trip times to the switch, from keepalive answers: the switch answers
/// every keepalive at once, so the time from sending one to the next empty
/// (keepalive) packet from the switch is one round trip through the switch's
/// receive loop. Keepalives go out after each handshake, when idle for 10 s,
/// and as liveness probes; under steady two-way traffic there are none, and
/// the last sample stays.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rtt {
    /// The latest sample.
    pub last: Option<std::time::Duration>,
    /// How many samples.
    pub samples: u64,
    /// Their sum.
    pub sum: std::time::Duration,
}

impl Rtt {
    /// Add one sample.
    pub fn record(&mut self, rtt: std::time::Duration) {
        self.last = Some(rtt);
        self.samples += 1;
        self.sum += rtt;
    }
}

#[cfg(test)]
mod tests {
    use super::DropReason;
    use overlay_proto::counters::Reason;

    /// The `reason` label values: dashboards and alerts select on them, so a
    /// rename or a reorder must fail here, and no two reasons share a name.
    #[test]
    fn drop_reason_names_are_unique_and_stable() {
        const LABELS: [&str; 28] = [
            "truncated",
            "bad_version",
            "unknown_type",
            "bad_flags",
            "unknown_network",
            "unknown_session",
            "bad_tag",
            "replay",
            "expired",
            "handshake_failed",
            "unexpected_message",
            "oversize",
            "runt",
            "no_session",
            "tx_queue_full",
            "fragment",
            "offload",
            "control",
            "segment",
            "framing",
            "port_queue_full",
            "tap_write",
            "vm_peer_refused",
            "vlan_filtered",
            "forged_response",
            "bad_mac1",
            "bad_mac2",
            "handshake_rate_limited",
        ];
        let names: Vec<&str> = DropReason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names, LABELS);
        let unique: std::collections::HashSet<&str> = names.iter().copied().collect();
        assert_eq!(unique.len(), names.len());
        assert_eq!(DropReason::COUNT, LABELS.len());
    }
}
