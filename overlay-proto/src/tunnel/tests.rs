//! Two tunnels wired together through a pipe that loses, delays, reorders
//! and duplicates datagrams, in synthetic time (quinn-proto's `Pair`).
use std::net::SocketAddr;

use rand::{Rng, SeedableRng, rngs::StdRng};

use super::*;
use crate::handshake::read_init;
use crate::keys::{Psk, StaticSecret};
use crate::wire::{FLAG_FRAGMENT, MessageType};

const NET: u32 = 7;

/// One endpoint with one tunnel, and what happened to it.
struct Side {
    local: Local,
    indices: IndexTable<u8>,
    tx: TxQueue,
    tun: Tunnel<u8>,
    addr: SocketAddr,
    /// Frames received, in order.
    frames: Vec<Vec<u8>>,
    events: Vec<(Instant, TunnelEvent)>,
    errors: Vec<TunnelError>,
    /// Answer every keepalive with one (as the switch does).
    answers_keepalives: bool,
    keepalives_rx: usize,
}

impl Side {
    fn new(t0: Instant, secret: StaticSecret, remote: PublicKey, cfg: TunnelConfig, n: u8) -> Side {
        let addr: SocketAddr = format!("198.18.0.{n}:5000").parse().unwrap();
        let peer: SocketAddr = format!("198.18.0.{}:5000", 3 - n).parse().unwrap();
        let mut tun = Tunnel::new(t0, n, remote, cfg);
        tun.set_endpoint(Some(peer));
        Side {
            local: Local::new(
                secret,
                Psk([9; 32]),
                NET,
                0,
                t0,
                Duration::from_secs(1_700_000_000),
            ),
            indices: IndexTable::new(u64::from(n) * 1000 + 1),
            tx: TxQueue::new(4096),
            tun,
            addr,
            frames: Vec::new(),
            events: Vec::new(),
            errors: Vec::new(),
            answers_keepalives: false,
            keepalives_rx: 0,
        }
    }

    fn peer_addr(&self) -> SocketAddr {
        self.tun.endpoint().unwrap()
    }

    fn ctx(&mut self) -> (Ctx<'_, u8>, &mut Tunnel<u8>) {
        (
            Ctx {
                local: &self.local,
                indices: &mut self.indices,
                tx: &mut self.tx,
            },
            &mut self.tun,
        )
    }

    fn timeout(&mut self, now: Instant) {
        let targets = [self.peer_addr()];
        let (mut ctx, tun) = self.ctx();
        tun.handle_timeout(now, &mut ctx, &targets);
        self.drain(now);
    }

    /// What an owner does with the tunnel's events.
    fn drain(&mut self, now: Instant) {
        while let Some(e) = self.tun.poll_event() {
            self.events.push((now, e));
            match e {
                TunnelEvent::ProbeDue | TunnelEvent::KeepaliveDue => {
                    let _ = self.tun.send_keepalive(now, &mut self.tx);
                }
                TunnelEvent::Established { .. } if self.tun.config().role != Role::Responder => {
                    let _ = self.tun.send_keepalive(now, &mut self.tx);
                }
                _ => {}
            }
        }
    }

    fn send(&mut self, now: Instant, frame: &[u8]) -> Result<(), TunnelError> {
        let mut buf = vec![0u8; DATA_OVERHEAD + frame.len()];
        buf[DATA_HEADER_LEN..DATA_HEADER_LEN + frame.len()].copy_from_slice(frame);
        match self
            .tun
            .seal(now, 0, &mut buf, frame.len(), 200, &mut self.tx)?
        {
            Sealed::InPlace(r) => {
                buf.truncate(r.end);
                let to = self.peer_addr();
                self.tx.push(to, buf);
            }
            Sealed::Queued(_) => {}
        }
        Ok(())
    }

    fn recv(&mut self, now: Instant, from: SocketAddr, mut d: Vec<u8>) {
        if let Err(e) = self.datagram(now, from, &mut d) {
            self.errors.push(e);
        }
        self.drain(now);
    }

