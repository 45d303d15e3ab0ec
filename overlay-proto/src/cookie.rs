//! Handshake flood defence: `mac1`, `mac2` and the cookie reply, as WireGuard
//! does them (Donenfeld, "WireGuard", NDSS 2017, section 5.4), with
//! HMAC-SHA256 and AES-256-GCM from the primitives tapmesh already uses.
//!
//! Why: reading an initiation costs the responder four X25519 operations. An
//! attacker who can send datagrams could make the switch spend all its time on
//! Diffie-Hellman. So every initiation carries two MACs after the Noise
//! message:
//!
//! - `mac1 = HMAC-SHA256(SHA-256("tapmesh v1 mac1" || S_pub_r), init[..124])[..16]`.
//!   Only someone who knows the switch's public key can compute it, and the
//!   switch checks it with one HMAC before any Diffie-Hellman: random bytes,
//!   scanners and initiations made for another switch are dropped for the
//!   price of a hash.
//! - `mac2 = HMAC-SHA256(cookie, init[..140])[..16]`, or 16 zero bytes without
//!   a cookie. A switch *under load* answers an initiation without a valid
//!   `mac2` with a cookie reply instead of a handshake response, and processes
//!   only initiations whose `mac2` proves that the sender receives datagrams
//!   at its source address: a flood from forged addresses then costs no
//!   Diffie-Hellman either.
//!
//! The cookie is `HMAC-SHA256(secret, source IP || source port)[..16]`, where
//! `secret` is 32 random bytes the responder replaces every
//! [`COOKIE_SECRET_LIFETIME`]; it needs no per-initiator state. It travels
//! encrypted so an on-path observer cannot use it: AES-256-GCM under a key
//! derived per reply from a random 24-byte nonce,
//! `k = HMAC-SHA256(SHA-256("tapmesh v1 cookie" || S_pub_r), nonce)`, with
//! GCM nonce 0 and the initiation's `mac1` as associated data. A fresh key per
//! reply gives the 192-bit random nonce space of WireGuard's XChaCha20 without
//! another cipher, and the associated data makes the initiator accept only a
//! reply to an initiation it sent.
//!
//! ```text
//! hs-init  | common | sender_index:32 | noise msg1 (112 B) | mac1:128 | mac2:128 |   156 bytes
//! cookie   | common | receiver_index:32 | nonce:192 | encrypted cookie:128 | tag:128 |   68 bytes
//! ```
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Tag};
use aws_lc_rs::hmac;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use snow::params::HashChoice;
use snow::resolvers::{CryptoResolver, DefaultResolver};

use crate::Error;
use crate::keys::PublicKey;
use crate::wire::{COOKIE_REPLY_LEN, HS_INIT_LEN, Header, MessageType};

/// Length of `mac1`, `mac2` and the cookie.
pub const MAC_LEN: usize = 16;
/// Length of the cookie reply's random nonce.
pub const COOKIE_NONCE_LEN: usize = 24;
/// Where `mac1` starts in an initiation (it covers everything before it).
pub const MAC1_OFFSET: usize = HS_INIT_LEN - 2 * MAC_LEN;
/// Where `mac2` starts in an initiation (it covers everything before it).
pub const MAC2_OFFSET: usize = HS_INIT_LEN - MAC_LEN;
/// The responder replaces its cookie secret this often, so a cookie is valid
/// for at most this long (WireGuard: 2 minutes).
pub const COOKIE_SECRET_LIFETIME: Duration = Duration::from_secs(120);
/// An initiator uses a cookie for this long after receiving it: the secret's
/// lifetime minus a margin for latency (WireGuard: 120 s - 5 s).
pub const COOKIE_USE_FOR: Duration = Duration::from_secs(115);

const LABEL_MAC1: &[u8] = b"tapmesh v1 mac1";
const LABEL_COOKIE: &[u8] = b"tapmesh v1 cookie";

/// Offsets inside a cookie reply.
const REPLY_NONCE: usize = 12;
const REPLY_COOKIE: usize = REPLY_NONCE + COOKIE_NONCE_LEN;
const REPLY_TAG: usize = REPLY_COOKIE + MAC_LEN;

