//! AES-256-GCM for data packets, in place in caller-owned buffers.
//!
//! Nonce: 4 zero bytes followed by the 64-bit big-endian packet counter. Each
//! direction of a session has its own key (the two halves of the Noise split),
//! so the same counter value under the two keys never shares a (key, nonce)
//! pair, and a counter is never reset without a new handshake, so no nonce is
//! ever reused under a key. The 20-byte outer header is the associated data:
//! a receiver that flips any header bit gets a tag failure.
//!
//! The cipher seam: [`DataCipher`] is the only type the data path seals and
//! opens with. Behind it is AWS-LC (`aws-lc-rs`), whose AES-GCM uses VAES and
//! AVX-512 where the CPU has them: about three times the throughput of the
//! pure-Rust `aes-gcm` crate on 64-, 1400- and 65536-byte payloads (BENCHMARKS.md,
//! "The cipher", with the command). Its key schedule lives in memory that
//! AWS-LC wipes when it is freed (`OPENSSL_free` cleanses every allocation).
//! The `aes-gcm` crate stays for the cookie replies (`cookie`) and as the
//! independent implementation this module's tests check AWS-LC against.
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

use crate::Error;
use crate::wire::AEAD_TAG_LEN;

/// One direction's AEAD key, expanded once.
pub struct DataCipher {
    aead: LessSafeKey,
    /// The key itself, kept only in fuzzing builds, where cores are cloned
    /// with live sessions (`LessSafeKey` cannot be cloned).
    #[cfg(fuzzing)]
    key: zeroize::Zeroizing<[u8; 32]>,
}

#[cfg(fuzzing)]
impl Clone for DataCipher {
    fn clone(&self) -> DataCipher {
        DataCipher::new(&self.key)
    }
}

impl std::fmt::Debug for DataCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataCipher(..)")
    }
}

fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

impl DataCipher {
    /// Expand a 32-byte key.
    pub fn new(key: &[u8; 32]) -> DataCipher {
        let unbound =
            UnboundKey::new(&AES_256_GCM, key).expect("AES-256-GCM takes any 32-byte key");
        DataCipher {
            aead: LessSafeKey::new(unbound),
            #[cfg(fuzzing)]
            key: zeroize::Zeroizing::new(*key),
        }
    }

    /// Encrypt `payload` in place and return the tag.
    pub fn seal(&self, counter: u64, aad: &[u8], payload: &mut [u8]) -> [u8; AEAD_TAG_LEN] {
        // HOT PATH
        let tag = self
            .aead
            .seal_in_place_separate_tag(nonce(counter), Aad::from(aad), payload)
            .expect("AES-GCM encryption cannot fail for payloads below 64 GiB");
        let mut out = [0u8; AEAD_TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        out
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
        self.aead
            .open_in_place_separate_tag(nonce(counter), Aad::from(aad), tag, payload)
            .map(|_| ())
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

    /// AWS-LC and the pure-Rust `aes-gcm` crate, two independent
    /// implementations, agree on every size the data path uses: what one
    /// seals the other opens, byte for byte, both ways.
    #[test]
    fn aws_lc_and_rust_crypto_agree() {
        use aes_gcm::aead::{AeadInOut, KeyInit};
        let key = [0x42u8; 32];
        let ours = DataCipher::new(&key);
        let theirs = aes_gcm::Aes256Gcm::new(&key.into());
        for len in [0usize, 1, 15, 16, 17, 64, 1400, 1500, 9000, 65535] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            let counter = len as u64 * 1_000_003;
            let aad = [len as u8; 20];
            let n = aes_gcm::aead::Nonce::<aes_gcm::Aes256Gcm>::from({
                let mut n = [0u8; 12];
                n[4..].copy_from_slice(&counter.to_be_bytes());
                n
            });

            let mut a = plain.clone();
            let tag_a = ours.seal(counter, &aad, &mut a);
            let mut b = plain.clone();
            let tag_b: [u8; 16] = theirs
                .encrypt_inout_detached(&n, &aad, b.as_mut_slice().into())
                .unwrap()
                .into();
            assert_eq!((&a, tag_a), (&b, tag_b), "len {len}");

            theirs
                .decrypt_inout_detached(&n, &aad, a.as_mut_slice().into(), &tag_a.into())
                .unwrap();
            assert_eq!(a, plain, "len {len}");
            ours.open(counter, &aad, &mut b, &tag_b).unwrap();
            assert_eq!(b, plain, "len {len}");
        }
    }
}
