//! Link impairment per node and direction, for labs and chaos tests: loss
//! (random, or Gilbert-Elliott bursts), delay with jitter, reordering,
//! duplication, corruption, a rate limit with a bounded queue, and link
//! down/up. What `netem` and VDE's `wirefilter` do, inside the switch, so it
//! works on kernels without `sch_netem` and is changed live over the admin
//! socket.
//!
//! One [`Impairment`] acts on the plain frames of one direction of one
//! node: egress (frames the switch sends to the node, before they are
//! sealed) and ingress (frames from the node, after they are opened and
//! before learning and forwarding). The core cuts offloaded super-frames
//! into wire-sized segments with complete checksums first, so each effect
//! acts per frame as a real link would, and a corrupted frame fails the
//! receiver's checksum as on a bad wire.
//!
//! Sans-IO: time is passed in. A frame that is changed, delayed or
//! duplicated is copied into a pooled buffer and held in a bounded timer
//! queue until its release time ([`Impairment::poll_timeout`],
//! [`Impairment::poll_release`]); an untouched frame is passed on at once
//! without a copy. Randomness comes from a per-instance generator seeded
//! from the configured seed, the node's name and the direction, so a run
//! with a seed is repeatable.
//!
//! Order of effects (as `netem`): link down, loss, duplication,
//! corruption, rate (serialisation time at the set rate, queue bound), then
//! delay: `delay ± jitter`, uniformly distributed, so frames closer
//! together than the spread are reordered; a `reorder` fraction skips the
//! delay and overtakes the frames waiting.
//!
//! # Layout
//! - [`spec`]: what a direction does ([`ImpairSpec`]), its command form
//!   (`loss=5% delay=20ms`), ranges.
//! - [`request`]: the admin socket's `impair` and `link` requests and the
//!   status of a link.
//! - here: the per-direction engine ([`Impairment`]) and a node's link
//!   ([`PortImpair`]) as the core holds it.
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::Serialize;

pub mod request;
pub mod spec;

pub use request::{Change, ImpairStatus, Request};
pub use spec::{
    DEFAULT_QUEUE_FRAMES, GilbertElliott, ImpairSpec, MAX_DELAY, MAX_QUEUE_FRAMES, burst,
};

/// Bytes of an Ethernet header: corruption flips a bit after it, in the payload.
const ETH_HEADER: usize = 14;

/// Which way a frame travels, seen from the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// From the switch to the node.
    Egress,
    /// From the node to the switch.
    Ingress,
}

impl Direction {
    /// Its name in metrics and commands.
    pub fn name(self) -> &'static str {
        match self {
            Direction::Egress => "egress",
            Direction::Ingress => "ingress",
        }
    }
}

/// What an impairment did, in one direction. Plain integers.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ImpairCounters {
    /// Frames that met the impairment.
    pub frames: u64,
    /// Dropped as loss (random or burst).
    pub lost: u64,
    /// Dropped because the link was down.
    pub link_down: u64,
    /// Dropped because the queue was full (tail drop).
    pub queue_full: u64,
    /// Held for a delay or the rate limit.
    pub delayed: u64,
    /// Sent without the delay, ahead of held frames.
    pub reordered: u64,
    /// Extra copies made.
    pub duplicated: u64,
    /// Frames with a bit flipped.
    pub corrupted: u64,
}

