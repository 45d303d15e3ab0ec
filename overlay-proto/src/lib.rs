//! tapmesh's wire format, handshake and data-path crypto.
//!
//! This crate does no I/O and never reads the clock: callers pass in bytes,
//! times and random numbers, and get bytes back. Both the switch and the node
//! build on it, so the same code parses every datagram either side receives.
//!
//! # Layout
//! - [`counters`]: drop counters by reason, plain integers.
//! - [`wire`]: zero-copy views of the outer header (`Header::new_checked` is
//!   the only door for untrusted bytes) and the message types.
//! - [`ethernet`]: `MacAddr` and a zero-copy view of an Ethernet frame's
//!   header with its 802.1Q tag (`Frame::new_checked`).
//! - [`mac_table`]: the MAC table of every learning switch in tapmesh, keyed
//!   by VLAN and MAC, with aging, limits and move counting.
//! - [`keys`]: X25519 static keys, their base64 text form, the network PSK.
//! - [`handshake`]: the 1-RTT `Noise_IKpsk2_25519_AESGCM_SHA256` handshake
//!   (via `snow`), producing one AES-256-GCM key per direction.
//! - [`cookie`]: `mac1`, `mac2` and cookie replies: the handshake flood
//!   defence checked before any Diffie-Hellman.
//! - [`handshake_guard`]: what a responder (the switch, a mesh node) checks
//!   before any Diffie-Hellman: `mac1`, load, `mac2`, per-prefix budgets.
//! - [`lru`]: a bounded map that forgets the least recently used entry.
//! - [`control`]: control messages (mesh membership, MAC announcements,
//!   peer pings) carried as sealed data packets with flag `CONTROL`.
//! - [`announce`]: trunk announcements, the VLANs and multicast groups one
//!   switch of a cluster tells another it wants (a control message).
//! - [`notice`]: the switch's authenticated restart notice.
//! - [`crypto`]: AES-256-GCM sealing and opening in place, in caller-owned buffers.
//! - [`frag`]: splitting frames too large for one datagram, bounded reassembly.
//! - [`vlan`]: 802.1Q access and trunk ports: classifying, tagging and
//!   untagging frames (the switch, and mesh nodes on direct paths).
//! - [`vnet`]: the TAP's virtio-net header (offloads) and software segmentation.
//! - [`replay`]: the anti-replay sliding window (8128 packets).
//! - [`receiver`]: a session's receive key and replay window, shareable
//!   with other threads (a multi-core switch's workers).
//! - [`session`]: one established session: indices, send counter, keys, window.
//! - [`transmit`]: the outgoing datagram queue cores hand to their shells.
//! - [`tunnel`]: one authenticated relationship with one remote key: session
//!   slots, handshakes, rekey, backoff, liveness, reassembly; the index table.
//! - [`timers`]: protocol constants (rekey, keepalive, limits), with their sources.
//! - `testing` (feature `testing`, for tests, benches and fuzz targets only;
//!   never in the product build): a pair of established sessions, sealed
//!   datagrams.
//!
//! The normative description is `docs/protocol.md` at the repository root.
#![forbid(unsafe_code)]

pub mod announce;
pub mod control;
pub mod cookie;
pub mod counters;
pub mod crypto;
pub mod ethernet;
pub mod frag;
pub mod handshake;
pub mod handshake_guard;
pub mod keys;
pub mod lru;
pub mod mac_table;
pub mod notice;
pub mod receiver;
pub mod replay;
pub mod session;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod timers;
pub mod transmit;
pub mod tunnel;
pub mod vlan;
pub mod vnet;
pub mod wire;

mod error;
pub use error::Error;
