//! The handshake gate: with `workers = N > 1`, handshake initiations and
//! whatever else is cheap to refuse without state (bad headers, unknown
//! message types) reach the worker threads' sockets, not the core's (see
//! [`super::steering`]), and a worker checks them before the core sees them,
//! so a handshake flood does not wake the core.
//!
//! The checks are the core's own, called, not copied: the header
//! (`Header::new_checked`), then the network's
//! [`HandshakeGuard::admit`]: `mac1`, and under load `mac2` with the cookie
//! reply, per-source rate limits. Each network has one guard, shared by its
//! core and every worker behind a mutex ([`SharedGuard`]): one cookie secret
//! (rotating as it does for the core alone), one count of initiations per
//! second (so the switch goes under load where the flood is seen), one
//! budget of cookie replies per source prefix. A worker sends the cookie
//! replies from its own socket (the same address as the core's).
//!
//! What passes goes to the core over the workers' channel as
//! [`Opening::Admitted`](super::batch::Opening::Admitted): the core runs the
//! handshake without checking again. What the gate drops is counted by the
//! core's reasons in shared atomics ([`GateDrops`]), which `status` and
//! `/metrics` fold into the switch's drops; an initiation for a network the
//! switch does not serve is dropped here as `unknown_network`, as the core
//! would. Datagrams the gate cannot judge (anything before the core's first
//! publication, handshake responses and cookie replies for trunks) go to
//! the core unchanged, as before.
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Instant;

use overlay_proto::counters::{MAX_REASONS, Reason};
use overlay_proto::handshake_guard::HandshakeGuard;
use overlay_proto::transmit::TxQueue;
use overlay_proto::wire::{Header, MessageType};
use tapmesh_shell::udp::UdpLink;

use crate::counters::{DropReason, Drops};

/// A network's handshake guard, shared by its core and the workers.
pub type SharedGuard = Arc<Mutex<HandshakeGuard>>;

/// Lock a guard (a panic elsewhere while holding it leaves a guard that is
/// still consistent: every update is a plain counter or bucket).
pub fn lock(g: &SharedGuard) -> MutexGuard<'_, HandshakeGuard> {
    g.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Cookie replies one worker queues per received batch at most.
const REPLIES_PER_BATCH: usize = 64;

/// Drops by the core's reasons, counted on the workers.
#[derive(Debug)]
pub struct GateDrops([AtomicU64; MAX_REASONS]);