impl ImpairCounters {
    /// Drops by reason (for metrics).
    pub fn drops(&self) -> [(&'static str, u64); 3] {
        [
            ("loss", self.lost),
            ("link_down", self.link_down),
            ("queue_full", self.queue_full),
        ]
    }

    /// Frames changed or held, by action (for metrics).
    pub fn actions(&self) -> [(&'static str, u64); 4] {
        [
            ("delayed", self.delayed),
            ("reordered", self.reordered),
            ("duplicated", self.duplicated),
            ("corrupted", self.corrupted),
        ]
    }
}

/// What to do with a frame just offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send it now, unchanged (copies, if any, are held).
    Pass,
    /// Gone (counted); copies, if any, are held.
    Drop,
    /// A copy is held for [`Impairment::poll_release`]; do not send the original.
    Held,
}

#[derive(Debug)]
#[cfg_attr(fuzzing, derive(Clone))]
struct HeldFrame {
    release: Instant,
    seq: u64,
    buf: Vec<u8>,
}

impl PartialEq for HeldFrame {
    fn eq(&self, o: &Self) -> bool {
        (self.release, self.seq) == (o.release, o.seq)
    }
}
impl Eq for HeldFrame {}
impl PartialOrd for HeldFrame {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for HeldFrame {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.release, self.seq).cmp(&(o.release, o.seq))
    }
}

/// One direction of one node's link: the spec, its generator, the frames
/// held and the pool their buffers come from.
#[derive(Debug)]
#[cfg_attr(fuzzing, derive(Clone))]
pub struct Impairment {
    spec: ImpairSpec,
    rng: StdRng,
    /// Gilbert-Elliott: in the bad state.
    bad: bool,
    /// Rate limit: when the link finishes sending what it has accepted.
    busy_until: Option<Instant>,
    held: BinaryHeap<Reverse<HeldFrame>>,
    seq: u64,
    pool: Vec<Vec<u8>>,
}

impl Impairment {
    /// A direction doing `spec`, its generator seeded from `seed` (the
    /// caller mixes in node and direction).
    pub fn new(spec: ImpairSpec, seed: u64) -> Impairment {
        Impairment {
            spec,
            rng: StdRng::seed_from_u64(seed),
            bad: false,
            busy_until: None,
            held: BinaryHeap::new(),
            seq: 0,
            pool: Vec::new(),
        }
    }

    /// What it does.
    pub fn spec(&self) -> &ImpairSpec {
        &self.spec
    }

    /// Change what it does from now on; held frames keep their release
    /// times. A new seed restarts the generator.
    pub fn set_spec(&mut self, spec: ImpairSpec, seed: u64) {
        if spec.seed.is_some() && spec.seed != self.spec.seed {
            self.rng = StdRng::seed_from_u64(seed);
        }
        if spec.rate.is_none() {
            self.busy_until = None;
        }
        if spec.burst.is_none() {
            self.bad = false;
        }
        self.spec = spec;
    }

    /// Frames held now.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Offer a plain frame; `link_up` false drops it. Counts into `c`.
    pub fn handle_frame(
        &mut self,
        now: Instant,
        link_up: bool,
        frame: &[u8],
        c: &mut ImpairCounters,
    ) -> Verdict {
        c.frames += 1;
        if !link_up {
            c.link_down += 1;
            return Verdict::Drop;
        }
        if self.spec.is_none() {
            return Verdict::Pass;
        }
        if self.lose() {
            c.lost += 1;
            return Verdict::Drop;
        }
        let copies = if self.chance(self.spec.duplicate) {
            2
        } else {
            1
        };
        let mut verdict = Verdict::Drop;
        for copy in 0..copies {
            let corrupt = self.chance(self.spec.corrupt) && frame.len() > ETH_HEADER;
            let Some(mut release) = self.serialise(now, frame.len()) else {
                c.queue_full += 1;
                continue;
            };
            if copy == 1 {
                c.duplicated += 1;
            }
            let delay = self.delay();
            if !delay.is_zero() && self.chance(self.spec.reorder) {
                c.reordered += 1;
            } else {
                release += delay;
            }
            if release == now && !corrupt && copy == 0 {
                verdict = Verdict::Pass;
                continue;
            }
            if self.held.len() >= self.spec.queue {
                c.queue_full += 1;
                continue;
            }
            if release > now {
                c.delayed += 1;
            }
            let mut buf = self.pool.pop().unwrap_or_default();
            buf.clear();
            buf.extend_from_slice(frame);
            if corrupt {
                c.corrupted += 1;
                let bits = (buf.len() - ETH_HEADER) * 8;
                let bit = ETH_HEADER * 8 + self.rng.random_range(0..bits);
                buf[bit / 8] ^= 1 << (bit % 8);
            }
            self.seq += 1;
            self.held.push(Reverse(HeldFrame {
                release,
                seq: self.seq,
                buf,
            }));
            if copy == 0 {
                verdict = Verdict::Held;
            }
        }
        verdict
    }

