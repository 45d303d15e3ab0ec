//! The switch's defence against handshake floods: what it checks before it
//! spends any Diffie-Hellman on an initiation (WireGuard paper, section 5.4).
//!
//! 1. `mac1` (one HMAC) proves the sender knows the switch's public key;
//!    anything else is dropped and counted as `bad_mac1`.
//! 2. The switch measures the initiations per second that pass `mac1`. Above
//!    [`GuardConfig::load_threshold`] it is *under load* (and stays so for
//!    [`UNDER_LOAD_HOLD`] after the rate falls): an initiation must then also
//!    carry a valid `mac2`, made with a cookie bound to its source address.
//!    One without is answered with a cookie reply (at most
//!    [`GuardConfig::cookie_replies_per_sec`], so the switch cannot be used to
//!    flood forged source addresses; a reply is smaller than the initiation,
//!    so there is no amplification either) and dropped as `bad_mac2`.
//! 3. Under load, initiations with a valid `mac2` come from an address that
//!    receives our datagrams; each such address gets at most
//!    [`PER_SOURCE_RATE`] per second (burst [`PER_SOURCE_BURST`]), as
//!    WireGuard's rate limiter does, so one real host cannot buy all the
//!    Diffie-Hellman time with its cookie (`handshake_rate_limited`).
//!
//! Only then does the core run Noise message 1. Everything here is sans-IO:
//! time is an argument, randomness comes from the core's generator.
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use overlay_proto::cookie::CookieMinter;
use overlay_proto::keys::PublicKey;
use overlay_proto::wire::{COOKIE_REPLY_LEN, Header};

use crate::stats::DropReason;

/// The switch stays under load this long after the rate last exceeded the
/// threshold (WireGuard keeps its "under load" state for 1 s).
pub const UNDER_LOAD_HOLD: Duration = Duration::from_secs(1);
/// Under load: initiations per second one source IP may have processed
/// (WireGuard's `INITIATIONS_PER_SECOND`).
pub const PER_SOURCE_RATE: u32 = 20;
/// Under load: the burst one source IP may have processed at once
/// (WireGuard's `INITIATIONS_BURSTABLE`).
pub const PER_SOURCE_BURST: u32 = 5;
/// Source IPs the per-source limiter tracks; when full it starts over (a flood
/// from many real addresses then gets at most one more burst each).
const PER_SOURCE_TABLE: usize = 4096;
/// The rate window.
const WINDOW: Duration = Duration::from_secs(1);

/// Limits, from `switch.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardConfig {
    /// Initiations per second (with a valid `mac1`) above which the switch
    /// is under load and demands `mac2` (`handshake-load-threshold`).
    pub load_threshold: u32,
    /// Cookie replies per second at most (`cookie-replies-per-sec`).
    pub cookie_replies_per_sec: u32,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            load_threshold: 200,
            cookie_replies_per_sec: 1000,
        }
    }
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
    Drop(DropReason),
}

/// Counters for status.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GuardCounters {
    /// Cookie replies sent.
    pub cookie_replies: u64,
    /// Cookie replies not sent because of the reply rate limit.
    pub cookie_replies_limited: u64,
    /// Times the switch went under load.
    pub under_load_episodes: u64,
}

crate::stats::summable!(GuardCounters {
    cookie_replies,
    cookie_replies_limited,
    under_load_episodes
});

/// What `status` shows of the guard.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GuardStatus {
    /// Whether the switch demands `mac2` right now.
    pub under_load: bool,
    /// Activity so far.
    #[serde(flatten)]
    pub counters: GuardCounters,
}

/// A fixed one-second window counter.
#[derive(Debug)]
#[cfg_attr(fuzzing, derive(Clone))]
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

/// A token bucket per source IP.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The pre-checks, with their state (cookie secret, rates).
#[derive(Debug)]
#[cfg_attr(fuzzing, derive(Clone))]
pub struct HandshakeGuard {
    cfg: GuardConfig,
    minter: CookieMinter,
    inits: Window,
    replies: Window,
    under_load_until: Option<Instant>,
    per_source: HashMap<IpAddr, Bucket>,
    counters: GuardCounters,
}

