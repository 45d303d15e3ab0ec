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
    /// A handshake response that did not complete our handshake.
    HandshakeFailed,
    /// A handshake initiation: nodes do not accept them.
    UnexpectedMessage,
    /// A frame larger than the TAP MTU allows (either direction).
    Oversize,
    /// A decrypted frame shorter than an Ethernet header.
    Runt,
    /// A TAP frame while no session with the switch exists.
    NoSession,
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
    /// Sessions declared dead because the switch stopped answering.
    pub sessions_lost: u64,
    /// Keepalives sent (idle keepalives and liveness probes).
    pub keepalives_sent: u64,
    /// Authentic restart notices from the switch.
    pub restart_notices: u64,
}
