//! Node counters, plain integers; the shell exports them.
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
    /// A handshake initiation: nodes do not accept them from the switch.
    UnexpectedHandshake,
    /// A frame larger than the TAP MTU allows (either direction).
    Oversize,
    /// A decrypted frame shorter than an Ethernet header.
    Runt,
    /// A TAP frame while no session with the switch exists.
    NoSession,
    /// The outgoing queue was full.
    TxQueueFull,
}

impl DropReason {
    /// Every reason, in a stable order.
    pub const ALL: [DropReason; 15] = [
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
        DropReason::UnexpectedHandshake,
        DropReason::Oversize,
        DropReason::Runt,
        DropReason::NoSession,
        DropReason::TxQueueFull,
    ];

    /// The stable snake_case name.
    pub fn name(self) -> &'static str {
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
            DropReason::UnexpectedHandshake => "unexpected_handshake",
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
#[derive(Debug, Clone, Default)]
pub struct Drops([u64; DropReason::ALL.len()]);

impl Drops {
    /// Count one drop.
    pub fn add(&mut self, r: DropReason) {
        self.0[r as usize] += 1;
    }

    /// The count for one reason.
    pub fn get(&self, r: DropReason) -> u64 {
        self.0[r as usize]
    }

    /// All drops.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

impl Serialize for Drops {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(DropReason::ALL.len()))?;
        for r in DropReason::ALL {
            m.serialize_entry(r.name(), &self.get(r))?;
        }
        m.end()
    }
}

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
}