impl HandshakeGuard {
    /// A guard for the switch with public key `local`.
    pub fn new(cfg: GuardConfig, local: &PublicKey, now: Instant) -> HandshakeGuard {
        HandshakeGuard {
            cfg,
            minter: CookieMinter::new(local),
            inits: Window::new(now),
            replies: Window::new(now),
            under_load_until: None,
            per_source: HashMap::new(),
            counters: GuardCounters::default(),
        }
    }

    /// New thresholds (a reload); the measured rates are kept.
    pub fn reconfigure(&mut self, cfg: GuardConfig) {
        self.cfg = cfg;
    }

    /// Whether the switch is under load at `now`.
    pub fn is_under_load(&self, now: Instant) -> bool {
        self.under_load_until.is_some_and(|t| now < t)
    }

    /// Counters for status.
    pub fn counters(&self) -> &GuardCounters {
        &self.counters
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
            return GuardVerdict::Drop(DropReason::BadMac1);
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
        if !self.minter.check_mac2(now, from, init) {
            if self.replies.hit(now) > self.cfg.cookie_replies_per_sec {
                self.counters.cookie_replies_limited += 1;
                return GuardVerdict::Drop(DropReason::BadMac2);
            }
            return GuardVerdict::SendCookie;
        }
        if self.allow_source(now, from.ip()) {
            GuardVerdict::Proceed
        } else {
            GuardVerdict::Drop(DropReason::HandshakeRateLimited)
        }
    }

    fn allow_source(&mut self, now: Instant, ip: IpAddr) -> bool {
        if self.per_source.len() >= PER_SOURCE_TABLE && !self.per_source.contains_key(&ip) {
            self.per_source.clear();
        }
        let b = self.per_source.entry(ip).or_insert(Bucket {
            tokens: f64::from(PER_SOURCE_BURST),
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens =
            (b.tokens + elapsed * f64::from(PER_SOURCE_RATE)).min(f64::from(PER_SOURCE_BURST));
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Write the cookie reply for a [`GuardVerdict::SendCookie`] initiation.
    pub fn write_cookie_reply(
        &mut self,
        now: Instant,
        from: SocketAddr,
        init: &Header<&[u8]>,
        rng: &mut impl rand::RngCore,
        out: &mut [u8; COOKIE_REPLY_LEN],
    ) {
        self.minter.write_reply(now, from, init, rng, out);
        self.counters.cookie_replies += 1;
    }

    /// Forget per-source state that no longer limits anyone (call from the
    /// periodic sweep).
    pub fn sweep(&mut self, now: Instant) {
        if !self.is_under_load(now) {
            self.per_source.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use overlay_proto::cookie::{CookieJar, MacKeys};
    use overlay_proto::handshake::{Timestamp, initiate};
    use overlay_proto::keys::{Psk, StaticSecret};
    use overlay_proto::wire::HS_INIT_LEN;
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

    #[test]
    fn bad_mac1_is_dropped_and_load_demands_a_cookie() {
        let mut rng = StdRng::seed_from_u64(3);
        let sw = StaticSecret::generate(&mut rng);
        let node = StaticSecret::generate(&mut rng);
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
            GuardVerdict::Drop(DropReason::BadMac1)
        );
        // Below the threshold: proceed, mac2 or not.
        for _ in 0..10 {
            assert_eq!(g.check(t0, from, &h), GuardVerdict::Proceed);
        }
        // The 11th in the same second: under load, a cookie is demanded, and
        // replies are rate-limited.
        assert_eq!(g.check(t0, from, &h), GuardVerdict::SendCookie);
        assert!(g.is_under_load(t0));
        let mut reply = [0u8; COOKIE_REPLY_LEN];
        g.write_cookie_reply(t0, from, &h, &mut rng, &mut reply);
        assert_eq!(g.check(t0, from, &h), GuardVerdict::SendCookie);
        assert_eq!(g.check(t0, from, &h), GuardVerdict::SendCookie);
        assert_eq!(
            g.check(t0, from, &h),
            GuardVerdict::Drop(DropReason::BadMac2)
        );
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
            GuardVerdict::Drop(DropReason::HandshakeRateLimited)
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
}