    fn datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        d: &mut [u8],
    ) -> Result<(), TunnelError> {
        let h = Header::new_checked(&d[..])?;
        match h.message_type() {
            MessageType::Data => {
                let flags = h.flags();
                let o = self.tun.open(now, from, &mut self.indices, d)?;
                if o.range.is_empty() {
                    self.keepalives_rx += 1;
                    if self.answers_keepalives {
                        let _ = self.tun.send_reply(now, 0, &[], usize::MAX, &mut self.tx);
                    }
                } else if flags & FLAG_FRAGMENT != 0 {
                    if let Some(whole) = self.tun.reassemble(now, &d[o.range]).unwrap() {
                        self.frames.push(whole.to_vec());
                    }
                } else {
                    self.frames.push(d[o.range].to_vec());
                }
            }
            MessageType::HandshakeInit => {
                let inc = read_init(&self.local.secret, &self.local.psk, &h)
                    .map_err(|_| TunnelError::Handshake)?;
                assert_eq!(inc.peer, *self.tun.remote_key());
                let (mut ctx, tun) = self.ctx();
                tun.handle_init(now, from, &mut ctx, inc)?;
            }
            MessageType::HandshakeResp => {
                self.tun.handle_response(now, from, &mut self.indices, &h)?
            }
            MessageType::CookieReply => self.tun.handle_cookie_reply(now, &h)?,
            _ => panic!("unexpected message"),
        }
        Ok(())
    }

    fn count(&self, f: impl Fn(&TunnelEvent) -> bool) -> usize {
        self.events.iter().filter(|(_, e)| f(e)).count()
    }
}

/// The pipe's misbehaviour, as probabilities per datagram.
#[derive(Clone, Copy, Default)]
struct Impair {
    loss: f64,
    dup: f64,
    /// Extra random delay of up to this much (reorders).
    jitter: Duration,
}

struct Pair {
    now: Instant,
    sides: [Side; 2],
    /// (deliver at, to side, from, bytes)
    wire: Vec<(Instant, usize, SocketAddr, Vec<u8>)>,
    impair: [Impair; 2],
    /// Drop everything from side i (a dead link).
    cut: [bool; 2],
    rng: StdRng,
}

const LATENCY: Duration = Duration::from_millis(5);

impl Pair {
    fn new(a: TunnelConfig, b: TunnelConfig) -> Pair {
        let t0 = Instant::now();
        let mut r = StdRng::seed_from_u64(42);
        let (ka, kb) = (
            StaticSecret::generate(&mut r),
            StaticSecret::generate(&mut r),
        );
        let (pa, pb) = (ka.public_key(), kb.public_key());
        Pair {
            now: t0,
            sides: [Side::new(t0, ka, pb, a, 1), Side::new(t0, kb, pa, b, 2)],
            wire: Vec::new(),
            impair: [Impair::default(); 2],
            cut: [false; 2],
            rng: StdRng::seed_from_u64(7),
        }
    }

    /// An initiator and a responder, as a node and the switch.
    fn uplink() -> Pair {
        let mut p = Pair::new(
            TunnelConfig::new(Role::Initiator),
            TunnelConfig::new(Role::Responder),
        );
        p.sides[1].answers_keepalives = true;
        p
    }

    fn flush(&mut self) {
        for i in 0..2 {
            while let Some(t) = self.sides[i].tx.pop() {
                for d in t.datagrams() {
                    let m = self.impair[i];
                    if self.cut[i] || self.rng.random_bool(m.loss) {
                        continue;
                    }
                    let copies = if self.rng.random_bool(m.dup) { 2 } else { 1 };
                    for _ in 0..copies {
                        let extra = m.jitter.mul_f64(self.rng.random::<f64>());
                        let from = self.sides[i].addr;
                        self.wire
                            .push((self.now + LATENCY + extra, 1 - i, from, d.to_vec()));
                    }
                }
            }
        }
    }

