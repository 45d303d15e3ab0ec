//! Node counters, plain integers; the shell exports them.
use overlay_proto::counters::{DropCounters, Reason};
use serde::Serialize;

/// Why the node dropped a frame or datagram. Names are stable (status JSON,
/// metric labels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Shorter than its header.
    Truncated,
    /// Unknown protocol version.
    BadVersion,
    /// Unknown message type.
    UnknownType,
    /// Reserved bits set.
    BadFlags,
    /// Not our network id.
    UnknownNetwork,
    /// Data for a session index we do not have.
    UnknownSession,
    /// Tag did not verify.
    BadTag,
    /// Replayed or too old.
    Replay,
    /// Session past its lifetime.
    Expired,
    /// A handshake message that did not complete or start a handshake: a
    /// response or cookie reply for no initiation of ours, an initiation
    /// that failed to decrypt or came from a key the switch did not vouch for.
    HandshakeFailed,
    /// A handshake initiation while not in mesh mode (only mesh peers
    /// initiate to a node).
    UnexpectedMessage,
    /// A frame larger than the MTU of the port it came from or goes to.
    Oversize,
    /// A frame shorter than an Ethernet header.
    Runt,
    /// A TAP frame while no session with the switch exists.
    NoSession,
    /// The outgoing queue was full.
    TxQueueFull,
    /// A bad fragment: malformed, overlapping, too many, or its frame timed out.
    Fragment,
    /// An offloaded frame although we did not announce offload support, or
    /// one whose virtio header points its checksum into the Ethernet header
    /// or past the frame.
    Offload,
    /// A malformed, unknown or unexpected control message (mesh mode).
    Control,
    /// A super-frame for a VM port that could not be cut into segments.
    Segment,
    /// A VM stream connection sent a length no QEMU sends: it was closed.
    Framing,
    /// A VM port's send queue was full (the VM does not read fast enough).
    PortQueueFull,
    /// The kernel refused a frame written to the TAP.
    TapWrite,
    /// A VM port connection or datagram from a uid and gid the port does
    /// not allow (`allow-uid`, `allow-gid`): closed or dropped.
    VmPeerRefused,
    /// A frame a mesh peer sent directly in a VLAN the two do not share.
    VlanFiltered,
    /// A handshake response with the index of our in-flight initiation that
    /// failed to authenticate (forged or corrupted); the initiation stays.
    ForgedResponse,
    /// A peer's handshake initiation without a valid `mac1`.
    BadMac1,
    /// Under load: a peer's initiation without a valid `mac2` (it gets a
    /// cookie reply if its source prefix has budget left).
    BadMac2,
    /// Under load: more initiations from one source prefix than it may have.
    HandshakeRateLimited,
}

impl Reason for DropReason {
    const ALL: &'static [DropReason] = &[
        DropReason::Truncated,
        DropReason::BadVersion,
        DropReason::UnknownType,
        DropReason::BadFlags,
        DropReason::UnknownNetwork,
        DropReason::UnknownSession,
        DropReason::BadTag,
        DropReason::Replay,
        DropReason::Expired,
        DropReason::HandshakeFailed,
        DropReason::UnexpectedMessage,
        DropReason::Oversize,
        DropReason::Runt,
        DropReason::NoSession,
        DropReason::TxQueueFull,
        DropReason::Fragment,
        DropReason::Offload,
        DropReason::Control,
        DropReason::Segment,
        DropReason::Framing,
        DropReason::PortQueueFull,
        DropReason::TapWrite,
        DropReason::VmPeerRefused,
        DropReason::VlanFiltered,
        DropReason::ForgedResponse,
        DropReason::BadMac1,
        DropReason::BadMac2,
        DropReason::HandshakeRateLimited,
    ];

    fn index(self) -> usize {
        self as usize
    }

    fn name(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::BadVersion => "bad_version",
            DropReason::UnknownType => "unknown_type",
            DropReason::BadFlags => "bad_flags",
            DropReason::UnknownNetwork => "unknown_network",
            DropReason::UnknownSession => "unknown_session",
            DropReason::BadTag => "bad_tag",
            DropReason::Replay => "replay",
            DropReason::Expired => "expired",
            DropReason::HandshakeFailed => "handshake_failed",
            DropReason::UnexpectedMessage => "unexpected_message",
            DropReason::Oversize => "oversize",
            DropReason::Runt => "runt",
            DropReason::NoSession => "no_session",
            DropReason::TxQueueFull => "tx_queue_full",
            DropReason::Fragment => "fragment",
            DropReason::Offload => "offload",
            DropReason::Control => "control",
            DropReason::Segment => "segment",
            DropReason::Framing => "framing",
            DropReason::PortQueueFull => "port_queue_full",
            DropReason::TapWrite => "tap_write",
            DropReason::VmPeerRefused => "vm_peer_refused",
            DropReason::VlanFiltered => "vlan_filtered",
            DropReason::ForgedResponse => "forged_response",
            DropReason::BadMac1 => "bad_mac1",
            DropReason::BadMac2 => "bad_mac2",
            DropReason::HandshakeRateLimited => "handshake_rate_limited",
        }
    }
}

impl From<overlay_proto::Error> for DropReason {
    fn from(e: overlay_proto::Error) -> Self {
        use overlay_proto::Error as E;
        match e {
            E::Truncated | E::BufferTooSmall => DropReason::Truncated,
            E::BadVersion => DropReason::BadVersion,
            E::UnknownType => DropReason::UnknownType,
            E::BadFlags => DropReason::BadFlags,
            E::BadTag => DropReason::BadTag,
            E::Replay => DropReason::Replay,
            E::CounterExhausted => DropReason::Expired,
            E::Handshake | E::BadKey => DropReason::HandshakeFailed,
        }
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

impl From<overlay_proto::handshake_guard::GuardDrop> for DropReason {
    fn from(d: overlay_proto::handshake_guard::GuardDrop) -> Self {
        use overlay_proto::handshake_guard::GuardDrop as G;
        match d {
            G::BadMac1 => DropReason::BadMac1,
            G::BadMac2 => DropReason::BadMac2,
            G::RateLimited => DropReason::HandshakeRateLimited,
        }
    }
}

/// Drop counters, one per [`DropReason`].
pub type Drops = DropCounters<DropReason>;

/// Traffic and session counters.
#[derive(Debug, Clone, Default, Serialize)]
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