impl Default for GateDrops {
    fn default() -> Self {
        GateDrops(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl GateDrops {
    fn add(&self, r: DropReason) {
        self.0[r.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// A snapshot to add to the core's drops.
    pub fn snapshot(&self) -> Drops {
        let mut d = Drops::default();
        for &r in DropReason::ALL {
            d.add_n(r, self.0[r.index()].load(Ordering::Relaxed));
        }
        d
    }
}

/// What the gate shares between the workers and the core: each network's
/// guard by network id, and the drops.
#[derive(Debug, Default)]
pub struct GateShared {
    guards: RwLock<Vec<(u32, SharedGuard)>>,
    /// Whether the core published its networks at least once: until then
    /// the gate knows no network and hands everything to the core.
    published: AtomicBool,
    /// What the gate dropped, by reason.
    pub drops: GateDrops,
    /// Initiations the gate passed to the core.
    pub admitted: AtomicU64,
    /// Datagrams the gate dropped or answered with a cookie reply.
    pub stopped: AtomicU64,
    /// Datagrams the core's own socket received (what the gate did not
    /// keep from it: trunk handshakes, runts, anything before the first
    /// publication).
    pub core_received: AtomicU64,
}

impl GateShared {
    /// The guards of every network the core serves now (replaces the last
    /// set: a network a reload removed is forgotten).
    pub fn publish(&self, guards: impl Iterator<Item = (u32, SharedGuard)>) {
        let mut g = self.guards.write().unwrap_or_else(PoisonError::into_inner);
        g.clear();
        g.extend(guards);
        self.published.store(true, Ordering::Release);
    }

    fn stop(&self, r: DropReason) -> Gated {
        self.drops.add(r);
        Gated::Stopped
    }
}

/// What the gate made of one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gated {
    /// Not the gate's to judge (data, trunk handshakes, anything before the
    /// core's first publication): the worker goes on with it as before.
    Pass,
    /// An initiation that passed the guard: the core runs the handshake.
    Admitted,
    /// Dropped (counted) or answered with a cookie reply: the core never
    /// sees it.
    Stopped,
}

/// One worker's gate: the shared state and its queue of cookie replies.
#[derive(Debug)]
pub struct Gate {
    shared: Arc<GateShared>,
    replies: TxQueue,
}

impl Gate {
    pub fn new(shared: Arc<GateShared>) -> Gate {
        Gate {
            shared,
            replies: TxQueue::new(REPLIES_PER_BATCH),
        }
    }

    /// Judge datagram `d` from `from`; cookie replies wait for
    /// [`flush`](Self::flush).
    pub fn sort(&mut self, now: Instant, from: SocketAddr, d: &[u8]) -> Gated {
        let g = self.judge(now, from, d);
        match g {
            Gated::Pass => {}
            Gated::Admitted => {
                self.shared.admitted.fetch_add(1, Ordering::Relaxed);
            }
            Gated::Stopped => {
                self.shared.stopped.fetch_add(1, Ordering::Relaxed);
            }
        }
        g
    }

    fn judge(&mut self, now: Instant, from: SocketAddr, d: &[u8]) -> Gated {
        let shared = &*self.shared;
        if !shared.published.load(Ordering::Acquire) {
            return Gated::Pass;
        }
        let h = match Header::new_checked(d) {
            Ok(h) => h,
            Err(e) => return shared.stop(DropReason::from(e)),
        };
        match h.message_type() {
            MessageType::HandshakeInit | MessageType::RestartNotice => {}
            // HOT PATH: data goes on to be opened, no lock taken.
            _ => return Gated::Pass,
        }
        let guards = shared.guards.read().unwrap_or_else(PoisonError::into_inner);
        let Some((_, guard)) = guards.iter().find(|(id, _)| *id == h.network_id()) else {
            // A network the core does not serve either: it would drop it
            // the same way, so a flood of made-up network ids does not
            // wake it. (A network a reload added is published at the end
            // of the reload's own turn of the core's loop.)
            return shared.stop(DropReason::UnknownNetwork);
        };
        match h.message_type() {
            MessageType::HandshakeInit => {
                match lock(guard).admit(now, from, &h, &mut self.replies) {
                    Ok(()) => Gated::Admitted,
                    Err(d) => shared.stop(DropReason::from(d)),
                }
            }
            // The switch never takes one (the core drops it so too).
            MessageType::RestartNotice => shared.stop(DropReason::UnexpectedMessage),
            _ => Gated::Pass,
        }
    }

    /// Send the cookie replies queued since the last flush from `link`;
    /// returns how many the kernel refused (each is lost, as the core's
    /// would be).
    pub async fn flush(&mut self, link: &UdpLink) -> u64 {
        let mut refused = 0;
        while let Some(t) = self.replies.pop() {
            if link
                .send(t.destination, t.contents, t.segment_size)
                .await
                .is_err()
            {
                refused += 1;
            }
        }
        refused
    }

    /// The cookie replies waiting (for tests).
    #[cfg(test)]
    pub fn pending_replies(&mut self) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut v = Vec::new();
        while let Some(t) = self.replies.pop() {
            v.extend(t.datagrams().map(|d| (t.destination, d.to_vec())));
        }
        v
    }
}

/// The gate's part of the workers' status.
pub fn status(g: &GateShared) -> GateStatus {
    GateStatus {
        admitted: g.admitted.load(Ordering::Relaxed),
        stopped: g.stopped.load(Ordering::Relaxed),
        core_received: g.core_received.load(Ordering::Relaxed),
    }
}

/// `workers.gate` in `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct GateStatus {
    /// Handshake initiations the gate passed to the core.
    pub admitted: u64,
    /// Datagrams the gate dropped (counted in the drops by reason) or
    /// answered with a cookie reply.
    pub stopped: u64,
    /// Datagrams the core's own socket received.
    pub core_received: u64,
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use overlay_proto::cookie::{CookieJar, MacKeys};
    use overlay_proto::handshake::{Timestamp, initiate};
    use overlay_proto::handshake_guard::{GuardConfig, HandshakeGuard};
    use overlay_proto::keys::{Psk, PublicKey, StaticSecret};
    use overlay_proto::wire::{HS_INIT_LEN, Header, MessageType};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use tapmesh_shell::udp::UdpLink;

    use super::{Gate, GateShared, Gated, SharedGuard, lock};
    use crate::counters::DropReason;

    const NETWORK: u32 = 7;

    fn keys() -> (StaticSecret, StaticSecret) {
        let mut rng = StdRng::seed_from_u64(5);
        (
            StaticSecret::generate(&mut rng),
            StaticSecret::generate(&mut rng),
        )
    }

    /// An initiation from `node` to `sw`, with `mac2` if the jar has a cookie.
    fn init(node: &StaticSecret, sw: &PublicKey, jar: &CookieJar, now: Instant) -> Vec<u8> {
        let mut m = [0u8; HS_INIT_LEN];
        initiate(
            node,
            sw,
            &Psk::default(),
            NETWORK,
            1,
            Timestamp::from_unix(9, 0),
            0,
            jar.current(now),
            &mut m,
        )
        .unwrap();
        m.to_vec()
    }

    /// A gate that knows network `NETWORK` with a guard demanding `mac2`
    /// above `threshold` initiations per second; also the guard (the core's).
    fn gate(sw: &PublicKey, threshold: u32, now: Instant) -> (Gate, SharedGuard) {
        let cfg = GuardConfig {
            load_threshold: threshold,
            cookie_replies_per_sec: 3,
        };
        let guard = Arc::new(Mutex::new(HandshakeGuard::new(cfg, sw, now)));
        let shared = Arc::new(GateShared::default());
        shared.publish([(NETWORK, guard.clone())].into_iter());
        (Gate::new(shared), guard)
    }

    fn drops(g: &Gate, r: DropReason) -> u64 {
        g.shared.drops.snapshot().get(r)
    }

    #[test]
    fn bad_mac1_and_junk_are_dropped_by_reason_and_a_valid_initiation_passes() {
        let (sw, node) = keys();
        let t0 = Instant::now();
        let (mut g, _) = gate(&sw.public_key(), 100, t0);
        let from = "198.18.0.11:5000".parse().unwrap();
        let good = init(&node, &sw.public_key(), &CookieJar::default(), t0);
        let mut forged = good.clone();
        forged[40] ^= 1;
        assert_eq!(g.sort(t0, from, &forged), Gated::Stopped);
        assert_eq!(drops(&g, DropReason::BadMac1), 1);
        // An initiation for another switch's key: bad_mac1 too.
        let other = StaticSecret::generate(&mut StdRng::seed_from_u64(9)).public_key();
        let elsewhere = init(&node, &other, &CookieJar::default(), t0);
        assert_eq!(g.sort(t0, from, &elsewhere), Gated::Stopped);
        assert_eq!(drops(&g, DropReason::BadMac1), 2);
        // Junk: the header's reasons, as the core counts them.
        assert_eq!(g.sort(t0, from, &[0xff; 40]), Gated::Stopped);
        assert_eq!(drops(&g, DropReason::BadVersion), 1);
        assert_eq!(g.sort(t0, from, &good[..100]), Gated::Stopped);
        assert_eq!(drops(&g, DropReason::Truncated), 1);
        // The genuine initiation passes; nothing else reached the core.
        assert_eq!(g.sort(t0, from, &good), Gated::Admitted);
        assert_eq!(g.shared.admitted.load(super::Ordering::Relaxed), 1);
        assert_eq!(g.shared.stopped.load(super::Ordering::Relaxed), 4);
        assert!(g.pending_replies().is_empty());
        // A network the switch does not serve: dropped here, as the core
        // would, so made-up network ids do not reach the core either.
        let mut unknown = good.clone();
        Header::new_unchecked(&mut unknown[..]).set_common(MessageType::HandshakeInit, 0, 0, 8);
        assert_eq!(g.sort(t0, from, &unknown), Gated::Stopped);
        assert_eq!(drops(&g, DropReason::UnknownNetwork), 1);
    }

    #[test]
    fn under_load_an_initiation_without_mac2_gets_a_cookie_and_with_it_passes() {
        let (sw, node) = keys();
        let t0 = Instant::now();
        let (mut g, core_guard) = gate(&sw.public_key(), 1, t0);
        let from = "198.18.0.11:5000".parse().unwrap();
        let jar = CookieJar::default();
        let first = init(&node, &sw.public_key(), &jar, t0);
        assert_eq!(g.sort(t0, from, &first), Gated::Admitted);
        // The second in the second: under load, no mac2: a cookie reply to
        // the sender, the initiation dropped as bad_mac2.
        assert_eq!(g.sort(t0, from, &first), Gated::Stopped);
        assert_eq!(drops(&g, DropReason::BadMac2), 1);
        let replies = g.pending_replies();
        assert_eq!(replies.len(), 1);
        let (to, reply) = &replies[0];
        assert_eq!(*to, from);
        // The core's guard is the same one: it went under load and counts
        // the reply.
        assert!(lock(&core_guard).is_under_load(t0));
        assert_eq!(lock(&core_guard).counters().cookie_replies, 1);
        // With the cookie the reply carries, mac2 is valid: it passes.
        let mac1: [u8; 16] = first[HS_INIT_LEN - 32..HS_INIT_LEN - 16]
            .try_into()
            .unwrap();
        let cookie = MacKeys::new(&sw.public_key())
            .open_reply(&mac1, &Header::new_checked(&reply[..]).unwrap())
            .unwrap();
        let mut jar = CookieJar::default();
        jar.store(t0, cookie);
        let with_cookie = init(&node, &sw.public_key(), &jar, t0);
        assert_eq!(g.sort(t0, from, &with_cookie), Gated::Admitted);
        // The same mac2 from another address is not valid.
        let other = "198.18.0.12:5000".parse().unwrap();
        assert_eq!(g.sort(t0, other, &with_cookie), Gated::Stopped);
        assert_eq!(drops(&g, DropReason::BadMac2), 2);
    }

    #[test]
    fn a_cookie_reply_the_kernel_refuses_is_counted() {
        let (sw, node) = keys();
        let t0 = Instant::now();
        let (mut g, _) = gate(&sw.public_key(), 1, t0);
        let from = "198.18.0.11:5000".parse().unwrap();
        let first = init(&node, &sw.public_key(), &CookieJar::default(), t0);
        assert_eq!(g.sort(t0, from, &first), Gated::Admitted);
        // Under load: a cookie reply queued.
        assert_eq!(g.sort(t0, from, &first), Gated::Stopped);
        // A socket bound to the loopback address cannot send to 198.18.0.11
        // (the kernel refuses the route): no datagram leaves the host.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let refused = rt.block_on(async {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let link = UdpLink::new(socket).unwrap();
            g.flush(&link).await
        });
        assert_eq!(refused, 1);
        assert!(
            g.pending_replies().is_empty(),
            "a flushed reply stays queued"
        );
    }

    #[test]
    fn data_and_anything_before_the_first_publish_pass_on() {
        let (sw, node) = keys();
        let t0 = Instant::now();
        let from = "198.18.0.11:5000".parse().unwrap();
        let mut g = Gate::new(Arc::new(GateShared::default()));
        let good = init(&node, &sw.public_key(), &CookieJar::default(), t0);
        assert_eq!(g.sort(t0, from, &good), Gated::Pass);
        assert_eq!(g.sort(t0, from, &[0xff; 40]), Gated::Pass);
        let (mut g, _) = gate(&sw.public_key(), 100, t0);
        let mut data = vec![0u8; 64];
        Header::new_unchecked(&mut data[..]).set_common(MessageType::Data, 0, 0, NETWORK);
        assert_eq!(g.sort(t0, from, &data), Gated::Pass);
    }
}
