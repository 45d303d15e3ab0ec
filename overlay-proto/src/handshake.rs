//! The 1-RTT handshake: `Noise_IKpsk2_25519_AESGCM_SHA256`, WireGuard's pattern
//! with AES-GCM, run by `snow`.
//!
//! Why this pattern: the initiator (a node) knows the responder's (the
//! switch's) static key in advance, so one round trip gives mutual
//! authentication, forward secrecy from the ephemeral keys, and hides the
//! initiator's identity from passive observers. The optional network secret is
//! mixed in as the PSK (position 2), so a node holding an admitted key but not
//! the secret still fails. The prologue binds the protocol version and the
//! network id, so a handshake cannot be moved between networks.
//!
//! The initiation's encrypted payload is a TAI64N timestamp taken from the
//! initiator's wall clock (passed in: this crate never reads a clock),
//! followed by 4 bytes of capability flags ([`CAP_VNET`]). The
//! responder accepts an initiation only if its timestamp is newer than the last
//! one it accepted from that key, so a captured initiation cannot be replayed
//! (WireGuard paper, section 5.1).
//!
//! After message 2 both sides take the two raw 32-byte keys of the Noise split
//! and run AES-256-GCM themselves ([`crate::crypto`]) with the outer header as
//! associated data, which snow's transport mode cannot do.
use snow::{Builder, HandshakeState};

use crate::Error;
use crate::cookie::{Cookie, MAC_LEN, MAC1_OFFSET, MacKeys};
use crate::keys::{Psk, PublicKey, StaticSecret};
use crate::wire::{HS_INIT_LEN, HS_RESP_LEN, Header, MessageType, NOISE_INIT_LEN, NOISE_RESP_LEN};

/// Capability: the initiator accepts frames with a virtio-net header
/// (offloaded super-frames), see [`crate::vnet`].
pub const CAP_VNET: u32 = 1;

/// The initiation payload: timestamp and capabilities.
const INIT_PAYLOAD_LEN: usize = 16;

/// The Noise protocol name.
pub const NOISE_PARAMS: &str = "Noise_IKpsk2_25519_AESGCM_SHA256";

/// A TAI64N label: 8 bytes of seconds (2^62 + Unix seconds) and 4 bytes of
/// nanoseconds, both big-endian, so byte order is time order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Timestamp(pub [u8; 12]);

impl Timestamp {
    /// From Unix time.
    pub fn from_unix(secs: u64, nanos: u32) -> Timestamp {
        let mut t = [0u8; 12];
        t[..8].copy_from_slice(&((1u64 << 62) + secs).to_be_bytes());
        t[8..].copy_from_slice(&nanos.to_be_bytes());
        Timestamp(t)
    }
}

/// The two data-path keys a handshake produces, one per direction.
pub struct SessionKeys {
    /// Key for packets this side sends.
    pub send: [u8; 32],
    /// Key for packets this side receives.
    pub recv: [u8; 32],
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKeys(<redacted>)")
    }
}

fn prologue(network_id: u32) -> [u8; 14] {
    let mut p = *b"tapmesh v1\0\0\0\0";
    p[10..].copy_from_slice(&network_id.to_be_bytes());
    p
}

fn params() -> snow::params::NoiseParams {
    NOISE_PARAMS.parse().expect("valid Noise protocol name")
}

/// The initiator's half-done handshake, waiting for message 2.
pub struct Initiation {
    state: HandshakeState,
    sender_index: u32,
    mac1: [u8; MAC_LEN],
}

/// Fuzz targets snapshot cores between handshakes (`--cfg fuzzing` only).
/// snow's handshake state cannot be copied, so a snapshot taken while one is
/// in flight is a bug in the target.
#[cfg(fuzzing)]
impl Clone for Initiation {
    fn clone(&self) -> Self {
        panic!("an Initiation (Noise handshake in flight) cannot be cloned")
    }
}

impl std::fmt::Debug for Initiation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Initiation")
            .field("sender_index", &self.sender_index)
            .finish()
    }
}