    /// Run until `until`: deliver datagrams and fire timers in time order.
    fn run_until(&mut self, until: Instant) {
        loop {
            self.flush();
            let next_wire = self.wire.iter().map(|w| w.0).min();
            let next = [
                next_wire,
                self.sides[0].tun.poll_timeout(),
                self.sides[1].tun.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next.filter(|t| *t <= until) else {
                self.now = until;
                return;
            };
            self.now = self.now.max(next);
            let now = self.now;
            if next_wire == Some(next) {
                let i = self.wire.iter().position(|w| w.0 == next).unwrap();
                let (_, to, from, d) = self.wire.swap_remove(i);
                self.sides[to].recv(now, from, d);
            }
            for s in &mut self.sides {
                if s.tun.poll_timeout().is_some_and(|t| t <= now) {
                    s.timeout(now);
                }
            }
        }
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    /// Datagrams side `i` sent that are on the wire, taken off it.
    fn intercept(&mut self, i: usize) -> Vec<Vec<u8>> {
        self.flush();
        let (mine, rest): (Vec<_>, Vec<_>) = self.wire.drain(..).partition(|w| w.1 == 1 - i);
        self.wire = rest;
        mine.into_iter().map(|w| w.3).collect()
    }

    fn deliver(&mut self, to: usize, d: Vec<u8>) {
        let (now, from) = (self.now, self.sides[1 - to].addr);
        self.sides[to].recv(now, from, d);
    }
}

fn ty(d: &[u8]) -> MessageType {
    Header::new_checked(d).unwrap().message_type()
}

#[test]
fn handshake_completes_and_frames_flow_both_ways() {
    let mut p = Pair::uplink();
    p.run_for(Duration::from_secs(1));
    assert!(p.sides[0].tun.is_up(p.now));
    assert!(
        p.sides[1].tun.is_up(p.now),
        "the first keepalive confirmed it"
    );
    assert_eq!(
        p.sides[0].count(|e| *e == TunnelEvent::Established { rekey: false }),
        1
    );
    p.sides[0].send(p.now, b"from the initiator").unwrap();
    p.sides[1].send(p.now, b"from the responder").unwrap();
    // Too large for one 200-byte datagram: travels as fragments.
    let big: Vec<u8> = (0..1000).map(|i| i as u8).collect();
    p.sides[0].send(p.now, &big).unwrap();
    p.run_for(Duration::from_millis(100));
    assert_eq!(p.sides[1].frames, vec![b"from the initiator".to_vec(), big]);
    assert_eq!(p.sides[0].frames, vec![b"from the responder".to_vec()]);
}

#[test]
fn a_responder_alone_never_initiates_nor_probes() {
    let mut p = Pair::uplink();
    p.cut[0] = true;
    p.run_for(Duration::from_secs(60));
    assert_eq!(p.sides[1].tun.poll_timeout(), None);
    assert!(p.sides[1].events.is_empty());
    assert!(p.sides[1].tx.is_empty());
}

#[test]
fn rekeys_lose_no_frame_under_reordering_and_duplication() {
    let mut p = Pair::uplink();
    let messy = Impair {
        loss: 0.0,
        dup: 0.2,
        jitter: Duration::from_millis(30),
    };
    p.impair = [messy; 2];
    p.run_for(Duration::from_secs(1));
    // 400 s: three rekeys, a frame each way every 100 ms.
    let sent = 4000u32;
    for n in 0..sent {
        for s in &mut p.sides {
            s.send(p.now, &n.to_be_bytes()).unwrap();
        }
        p.run_for(Duration::from_millis(100));
    }
    p.run_for(Duration::from_secs(1));
    for i in 0..2 {
        let got: Vec<u32> = p.sides[1 - i]
            .frames
            .iter()
            .map(|f| u32::from_be_bytes(f[..4].try_into().unwrap()))
            .collect();
        let mut sorted = got.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(
            got.len(),
            sent as usize,
            "each frame exactly once (side {i})"
        );
        assert_eq!(sorted, (0..sent).collect::<Vec<_>>());
    }
    assert_eq!(
        p.sides[0].count(|e| *e == TunnelEvent::Established { rekey: true }),
        3
    );
    assert_eq!(
        p.sides[1].count(|e| *e == TunnelEvent::Established { rekey: true }),
        3
    );
    assert_eq!(p.sides[0].count(|e| *e == TunnelEvent::Lost), 0);
    assert!(
        p.sides[1].errors.iter().all(|e| matches!(
            e,
            TunnelError::Crypto(Error::Replay) | TunnelError::StaleTimestamp
        )),
        "only the duplicates were refused: {:?}",
        p.sides[1].errors
    );
    // Nothing leaks: each side holds current and previous (and the index
    // table knows exactly those).
    for s in &p.sides {
        assert_eq!(s.indices.len(), s.tun.indices().count());
        assert!(s.indices.len() <= 2);
    }
}

#[test]
fn a_forged_response_does_not_cancel_the_initiation() {
    let mut p = Pair::uplink();
    p.sides[0].timeout(p.now);
    let init = p.intercept(0);
    assert_eq!(init.len(), 1);
    p.deliver(1, init[0].clone());
    let resp = p.intercept(1).remove(0);
    assert_eq!(ty(&resp), MessageType::HandshakeResp);
    // Forgeries with the right receiver index: the genuine response with a
    // bit flipped, and a well-formed one from a stranger's key.
    let mut flipped = resp.clone();
    flipped[40] ^= 1;
    let mut r = StdRng::seed_from_u64(3);
    let stranger = StaticSecret::generate(&mut r);
    let mut forged_init = [0u8; HS_INIT_LEN];
    let index = Header::new_checked(&resp[..]).unwrap().receiver_index();
    crate::handshake::initiate(
        &p.sides[0].local.secret,
        &stranger.public_key(),
        &p.sides[0].local.psk,
        NET,
        index,
        Timestamp::from_unix(1, 0),
        0,
        None,
        &mut forged_init,
    )
    .unwrap();
    let mut stranger_resp = [0u8; HS_RESP_LEN];
    read_init(
        &stranger,
        &p.sides[0].local.psk,
        &Header::new_checked(&forged_init[..]).unwrap(),
    )
    .unwrap()
    .accept(NET, 99, &mut stranger_resp)
    .unwrap();
    for f in [flipped, stranger_resp.to_vec()] {
        p.deliver(0, f);
        assert_eq!(p.sides[0].errors.pop(), Some(TunnelError::ForgedResponse));
        assert!(p.sides[0].tun.is_handshaking(), "still in flight");
        assert!(!p.sides[0].tun.is_up(p.now));
    }
    p.deliver(0, resp.clone());
    assert!(
        p.sides[0].tun.is_up(p.now),
        "the genuine response completed it"
    );
    // The same response again answers no initiation.
    p.deliver(0, resp);
    assert_eq!(p.sides[0].errors.pop(), Some(TunnelError::NoInitiation));
}

#[test]
fn replays_are_dropped() {
    let mut p = Pair::uplink();
    p.sides[0].timeout(p.now);
    let init = p.intercept(0).remove(0);
    p.deliver(1, init.clone());
    let resp = p.intercept(1).remove(0);
    p.deliver(0, resp);
    let confirm = p.intercept(0).remove(0);
    p.deliver(1, confirm.clone());
    assert!(p.sides[1].tun.is_up(p.now));
    let answer = p.intercept(1);
    assert_eq!(answer.len(), 1, "the keepalive answered");
    // A replayed data packet, and a replayed initiation (its timestamp is
    // not newer than the one accepted).
    p.deliver(1, confirm);
    assert_eq!(
        p.sides[1].errors.pop(),
        Some(TunnelError::Crypto(Error::Replay))
    );
    p.deliver(1, init);
    assert_eq!(p.sides[1].errors.pop(), Some(TunnelError::StaleTimestamp));
    assert!(
        p.sides[1].tun.pending.is_none(),
        "the replay made no session"
    );
    assert!(p.intercept(1).is_empty(), "and got no answer");
}

#[test]
fn forged_data_is_refused_and_moves_nothing() {
    let mut p = Pair::uplink();
    p.run_for(Duration::from_secs(1));
    p.sides[0].send(p.now, b"genuine").unwrap();
    let good = p.intercept(0).remove(0);
    let mut forged = good.clone();
    forged[12..20].copy_from_slice(&1000u64.to_be_bytes());
    p.deliver(1, forged);
    assert_eq!(
        p.sides[1].errors.pop(),
        Some(TunnelError::Crypto(Error::BadTag))
    );
    p.deliver(1, good);
    assert_eq!(p.sides[1].frames, vec![b"genuine".to_vec()]);
}

fn initiation_times(seed: u64) -> Vec<Duration> {
    let mut p = Pair::uplink();
    p.sides[0].indices = IndexTable::new(seed);
    p.cut[1] = true; // the responder's answers never arrive
    let t0 = p.now;
    p.run_for(Duration::from_secs(60));
    p.sides[0]
        .events
        .iter()
        .filter(|(_, e)| matches!(e, TunnelEvent::InitiationSent(1)))
        .map(|(t, _)| t.duration_since(t0))
        .collect()
}

#[test]
fn retry_backoff_doubles_with_jitter_up_to_its_cap() {
    let times = initiation_times(1);
    assert_eq!(times[0], Duration::ZERO);
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(gaps[0], HANDSHAKE_RETRY_MIN);
    // Each delay is the one before doubled, plus up to 1/8 of that.
    for w in gaps.windows(2) {
        let base = w[0] * 2;
        let (lo, hi) = (
            base.min(HANDSHAKE_RETRY_MAX),
            (base + base / 8).min(HANDSHAKE_RETRY_MAX),
        );
        assert!(w[1] >= lo && w[1] <= hi, "{gaps:?}");
    }
    assert!(gaps.iter().all(|g| *g <= HANDSHAKE_RETRY_MAX));
    assert!(
        gaps[1..5].iter().any(|g| g.subsec_millis() % 250 != 0),
        "jittered: {gaps:?}"
    );
    assert!(times.len() >= 12, "keeps retrying at the cap: {times:?}");
    // Another endpoint retries on another schedule.
    assert_ne!(initiation_times(2), times);
}

#[test]
fn idle_sessions_get_keepalives_every_interval_and_no_probe() {
    let mut p = Pair::uplink();
    p.run_for(Duration::from_secs(1));
    p.sides[0].events.clear();
    p.run_for(Duration::from_secs(35));
    let kinds: Vec<TunnelEvent> = p.sides[0].events.iter().map(|e| e.1).collect();
    assert_eq!(
        kinds,
        vec![TunnelEvent::KeepaliveDue; 3],
        "one per {KEEPALIVE_INTERVAL:?}"
    );
    let gaps: Vec<Duration> = p.sides[0]
        .events
        .windows(2)
        .map(|w| w[1].0 - w[0].0)
        .collect();
    assert!(gaps.iter().all(|g| *g == KEEPALIVE_INTERVAL), "{gaps:?}");
}

#[test]
fn a_silent_remote_is_probed_then_lost_and_an_answering_one_is_not() {
    let mut p = Pair::uplink();
    p.run_for(Duration::from_secs(1));
    p.sides[0].events.clear();
    // The responder goes silent; the initiator sends one frame.
    p.cut[1] = true;
    let sent = p.now;
    p.sides[0].send(sent, b"hello?").unwrap();
    assert_eq!(p.sides[0].tun.poll_timeout(), Some(sent + PROBE_AFTER));
    p.run_for(PROBE_AFTER - Duration::from_millis(1));
    assert!(
        p.sides[0].events.is_empty(),
        "no probe before {PROBE_AFTER:?}"
    );
    p.run_for(Duration::from_millis(1));
    assert_eq!(
        p.sides[0].events.last().map(|e| e.1),
        Some(TunnelEvent::ProbeDue)
    );
    p.run_for(PROBE_TIMEOUT - Duration::from_millis(1));
    assert!(p.sides[0].tun.is_up(p.now));
    p.run_for(Duration::from_millis(1));
    assert_eq!(p.sides[0].count(|e| *e == TunnelEvent::Lost), 1);
    assert!(!p.sides[0].tun.is_up(p.now));
    assert!(p.sides[0].tun.is_handshaking(), "reconnecting at once");
    assert_eq!(
        p.sides[0].indices.len(),
        1,
        "only the new initiation's index"
    );
    // The remote answers again: back up, and a probe that is answered
    // loses nothing.
    p.cut[1] = false;
    p.run_for(Duration::from_secs(2));
    assert!(p.sides[0].tun.is_up(p.now));
    p.sides[0].events.clear();
    p.sides[0].send(p.now, b"again").unwrap();
    p.run_for(Duration::from_secs(20));
    assert_eq!(p.sides[0].count(|e| *e == TunnelEvent::Lost), 0);
    // The switch does not answer frames: a probe is due, and answered.
    assert_eq!(p.sides[0].count(|e| *e == TunnelEvent::ProbeDue), 1);
}

#[test]
fn simultaneous_open_gives_one_session() {
    let mut p = Pair::new(TunnelConfig::new(Role::Both), TunnelConfig::new(Role::Both));
    // As a mesh peer does: the higher key rekeys only after a grace.
    let higher = usize::from(p.sides[1].local.public.0 > p.sides[0].local.public.0);
    p.sides[higher].tun.cfg.rekey_grace = Duration::from_secs(30);
    // Each answers the other's probes (a mesh peer's `Ping`).
    p.sides[0].answers_keepalives = true;
    p.sides[1].answers_keepalives = true;
    p.sides[0].timeout(p.now);
    p.sides[1].timeout(p.now);
    p.run_for(Duration::from_secs(2));
    assert!(p.sides[0].tun.is_up(p.now) && p.sides[1].tun.is_up(p.now));
    let a = p.sides[0].tun.current().unwrap();
    let b = p.sides[1].tun.current().unwrap();
    assert_eq!(
        (a.local_index(), a.remote_index()),
        (b.remote_index(), b.local_index())
    );
    p.sides[0].send(p.now, b"x").unwrap();
    p.sides[1].send(p.now, b"y").unwrap();
    p.run_for(Duration::from_millis(50));
    assert_eq!((p.sides[0].frames.len(), p.sides[1].frames.len()), (1, 1));
    // Only the lower key rekeys at REKEY_AFTER_TIME; the other waits.
    let lower = 1 - higher;
    for s in &mut p.sides {
        s.events.clear();
    }
    p.run_for(REKEY_AFTER_TIME + Duration::from_secs(5));
    let inits = |s: &Side| s.count(|e| matches!(e, TunnelEvent::InitiationSent(_)));
    assert_eq!((inits(&p.sides[lower]), inits(&p.sides[higher])), (1, 0));
    for s in &p.sides {
        assert_eq!(
            s.count(|e| *e == TunnelEvent::Established { rekey: true }),
            1
        );
        assert_eq!(s.count(|e| *e == TunnelEvent::Lost), 0);
    }
}

#[test]
fn the_index_table_never_hands_out_an_index_twice() {
    // 200,000 random 32-bit indices collide a few times on average: the
    // table must skip every index in use.
    let mut t = IndexTable::new(11);
    let mut seen = std::collections::HashSet::new();
    for i in 0..200_000u32 {
        assert!(seen.insert(t.allocate(i)), "collision at {i}");
    }
    assert_eq!(t.len(), 200_000);
    let some = *seen.iter().next().unwrap();
    t.release(some);
    assert_eq!(t.get(some), None);
    assert_eq!(t.len(), 199_999);
}

#[test]
fn closing_releases_every_index() {
    let mut p = Pair::uplink();
    p.run_for(Duration::from_secs(1));
    p.run_for(REKEY_AFTER_TIME);
    assert_eq!(p.sides[0].indices.len(), 2);
    assert_eq!(p.sides[1].indices.len(), 2);
    let now = p.now;
    for s in &mut p.sides {
        assert!(s.tun.close(now, &mut s.indices));
        assert!(s.indices.is_empty());
        assert!(!s.tun.is_up(now));
    }
}
