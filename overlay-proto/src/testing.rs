//! Test fixtures (feature `testing`; for tests, benches and fuzz targets
//! only, never in the product build): two sessions that are each other's
//! peer, as two sides have them after a finished handshake, and data
//! datagrams sealed under them.
//!
//! The pair is made from fixed keys, without a Noise handshake: tests of
//! sealing, opening, replay windows and the threads that share them need
//! an established session, not the handshake that made it (the handshake
//! has its own tests). Fixed keys also keep what a fuzz seed file holds
//! meaningful to the target that later reads it.
use std::time::Instant;

use crate::handshake::SessionKeys;
use crate::session::Session;
use crate::wire::{AEAD_TAG_LEN, DATA_HEADER_LEN};

/// How to make a pair of sessions A and B: each one's index (the receiver
/// index the other puts in what it sends), the network, and the key of each
/// direction. [`SessionPair::default`] is what [`session_pair`] builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPair {
    /// The index A chose: B's datagrams carry it.
    pub a_index: u32,
    /// The index B chose: A's datagrams carry it.
    pub b_index: u32,
    /// The network both sessions are on (in every datagram's header).
    pub network_id: u32,
    /// The key A seals with and B opens with.
    pub a_to_b: [u8; 32],
    /// The key B seals with and A opens with.
    pub b_to_a: [u8; 32],
}

impl Default for SessionPair {
    /// Indices 10 (A) and 20 (B), network 0, keys of all 1s (A to B) and all
    /// 2s (B to A).
    fn default() -> SessionPair {
        SessionPair {
            a_index: 10,
            b_index: 20,
            network_id: 0,
            a_to_b: [1; 32],
            b_to_a: [2; 32],
        }
    }
}

impl SessionPair {
    /// The two sessions, (A, B), established at `now`: what A seals B opens
    /// and the other way round.
    pub fn build(&self, now: Instant) -> (Session, Session) {
        let a = SessionKeys {
            send: self.a_to_b,
            recv: self.b_to_a,
        };
        let b = SessionKeys {
            send: self.b_to_a,
            recv: self.a_to_b,
        };
        (
            Session::new(a, self.a_index, self.b_index, self.network_id, now),
            Session::new(b, self.b_index, self.a_index, self.network_id, now),
        )
    }
}

/// Two sessions (A, B) established at `now`, made by
/// [`SessionPair::default`].
pub fn session_pair(now: Instant) -> (Session, Session) {
    SessionPair::default().build(now)
}

/// A data datagram `session` seals around `payload` (no flags; an empty
/// payload is a keepalive), with the session's next counter.
///
/// # Panics
/// If the session may send no more (its counter is exhausted).
pub fn seal_datagram(session: &mut Session, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; DATA_HEADER_LEN + payload.len() + AEAD_TAG_LEN];
    buf[DATA_HEADER_LEN..DATA_HEADER_LEN + payload.len()].copy_from_slice(payload);
    let n = session
        .seal(0, &mut buf, payload.len())
        .expect("the session can seal");
    buf.truncate(n);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Header;

    #[test]
    fn each_side_opens_what_the_other_seals() {
        let t0 = Instant::now();
        let pair = SessionPair {
            a_index: 30,
            b_index: 40,
            network_id: 7,
            ..SessionPair::default()
        };
        let (mut a, mut b) = pair.build(t0);
        let mut d = seal_datagram(&mut a, b"to b");
        let h = Header::new_checked(&d[..]).unwrap();
        assert_eq!((h.receiver_index(), h.network_id()), (40, 7));
        let r = b.open(&mut d).unwrap();
        assert_eq!(&d[r], b"to b");
        let mut d = seal_datagram(&mut b, b"to a");
        assert_eq!(Header::new_checked(&d[..]).unwrap().receiver_index(), 30);
        let r = a.open(&mut d).unwrap();
        assert_eq!(&d[r], b"to a");
        // A datagram to B opens under B alone: A's own key for receiving
        // is the other direction's.
        let mut d = seal_datagram(&mut a, b"");
        assert_eq!(a.open(&mut d.clone()), Err(crate::Error::BadTag));
        assert!(b.open(&mut d).unwrap().is_empty(), "a keepalive");
    }
}