/// Start a handshake: write a complete initiation datagram into `out`,
/// with `mac1` and, if the responder gave us a `cookie`, `mac2`
/// (see [`crate::cookie`]).
// Every argument is a distinct field of the initiation; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
pub fn initiate(
    local: &StaticSecret,
    remote: &PublicKey,
    psk: &Psk,
    network_id: u32,
    sender_index: u32,
    timestamp: Timestamp,
    caps: u32,
    cookie: Option<&Cookie>,
    out: &mut [u8; HS_INIT_LEN],
) -> Result<Initiation, Error> {
    let p = prologue(network_id);
    let mut state = Builder::new(params())
        .local_private_key(local.as_bytes())
        .and_then(|b| b.remote_public_key(&remote.0))
        .and_then(|b| b.psk(2, &psk.0))
        .and_then(|b| b.prologue(&p))
        .and_then(|b| b.build_initiator())
        .map_err(|_| Error::Handshake)?;
    let mut h = Header::new_unchecked(&mut out[..]);
    h.set_common(MessageType::HandshakeInit, 0, 0, network_id);
    h.set_handshake_indices(sender_index, None);
    let mut payload = [0u8; INIT_PAYLOAD_LEN];
    payload[..12].copy_from_slice(&timestamp.0);
    payload[12..].copy_from_slice(&caps.to_be_bytes());
    let n = state
        .write_message(
            &payload,
            &mut out[MAC1_OFFSET - NOISE_INIT_LEN..MAC1_OFFSET],
        )
        .map_err(|_| Error::Handshake)?;
    debug_assert_eq!(n, NOISE_INIT_LEN);
    let mac1 = MacKeys::new(remote).stamp(cookie, out);
    Ok(Initiation {
        state,
        sender_index,
        mac1,
    })
}

impl Initiation {
    /// The index this side chose; responses and data carry it.
    pub fn sender_index(&self) -> u32 {
        self.sender_index
    }

    /// The initiation's `mac1`: a cookie reply to it is opened with it.
    pub fn mac1(&self) -> [u8; MAC_LEN] {
        self.mac1
    }

    /// Complete the handshake with a response datagram (already checked by
    /// [`Header::new_checked`]). Returns the keys and the responder's index.
    ///
    /// A response that fails to authenticate leaves the initiation as it was,
    /// so the genuine response can still complete it (WireGuard keeps its
    /// handshake state the same way): the receiver index travels in clear in
    /// the initiation, so anyone on the path can forge a response that
    /// reaches this point. snow rolls its symmetric state back on a failed
    /// read, and message 2 starts with the responder's ephemeral key, whose
    /// `MixKey` rekeys the cipher before anything is decrypted, so nothing a
    /// failed read touched is used again (`forged_responses_do_not_spoil_the_initiation`).
    /// After success the initiation is spent: drop it.
    pub fn finish(&mut self, resp: &Header<&[u8]>) -> Result<(SessionKeys, u32), Error> {
        if resp.message_type() != MessageType::HandshakeResp
            || resp.receiver_index() != self.sender_index
        {
            return Err(Error::Handshake);
        }
        let mut payload = [0u8; NOISE_RESP_LEN];
        self.state
            .read_message(resp.noise_message(), &mut payload)
            .map_err(|_| Error::Handshake)?;
        if !self.state.is_handshake_finished() {
            return Err(Error::Handshake);
        }
        let (i2r, r2i) = self.state.dangerously_get_raw_split();
        Ok((
            SessionKeys {
                send: i2r,
                recv: r2i,
            },
            resp.sender_index(),
        ))
    }
}

/// A verified initiation, waiting for the responder to decide whether to admit
/// the peer (by key and timestamp) before answering.
pub struct IncomingInit {
    state: HandshakeState,
    /// The initiator's static public key, authenticated by the handshake.
    pub peer: PublicKey,
    /// The initiator's timestamp; must be newer than the last accepted one.
    pub timestamp: Timestamp,
    /// The index the initiator chose.
    pub initiator_index: u32,
    /// The initiator's capability flags (`CAP_*`); unknown bits are kept.
    pub caps: u32,
}

impl std::fmt::Debug for IncomingInit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingInit")
            .field("peer", &self.peer)
            .field("initiator_index", &self.initiator_index)
            .finish()
    }
}

