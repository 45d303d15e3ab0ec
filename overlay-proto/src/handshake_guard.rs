//! The responder's defence against handshake floods: what the switch, and a
//! mesh node answering its peers, check before spending any Diffie-Hellman on
//! an initiation (WireGuard paper, section 5.4).
//!
//! 1. `mac1` (one HMAC) proves the sender knows the responder's public key;
//!    anything else is dropped and counted as `bad_mac1`.
//! 2. The guard measures the initiations per second that pass `mac1`. Above
//!    [`GuardConfig::load_threshold`] the responder is *under load* (and stays
//!    so for [`UNDER_LOAD_HOLD`] after the rate falls): an initiation must
//!    then also carry a valid `mac2`, made with a cookie bound to its source
//!    address. One without is answered with a cookie reply and dropped as
//!    `bad_mac2`.
//! 3. Cookie replies are budgeted per source prefix (a /32 for IPv4, a /64
//!    for IPv6, as WireGuard's rate limiter groups IPv6): at most
//!    [`GuardConfig::cookie_replies_per_sec`] per prefix, burst
//!    [`PER_SOURCE_BURST`]. There is no budget shared by all sources: a flood
//!    from forged addresses would use it up, and a real initiator would wait
//!    for minutes. A reply is smaller than the initiation it answers and a
//!    prefix gets only its own budget, so the responder neither amplifies
//!    nor concentrates a flood on anyone.
//! 4. Under load, initiations with a valid `mac2` come from an address that
//!    receives our datagrams; each prefix gets at most [`PER_SOURCE_RATE`]
//!    per second (burst [`PER_SOURCE_BURST`]) through to the handshake, so
//!    one real host cannot buy all the Diffie-Hellman time with its cookie
//!    (`handshake_rate_limited`).
//!
//! The per-prefix state lives in a table of [`SOURCE_TABLE`] entries that
//! forgets the least recently used prefix when full, so a flood from many
//! prefixes costs bounded memory, and a prefix that keeps trying (a real
//! initiator retries within seconds) is not pushed out wholesale. An evicted
//! prefix comes back with a full bucket: a forger cycling through more
//! prefixes than the table holds gets each of them at most one burst per
//! cycle, still no more replies than initiations it sent.
//!
//! Sans-IO: time is an argument; the cookie secret and nonces come from the
//! [`CookieMinter`]'s own generator, seeded from the operating system.
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::cookie::CookieMinter;
use crate::keys::PublicKey;
use crate::lru::LruMap;
use crate::transmit::TxQueue;
use crate::wire::{COOKIE_REPLY_LEN, Header};

/// The responder stays under load this long after the rate last exceeded the
/// threshold (WireGuard keeps its "under load" state for 1 s).
pub const UNDER_LOAD_HOLD: Duration = Duration::from_secs(1);
/// Under load: initiations per second one source prefix may have processed
/// (WireGuard's `INITIATIONS_PER_SECOND`).
pub const PER_SOURCE_RATE: u32 = 20;
/// Under load: the burst one source prefix may have processed at once, and
/// the burst of cookie replies it may get (WireGuard's `INITIATIONS_BURSTABLE`).
pub const PER_SOURCE_BURST: u32 = 5;
/// Source prefixes the guard tracks; beyond that the least recently used is
/// forgotten (WireGuard's rate limiter holds 8192 entries).
pub const SOURCE_TABLE: usize = 8192;
/// The rate window.
const WINDOW: Duration = Duration::from_secs(1);

/// Limits (the switch's come from `switch.toml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardConfig {
    /// Initiations per second (with a valid `mac1`) above which the responder
    /// is under load and demands `mac2` (`handshake-load-threshold`).
    pub load_threshold: u32,
    /// Cookie replies per second at most to one source prefix
    /// (`cookie-replies-per-sec`).
    pub cookie_replies_per_sec: u32,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            load_threshold: 200,
            cookie_replies_per_sec: PER_SOURCE_RATE,
        }
    }
}

/// Why the guard drops an initiation; each core maps it to its drop reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardDrop {
    /// `mac1` did not verify (`bad_mac1`).
    BadMac1,
    /// Under load, no valid `mac2`, and the source prefix's cookie budget is
    /// spent (`bad_mac2`).
    BadMac2,
    /// Under load, the source prefix had its share of handshakes
    /// (`handshake_rate_limited`).
    RateLimited,
}