fn hasher() -> Box<dyn snow::types::Hash> {
    DefaultResolver
        .resolve_hash(&HashChoice::SHA256)
        .expect("snow's default resolver provides SHA-256")
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = hasher();
    h.reset();
    for p in parts {
        h.input(p);
    }
    let mut out = [0u8; 64];
    h.result(&mut out);
    let mut r = [0u8; 32];
    r.copy_from_slice(&out[..32]);
    r
}

/// An HMAC-SHA-256 key with its inner and outer hash states computed once,
/// so each MAC on the flood path costs only the data's blocks and allocates
/// nothing.
fn hmac_key(key: &[u8]) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, key)
}

fn hmac_with(key: &hmac::Key, data: &[u8]) -> [u8; 32] {
    let mut r = [0u8; 32];
    r.copy_from_slice(hmac::sign(key, data).as_ref());
    r
}

fn mac16_with(key: &hmac::Key, data: &[u8]) -> [u8; MAC_LEN] {
    let mut r = [0u8; MAC_LEN];
    r.copy_from_slice(&hmac_with(key, data)[..MAC_LEN]);
    r
}

fn mac16(key: &[u8], data: &[u8]) -> [u8; MAC_LEN] {
    mac16_with(&hmac_key(key), data)
}

/// Compare without an early exit, so timing does not leak matching bytes.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// The two keys both sides derive from the responder's (the switch's) static
/// public key: one for `mac1`, one for encrypting cookie replies.
#[derive(Clone)]
pub struct MacKeys {
    mac1: hmac::Key,
    cookie: hmac::Key,
}

impl std::fmt::Debug for MacKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MacKeys(..)")
    }
}

impl MacKeys {
    /// The keys for initiations to the responder with public key `responder`.
    pub fn new(responder: &PublicKey) -> MacKeys {
        MacKeys {
            mac1: hmac_key(&sha256(&[LABEL_MAC1, &responder.0])),
            cookie: hmac_key(&sha256(&[LABEL_COOKIE, &responder.0])),
        }
    }

    /// `mac1` over an initiation (its bytes before [`MAC1_OFFSET`]).
    pub fn mac1(&self, init: &[u8; HS_INIT_LEN]) -> [u8; MAC_LEN] {
        mac16_with(&self.mac1, &init[..MAC1_OFFSET])
    }

    /// Whether the initiation (already checked by [`Header::new_checked`])
    /// carries a valid `mac1`. One HMAC; call it before anything else.
    pub fn check_mac1(&self, init: &Header<&[u8]>) -> bool {
        let b = (*init).into_inner();
        b.len() == HS_INIT_LEN
            && ct_eq(
                &mac16_with(&self.mac1, &b[..MAC1_OFFSET]),
                &b[MAC1_OFFSET..MAC2_OFFSET],
            )
    }

    /// Write `mac1`, and `mac2` if a cookie is given (else zeros), into a
    /// complete initiation. Returns `mac1`: a cookie reply to this initiation
    /// must be opened with it.
    pub fn stamp(&self, cookie: Option<&Cookie>, init: &mut [u8; HS_INIT_LEN]) -> [u8; MAC_LEN] {
        let m1 = self.mac1(init);
        init[MAC1_OFFSET..MAC2_OFFSET].copy_from_slice(&m1);
        let m2 = match cookie {
            Some(c) => mac16(&c.0, &init[..MAC2_OFFSET]),
            None => [0; MAC_LEN],
        };
        init[MAC2_OFFSET..].copy_from_slice(&m2);
        m1
    }

    fn reply_cipher(&self, nonce: &[u8]) -> Aes256Gcm {
        let k = hmac_with(&self.cookie, nonce);
        Aes256Gcm::new(&k.into())
    }

