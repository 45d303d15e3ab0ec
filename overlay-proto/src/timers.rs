//! Protocol constants. The timer values follow WireGuard (Donenfeld, "WireGuard:
//! Next Generation Kernel Network Tunnel", NDSS 2017, section 6 and table in
//! 6.4); the liveness probe is tapmesh's own so a restarted switch is noticed
//! within seconds instead of WireGuard's 15 s.
use std::time::Duration;

/// The initiator starts a new handshake once its session is this old.
pub const REKEY_AFTER_TIME: Duration = Duration::from_secs(120);
/// A session older than this is never used to send or receive (WireGuard: 180 s).
pub const REJECT_AFTER_TIME: Duration = Duration::from_secs(180);
/// The initiator rekeys after this many messages (WireGuard: 2^60).
pub const REKEY_AFTER_MESSAGES: u64 = 1 << 60;
/// No message is sent or accepted with a counter at or above this (WireGuard: 2^64 - 2^13 - 1).
pub const REJECT_AFTER_MESSAGES: u64 = u64::MAX - (1 << 13);
/// Send an empty (keepalive) data packet after this long without sending anything.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// A node that sent traffic but heard nothing back for this long sends a probe
/// (an empty data packet, which the switch answers).
pub const PROBE_AFTER: Duration = Duration::from_secs(2);
/// A probe unanswered for this long means the session is gone (switch restarted,
/// path lost): the node starts a new handshake.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// First handshake retry delay; doubles up to [`HANDSHAKE_RETRY_MAX`].
pub const HANDSHAKE_RETRY_MIN: Duration = Duration::from_millis(250);
/// The cap on the handshake retry backoff.
pub const HANDSHAKE_RETRY_MAX: Duration = Duration::from_secs(5);
/// A responder's unconfirmed session is forgotten after this long.
pub const PENDING_SESSION_TIMEOUT: Duration = Duration::from_secs(10);