    /// When the next held frame is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.held.peek().map(|h| h.0.release)
    }

    /// The next held frame due at `now`, in release order (equal times in
    /// the order they came). Give the buffer back with [`recycle`](Self::recycle).
    pub fn poll_release(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.held.peek()?.0.release > now {
            return None;
        }
        self.held.pop().map(|h| h.0.buf)
    }

    /// Return a released frame's buffer to the pool.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        if self.pool.len() < self.spec.queue.min(1024) {
            self.pool.push(buf);
        }
    }

    /// Drop everything held (link down, node gone); returns how many.
    pub fn flush(&mut self) -> usize {
        let n = self.held.len();
        while let Some(h) = self.held.pop() {
            self.recycle(h.0.buf);
        }
        n
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.random::<f64>() < p
    }

    /// Step the loss model: is this frame lost?
    fn lose(&mut self) -> bool {
        let Some(b) = self.spec.burst else {
            return self.chance(self.spec.loss);
        };
        // Gilbert-Elliott: decide in the current state, then move.
        let lost = if self.bad {
            self.chance(b.loss_bad)
        } else {
            self.chance(self.spec.loss)
        };
        self.bad = if self.bad {
            !self.chance(b.exit)
        } else {
            self.chance(b.enter)
        };
        lost
    }

    /// Rate limit: when a frame of `len` bytes accepted now has left the
    /// link (`now` without a rate).
    fn serialise(&mut self, now: Instant, len: usize) -> Option<Instant> {
        let Some(rate) = self.spec.rate else {
            return Some(now);
        };
        if self.held.len() >= self.spec.queue {
            return None;
        }
        let start = self.busy_until.filter(|&t| t > now).unwrap_or(now);
        let nanos = (len as u128 * 8 * 1_000_000_000).div_ceil(u128::from(rate));
        let end = start + Duration::from_nanos(nanos.min(u128::from(u64::MAX)) as u64);
        self.busy_until = Some(end);
        Some(end)
    }

    /// This frame's delay: uniform in `delay ± jitter`, not below 0.
    fn delay(&mut self) -> Duration {
        let (d, j) = (self.spec.delay, self.spec.jitter);
        if j.is_zero() {
            return d;
        }
        let j = j.as_nanos() as i128;
        let offset = self.rng.random_range(-j..=j);
        let nanos = (d.as_nanos() as i128 + offset).max(0);
        Duration::from_nanos(nanos as u64)
    }
}

/// A node's link as configured or set live: up or down, and what each
/// direction does.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LinkImpair {
    /// The link is down: every frame both ways is dropped.
    pub down: bool,
    /// Frames to the node.
    pub egress: ImpairSpec,
    /// Frames from the node.
    pub ingress: ImpairSpec,
}

impl LinkImpair {
    /// Up, and nothing done to any frame.
    pub fn is_none(&self) -> bool {
        !self.down && self.egress.is_none() && self.ingress.is_none()
    }
}

/// One node's link in the core: both directions and the link state. Exists
/// only while something is set or frames are still held.
#[derive(Debug)]
#[cfg_attr(fuzzing, derive(Clone))]
pub struct PortImpair {
    /// The link is up.
    pub up: bool,
    /// Frames to the node.
    pub egress: Impairment,
    /// Frames from the node.
    pub ingress: Impairment,
}