    /// Open a cookie reply (already checked by [`Header::new_checked`]) that
    /// answers the initiation whose `mac1` was `mac1`.
    pub fn open_reply(&self, mac1: &[u8; MAC_LEN], reply: &Header<&[u8]>) -> Result<Cookie, Error> {
        let b = (*reply).into_inner();
        if reply.message_type() != MessageType::CookieReply || b.len() != COOKIE_REPLY_LEN {
            return Err(Error::Truncated);
        }
        let mut cookie = [0u8; MAC_LEN];
        cookie.copy_from_slice(&b[REPLY_COOKIE..REPLY_TAG]);
        let mut tag = [0u8; MAC_LEN];
        tag.copy_from_slice(&b[REPLY_TAG..]);
        let tag = Tag::from(tag);
        self.reply_cipher(&b[REPLY_NONCE..REPLY_COOKIE])
            .decrypt_inout_detached(&[0u8; 12].into(), mac1, (&mut cookie[..]).into(), &tag)
            .map_err(|_| Error::BadTag)?;
        Ok(Cookie(cookie))
    }
}

/// A cookie the responder gave this initiator; `mac2` is keyed with it.
#[derive(Clone, PartialEq, Eq)]
pub struct Cookie([u8; MAC_LEN]);

impl std::fmt::Debug for Cookie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cookie(..)")
    }
}

/// The responder's side: checks both MACs and makes cookie replies. Whether
/// the responder is under load (and so demands `mac2`) is the caller's
/// decision.
///
/// The secret and the reply nonces come from its own generator, seeded from
/// the operating system ([`CookieMinter::new`]): whoever could predict the
/// secret could make `mac2` for any address and walk past the flood defence,
/// so it must not share a seed with anything that leaves the host (session
/// indices travel in clear).
#[cfg_attr(fuzzing, derive(Clone))]
pub struct CookieMinter {
    keys: MacKeys,
    secret: [u8; 32],
    /// `secret` as an HMAC key, computed when the secret changes.
    secret_key: hmac::Key,
    /// When `secret` was made; `None` before the first cookie.
    secret_born: Option<Instant>,
    rng: StdRng,
}

impl Drop for CookieMinter {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.secret);
    }
}

impl std::fmt::Debug for CookieMinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieMinter")
            .field("secret_born", &self.secret_born)
            .finish_non_exhaustive()
    }
}

impl CookieMinter {
    /// A minter for the responder with public key `local`, its generator
    /// seeded from the operating system (256 bits).
    pub fn new(local: &PublicKey) -> CookieMinter {
        CookieMinter::with_rng(local, StdRng::from_os_rng())
    }

    /// A minter whose secret and nonces come from `rng`: for reproducible
    /// fixtures (fuzz seeds). A product uses [`CookieMinter::new`].
    pub fn with_rng(local: &PublicKey, rng: StdRng) -> CookieMinter {
        CookieMinter {
            keys: MacKeys::new(local),
            secret: [0; 32],
            secret_key: hmac_key(&[0; 32]),
            secret_born: None,
            rng,
        }
    }

    /// See [`MacKeys::check_mac1`].
    pub fn check_mac1(&self, init: &Header<&[u8]>) -> bool {
        self.keys.check_mac1(init)
    }

    fn secret_is_live(&self, now: Instant) -> bool {
        self.secret_born
            .is_some_and(|t| now.saturating_duration_since(t) < COOKIE_SECRET_LIFETIME)
    }

    fn cookie(&self, from: SocketAddr) -> [u8; MAC_LEN] {
        let mut addr = [0u8; 18];
        let n = match from.ip() {
            std::net::IpAddr::V4(ip) => {
                addr[..4].copy_from_slice(&ip.octets());
                4
            }
            std::net::IpAddr::V6(ip) => {
                addr[..16].copy_from_slice(&ip.octets());
                16
            }
        };
        addr[n..n + 2].copy_from_slice(&from.port().to_be_bytes());
        mac16_with(&self.secret_key, &addr[..n + 2])
    }

    /// Whether the initiation carries a `mac2` made with the cookie for
    /// `from` under the current secret. (`mac1` must have been checked.)
    pub fn check_mac2(&self, now: Instant, from: SocketAddr, init: &Header<&[u8]>) -> bool {
        let b = (*init).into_inner();
        if b.len() != HS_INIT_LEN || !self.secret_is_live(now) {
            return false;
        }
        let cookie = self.cookie(from);
        ct_eq(&mac16(&cookie, &b[..MAC2_OFFSET]), &b[MAC2_OFFSET..])
    }

