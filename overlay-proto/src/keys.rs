//! X25519 static keys and the optional network pre-shared key, with the base64
//! text form used in config files (the same form `wg` uses).
//!
//! Secrets are wiped when dropped (the `zeroize` crate, whose writes the
//! compiler may not elide), and so are the buffers their text form is
//! decoded through, so a key lingers in memory only while it is in use.
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use snow::params::DHChoice;
use snow::resolvers::{CryptoResolver, DefaultResolver};
use zeroize::{Zeroize, Zeroizing};

use crate::Error;

/// A static private key. Its `Debug` never prints the key; it is wiped
/// when dropped.
#[derive(Clone)]
pub struct StaticSecret([u8; 32]);

/// A static public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; 32]);

/// The network secret, mixed into every handshake as the Noise PSK. Without
/// one, 32 zero bytes are used (as WireGuard does). Wiped when dropped.
#[derive(Clone, Default)]
pub struct Psk(pub(crate) [u8; 32]);

/// Compared in constant time (a reload checks whether the secret changed).
impl PartialEq for Psk {
    fn eq(&self, other: &Psk) -> bool {
        self.0
            .iter()
            .zip(&other.0)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl Eq for Psk {}

/// The 32 bytes of a base64 key; the decoding buffer is wiped.
fn decode32(text: &str) -> Result<[u8; 32], Error> {
    let bytes = Zeroizing::new(B64.decode(text.trim()).map_err(|_| Error::BadKey)?);
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| Error::BadKey)
}

impl Drop for StaticSecret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl Drop for Psk {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl StaticSecret {
    /// A new random key from the caller's randomness.
    pub fn generate(rng: &mut impl rand::RngCore) -> StaticSecret {
        let mut k = [0u8; 32];
        rng.fill_bytes(&mut k);
        StaticSecret(k)
    }

    /// Parse base64 text (surrounding whitespace allowed).
    pub fn from_base64(text: &str) -> Result<StaticSecret, Error> {
        decode32(text).map(StaticSecret)
    }

    /// The base64 text form, for `keygen`.
    pub fn to_base64(&self) -> String {
        B64.encode(self.0)
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        let mut dh = DefaultResolver
            .resolve_dh(&DHChoice::Curve25519)
            .expect("snow's default resolver provides Curve25519");
        dh.set(&self.0);
        let mut out = [0u8; 32];
        out.copy_from_slice(dh.pubkey());
        PublicKey(out)
    }

    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for StaticSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StaticSecret(<redacted>)")
    }
}

impl PublicKey {
    /// Parse base64 text.
    pub fn from_base64(text: &str) -> Result<PublicKey, Error> {
        decode32(text).map(PublicKey)
    }

    /// The base64 text form.
    pub fn to_base64(&self) -> String {
        B64.encode(self.0)
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.to_base64())
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl Psk {
    /// Parse base64 text of 32 bytes (`tapmesh-switch keygen` makes one).
    pub fn from_base64(text: &str) -> Result<Psk, Error> {
        decode32(text).map(Psk)
    }
}

impl std::fmt::Debug for Psk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Psk(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7748 section 6.1: Alice's private and public key.
    #[test]
    fn rfc7748_public_key() {
        let sk: [u8; 32] = [
            0x77, 0x07, 0x6d, 0x0a, 0x73, 0x18, 0xa5, 0x7d, 0x3c, 0x16, 0xc1, 0x72, 0x51, 0xb2,
            0x66, 0x45, 0xdf, 0x4c, 0x2f, 0x87, 0xeb, 0xc0, 0x99, 0x2a, 0xb1, 0x77, 0xfb, 0xa5,
            0x1d, 0xb9, 0x2c, 0x2a,
        ];
        let pk: [u8; 32] = [
            0x85, 0x20, 0xf0, 0x09, 0x89, 0x30, 0xa7, 0x54, 0x74, 0x8b, 0x7d, 0xdc, 0xb4, 0x3e,
            0xf7, 0x5a, 0x0d, 0xbf, 0x3a, 0x0d, 0x26, 0x38, 0x1a, 0xf4, 0xeb, 0xa4, 0xa9, 0x8e,
            0xaa, 0x9b, 0x4e, 0x6a,
        ];
        assert_eq!(StaticSecret(sk).public_key().0, pk);
    }

    #[test]
    fn base64_round_trip_and_errors() {
        let k = StaticSecret::generate(&mut rand::rng());
        let k2 = StaticSecret::from_base64(&format!(" {}\n", k.to_base64())).unwrap();
        assert_eq!(k.public_key(), k2.public_key());
        assert_eq!(PublicKey::from_base64("AAAA").unwrap_err(), Error::BadKey);
        assert_eq!(
            PublicKey::from_base64("not base64!").unwrap_err(),
            Error::BadKey
        );
        assert!(!format!("{k:?}").contains(&k.to_base64()));
    }
}