impl PortImpair {
    /// Both directions of `node`'s link, seeded from `seed`.
    pub fn new(l: &LinkImpair, node: &str, seed: u64) -> PortImpair {
        let s = |spec: &ImpairSpec, dir| instance_seed(spec.seed.unwrap_or(seed), node, dir);
        PortImpair {
            up: !l.down,
            egress: Impairment::new(l.egress.clone(), s(&l.egress, Direction::Egress)),
            ingress: Impairment::new(l.ingress.clone(), s(&l.ingress, Direction::Ingress)),
        }
    }

    /// Apply a new setting, keeping the generators unless a seed is given.
    pub fn set(&mut self, l: &LinkImpair, node: &str, seed: u64) {
        let s = |spec: &ImpairSpec, dir| instance_seed(spec.seed.unwrap_or(seed), node, dir);
        self.up = !l.down;
        self.egress
            .set_spec(l.egress.clone(), s(&l.egress, Direction::Egress));
        self.ingress
            .set_spec(l.ingress.clone(), s(&l.ingress, Direction::Ingress));
    }

    /// What is set now.
    pub fn setting(&self) -> LinkImpair {
        LinkImpair {
            down: !self.up,
            egress: self.egress.spec().clone(),
            ingress: self.ingress.spec().clone(),
        }
    }

    /// Nothing set and nothing held: the port can drop it.
    pub fn is_idle(&self) -> bool {
        self.up
            && self.egress.spec().is_none()
            && self.ingress.spec().is_none()
            && self.egress.held() == 0
            && self.ingress.held() == 0
    }