/// What to do with an initiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardVerdict {
    /// Run the handshake.
    Proceed,
    /// Answer with a cookie reply ([`HandshakeGuard::write_cookie_reply`]),
    /// then drop it as `bad_mac2`.
    SendCookie,
    /// Drop it, counted with this reason.
    Drop(GuardDrop),
}

/// Counters for status.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct GuardCounters {
    /// Cookie replies sent.
    pub cookie_replies: u64,
    /// Cookie replies not sent because the source prefix's budget was spent.
    pub cookie_replies_limited: u64,
    /// Times the responder went under load.
    pub under_load_episodes: u64,
}

impl std::ops::AddAssign<&GuardCounters> for GuardCounters {
    /// Sum the counters of several guards (several cores in one process).
    /// The destructuring lists every field, so a new one must be summed.
    fn add_assign(&mut self, o: &GuardCounters) {
        let GuardCounters {
            cookie_replies,
            cookie_replies_limited,
            under_load_episodes,
        } = o;
        self.cookie_replies += cookie_replies;
        self.cookie_replies_limited += cookie_replies_limited;
        self.under_load_episodes += under_load_episodes;
    }
}

/// What `status` shows of the guard.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct GuardStatus {
    /// Whether the responder demands `mac2` right now.
    pub under_load: bool,
    /// Activity so far.
    #[serde(flatten)]
    pub counters: GuardCounters,
}

/// A fixed one-second window counter.
#[derive(Debug, Clone)]
struct Window {
    start: Instant,
    count: u32,
}

impl Window {
    fn new(now: Instant) -> Window {
        Window {
            start: now,
            count: 0,
        }
    }

    /// Count one event at `now`; returns the count in the current window.
    fn hit(&mut self, now: Instant) -> u32 {
        if now.saturating_duration_since(self.start) >= WINDOW {
            self.start = now;
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
        self.count
    }
}

/// A token bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(now: Instant) -> Bucket {
        Bucket {
            tokens: f64::from(PER_SOURCE_BURST),
            at: now,
        }
    }

    /// Take a token if there is one, refilling at `rate` per second.
    fn take(&mut self, now: Instant, rate: u32) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * f64::from(rate)).min(f64::from(PER_SOURCE_BURST));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A source address as the limits see it: IPv4 per address, IPv6 per /64
/// (one host or LAN usually holds a whole /64). IPv4-mapped IPv6 addresses
/// count as IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourcePrefix {
    /// An IPv4 address.
    V4(u32),
    /// The first 64 bits of an IPv6 address.
    V6(u64),
}

impl From<IpAddr> for SourcePrefix {
    fn from(ip: IpAddr) -> SourcePrefix {
        match ip.to_canonical() {
            IpAddr::V4(a) => SourcePrefix::V4(a.to_bits()),
            IpAddr::V6(a) => SourcePrefix::V6((a.to_bits() >> 64) as u64),
        }
    }
}

/// One source prefix's budgets.
#[derive(Debug, Clone, Copy)]
struct Source {
    cookies: Bucket,
    handshakes: Bucket,
}

/// The pre-checks, with their state (cookie secret, rates).
#[derive(Debug)]
#[cfg_attr(fuzzing, derive(Clone))]
pub struct HandshakeGuard {
    cfg: GuardConfig,
    minter: CookieMinter,
    inits: Window,
    under_load_until: Option<Instant>,
    sources: LruMap<SourcePrefix, Source>,
    counters: GuardCounters,
}

impl HandshakeGuard {
    /// A guard for the responder with public key `local`.
    pub fn new(cfg: GuardConfig, local: &PublicKey, now: Instant) -> HandshakeGuard {
        HandshakeGuard {
            cfg,
            minter: CookieMinter::new(local),
            inits: Window::new(now),
            under_load_until: None,
            sources: LruMap::new(SOURCE_TABLE),
            counters: GuardCounters::default(),
        }
    }

    /// New limits (the switch's config reloaded); the measured rates and
    /// the cookie secret are kept.
    pub fn reconfigure(&mut self, cfg: GuardConfig) {
        self.cfg = cfg;
    }