    /// Write a cookie reply to the initiation `init` received from `from`
    /// into `out`: a fresh random nonce and, every
    /// [`COOKIE_SECRET_LIFETIME`], a new secret.
    pub fn write_reply(
        &mut self,
        now: Instant,
        from: SocketAddr,
        init: &Header<&[u8]>,
        out: &mut [u8; COOKIE_REPLY_LEN],
    ) {
        if !self.secret_is_live(now) {
            self.rng.fill_bytes(&mut self.secret);
            self.secret_key = hmac_key(&self.secret);
            self.secret_born = Some(now);
        }
        let b = (*init).into_inner();
        let mut h = Header::new_unchecked(&mut out[..]);
        h.set_common(MessageType::CookieReply, 0, 0, init.network_id());
        h.set_handshake_indices(init.sender_index(), None);
        self.rng.fill_bytes(&mut out[REPLY_NONCE..REPLY_COOKIE]);
        let mut cookie = self.cookie(from);
        let tag = self
            .keys
            .reply_cipher(&out[REPLY_NONCE..REPLY_COOKIE])
            .encrypt_inout_detached(
                &[0u8; 12].into(),
                &b[MAC1_OFFSET..MAC2_OFFSET],
                (&mut cookie[..]).into(),
            )
            .expect("AES-GCM encryption of 16 bytes cannot fail");
        out[REPLY_COOKIE..REPLY_TAG].copy_from_slice(&cookie);
        out[REPLY_TAG..].copy_from_slice(&tag);
    }
}

/// The initiator's side: the latest cookie and when it arrived.
#[derive(Debug, Default, Clone)]
pub struct CookieJar {
    cookie: Option<(Cookie, Instant)>,
}

impl CookieJar {
    /// Keep a cookie received at `now`.
    pub fn store(&mut self, now: Instant, cookie: Cookie) {
        self.cookie = Some((cookie, now));
    }

