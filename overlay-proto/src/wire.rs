//! Zero-copy views of tapmesh datagrams.
//!
//! Every datagram starts with the same 8-byte common header; the rest depends on
//! the message type. All integers are big-endian. See `docs/protocol.md` for the
//! byte tables.
//!
//! ```text
//! common   | ver:4 type:4 | flags | hops | rsvd | network_id:32 |
//!            flags (data only): FRAGMENT 0x01, VNET 0x02, CONTROL 0x04
//! data     | common | receiver_index:32 | counter:64 | ciphertext | tag:128 |
//! hs-init  | common | sender_index:32 | noise msg1 (112 B) | mac1:128 | mac2:128 |
//! hs-resp  | common | sender_index:32 | receiver_index:32 | noise msg2 (48 B) |
//! notice   | common | timestamp:96 | tag:128 |
//! cookie   | common | receiver_index:32 | nonce:192 | encrypted cookie:128 | tag:128 |
//! ```
//!
//! [`Header::new_checked`] is the only way to look at untrusted bytes; after it
//! succeeds no accessor can panic.
use crate::Error;

/// The protocol version this crate speaks.
pub const VERSION: u8 = 1;
/// Length of the common header.
pub const COMMON_LEN: usize = 8;
/// Length of a data packet's header (the AEAD's associated data).
pub const DATA_HEADER_LEN: usize = 20;
/// Length of the AES-GCM tag that follows the ciphertext.
pub const AEAD_TAG_LEN: usize = 16;
/// Bytes a data packet adds around the Ethernet frame.
pub const DATA_OVERHEAD: usize = DATA_HEADER_LEN + AEAD_TAG_LEN;
/// Length of the Noise IKpsk2 first message with our 16-byte payload
/// (timestamp, capabilities): ephemeral (32) + encrypted static (32 + 16) +
/// encrypted payload (16 + 16).
pub const NOISE_INIT_LEN: usize = 112;
/// Length of the Noise IKpsk2 second message with an empty payload:
/// ephemeral (32) + encrypted empty payload (16).
pub const NOISE_RESP_LEN: usize = 48;
/// Total length of a handshake initiation datagram: header, sender index,
/// Noise message, `mac1` and `mac2` (see [`crate::cookie`]).
pub const HS_INIT_LEN: usize = COMMON_LEN + 4 + NOISE_INIT_LEN + 32;
/// Total length of a handshake response datagram.
pub const HS_RESP_LEN: usize = COMMON_LEN + 8 + NOISE_RESP_LEN;
/// Total length of a restart notice (see [`crate::notice`]).
pub const RESTART_NOTICE_LEN: usize = COMMON_LEN + 12 + 16;
/// Total length of a cookie reply (see [`crate::cookie`]): header, receiver
/// index, 24-byte nonce, encrypted 16-byte cookie, tag.
pub const COOKIE_REPLY_LEN: usize = COMMON_LEN + 4 + 24 + 16 + 16;
/// Data flag: the plaintext is a fragment (see [`crate::frag`]).
pub const FLAG_FRAGMENT: u8 = 0x01;
/// Data flag: the (reassembled) payload starts with a virtio-net header
/// (see [`crate::vnet`]).
pub const FLAG_VNET: u8 = 0x02;
/// Data flag: the plaintext is a control message, not a frame (see
/// [`crate::control`]).
pub const FLAG_CONTROL: u8 = 0x04;
/// Data flag: a frame the switch relayed in mesh mode (it came from another
/// node through the switch, not over a direct session). The loop guard: a
/// node never forwards a frame it received, and the switch never sends a
/// frame back to the node it came from, so a relayed frame crosses the switch
/// once.
pub const FLAG_RELAYED: u8 = 0x08;
/// Flag bits a receiver accepts; any other bit set is refused.
pub const KNOWN_FLAGS: u8 = FLAG_FRAGMENT | FLAG_VNET | FLAG_CONTROL | FLAG_RELAYED;

mod field {
    use std::ops::Range;
    pub const VER_TYPE: usize = 0;
    pub const FLAGS: usize = 1;
    pub const HOPS: usize = 2;
    pub const RESERVED: usize = 3;
    pub const NETWORK_ID: Range<usize> = 4..8;
    // data
    pub const RECEIVER_INDEX: Range<usize> = 8..12;
    pub const COUNTER: Range<usize> = 12..20;
    // handshake
    pub const SENDER_INDEX: Range<usize> = 8..12;
    pub const RESP_RECEIVER_INDEX: Range<usize> = 12..16;
    pub const INIT_NOISE: Range<usize> = 12..124;
    pub const RESP_NOISE: usize = 16;
}

/// Message types (the low nibble of byte 0). Unknown values are kept, so a
/// receiver can count them instead of failing to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// An encrypted Ethernet frame; an empty one is a keepalive.
    Data,
    /// Noise message 1, initiator to responder.
    HandshakeInit,
    /// Noise message 2, responder to initiator.
    HandshakeResp,
    /// The switch restarted: handshake again now.
    RestartNotice,
    /// The switch is under load: use this cookie for `mac2` and retry.
    CookieReply,
    /// A type this version does not know.
    Unknown(u8),
}