    /// Whether the responder is under load at `now`.
    pub fn is_under_load(&self, now: Instant) -> bool {
        self.under_load_until.is_some_and(|t| now < t)
    }

    /// Counters for status.
    pub fn counters(&self) -> &GuardCounters {
        &self.counters
    }

    /// Source prefixes tracked right now (at most [`SOURCE_TABLE`]).
    pub fn tracked_sources(&self) -> usize {
        self.sources.len()
    }

    /// A snapshot for status.
    pub fn status(&self, now: Instant) -> GuardStatus {
        GuardStatus {
            under_load: self.is_under_load(now),
            counters: self.counters.clone(),
        }
    }

    /// Decide about an initiation (already checked by `Header::new_checked`)
    /// from `from`, before any Diffie-Hellman.
    pub fn check(&mut self, now: Instant, from: SocketAddr, init: &Header<&[u8]>) -> GuardVerdict {
        if !self.minter.check_mac1(init) {
            return GuardVerdict::Drop(GuardDrop::BadMac1);
        }
        if self.inits.hit(now) > self.cfg.load_threshold {
            if !self.is_under_load(now) {
                self.counters.under_load_episodes += 1;
            }
            self.under_load_until = Some(now + UNDER_LOAD_HOLD);
        }
        if !self.is_under_load(now) {
            return GuardVerdict::Proceed;
        }
        let has_cookie = self.minter.check_mac2(now, from, init);
        let source = self
            .sources
            .get_or_insert_with(SourcePrefix::from(from.ip()), || Source {
                cookies: Bucket::full(now),
                handshakes: Bucket::full(now),
            });
        if !has_cookie {
            if source.cookies.take(now, self.cfg.cookie_replies_per_sec) {
                return GuardVerdict::SendCookie;
            }
            self.counters.cookie_replies_limited += 1;
            return GuardVerdict::Drop(GuardDrop::BadMac2);
        }
        if source.handshakes.take(now, PER_SOURCE_RATE) {
            GuardVerdict::Proceed
        } else {
            GuardVerdict::Drop(GuardDrop::RateLimited)
        }
    }

    /// [`check`](Self::check) an initiation and act on the verdict: `Ok` means
    /// run the handshake; a cookie reply goes onto `tx` (if it has room) and
    /// the initiation is dropped as [`GuardDrop::BadMac2`].
    pub fn admit(
        &mut self,
        now: Instant,
        from: SocketAddr,
        init: &Header<&[u8]>,
        tx: &mut TxQueue,
    ) -> Result<(), GuardDrop> {
        match self.check(now, from, init) {
            GuardVerdict::Proceed => Ok(()),
            GuardVerdict::Drop(d) => Err(d),
            GuardVerdict::SendCookie => {
                if !tx.is_full() {
                    let mut b = tx.buffer(COOKIE_REPLY_LEN);
                    b.truncate(COOKIE_REPLY_LEN);
                    let out: &mut [u8; COOKIE_REPLY_LEN] =
                        (&mut b[..]).try_into().expect("truncated to the length");
                    self.write_cookie_reply(now, from, init, out);
                    tx.push(from, b);
                }
                Err(GuardDrop::BadMac2)
            }
        }
    }

    /// Write the cookie reply for a [`GuardVerdict::SendCookie`] initiation.
    pub fn write_cookie_reply(
        &mut self,
        now: Instant,
        from: SocketAddr,
        init: &Header<&[u8]>,
        out: &mut [u8; COOKIE_REPLY_LEN],
    ) {
        self.minter.write_reply(now, from, init, out);
        self.counters.cookie_replies += 1;
    }

