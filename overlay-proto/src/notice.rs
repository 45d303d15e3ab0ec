//! The switch's restart notice: "I restarted, handshake again now".
//!
//! A restarted switch has lost every session, and a node that is only
//! receiving would not notice until its next keepalive went unanswered (up to
//! 10 s + 5 s). So a switch that remembers its nodes' endpoints (its state
//! file) sends each one a notice when it starts, and the node starts a new
//! handshake at once.
//!
//! The notice is authenticated without a session: its tag is
//! HMAC-SHA256(K, header || timestamp) truncated to 16 bytes, where
//! K = HKDF-SHA256(salt = "tapmesh v1 restart notice", ikm = X25519(switch
//! static, node static)); both sides can compute K from their own private key
//! and the other's public key. The timestamp is the switch's TAI64N wall clock;
//! a node accepts only notices newer than its own start and than the last one
//! it accepted, so captured notices cannot be replayed to force handshakes.
//!
//! ```text
//! | common header (type 4) | timestamp:96 | tag:128 |     36 bytes
//! ```
use snow::params::{DHChoice, HashChoice};
use snow::resolvers::{CryptoResolver, DefaultResolver};

use crate::Error;
use crate::handshake::Timestamp;
use crate::keys::{PublicKey, StaticSecret};
use crate::wire::{COMMON_LEN, Header, MessageType, RESTART_NOTICE_LEN};

const SALT: &[u8] = b"tapmesh v1 restart notice";

/// The key one switch and one node share for notices.
#[derive(Clone)]
pub struct NoticeKey([u8; 32]);

impl std::fmt::Debug for NoticeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NoticeKey(<redacted>)")
    }
}

impl NoticeKey {
    /// Derive from our private key and the peer's public key (symmetric: the
    /// switch and the node get the same key).
    pub fn derive(local: &StaticSecret, remote: &PublicKey) -> Result<NoticeKey, Error> {
        let mut dh = DefaultResolver
            .resolve_dh(&DHChoice::Curve25519)
            .ok_or(Error::BadKey)?;
        dh.set(local.as_bytes());
        let mut shared = [0u8; 32];
        dh.dh(&remote.0, &mut shared).map_err(|_| Error::BadKey)?;
        if shared == [0u8; 32] {
            // A low-order public key: refuse rather than use a known key.
            return Err(Error::BadKey);
        }
        let mut hash = DefaultResolver
            .resolve_hash(&HashChoice::SHA256)
            .ok_or(Error::BadKey)?;
        let (mut k, mut unused1, mut unused2) = ([0u8; 64], [0u8; 64], [0u8; 64]);
        hash.hkdf(SALT, &shared, 1, &mut k, &mut unused1, &mut unused2);
        let mut key = [0u8; 32];
        key.copy_from_slice(&k[..32]);
        Ok(NoticeKey(key))
    }

    fn tag(&self, authenticated: &[u8]) -> [u8; 16] {
        let mut hash = DefaultResolver
            .resolve_hash(&HashChoice::SHA256)
            .expect("snow's default resolver provides SHA-256");
        let mut out = [0u8; 64];
        hash.hmac(&self.0, authenticated, &mut out);
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&out[..16]);
        tag
    }

    /// Write a notice into `out`.
    pub fn seal(&self, network_id: u32, timestamp: Timestamp, out: &mut [u8; RESTART_NOTICE_LEN]) {
        let mut h = Header::new_unchecked(&mut out[..]);
        h.set_common(MessageType::RestartNotice, 0, 0, network_id);
        out[COMMON_LEN..COMMON_LEN + 12].copy_from_slice(&timestamp.0);
        let tag = self.tag(&out[..COMMON_LEN + 12]);
        out[COMMON_LEN + 12..].copy_from_slice(&tag);
    }

    /// Verify a notice (already checked by [`Header::new_checked`]) and return
    /// its timestamp.
    pub fn open(&self, notice: &Header<&[u8]>) -> Result<Timestamp, Error> {
        let b = (*notice).into_inner();
        if notice.message_type() != MessageType::RestartNotice || b.len() != RESTART_NOTICE_LEN {
            return Err(Error::Truncated);
        }
        let want = self.tag(&b[..COMMON_LEN + 12]);
        // Constant-time comparison: the tag must not leak byte by byte.
        let diff = want
            .iter()
            .zip(&b[COMMON_LEN + 12..])
            .fold(0u8, |d, (a, b)| d | (a ^ b));
        if diff != 0 {
            return Err(Error::BadTag);
        }
        let mut ts = [0u8; 12];
        ts.copy_from_slice(&b[COMMON_LEN..COMMON_LEN + 12]);
        Ok(Timestamp(ts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_derive_the_same_key_and_forgeries_fail() {
        let mut r = rand::rng();
        let (sw, node, other) = (
            StaticSecret::generate(&mut r),
            StaticSecret::generate(&mut r),
            StaticSecret::generate(&mut r),
        );
        let k_sw = NoticeKey::derive(&sw, &node.public_key()).unwrap();
        let k_node = NoticeKey::derive(&node, &sw.public_key()).unwrap();
        let k_other = NoticeKey::derive(&other, &sw.public_key()).unwrap();
        let ts = Timestamp::from_unix(1_800_000_000, 7);
        let mut n = [0u8; RESTART_NOTICE_LEN];
        k_sw.seal(0, ts, &mut n);
        let h = Header::new_checked(&n[..]).unwrap();
        assert_eq!(k_node.open(&h).unwrap(), ts);
        assert_eq!(k_other.open(&h).unwrap_err(), Error::BadTag);
        let mut m = n;
        m[10] ^= 1; // timestamp
        assert_eq!(
            k_node
                .open(&Header::new_checked(&m[..]).unwrap())
                .unwrap_err(),
            Error::BadTag
        );
        assert!(NoticeKey::derive(&sw, &PublicKey([0; 32])).is_err());
    }
}