impl From<u8> for MessageType {
    fn from(v: u8) -> Self {
        match v {
            1 => MessageType::Data,
            2 => MessageType::HandshakeInit,
            3 => MessageType::HandshakeResp,
            4 => MessageType::RestartNotice,
            5 => MessageType::CookieReply,
            other => MessageType::Unknown(other),
        }
    }
}

impl From<MessageType> for u8 {
    fn from(t: MessageType) -> u8 {
        match t {
            MessageType::Data => 1,
            MessageType::HandshakeInit => 2,
            MessageType::HandshakeResp => 3,
            MessageType::RestartNotice => 4,
            MessageType::CookieReply => 5,
            MessageType::Unknown(v) => v,
        }
    }
}

impl MessageType {
    /// The exact or minimum datagram length for this type.
    fn min_len(self) -> usize {
        match self {
            MessageType::Data => DATA_HEADER_LEN + AEAD_TAG_LEN,
            MessageType::HandshakeInit => HS_INIT_LEN,
            MessageType::HandshakeResp => HS_RESP_LEN,
            MessageType::RestartNotice => RESTART_NOTICE_LEN,
            MessageType::CookieReply => COOKIE_REPLY_LEN,
            MessageType::Unknown(_) => COMMON_LEN,
        }
    }
}

/// A read (and, for `AsMut`, write) view of a tapmesh datagram.
#[derive(Debug, Clone, Copy)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    /// Wrap a buffer without checking it. Use only on buffers this process is
    /// filling in (emit), never on received bytes.
    pub const fn new_unchecked(buffer: T) -> Header<T> {
        Header { buffer }
    }

    /// Wrap received bytes, checking version, type, reserved bits and that the
    /// buffer is long enough for its type. Handshake messages must have their
    /// exact length.
    pub fn new_checked(buffer: T) -> Result<Header<T>, Error> {
        let h = Header { buffer };
        let b = h.buffer.as_ref();
        if b.len() < COMMON_LEN {
            return Err(Error::Truncated);
        }
        if b[field::VER_TYPE] >> 4 != VERSION {
            return Err(Error::BadVersion);
        }
        let ty = h.message_type();
        if let MessageType::Unknown(_) = ty {
            return Err(Error::UnknownType);
        }
        if b[field::FLAGS] & !KNOWN_FLAGS != 0 || b[field::RESERVED] != 0 {
            return Err(Error::BadFlags);
        }
        let len = b.len();
        let ok = match ty {
            MessageType::Data => len >= ty.min_len(),
            _ => len == ty.min_len(),
        };
        if !ok {
            return Err(Error::Truncated);
        }
        Ok(h)
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The message type.
    pub fn message_type(&self) -> MessageType {
        MessageType::from(self.buffer.as_ref()[field::VER_TYPE] & 0x0f)
    }

    /// Flag bits.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// Remaining relay hops.
    pub fn hops(&self) -> u8 {
        self.buffer.as_ref()[field::HOPS]
    }

    /// The isolated network (LAN) this datagram belongs to.
    pub fn network_id(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::NETWORK_ID])
    }

    /// Data: the index the receiver chose for this session.
    /// Handshake response and cookie reply: the initiator's index it answers.
    pub fn receiver_index(&self) -> u32 {
        match self.message_type() {
            MessageType::HandshakeResp => be32(&self.buffer.as_ref()[field::RESP_RECEIVER_INDEX]),
            _ => be32(&self.buffer.as_ref()[field::RECEIVER_INDEX]),
        }
    }

    /// Handshake messages: the index the sender chose for the new session.
    pub fn sender_index(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::SENDER_INDEX])
    }

    /// Data: the per-session counter, also the AEAD nonce.
    pub fn counter(&self) -> u64 {
        let b = &self.buffer.as_ref()[field::COUNTER];
        u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
    }

    /// Handshake messages: the Noise message that follows the header.
    pub fn noise_message(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        match self.message_type() {
            MessageType::HandshakeInit => &b[field::INIT_NOISE],
            MessageType::HandshakeResp => &b[field::RESP_NOISE..],
            _ => &[],
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
    /// Write the common header.
    pub fn set_common(&mut self, ty: MessageType, flags: u8, hops: u8, network_id: u32) {
        let b = self.buffer.as_mut();
        b[field::VER_TYPE] = (VERSION << 4) | (u8::from(ty) & 0x0f);
        b[field::FLAGS] = flags;
        b[field::HOPS] = hops;
        b[field::RESERVED] = 0;
        b[field::NETWORK_ID].copy_from_slice(&network_id.to_be_bytes());
    }

    /// Data: write the receiver index and counter.
    pub fn set_data_fields(&mut self, receiver_index: u32, counter: u64) {
        let b = self.buffer.as_mut();
        b[field::RECEIVER_INDEX].copy_from_slice(&receiver_index.to_be_bytes());
        b[field::COUNTER].copy_from_slice(&counter.to_be_bytes());
    }

    /// Handshake: write the sender index (and for a response, the receiver index).
    pub fn set_handshake_indices(&mut self, sender_index: u32, receiver_index: Option<u32>) {
        let b = self.buffer.as_mut();
        b[field::SENDER_INDEX].copy_from_slice(&sender_index.to_be_bytes());
        if let Some(r) = receiver_index {
            b[field::RESP_RECEIVER_INDEX].copy_from_slice(&r.to_be_bytes());
        }
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_packet() -> [u8; 40] {
        let mut b = [0u8; 40];
        let mut h = Header::new_unchecked(&mut b[..]);
        h.set_common(MessageType::Data, 0, 0, 0xdead_beef);
        h.set_data_fields(0x0102_0304, 0x1122_3344_5566_7788);
        b
    }

    #[test]
    fn data_header_byte_vector() {
        let b = data_packet();
        assert_eq!(
            &b[..20],
            &[
                0x11, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 0x11, 0x22, 0x33, 0x44, 0x55,
                0x66, 0x77, 0x88
            ]
        );
        let h = Header::new_checked(&b[..]).unwrap();
        assert_eq!(h.message_type(), MessageType::Data);
        assert_eq!(h.network_id(), 0xdead_beef);
        assert_eq!(h.receiver_index(), 0x0102_0304);
        assert_eq!(h.counter(), 0x1122_3344_5566_7788);
    }

    #[test]
    fn handshake_round_trip() {
        let mut b = [0u8; HS_RESP_LEN];
        let mut h = Header::new_unchecked(&mut b[..]);
        h.set_common(MessageType::HandshakeResp, 0, 0, 7);
        h.set_handshake_indices(9, Some(10));
        let h = Header::new_checked(&b[..]).unwrap();
        assert_eq!(h.sender_index(), 9);
        assert_eq!(h.receiver_index(), 10);
        assert_eq!(h.noise_message().len(), NOISE_RESP_LEN);
    }

    #[test]
    fn initiation_and_cookie_reply_lengths() {
        assert_eq!(HS_INIT_LEN, 156);
        assert_eq!(COOKIE_REPLY_LEN, 68);
        let mut b = [0u8; HS_INIT_LEN];
        b[0] = 0x12;
        let h = Header::new_checked(&b[..]).unwrap();
        assert_eq!(h.noise_message().len(), NOISE_INIT_LEN);
        let mut c = [0u8; COOKIE_REPLY_LEN];
        let mut h = Header::new_unchecked(&mut c[..]);
        h.set_common(MessageType::CookieReply, 0, 0, 0);
        h.set_handshake_indices(42, None);
        let h = Header::new_checked(&c[..]).unwrap();
        assert_eq!(h.message_type(), MessageType::CookieReply);
        assert_eq!(h.receiver_index(), 42);
        assert_eq!(
            Header::new_checked(&c[..COOKIE_REPLY_LEN - 1]).unwrap_err(),
            Error::Truncated
        );
    }

    #[test]
    fn rejects_bad_input() {
        let b = data_packet();
        assert_eq!(Header::new_checked(&b[..7]).unwrap_err(), Error::Truncated);
        assert_eq!(Header::new_checked(&b[..35]).unwrap_err(), Error::Truncated);
        let mut v = b;
        v[0] = 0x21;
        assert_eq!(Header::new_checked(&v[..]).unwrap_err(), Error::BadVersion);
        v[0] = 0x1f;
        assert_eq!(Header::new_checked(&v[..]).unwrap_err(), Error::UnknownType);
        let mut v = b;
        v[1] = 0x80;
        assert_eq!(Header::new_checked(&v[..]).unwrap_err(), Error::BadFlags);
        v[1] = FLAG_FRAGMENT | FLAG_VNET;
        assert!(Header::new_checked(&v[..]).is_ok());
        v[1] = FLAG_CONTROL | FLAG_RELAYED;
        assert!(Header::new_checked(&v[..]).is_ok());
        v[1] = 0x10;
        assert_eq!(Header::new_checked(&v[..]).unwrap_err(), Error::BadFlags);
        let mut v = b;
        v[3] = 1;
        assert_eq!(Header::new_checked(&v[..]).unwrap_err(), Error::BadFlags);
        // A handshake init must have its exact length.
        let mut v = [0u8; HS_INIT_LEN + 1];
        v[0] = 0x12;
        assert_eq!(Header::new_checked(&v[..]).unwrap_err(), Error::Truncated);
        assert!(Header::new_checked(&v[..HS_INIT_LEN]).is_ok());
    }

    #[test]
    fn every_short_prefix_is_refused_without_panic() {
        let b = data_packet();
        for n in 0..36 {
            assert!(Header::new_checked(&b[..n]).is_err());
        }
    }
}