/// Read an initiation datagram (already checked by [`Header::new_checked`]).
/// Fails if it was not made for `local`'s public key, the PSK differs, or it
/// was tampered with. This costs four X25519 operations: a responder checks
/// `mac1` (and under load `mac2`) with [`crate::cookie::CookieMinter`] first.
pub fn read_init(
    local: &StaticSecret,
    psk: &Psk,
    init: &Header<&[u8]>,
) -> Result<IncomingInit, Error> {
    if init.message_type() != MessageType::HandshakeInit {
        return Err(Error::Handshake);
    }
    let p = prologue(init.network_id());
    let mut state = Builder::new(params())
        .local_private_key(local.as_bytes())
        .and_then(|b| b.psk(2, &psk.0))
        .and_then(|b| b.prologue(&p))
        .and_then(|b| b.build_responder())
        .map_err(|_| Error::Handshake)?;
    let mut payload = [0u8; NOISE_INIT_LEN];
    let n = state
        .read_message(init.noise_message(), &mut payload)
        .map_err(|_| Error::Handshake)?;
    if n != INIT_PAYLOAD_LEN {
        return Err(Error::Handshake);
    }
    let peer = state
        .get_remote_static()
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
        .ok_or(Error::Handshake)?;
    let mut ts = [0u8; 12];
    ts.copy_from_slice(&payload[..12]);
    Ok(IncomingInit {
        state,
        peer: PublicKey(peer),
        timestamp: Timestamp(ts),
        initiator_index: init.sender_index(),
        caps: u32::from_be_bytes([payload[12], payload[13], payload[14], payload[15]]),
    })
}

