//! Counters the switch core keeps as plain integers. The shell turns them into
//! status output (and, later, Prometheus metrics); nothing here formats or
//! allocates per frame.
use overlay_proto::counters::{DropCounters, Reason};
use serde::Serialize;

/// Why a datagram or frame was dropped. The names are stable: they appear in
/// `status --json` and as metric labels.
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
    /// A network id this switch does not serve.
    UnknownNetwork,
    /// A handshake initiation that failed to decrypt (not for us, garbage).
    HandshakeFailed,
    /// A valid handshake from a public key not in the config.
    UnknownKey,
    /// A handshake initiation not newer than the last one from that key.
    HandshakeReplay,
    /// A handshake response or restart notice: the switch never gets these.
    UnexpectedMessage,
    /// Data for a session index the switch does not have.
    UnknownSession,
    /// Data whose tag did not verify.
    BadTag,
    /// Data already received, or older than the replay window.
    Replay,
    /// Data on a session past its lifetime.
    Expired,
    /// A decrypted frame shorter than an Ethernet header.
    Runt,
    /// A frame larger than the switch forwards.
    Oversize,
    /// A multicast, broadcast or zero source MAC.
    InvalidSource,
    /// The sender already owns its limit of MACs.
    MacLimit,
    /// The MAC table is full.
    TableFull,
    /// The outgoing queue was full.
    TxQueueFull,
}

impl Reason for DropReason {
    const ALL: &'static [DropReason] = &[
        DropReason::Truncated,
        DropReason::BadVersion,
        DropReason::UnknownType,
        DropReason::BadFlags,
        DropReason::UnknownNetwork,
        DropReason::HandshakeFailed,
        DropReason::UnknownKey,
        DropReason::HandshakeReplay,
        DropReason::UnexpectedMessage,
        DropReason::UnknownSession,
        DropReason::BadTag,
        DropReason::Replay,
        DropReason::Expired,
        DropReason::Runt,
        DropReason::Oversize,
        DropReason::InvalidSource,
        DropReason::MacLimit,
        DropReason::TableFull,
        DropReason::TxQueueFull,
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
            DropReason::HandshakeFailed => "handshake_failed",
            DropReason::UnknownKey => "unknown_key",
            DropReason::HandshakeReplay => "handshake_replay",
            DropReason::UnexpectedMessage => "unexpected_message",
            DropReason::UnknownSession => "unknown_session",
            DropReason::BadTag => "bad_tag",
            DropReason::Replay => "replay",
            DropReason::Expired => "expired",
            DropReason::Runt => "runt",
            DropReason::Oversize => "oversize",
            DropReason::InvalidSource => "invalid_source",
            DropReason::MacLimit => "mac_limit",
            DropReason::TableFull => "table_full",
            DropReason::TxQueueFull => "tx_queue_full",
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

/// Drop counters, one per [`DropReason`].
pub type Drops = DropCounters<DropReason>;

/// Frames forwarded, by kind (counted once per received frame).
#[derive(Debug, Clone, Default, Serialize)]
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
#[derive(Debug, Clone, Default, Serialize)]
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
#[derive(Debug, Clone, Default, Serialize)]
pub struct SessionCounters {
    /// Handshakes answered (first sessions and rekeys).
    pub handshakes: u64,
    /// New sessions confirmed by the node's first packet.
    pub confirmed: u64,
    /// Nodes forgotten after the silence timeout.
    pub node_timeouts: u64,
    /// Keepalives answered.
    pub keepalives: u64,
}

/// Per-node traffic counters.
#[derive(Debug, Clone, Default, Serialize)]
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
}