    /// Forget per-source state that no longer limits anyone (call from the
    /// periodic sweep).
    pub fn sweep(&mut self, now: Instant) {
        if !self.sources.is_empty() && !self.is_under_load(now) {
            self.sources.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cookie::{CookieJar, MacKeys};
    use crate::handshake::{Timestamp, initiate};
    use crate::keys::{Psk, StaticSecret};
    use crate::wire::HS_INIT_LEN;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn init(
        node: &StaticSecret,
        sw: &PublicKey,
        jar: &CookieJar,
        now: Instant,
    ) -> ([u8; HS_INIT_LEN], [u8; 16]) {
        let mut m = [0u8; HS_INIT_LEN];
        let i = initiate(
            node,
            sw,
            &Psk::default(),
            0,
            1,
            Timestamp::from_unix(9, 0),
            0,
            jar.current(now),
            &mut m,
        )
        .unwrap();
        (m, i.mac1())
    }

    fn keys() -> (StaticSecret, StaticSecret) {
        let mut rng = StdRng::seed_from_u64(3);
        (
            StaticSecret::generate(&mut rng),
            StaticSecret::generate(&mut rng),
        )
    }

    /// A guard under load at `t0` (threshold 1: the second initiation).
    fn loaded(sw: &StaticSecret, h: &Header<&[u8]>, t0: Instant) -> HandshakeGuard {
        let cfg = GuardConfig {
            load_threshold: 1,
            cookie_replies_per_sec: 3,
        };
        let mut g = HandshakeGuard::new(cfg, &sw.public_key(), t0);
        let warm: SocketAddr = "198.18.0.2:1".parse().unwrap();
        assert_eq!(g.check(t0, warm, h), GuardVerdict::Proceed);
        assert_eq!(g.check(t0, warm, h), GuardVerdict::SendCookie);
        assert!(g.is_under_load(t0));
        g
    }

    #[test]
    fn bad_mac1_is_dropped_and_load_demands_a_cookie() {
        let (sw, node) = keys();
        let t0 = Instant::now();
        let cfg = GuardConfig {
            load_threshold: 10,
            cookie_replies_per_sec: 3,
        };
        let mut g = HandshakeGuard::new(cfg, &sw.public_key(), t0);
        let from: SocketAddr = "198.18.0.11:5000".parse().unwrap();
        let jar = CookieJar::default();
        let (m, mac1) = init(&node, &sw.public_key(), &jar, t0);
        let h = Header::new_checked(&m[..]).unwrap();
        let mut garbage = m;
        garbage[40] ^= 1;
        let hg = Header::new_checked(&garbage[..]).unwrap();
        assert_eq!(
            g.check(t0, from, &hg),
            GuardVerdict::Drop(GuardDrop::BadMac1)
        );
        // Below the threshold: proceed, mac2 or not.
        for _ in 0..10 {
            assert_eq!(g.check(t0, from, &h), GuardVerdict::Proceed);
        }
        // The 11th in the same second: under load, a cookie is demanded, and
        // replies to one source are limited to its burst.
        assert_eq!(g.check(t0, from, &h), GuardVerdict::SendCookie);
        assert!(g.is_under_load(t0));
        let mut reply = [0u8; COOKIE_REPLY_LEN];
        g.write_cookie_reply(t0, from, &h, &mut reply);
        for _ in 1..PER_SOURCE_BURST {
            assert_eq!(g.check(t0, from, &h), GuardVerdict::SendCookie);
        }
        assert_eq!(
            g.check(t0, from, &h),
            GuardVerdict::Drop(GuardDrop::BadMac2)
        );
        assert_eq!(g.counters().cookie_replies_limited, 1);
        // With the cookie, the node gets through (up to its per-source burst).
        let mut jar = CookieJar::default();
        let cookie = MacKeys::new(&sw.public_key())
            .open_reply(&mac1, &Header::new_checked(&reply[..]).unwrap())
            .unwrap();
        jar.store(t0, cookie);
        let (m2, _) = init(&node, &sw.public_key(), &jar, t0);
        let h2 = Header::new_checked(&m2[..]).unwrap();
        for _ in 0..PER_SOURCE_BURST {
            assert_eq!(g.check(t0, from, &h2), GuardVerdict::Proceed);
        }
        assert_eq!(
            g.check(t0, from, &h2),
            GuardVerdict::Drop(GuardDrop::RateLimited)
        );
        // The same mac2 from another address is not valid.
        let other: SocketAddr = "198.18.0.66:5000".parse().unwrap();
        assert_ne!(g.check(t0, other, &h2), GuardVerdict::Proceed);
        // Load ends a second after the rate falls.
        let later = t0 + Duration::from_secs(3);
        assert_eq!(g.check(later, from, &h), GuardVerdict::Proceed);
        assert!(!g.is_under_load(later));
        assert_eq!(g.counters().under_load_episodes, 1);
    }

    #[test]
    fn a_flood_from_many_sources_leaves_a_real_source_its_cookie() {
        let (sw, node) = keys();
        let t0 = Instant::now();
        let (m, _) = init(&node, &sw.public_key(), &CookieJar::default(), t0);
        let h = Header::new_checked(&m[..]).unwrap();
        let mut g = loaded(&sw, &h, t0);
        let real: SocketAddr = "198.18.0.11:4000".parse().unwrap();
        // 100,000 forged sources in 198.18.0.0/15 within one second, the real
        // node's retries in between: each of its retries gets a cookie.
        let mut real_cookies = 0;
        for k in 0..100_000u32 {
            let t = t0 + Duration::from_micros(u64::from(k) * 10);
            let spoofed =
                SocketAddr::from(([198, 18 + (k >> 16) as u8, (k >> 8) as u8, k as u8], 9));
            g.check(t, spoofed, &h);
            if k % 25_000 == 0 {
                real_cookies += usize::from(g.check(t, real, &h) == GuardVerdict::SendCookie);
            }
            assert!(g.tracked_sources() <= SOURCE_TABLE);
        }
        assert_eq!(real_cookies, 4);
        assert_eq!(g.tracked_sources(), SOURCE_TABLE);
    }

    #[test]
    fn cookie_budget_is_per_prefix_with_lru_eviction() {
        let (sw, node) = keys();
        let t0 = Instant::now();
        let (m, _) = init(&node, &sw.public_key(), &CookieJar::default(), t0);
        let h = Header::new_checked(&m[..]).unwrap();
        let mut g = loaded(&sw, &h, t0);
        // One /64: every address in it shares the budget.
        let v6 = |host: u16| SocketAddr::from(([0xfd00, 0x18, 0, 0, 0, 0, 0, host], 9));
        for host in 0..PER_SOURCE_BURST as u16 {
            assert_eq!(g.check(t0, v6(host + 1), &h), GuardVerdict::SendCookie);
        }
        assert_eq!(
            g.check(t0, v6(999), &h),
            GuardVerdict::Drop(GuardDrop::BadMac2)
        );
        // The next /64 has its own.
        let next = SocketAddr::from(([0xfd00, 0x18, 0, 1, 0, 0, 0, 1], 9));
        assert_eq!(g.check(t0, next, &h), GuardVerdict::SendCookie);
        // IPv4 per address; a mapped IPv4 address is that address.
        let a: SocketAddr = "198.18.0.11:1".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:198.18.0.11]:2".parse().unwrap();
        assert_eq!(SourcePrefix::from(a.ip()), SourcePrefix::from(mapped.ip()));
        for _ in 0..PER_SOURCE_BURST {
            assert_eq!(g.check(t0, a, &h), GuardVerdict::SendCookie);
        }
        assert_eq!(
            g.check(t0, mapped, &h),
            GuardVerdict::Drop(GuardDrop::BadMac2)
        );
        let b: SocketAddr = "198.18.0.12:1".parse().unwrap();
        assert_eq!(g.check(t0, b, &h), GuardVerdict::SendCookie);
        // The budget refills at the configured rate (3/s): one more after 1/3 s.
        let t1 = t0 + Duration::from_millis(340);
        assert_eq!(g.check(t1, a, &h), GuardVerdict::SendCookie);
        assert_eq!(g.check(t1, a, &h), GuardVerdict::Drop(GuardDrop::BadMac2));
        // Least recently used eviction: `a` keeps its (spent) bucket while
        // SOURCE_TABLE - 1 other prefixes pass, as long as it is used in
        // between; the prefix not used since goes first.
        for k in 0..SOURCE_TABLE as u32 {
            let s = SocketAddr::from(([198, 19, (k >> 8) as u8, k as u8], 9));
            g.check(t1, s, &h);
            if k % 1000 == 0 {
                assert_eq!(g.check(t1, a, &h), GuardVerdict::Drop(GuardDrop::BadMac2));
            }
        }
        assert_eq!(g.tracked_sources(), SOURCE_TABLE);
        assert!(!g.sources.contains(&SourcePrefix::from(b.ip())));
        assert_eq!(g.check(t1, a, &h), GuardVerdict::Drop(GuardDrop::BadMac2));
        // Not under load any more: the sweep forgets every prefix.
        let later = t1 + Duration::from_secs(2);
        g.sweep(later);
        assert_eq!(g.tracked_sources(), 0);
    }
}