    /// The earlier release time of the two directions.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.egress.poll_timeout(), self.ingress.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// One direction.
    pub fn dir(&mut self, d: Direction) -> &mut Impairment {
        match d {
            Direction::Egress => &mut self.egress,
            Direction::Ingress => &mut self.ingress,
        }
    }
}
/// The seed of one direction of one node: the configured seed (or the
/// switch's random one) mixed with the node's name and the direction.
pub fn instance_seed(seed: u64, node: &str, dir: Direction) -> u64 {
    // FNV-1a over the name: stable across runs and builds.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node.bytes().chain([dir as u8]) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    seed ^ h
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: [u8; 100] = [0x5a; 100];

    fn spec(words: &str) -> ImpairSpec {
        ImpairSpec::parse(words.split_whitespace()).unwrap()
    }

    /// Offer `n` frames 1 ms apart; returns the verdicts and counters.
    fn run(imp: &mut Impairment, t0: Instant, n: usize) -> (Vec<Verdict>, ImpairCounters) {
        let mut c = ImpairCounters::default();
        let v = (0..n)
            .map(|i| imp.handle_frame(t0 + Duration::from_millis(i as u64), true, &FRAME, &mut c))
            .collect();
        (v, c)
    }

    fn drain(imp: &mut Impairment, until: Instant) -> Vec<(Instant, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(t) = imp.poll_timeout().filter(|&t| t <= until) {
            let b = imp.poll_release(t).unwrap();
            out.push((t, b));
        }
        out
    }

    #[test]
    fn nothing_set_passes_everything_without_holding() {
        let mut imp = Impairment::new(ImpairSpec::default(), 1);
        let (v, c) = run(&mut imp, Instant::now(), 1000);
        assert!(v.iter().all(|&v| v == Verdict::Pass));
        assert_eq!(c.frames, 1000);
        assert_eq!(imp.held(), 0);
    }

    #[test]
    fn random_loss_rate_is_within_tolerance_and_repeatable() {
        let t0 = Instant::now();
        let mut a = Impairment::new(spec("loss=5%"), 42);
        let (va, c) = run(&mut a, t0, 100_000);
        let rate = c.lost as f64 / 100_000.0;
        assert!((rate - 0.05).abs() < 0.003, "loss rate {rate}");
        assert_eq!(
            va.iter().filter(|&&v| v == Verdict::Drop).count() as u64,
            c.lost
        );
        // The same seed loses the same frames; another seed does not.
        let (vb, _) = run(&mut Impairment::new(spec("loss=5%"), 42), t0, 100_000);
        assert_eq!(va, vb);
        let (vc, _) = run(&mut Impairment::new(spec("loss=5%"), 43), t0, 100_000);
        assert_ne!(va, vc);
    }

    #[test]
    fn gilbert_elliott_loses_in_bursts() {
        let t0 = Instant::now();
        // Mean burst length 1/exit = 4 frames, bad 1/(1+exit/enter) of the time.
        let mut imp = Impairment::new(spec("burst-enter=1% burst-exit=25%"), 7);
        let (v, c) = run(&mut imp, t0, 200_000);
        let lost: Vec<bool> = v.iter().map(|&v| v == Verdict::Drop).collect();
        let bursts = lost.windows(2).filter(|w| !w[0] && w[1]).count();
        let mean_burst = c.lost as f64 / bursts as f64;
        assert!((3.0..5.0).contains(&mean_burst), "mean burst {mean_burst}");
        let rate = c.lost as f64 / 200_000.0;
        let expected = 0.01 / (0.01 + 0.25);
        assert!((rate - expected).abs() < 0.01, "loss rate {rate}");
        // Random loss of the same rate has bursts of about one frame.
        let mut r = Impairment::new(
            ImpairSpec {
                loss: expected,
                ..ImpairSpec::default()
            },
            7,
        );
        let (v, c) = run(&mut r, t0, 200_000);
        let lost: Vec<bool> = v.iter().map(|&v| v == Verdict::Drop).collect();
        let bursts = lost.windows(2).filter(|w| !w[0] && w[1]).count();
        assert!((c.lost as f64 / bursts as f64) < 1.2);
    }

    #[test]
    fn delay_and_jitter_stay_within_bounds_and_spread() {
        let t0 = Instant::now();
        let mut imp = Impairment::new(spec("delay=20ms jitter=5ms"), 3);
        let mut c = ImpairCounters::default();
        let mut delays = Vec::new();
        for i in 0..2000u64 {
            let now = t0 + Duration::from_secs(i);
            assert_eq!(imp.handle_frame(now, true, &FRAME, &mut c), Verdict::Held);
            let (t, b) = drain(&mut imp, now + Duration::from_secs(1)).pop().unwrap();
            assert_eq!(b, FRAME);
            imp.recycle(b);
            delays.push(t - now);
        }
        let min = *delays.iter().min().unwrap();
        let max = *delays.iter().max().unwrap();
        assert!(min >= Duration::from_millis(15) && max <= Duration::from_millis(25));
        assert!(min < Duration::from_millis(16) && max > Duration::from_millis(24));
        assert_eq!(c.delayed, 2000);
    }

    #[test]
    fn jitter_and_reorder_reorder_frames() {
        let t0 = Instant::now();
        let mut imp = Impairment::new(spec("delay=10ms reorder=25%"), 5);
        let mut c = ImpairCounters::default();
        let mut out = Vec::new();
        let id = |b: &[u8]| u16::from_be_bytes([b[20], b[21]]);
        for i in 0..400u16 {
            let now = t0 + Duration::from_millis(u64::from(i));
            let mut f = FRAME;
            f[20..22].copy_from_slice(&i.to_be_bytes());
            match imp.handle_frame(now, true, &f, &mut c) {
                Verdict::Pass => out.push(i),
                Verdict::Held => {}
                Verdict::Drop => panic!("nothing is lost"),
            }
            for (_, b) in drain(&mut imp, now) {
                out.push(id(&b));
            }
        }
        for (_, b) in drain(&mut imp, t0 + Duration::from_secs(1)) {
            out.push(id(&b));
        }
        assert_eq!(out.len(), 400);
        let overtakes = out.windows(2).filter(|w| w[1] < w[0]).count();
        assert!(overtakes > 50, "{overtakes} reorderings");
        assert!((80..120).contains(&c.reordered), "{}", c.reordered);
    }

    #[test]
    fn duplicates_are_extra_copies() {
        let t0 = Instant::now();
        let mut imp = Impairment::new(spec("duplicate=10%"), 9);
        let (v, c) = run(&mut imp, t0, 10_000);
        assert!(v.iter().all(|&v| v == Verdict::Pass));
        assert!((800..1200).contains(&c.duplicated), "{}", c.duplicated);
        let copies = drain(&mut imp, t0 + Duration::from_secs(60));
        assert_eq!(copies.len() as u64, c.duplicated);
        assert!(copies.iter().all(|(_, b)| b[..] == FRAME));
    }

    #[test]
    fn corruption_flips_one_payload_bit() {
        let t0 = Instant::now();
        let mut imp = Impairment::new(spec("corrupt=100%"), 11);
        let mut c = ImpairCounters::default();
        for _ in 0..100 {
            assert_eq!(imp.handle_frame(t0, true, &FRAME, &mut c), Verdict::Held);
            let b = imp.poll_release(t0).unwrap();
            assert_eq!(b[..ETH_HEADER], FRAME[..ETH_HEADER], "header untouched");
            let flipped: u32 = b.iter().zip(FRAME).map(|(x, y)| (x ^ y).count_ones()).sum();
            assert_eq!(flipped, 1);
            imp.recycle(b);
        }
        assert_eq!(c.corrupted, 100);
    }

    #[test]
    fn rate_limit_paces_frames_and_bounds_the_queue() {
        let t0 = Instant::now();
        // 100-byte frames at 800 kbit/s: one per millisecond.
        let mut imp = Impairment::new(spec("rate=800kbit queue=10"), 1);
        let mut c = ImpairCounters::default();
        let v: Vec<Verdict> = (0..50)
            .map(|_| imp.handle_frame(t0, true, &FRAME, &mut c))
            .collect();
        assert_eq!(v.iter().filter(|&&v| v == Verdict::Held).count(), 10);
        assert_eq!(c.queue_full, 40);
        let out = drain(&mut imp, t0 + Duration::from_secs(1));
        let times: Vec<Duration> = out.iter().map(|(t, _)| *t - t0).collect();
        let want: Vec<Duration> = (1..=10).map(Duration::from_millis).collect();
        assert_eq!(times, want);
        // Drained, it accepts again; a frame after an idle gap is not
        // charged for the idle time.
        let later = t0 + Duration::from_secs(2);
        assert_eq!(imp.handle_frame(later, true, &FRAME, &mut c), Verdict::Held);
        assert_eq!(imp.poll_timeout(), Some(later + Duration::from_millis(1)));
    }

    #[test]
    fn link_down_drops_and_up_restores_at_once() {
        let t0 = Instant::now();
        let mut imp = Impairment::new(ImpairSpec::default(), 1);
        let mut c = ImpairCounters::default();
        assert_eq!(imp.handle_frame(t0, false, &FRAME, &mut c), Verdict::Drop);
        assert_eq!(imp.handle_frame(t0, false, &FRAME, &mut c), Verdict::Drop);
        assert_eq!(imp.handle_frame(t0, true, &FRAME, &mut c), Verdict::Pass);
        assert_eq!(c.link_down, 2);
        assert_eq!(c.frames, 3);
    }

    #[test]
    fn held_frames_are_bounded_without_a_rate() {
        let t0 = Instant::now();
        let mut imp = Impairment::new(spec("delay=1s queue=5"), 1);
        let (v, c) = run(&mut imp, t0, 8);
        assert_eq!(v.iter().filter(|&&v| v == Verdict::Held).count(), 5);
        assert_eq!(c.queue_full, 3);
        assert_eq!(imp.flush(), 5);
        assert_eq!(imp.held(), 0);
    }
}