    /// The cookie to key `mac2` with, if one arrived within [`COOKIE_USE_FOR`].
    pub fn current(&self, now: Instant) -> Option<&Cookie> {
        self.cookie
            .as_ref()
            .filter(|(_, t)| now.saturating_duration_since(*t) < COOKIE_USE_FOR)
            .map(|(c, _)| c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::{Timestamp, initiate, read_init};
    use crate::keys::{Psk, StaticSecret};
    use rand::SeedableRng;

    /// The MACs are HMAC-SHA-256 as before the precomputed keys: RFC 4231's
    /// test case 2, and the same result as snow's HMAC on a full initiation,
    /// so `mac1`, `mac2` and cookies are unchanged on the wire.
    #[test]
    fn macs_are_hmac_sha256_as_on_the_wire() {
        let tag = hmac_with(&hmac_key(b"Jefe"), b"what do ya want for nothing?");
        let want = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        let got: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(got, want);
        let key = [7u8; 32];
        let data = [0x5au8; HS_INIT_LEN];
        let mut snow_out = [0u8; 64];
        hasher().hmac(&key, &data, &mut snow_out);
        assert_eq!(hmac_with(&hmac_key(&key), &data), snow_out[..32]);
        assert_eq!(mac16(&key, &data), snow_out[..MAC_LEN]);
    }

    fn init_for(
        node: &StaticSecret,
        switch: &PublicKey,
        cookie: Option<&Cookie>,
    ) -> ([u8; HS_INIT_LEN], [u8; MAC_LEN]) {
        let mut m = [0u8; HS_INIT_LEN];
        let ini = initiate(
            node,
            switch,
            &Psk::default(),
            0,
            9,
            Timestamp::from_unix(5, 0),
            0,
            cookie,
            &mut m,
        )
        .unwrap();
        (m, ini.mac1())
    }

    #[test]
    fn mac1_binds_the_responder_key_and_every_byte() {
        let mut r = rand::rng();
        let (node, sw, other) = (
            StaticSecret::generate(&mut r),
            StaticSecret::generate(&mut r),
            StaticSecret::generate(&mut r),
        );
        let (m, _) = init_for(&node, &sw.public_key(), None);
        let minter = CookieMinter::new(&sw.public_key());
        assert!(minter.check_mac1(&Header::new_checked(&m[..]).unwrap()));
        assert!(
            !CookieMinter::new(&other.public_key())
                .check_mac1(&Header::new_checked(&m[..]).unwrap())
        );
        for i in [0, 8, 12, 60, MAC1_OFFSET - 1, MAC1_OFFSET, MAC2_OFFSET - 1] {
            let mut t = m;
            t[i] ^= 0x40;
            let ok = Header::new_checked(&t[..]).is_ok_and(|h| minter.check_mac1(&h));
            assert!(!ok, "flipping byte {i} kept mac1 valid");
        }
        // mac2 is not covered by mac1 (it is added by the initiator later).
        let mut t = m;
        t[MAC2_OFFSET] ^= 1;
        assert!(minter.check_mac1(&Header::new_checked(&t[..]).unwrap()));
        // A responder checks mac1 before the Noise message; both agree.
        assert!(read_init(&sw, &Psk::default(), &Header::new_checked(&m[..]).unwrap()).is_ok());
    }

    #[test]
    fn cookie_round_trip_makes_mac2_valid_for_that_address_only() {
        let mut r = rand::rng();
        let (node, sw) = (
            StaticSecret::generate(&mut r),
            StaticSecret::generate(&mut r),
        );
        let t0 = Instant::now();
        let from: SocketAddr = "198.18.0.11:40000".parse().unwrap();
        let mut minter = CookieMinter::new(&sw.public_key());
        let (m, mac1) = init_for(&node, &sw.public_key(), None);
        let h = Header::new_checked(&m[..]).unwrap();
        assert!(
            !minter.check_mac2(t0, from, &h),
            "zero mac2 without a cookie"
        );
        let mut reply = [0u8; COOKIE_REPLY_LEN];
        minter.write_reply(t0, from, &h, &mut reply);
        let rh = Header::new_checked(&reply[..]).unwrap();
        assert_eq!(rh.message_type(), MessageType::CookieReply);
        assert_eq!(rh.receiver_index(), 9);
        let keys = MacKeys::new(&sw.public_key());
        // Only the initiation it answers opens it.
        assert_eq!(
            keys.open_reply(&[0; MAC_LEN], &rh).unwrap_err(),
            Error::BadTag
        );
        let cookie = keys.open_reply(&mac1, &rh).unwrap();
        let mut jar = CookieJar::default();
        jar.store(t0, cookie);
        let (m2, _) = init_for(&node, &sw.public_key(), jar.current(t0));
        let h2 = Header::new_checked(&m2[..]).unwrap();
        assert!(minter.check_mac1(&h2));
        assert!(minter.check_mac2(t0, from, &h2));
        let elsewhere: SocketAddr = "198.18.0.11:40001".parse().unwrap();
        assert!(!minter.check_mac2(t0, elsewhere, &h2));
        // The secret expires; the jar stops using the cookie a little earlier.
        assert!(!minter.check_mac2(t0 + COOKIE_SECRET_LIFETIME, from, &h2));
        assert!(jar.current(t0 + COOKIE_USE_FOR).is_none());
        // A tampered reply is refused.
        let mut bad = reply;
        bad[REPLY_COOKIE] ^= 1;
        assert_eq!(
            keys.open_reply(&mac1, &Header::new_checked(&bad[..]).unwrap())
                .unwrap_err(),
            Error::BadTag
        );
    }

    #[test]
    fn cookie_reply_byte_layout() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let sw = StaticSecret::generate(&mut rng);
        let mut init = [0u8; HS_INIT_LEN];
        let mut h = Header::new_unchecked(&mut init[..]);
        h.set_common(MessageType::HandshakeInit, 0, 0, 0xdead_beef);
        h.set_handshake_indices(0x0102_0304, None);
        let mut minter = CookieMinter::with_rng(&sw.public_key(), rng);
        let mut out = [0u8; COOKIE_REPLY_LEN];
        let from: SocketAddr = "[fd00:18::11]:7".parse().unwrap();
        minter.write_reply(
            Instant::now(),
            from,
            &Header::new_checked(&init[..]).unwrap(),
            &mut out,
        );
        assert_eq!(
            &out[..12],
            &[0x15, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4]
        );
        assert_eq!(COOKIE_REPLY_LEN, 12 + 24 + 16 + 16);
    }
}
