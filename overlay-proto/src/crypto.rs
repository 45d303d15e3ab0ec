//! AES-256-GCM for data packets, in place in caller-owned buffers.
//!
//! Nonce: 4 zero bytes followed by the 64-bit big-endian packet counter. Each
//! direction of a session has its own key (the two halves of the Noise split),
//! so the same counter value under the two keys never shares a (key, nonce)
//! pair, and a counter is never reset without a new handshake, so no nonce is
//! ever reused under a key. The 20-byte outer header is the associated data:
//! a receiver that flips any header bit gets a tag failure.
use aes_gcm::aead::Nonce;
use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Tag};

use crate::Error;
use crate::wire::AEAD_TAG_LEN;

/// One direction's AEAD key, expanded once.
#[cfg_attr(fuzzing, derive(Clone))]
pub struct DataCipher {
    aead: Aes256Gcm,
}

impl std::fmt::Debug for DataCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataCipher(..)")
    }
}

fn nonce(counter: u64) -> Nonce<Aes256Gcm> {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    n.into()
}

impl DataCipher {
    /// Expand a 32-byte key.
    pub fn new(key: &[u8; 32]) -> DataCipher {
        DataCipher {
            aead: Aes256Gcm::new(key.into()),
        }
    }

    /// Encrypt `payload` in place and return the tag.
    pub fn seal(&self, counter: u64, aad: &[u8], payload: &mut [u8]) -> [u8; AEAD_TAG_LEN] {
        // HOT PATH
        let tag = self
            .aead
            .encrypt_inout_detached(&nonce(counter), aad, payload.into())
            .expect("AES-GCM encryption cannot fail for payloads below 64 GiB");
        tag.into()
    }

    /// Verify `tag` and decrypt `payload` in place. On failure the payload is
    /// left unspecified and must not be used.
    pub fn open(
        &self,
        counter: u64,
        aad: &[u8],
        payload: &mut [u8],
        tag: &[u8; AEAD_TAG_LEN],
    ) -> Result<(), Error> {
        // HOT PATH
        let tag = Tag::from(*tag);
        self.aead
            .decrypt_inout_detached(&nonce(counter), aad, payload.into(), &tag)
            .map_err(|_| Error::BadTag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NIST GCM test vector (gcmEncryptExtIV256.rsp, Count = 0 of the
    /// [Keylen = 256, IVlen = 96, PTlen = 128, AADlen = 0, Taglen = 128] set)
    /// cannot be used directly because our nonce has 4 fixed zero bytes, so we
    /// check the AES-256-GCM test case 13/14 of McGrew & Viega's GCM spec
    /// (all-zero key, all-zero 96-bit IV, which is counter 0 here).
    #[test]
    fn gcm_spec_test_case_14() {
        let c = DataCipher::new(&[0u8; 32]);
        let mut pt = [0u8; 16];
        let tag = c.seal(0, &[], &mut pt);
        assert_eq!(
            pt,
            [
                0xce, 0xa7, 0x40, 0x3d, 0x4d, 0x60, 0x6b, 0x6e, 0x07, 0x4e, 0xc5, 0xd3, 0xba, 0xf3,
                0x9d, 0x18
            ]
        );
        assert_eq!(
            tag,
            [
                0xd0, 0xd1, 0xc8, 0xa7, 0x99, 0x99, 0x6b, 0xf0, 0x26, 0x5b, 0x98, 0xb5, 0xd4, 0x8a,
                0xb9, 0x19
            ]
        );
        c.open(0, &[], &mut pt, &tag).unwrap();
        assert_eq!(pt, [0u8; 16]);
    }

    #[test]
    fn aad_and_counter_are_authenticated() {
        let c = DataCipher::new(&[7u8; 32]);
        let mut buf = *b"an ethernet frame";
        let tag = c.seal(5, b"header", &mut buf);
        let sealed = buf;
        assert_eq!(c.open(6, b"header", &mut buf, &tag), Err(Error::BadTag));
        buf = sealed;
        assert_eq!(c.open(5, b"headeR", &mut buf, &tag), Err(Error::BadTag));
        buf = sealed;
        let mut bad = tag;
        bad[0] ^= 1;
        assert_eq!(c.open(5, b"header", &mut buf, &bad), Err(Error::BadTag));
        buf = sealed;
        c.open(5, b"header", &mut buf, &tag).unwrap();
        assert_eq!(&buf, b"an ethernet frame");
    }
}