impl IncomingInit {
    /// Admit the initiator: write the response datagram into `out` and return
    /// the session keys.
    pub fn accept(
        mut self,
        network_id: u32,
        sender_index: u32,
        out: &mut [u8; HS_RESP_LEN],
    ) -> Result<SessionKeys, Error> {
        let mut h = Header::new_unchecked(&mut out[..]);
        h.set_common(MessageType::HandshakeResp, 0, 0, network_id);
        h.set_handshake_indices(sender_index, Some(self.initiator_index));
        let n = self
            .state
            .write_message(&[], &mut out[HS_RESP_LEN - NOISE_RESP_LEN..])
            .map_err(|_| Error::Handshake)?;
        debug_assert_eq!(n, NOISE_RESP_LEN);
        let (i2r, r2i) = self.state.dangerously_get_raw_split();
        Ok(SessionKeys {
            send: r2i,
            recv: i2r,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> (StaticSecret, StaticSecret) {
        let mut r = rand::rng();
        (
            StaticSecret::generate(&mut r),
            StaticSecret::generate(&mut r),
        )
    }

    #[test]
    fn full_handshake_gives_matching_keys() {
        let (node, switch) = keys();
        let psk = Psk::default();
        let mut m1 = [0u8; HS_INIT_LEN];
        let ts = Timestamp::from_unix(1_700_000_000, 5);
        let mut ini = initiate(
            &node,
            &switch.public_key(),
            &psk,
            3,
            77,
            ts,
            CAP_VNET,
            None,
            &mut m1,
        )
        .unwrap();
        let h1 = Header::new_checked(&m1[..]).unwrap();
        let inc = read_init(&switch, &psk, &h1).unwrap();
        assert_eq!(inc.peer, node.public_key());
        assert_eq!(inc.timestamp, ts);
        assert_eq!(inc.initiator_index, 77);
        assert_eq!(inc.caps, CAP_VNET);
        let mut m2 = [0u8; HS_RESP_LEN];
        let rk = inc.accept(3, 99, &mut m2).unwrap();
        let h2 = Header::new_checked(&m2[..]).unwrap();
        let (ik, idx) = ini.finish(&h2).unwrap();
        assert_eq!(idx, 99);
        assert_eq!(ik.send, rk.recv);
        assert_eq!(ik.recv, rk.send);
        assert_ne!(ik.send, ik.recv);
    }

    #[test]
    fn wrong_psk_fails_at_message_two() {
        // psk2 mixes the PSK in after message 2's tokens (as WireGuard), so the
        // responder cannot tell at message 1; the initiator refuses message 2.
        let (node, switch) = keys();
        let mut m1 = [0u8; HS_INIT_LEN];
        let mut ini = initiate(
            &node,
            &switch.public_key(),
            &Psk([1; 32]),
            0,
            1,
            Timestamp::default(),
            0,
            None,
            &mut m1,
        )
        .unwrap();
        let inc = read_init(
            &switch,
            &Psk::default(),
            &Header::new_checked(&m1[..]).unwrap(),
        )
        .unwrap();
        let mut m2 = [0u8; HS_RESP_LEN];
        inc.accept(0, 2, &mut m2).unwrap();
        assert_eq!(
            ini.finish(&Header::new_checked(&m2[..]).unwrap())
                .unwrap_err(),
            Error::Handshake
        );
    }

    #[test]
    fn wrong_responder_key_or_network_fail() {
        let (node, switch) = keys();
        let (_, other) = keys();
        let ts = Timestamp::from_unix(1, 0);
        let mut m1 = [0u8; HS_INIT_LEN];
        initiate(
            &node,
            &switch.public_key(),
            &Psk([1; 32]),
            0,
            1,
            ts,
            0,
            None,
            &mut m1,
        )
        .unwrap();
        let h = Header::new_checked(&m1[..]).unwrap();
        assert!(read_init(&other, &Psk([1; 32]), &h).is_err());
        assert!(read_init(&switch, &Psk([1; 32]), &h).is_ok());
        let mut moved = m1;
        moved[7] ^= 1; // network id
        let h = Header::new_checked(&moved[..]).unwrap();
        assert!(read_init(&switch, &Psk([1; 32]), &h).is_err());
    }

    #[test]
    fn tampered_response_fails() {
        let (node, switch) = keys();
        let psk = Psk::default();
        let mut m1 = [0u8; HS_INIT_LEN];
        let mut ini = initiate(
            &node,
            &switch.public_key(),
            &psk,
            0,
            5,
            Timestamp::default(),
            0,
            None,
            &mut m1,
        )
        .unwrap();
        let inc = read_init(&switch, &psk, &Header::new_checked(&m1[..]).unwrap()).unwrap();
        let mut m2 = [0u8; HS_RESP_LEN];
        inc.accept(0, 6, &mut m2).unwrap();
        m2[HS_RESP_LEN - 1] ^= 1;
        assert!(ini.finish(&Header::new_checked(&m2[..]).unwrap()).is_err());
    }

    #[test]
    fn forged_responses_do_not_spoil_the_initiation() {
        let (node, switch) = keys();
        let (_, stranger) = keys();
        let psk = Psk([7; 32]);
        let mut m1 = [0u8; HS_INIT_LEN];
        let mut ini = initiate(
            &node,
            &switch.public_key(),
            &psk,
            0,
            5,
            Timestamp::from_unix(3, 0),
            0,
            None,
            &mut m1,
        )
        .unwrap();
        let inc = read_init(&switch, &psk, &Header::new_checked(&m1[..]).unwrap()).unwrap();
        let mut genuine = [0u8; HS_RESP_LEN];
        let rk = inc.accept(0, 6, &mut genuine).unwrap();
        // Forgeries with the right receiver index: random bytes, the genuine
        // response with one bit flipped anywhere in the Noise message, and a
        // well-formed response from someone without the responder's key.
        let mut forgeries: Vec<[u8; HS_RESP_LEN]> = Vec::new();
        let mut random = [0x5au8; HS_RESP_LEN];
        random[..16].copy_from_slice(&genuine[..16]);
        forgeries.push(random);
        for i in [16, 40, 47, 48, 63] {
            let mut f = genuine;
            f[i] ^= 1;
            forgeries.push(f);
        }
        let mut m1b = [0u8; HS_INIT_LEN];
        initiate(
            &node,
            &stranger.public_key(),
            &psk,
            0,
            5,
            Timestamp::from_unix(3, 0),
            0,
            None,
            &mut m1b,
        )
        .unwrap();
        let mut other = [0u8; HS_RESP_LEN];
        read_init(&stranger, &psk, &Header::new_checked(&m1b[..]).unwrap())
            .unwrap()
            .accept(0, 6, &mut other)
            .unwrap();
        forgeries.push(other);
        for f in &forgeries {
            let h = Header::new_checked(&f[..]).unwrap();
            assert_eq!(h.receiver_index(), 5);
            assert_eq!(ini.finish(&h).unwrap_err(), Error::Handshake);
        }
        let (ik, idx) = ini
            .finish(&Header::new_checked(&genuine[..]).unwrap())
            .expect("the genuine response still completes the handshake");
        assert_eq!(idx, 6);
        assert_eq!(ik.send, rk.recv);
        assert_eq!(ik.recv, rk.send);
    }

    #[test]
    fn timestamps_order_by_time() {
        assert!(Timestamp::from_unix(10, 0) < Timestamp::from_unix(10, 1));
        assert!(Timestamp::from_unix(10, 999_999_999) < Timestamp::from_unix(11, 0));
    }
}
