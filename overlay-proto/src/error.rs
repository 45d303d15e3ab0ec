/// Why a datagram or handshake was refused. Small and `Copy` so the hot path
/// can return it without allocating; shells turn it into a drop counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Error {
    /// Shorter than its fixed header (or than header + tag).
    #[error("datagram truncated")]
    Truncated,
    /// The version nibble is not ours.
    #[error("unknown protocol version")]
    BadVersion,
    /// The type nibble is not one we know.
    #[error("unknown message type")]
    UnknownType,
    /// Reserved flag bits or the reserved byte are set.
    #[error("reserved bits set")]
    BadFlags,
    /// AEAD authentication failed: forged, corrupted or keyed for someone else.
    #[error("authentication tag mismatch")]
    BadTag,
    /// The counter was already seen or is older than the replay window.
    #[error("replayed or too old")]
    Replay,
    /// The send counter reached its hard limit; a new handshake is required.
    #[error("send counter exhausted")]
    CounterExhausted,
    /// The Noise handshake failed (bad MAC, wrong PSK, wrong responder key).
    #[error("handshake failed")]
    Handshake,
    /// The caller's buffer cannot hold header + payload + tag.
    #[error("buffer too small")]
    BufferTooSmall,
    /// A key was not 32 bytes of valid base64.
    #[error("invalid key")]
    BadKey,
}
