//! Mesh mode: direct sessions with the other nodes the switch vouched for,
//! their path state, and which MAC lives behind which peer.
//!
//! The switch stays the membership authority: it tells us each member's
//! public key, name and endpoints (`PeerUpdate`), and we accept handshakes
//! only from those keys. Its list is authoritative: each new session with
//! the switch brings the full list (`Mesh`, the updates, `PeerListEnd` with
//! their count), and a peer missing from a complete list is dropped (its
//! sessions, its MACs) [`UNLISTED_GRACE`] later unless announced again
//! meanwhile (the grace lets the other nodes reconnect after a switch
//! restart). A vouch lasts
//! [`NodeConfig::vouch_lifetime`](crate::core::NodeConfig) past the last
//! packet heard from the switch under a complete list: while the switch is
//! unreachable peers keep working that long, then they are dropped until
//! the switch vouches for them again. Each pair runs the same Noise IKpsk2
//! handshake as
//! node and switch, either side initiating; both send initiations to every
//! candidate endpoint at once, which punches holes in NATs on both sides. If
//! both initiate at the same time, the side with the lower public key wins:
//! it ignores the other's initiation while its own is in flight, and the
//! other side answers and drops its own, so exactly one session results.
//!
//! Path choice per peer: **direct** while a session is up and the peer
//! answers; otherwise **relayed** through the switch (the central path, hop
//! by hop). A direct path that carried traffic but heard nothing for
//! [`PEER_PROBE_AFTER`] gets a `Ping`; unanswered for [`PEER_PROBE_TIMEOUT`]
//! more, the path is declared down (so the fallback happens within 0.7 s) and
//! new handshakes are tried with backoff capped at [`PEER_RETRY_MAX`]: the
//! path returns to direct within that long of the underlay healing. When one
//! side falls back, the other follows at once: a unicast frame arriving
//! relayed from a MAC we route to a direct peer means that peer no longer
//! reaches us directly, so we relay to it at once and `Ping` it; the path is
//! down unless the answer comes within [`PEER_PROBE_TIMEOUT`].
//!
//! Forwarding: known unicast to a MAC learned behind a peer with a direct path
//! goes to that peer; everything else (broadcast, multicast, unknown unicast,
//! peers without a direct path) goes to the switch, which floods or forwards
//! as in central mode. So group traffic is sent once by the sender and never
//! arrives twice. MACs are learned only from what a peer itself sent over
//! its own session: the source of frames it sent us directly, and its
//! `MacAnnounce` of the source MACs seen on its TAP; at most
//! [`MAC_LIMIT_PER_PEER`] per peer, never one of our own, never one the
//! switch placed behind another member (its `MacOwners`: it sees every
//! frame that crosses it, and a direct claim it never sees must not override
//! that), and moves between
//! peers are counted and reported for the log at most every
//! [`MOVE_LOG_EVERY`].
//!
//! VLANs: the switch tells us our own port (`Mesh`) and each peer's port
//! restricted to the VLANs we share (`PeerUpdate`); it vouches only for
//! peers that share one. A frame goes direct only if the VLAN the switch
//! would put it in (by our port) is one the peer is a member of; a frame a
//! peer sends us is classified by *its* port as the switch would, dropped
//! (`vlan_filtered`) unless we are a member of that VLAN, and given the form
//! our port takes (tag added or removed). So the receiver enforces, whatever
//! the sender does. MACs are learned per VLAN: from a frame, in its VLAN;
//! from a `MacAnnounce`, in the peer's native VLAN only (one entry per MAC,
//! however many VLANs a trunk carries). The bounds above hold across VLANs:
//! the per-peer limit counts a peer's entries in every VLAN, our own MACs
//! are refused in every VLAN, and `MacOwners` names no VLAN, so a MAC the
//! switch placed behind one member is claimed by no other peer in any VLAN
//! (the switch tells us only of MACs in VLANs we are a member of). Loop
//! guard: a node never
//! sends a frame it received (from a peer or the switch) anywhere but to its
//! TAP, and the switch never sends a frame back to the node it came from, so
//! a frame crosses at most one relay.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::{Duration, Instant};

use overlay_proto::control::{Control, MAX_ENDPOINTS, MAX_MACS, check_local_addr};
use overlay_proto::cookie::{CookieJar, MacKeys};
use overlay_proto::ethernet::{Frame, MacAddr};
use overlay_proto::frag::Reassembler;
use overlay_proto::handshake::{self, CAP_VNET, Initiation, Timestamp};
use overlay_proto::handshake_guard::{GuardConfig, GuardStatus, HandshakeGuard};
use overlay_proto::keys::{Psk, PublicKey, StaticSecret};
use overlay_proto::mac_table::{Learned, MAC_AGING, MAC_LIMIT, MacTable};
use overlay_proto::session::Session;
use overlay_proto::timers::{
    HANDSHAKE_RETRY_MIN, KEEPALIVE_INTERVAL, PENDING_SESSION_TIMEOUT, REKEY_AFTER_TIME,
};
use overlay_proto::transmit::TxQueue;
use overlay_proto::vlan::{self, EgressForm, Ingress, PortVlan, Vid};
use overlay_proto::wire::{DATA_OVERHEAD, FLAG_CONTROL, HS_INIT_LEN, HS_RESP_LEN, Header};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::Serialize;

use crate::stats::DropReason;

/// A direct path that sent but heard nothing this long gets a `Ping`.
pub const PEER_PROBE_AFTER: Duration = Duration::from_millis(300);
/// An unanswered `Ping`: the direct path is down, traffic goes via the switch
/// (0.3 s + 0.4 s: both directions relay within 1 s of the first loss). A
/// path whose round trip is longer waits 4 round trips.
pub const PEER_PROBE_TIMEOUT: Duration = Duration::from_millis(400);
/// After a relayed frame made us suspect a path that then answered, such
/// hints are ignored this long (a peer may relay unicast while its direct
/// path works, e.g. offloaded frames to a node without offload).
const HINT_HOLDOFF: Duration = Duration::from_secs(10);
/// How long peers the switch vouched for keep working after the last
/// packet heard from it (node.toml `vouch-lifetime-secs`).
pub const DEFAULT_VOUCH_LIFETIME: Duration = Duration::from_secs(600);
/// A peer missing from the switch's complete list is dropped this much
/// later unless announced again (other nodes reconnecting to a restarted
/// switch are announced within a sweep or two).
pub const UNLISTED_GRACE: Duration = Duration::from_secs(2);
/// MACs learned behind one peer; claims beyond it are refused and counted.
pub const MAC_LIMIT_PER_PEER: usize = 1024;
/// MACs whose owner the switch told us (`MacOwners`).
const OWNER_LIMIT: usize = 16_384;
/// MAC moves between peers are reported for the log at most this often.
pub const MOVE_LOG_EVERY: Duration = Duration::from_secs(10);
/// The cap on the handshake backoff towards a peer without a direct path: how
/// often a relayed path probes for direct again (the issue asks for 30 s at
/// most).
pub const PEER_RETRY_MAX: Duration = Duration::from_secs(5);
/// The peer with the higher key rekeys only if the other has not this long
/// after [`REKEY_AFTER_TIME`].
const REKEY_GRACE: Duration = Duration::from_secs(30);
/// Our own source MACs we keep announcing.
const LOCAL_MAC_LIMIT: usize = 1024;
/// A local MAC is announced again to all direct peers this often.
const ANNOUNCE_EVERY: Duration = Duration::from_secs(60);

/// How frames to a peer travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Path {
    /// Straight to the peer, under a session with it.
    Direct,
    /// Through the switch, hop by hop.
    Relayed,
}

/// A path change, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathEvent {
    /// The peer's name.
    pub peer: String,
    /// Its new path.
    pub path: Path,
}

/// One peer in `status`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct PeerStatus {
    /// Its name, as the switch announced it.
    pub name: String,
    /// Its public key (base64).
    pub public_key: String,
    /// Direct or relayed.
    pub path: Path,
    /// The endpoint its direct session uses, if any.
    pub endpoint: Option<String>,
    /// The endpoints the switch announced for it.
    pub candidates: Vec<String>,
    /// Seconds since the last handshake with it completed.
    pub last_handshake_secs_ago: Option<f64>,
    /// The latest `Ping` round trip over the direct path.
    pub rtt_secs: Option<f64>,
    /// Frames sent to it directly.
    pub tx_frames: u64,
    /// Frames received from it directly.
    pub rx_frames: u64,
    /// Times the path changed between direct and relayed.
    pub path_changes: u64,
    /// MACs learned behind it.
    pub macs: usize,
    /// The VLANs we share with it (empty on a VLAN-unaware switch).
    pub vlans: Vec<Vid>,
    /// Seconds its vouch has left (renewed while the switch is heard).
    pub vouch_secs_left: f64,
}

/// MAC moves between peers since the last report, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveReport {
    /// Moves since the last report.
    pub moves: u64,
    /// The latest: the MAC, the peer it left, the peer it went to.
    pub latest: (MacAddr, String, String),
}

/// MAC learning counters of a mesh node.
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct MacCounters {
    /// MACs that moved from one peer to another.
    pub moves: u64,
    /// Claims refused: the peer owns its limit of MACs (or the table is full).
    pub refused_limit: u64,
    /// Claims refused: one of our own MACs.
    pub refused_local: u64,
    /// Claims refused: the switch placed the MAC behind another member.
    pub refused_owner: u64,
    /// Peers dropped because the switch's list no longer held them.
    pub peers_unlisted: u64,
    /// Peers dropped because their vouch ran out (switch unreachable).
    pub peers_expired: u64,
}

#[derive(Debug)]
#[cfg_attr(fuzzing, derive(Clone))]
struct InFlight {
    initiation: Initiation,
    sent_at: Instant,
}

#[derive(Debug)]
#[cfg_attr(fuzzing, derive(Clone))]
struct Peer {
    key: PublicKey,
    name: String,
    /// Its port, restricted to the VLANs we share.
    vlan: PortVlan,
    candidates: Vec<SocketAddr>,
    endpoint: Option<SocketAddr>,
    current: Option<Session>,
    previous: Option<Session>,
    pending: Option<Session>,
    handshake: Option<InFlight>,
    /// The peer's latest cookie (it sends one when under load).
    cookies: CookieJar,
    retry_delay: Duration,
    next_attempt: Instant,
    last_tx: Option<Instant>,
    awaiting_since: Option<Instant>,
    probe_sent: bool,
    last_handshake: Option<Instant>,
    last_timestamp: Timestamp,
    accepts_vnet: bool,
    ping: Option<(u64, Instant)>,
    rtt: Option<Duration>,
    reassembly: Reassembler,
    next_frame_id: u32,
    tx_frames: u64,
    rx_frames: u64,
    path_changes: u64,
    /// In the switch's current list (or its last complete one).
    listed: bool,
    /// Missing from a complete list since then: dropped after the grace.
    unlisted_since: Option<Instant>,
    /// Dropped at this time unless the switch vouches again.
    vouched_until: Instant,
    /// A relayed frame suggested the direct path is down: relay and `Ping`;
    /// the path is lost if nothing comes back by this deadline.
    suspect_until: Option<Instant>,
    /// When a suspicion was last disproved (hints wait [`HINT_HOLDOFF`]).
    hint_disproved: Option<Instant>,
}

impl Peer {
    fn is_direct(&self, now: Instant) -> bool {
        self.current.as_ref().is_some_and(|s| !s.is_expired(now))
    }

    fn indices(&self) -> impl Iterator<Item = u32> + '_ {
        [&self.current, &self.previous, &self.pending]
            .into_iter()
            .flatten()
            .map(|s| s.local_index())
    }

    fn targets(&self) -> Vec<SocketAddr> {
        let mut t: Vec<SocketAddr> = self.endpoint.into_iter().collect();
        for c in &self.candidates {
            if !t.contains(c) {
                t.push(*c);
            }
        }
        t.truncate(MAX_ENDPOINTS + 1);
        t
    }
}

/// All peers of a mesh node.
#[derive(Debug)]
#[cfg_attr(fuzzing, derive(Clone))]
pub struct Peers {
    enabled: bool,
    local: StaticSecret,
    local_key: PublicKey,
    psk: Psk,
    network_id: u32,
    caps: u32,
    /// `mac1`, load, `mac2` and per-prefix limits before any Diffie-Hellman
    /// on a peer's initiation, as at the switch.
    guard: HandshakeGuard,
    wall_base: (Instant, Duration),
    last_timestamp: Timestamp,
    /// Our own port, as the switch told us.
    vlan: PortVlan,
    peers: Vec<Option<Peer>>,
    by_index: HashMap<u32, usize>,
    /// The peer (slot) behind each MAC, per VLAN: [`MAC_LIMIT`] in all,
    /// [`MAC_LIMIT_PER_PEER`] per peer. Aged in `handle_timeout`.
    macs: MacTable<usize>,
    local_macs: HashMap<MacAddr, Instant>,
    rng: StdRng,
    events: Vec<PathEvent>,
    control: Vec<u8>,
    vouch_lifetime: Duration,
    /// `PeerUpdate`s counted since `Mesh`, while a full list arrives.
    list: Option<u16>,
    /// The switch's latest list was complete: hearing from it renews vouches.
    list_complete: bool,
    /// This switch sends `PeerListEnd` (one that does not is trusted as
    /// before: every packet from it renews every vouch).
    ends_seen: bool,
    /// The latest packet from the switch that renews vouches.
    renewed_at: Option<Instant>,
    /// The counters the MAC table does not keep.
    mac_counters: MacCounters,
    /// Which member the switch last saw each MAC behind, and when it said so.
    owners: HashMap<MacAddr, (PublicKey, Instant)>,
    /// Moves not yet reported, the latest, and when the last report went out.
    moves_pending: (u64, Option<(MacAddr, usize, usize)>, Option<Instant>),
}

impl Peers {
    /// No peers yet, mesh mode off until the switch says otherwise.
    pub fn new(
        local: StaticSecret,
        psk: Psk,
        network_id: u32,
        offload: bool,
        wall_base: (Instant, Duration),
        seed: u64,
    ) -> Peers {
        let local_key = local.public_key();
        Peers {
            enabled: false,
            guard: HandshakeGuard::new(GuardConfig::default(), &local_key, wall_base.0),
            local,
            local_key,
            psk,
            network_id,
            caps: if offload { CAP_VNET } else { 0 },
            wall_base,
            last_timestamp: Timestamp::default(),
            vlan: PortVlan::Transparent,
            peers: Vec::new(),
            by_index: HashMap::new(),
            macs: MacTable::new(MAC_AGING, MAC_LIMIT_PER_PEER, MAC_LIMIT),
            local_macs: HashMap::new(),
            rng: StdRng::seed_from_u64(seed),
            events: Vec::new(),
            control: Vec::new(),
            vouch_lifetime: DEFAULT_VOUCH_LIFETIME,
            list: None,
            list_complete: false,
            ends_seen: false,
            renewed_at: None,
            mac_counters: MacCounters::default(),
            owners: HashMap::new(),
            moves_pending: (0, None, None),
        }
    }

    /// How long peers stay vouched after the switch was last heard.
    pub fn set_vouch_lifetime(&mut self, d: Duration) {
        self.vouch_lifetime = d;
    }

    /// The switch began its full list (`Mesh`): peers not in it will be
    /// dropped when `PeerListEnd` confirms it is complete.
    pub fn begin_list(&mut self) {
        self.apply_renewal();
        self.list = Some(0);
        self.list_complete = false;
        for p in self.peers.iter_mut().flatten() {
            p.listed = false;
        }
    }

    /// The switch's full list ended with `count` updates. If we got them
    /// all, every peer missing from it is dropped after [`UNLISTED_GRACE`];
    /// if not (a lost datagram), the list is not used and vouches run down
    /// until a complete one arrives (with the next session, at the latest).
    pub fn end_list(&mut self, now: Instant, count: u16) {
        self.ends_seen = true;
        if self.list.take() != Some(count) {
            return;
        }
        self.list_complete = true;
        self.renewed_at = Some(now);
        for p in self.peers.iter_mut().flatten() {
            if !p.listed && p.unlisted_since.is_none() {
                p.unlisted_since = Some(now);
            }
        }
    }

    /// An authenticated packet from the switch: it is reachable, and (if its
    /// latest list was complete) still vouches for the peers it listed.
    pub fn switch_heard(&mut self, now: Instant) {
        // HOT PATH
        if self.list_complete || !self.ends_seen {
            self.renewed_at = Some(now);
        }
    }

    /// MAC learning counters.
    pub fn mac_counters(&self) -> MacCounters {
        let t = self.macs.counters();
        MacCounters {
            moves: t.moves,
            refused_limit: t.port_limit_hits + t.table_limit_hits,
            ..self.mac_counters
        }
    }

    /// A summary of MAC moves since the last one, at most every
    /// [`MOVE_LOG_EVERY`] (never one log line per move).
    pub fn poll_move_report(&mut self, now: Instant) -> Option<MoveReport> {
        let (n, latest, last) = self.moves_pending;
        if n == 0 || last.is_some_and(|t| now.saturating_duration_since(t) < MOVE_LOG_EVERY) {
            return None;
        }
        let (mac, from, to) = latest?;
        let name = |i: usize| {
            self.peers
                .get(i)
                .and_then(|p| p.as_ref())
                .map_or_else(String::new, |p| p.name.clone())
        };
        let r = MoveReport {
            moves: n,
            latest: (mac, name(from), name(to)),
        };
        self.moves_pending = (0, None, Some(now));
        Some(r)
    }

    /// The switch said this network runs in mesh mode.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Turn mesh mode on (the switch sent `Mesh`), with our own port's
    /// VLANs. If they changed, every peer is forgotten: what we share with
    /// each is no longer known (the switch announces them again).
    pub fn enable(&mut self, vlan: PortVlan) {
        self.enabled = true;
        if self.vlan != vlan {
            let keys: Vec<PublicKey> = self.peers.iter().flatten().map(|p| p.key).collect();
            for k in &keys {
                self.remove(k);
            }
            self.vlan = vlan;
        }
    }

    /// Whether `index` is one of our peer sessions, and whose.
    pub fn lookup(&self, index: u32) -> Option<usize> {
        self.by_index.get(&index).copied()
    }

    /// The next path change for the log.
    pub fn poll_event(&mut self) -> Option<PathEvent> {
        if self.events.is_empty() {
            None
        } else {
            Some(self.events.remove(0))
        }
    }

    fn slot(&self, key: &PublicKey) -> Option<usize> {
        self.peers
            .iter()
            .position(|p| p.as_ref().is_some_and(|p| p.key == *key))
    }

    /// The switch announced (or re-announced) a member, with its port as
    /// far as we share VLANs. A new peer, or one that moved while we have no
    /// direct path, gets handshakes at once. A member that shares no VLAN
    /// with us is not a peer (the switch does not announce such members;
    /// this holds even if it did).
    pub fn update(
        &mut self,
        now: Instant,
        key: PublicKey,
        name: String,
        endpoints: Vec<SocketAddr>,
        vlan: PortVlan,
    ) {
        // Every update the switch sent counts towards its list's end, even
        // one refused here.
        if let Some(n) = self.list.as_mut() {
            *n = n.saturating_add(1);
        }
        if key == self.local_key {
            return;
        }
        let Some(vlan) = vlan.shared_with(&self.vlan) else {
            self.remove(&key);
            return;
        };
        let i = match self.slot(&key) {
            Some(i) => i,
            None => {
                let peer = Peer {
                    key,
                    name: String::new(),
                    vlan: PortVlan::Transparent,
                    candidates: Vec::new(),
                    endpoint: None,
                    current: None,
                    previous: None,
                    pending: None,
                    handshake: None,
                    cookies: CookieJar::default(),
                    retry_delay: HANDSHAKE_RETRY_MIN,
                    next_attempt: now,
                    last_tx: None,
                    awaiting_since: None,
                    probe_sent: false,
                    last_handshake: None,
                    last_timestamp: Timestamp::default(),
                    accepts_vnet: false,
                    ping: None,
                    rtt: None,
                    reassembly: Reassembler::default(),
                    next_frame_id: 0,
                    tx_frames: 0,
                    rx_frames: 0,
                    path_changes: 0,
                    listed: true,
                    unlisted_since: None,
                    vouched_until: now + self.vouch_lifetime,
                    suspect_until: None,
                    hint_disproved: None,
                };
                match self.peers.iter().position(Option::is_none) {
                    Some(i) => {
                        self.peers[i] = Some(peer);
                        i
                    }
                    None => {
                        self.peers.push(Some(peer));
                        self.peers.len() - 1
                    }
                }
            }
        };
        let lifetime = self.vouch_lifetime;
        let Some(p) = self.peers[i].as_mut() else {
            return;
        };
        p.name = name;
        p.vlan = vlan;
        p.listed = true;
        p.unlisted_since = None;
        p.vouched_until = p.vouched_until.max(now + lifetime);
        // Only addresses a handshake can usefully go to (the switch checks
        // too; an older switch does not).
        let mut endpoints = endpoints;
        if let Some(&observed) = endpoints.first() {
            endpoints.retain(|a| *a == observed || check_local_addr(observed, *a).is_ok());
        }
        let moved = p.candidates != endpoints;
        p.candidates = endpoints;
        p.candidates.truncate(MAX_ENDPOINTS);
        if moved && !p.is_direct(now) {
            // Try the new addresses now (and punch our side of the NAT).
            p.handshake = None;
            p.retry_delay = HANDSHAKE_RETRY_MIN;
            p.next_attempt = now;
        }
    }

    /// The switch said a member left.
    pub fn remove(&mut self, key: &PublicKey) {
        let Some(i) = self.slot(key) else { return };
        if let Some(p) = self.peers[i].take() {
            for idx in p.indices() {
                self.by_index.remove(&idx);
            }
        }
        self.macs.flush_port(i);
    }

    /// Where to send `frame` (read from our TAP, starting at the Ethernet
    /// header): the peer behind its destination in its VLAN, if it is known,
    /// a member of that VLAN, and its direct path is up. `vnet` frames go
    /// direct only to peers that accept them. A frame our port would not
    /// admit goes to the switch, which drops and counts it.
    pub fn route(&self, now: Instant, frame: &[u8], vnet: bool) -> Option<usize> {
        // HOT PATH
        if !self.enabled || vlan::is_truncated_tag(frame) {
            return None;
        }
        let dst = Frame::new_checked(frame).ok()?.dst();
        let vid = self.vlan.ingress(frame)?.vid;
        let i = self.macs.lookup(now, vid, &dst)?;
        let p = self.peers.get(i)?.as_ref()?;
        let member = p.vlan.egress(vid) != EgressForm::NotMember;
        (member && p.is_direct(now) && p.suspect_until.is_none() && (!vnet || p.accepts_vnet))
            .then_some(i)
    }

    /// Seal a payload at `buf[DATA_HEADER_LEN..]` for peer `i`, in place if
    /// it fits in `max` bytes (returns the datagram's range and destination),
    /// else as fragments queued on `tx` (returns `None`).
    // The hot path's buffer, its geometry and the queue: a struct would only rename them.
    #[allow(clippy::too_many_arguments)]
    pub fn seal(
        &mut self,
        now: Instant,
        i: usize,
        flags: u8,
        buf: &mut [u8],
        plen: usize,
        max: usize,
        tx: &mut TxQueue,
    ) -> Result<Option<(SocketAddr, Range<usize>)>, DropReason> {
        // HOT PATH
        let p = self.peers[i].as_mut().ok_or(DropReason::NoSession)?;
        let to = p.endpoint.ok_or(DropReason::NoSession)?;
        let session = p.current.as_mut().ok_or(DropReason::NoSession)?;
        let r = if plen + DATA_OVERHEAD <= max {
            let n = session.seal(flags, buf, plen).map_err(DropReason::from)?;
            Some((to, 0..n))
        } else {
            let mut b = tx.buffer(0);
            let payload = &buf[overlay_proto::wire::DATA_HEADER_LEN..][..plen];
            match session.seal_frame(flags, &[payload], max, &mut p.next_frame_id, &mut b) {
                Ok(Some(stride)) => tx.push_batch(to, b, stride),
                Ok(None) => tx.push(to, b),
                Err(e) => {
                    tx.recycle(b);
                    return Err(DropReason::from(e));
                }
            }
            None
        };
        p.tx_frames += 1;
        note_sent(p, now);
        Ok(r)
    }

    /// A source MAC read from our TAP: announce it to direct peers when it is
    /// new or its last announcement is [`ANNOUNCE_EVERY`] old.
    pub fn note_local_mac(&mut self, now: Instant, src: MacAddr, tx: &mut TxQueue) {
        // HOT PATH (one lookup per frame)
        if !self.enabled || !src.is_valid_source() {
            return;
        }
        if self
            .local_macs
            .get(&src)
            .is_some_and(|t| now.saturating_duration_since(*t) < ANNOUNCE_EVERY)
        {
            return;
        }
        if self.local_macs.len() >= LOCAL_MAC_LIMIT && !self.local_macs.contains_key(&src) {
            return;
        }
        self.local_macs.insert(src, now);
        let msg = Control::MacAnnounce {
            caps: self.caps,
            macs: vec![src],
        };
        for i in 0..self.peers.len() {
            if self.peers[i].as_ref().is_some_and(|p| p.is_direct(now)) {
                self.send_control(now, i, &msg, tx);
            }
        }
    }

    /// All our local MACs and capabilities, to one peer whose path just came up.
    fn announce_all(&mut self, now: Instant, i: usize, tx: &mut TxQueue) {
        let macs: Vec<MacAddr> = self.local_macs.keys().copied().collect();
        let caps = self.caps;
        if macs.is_empty() {
            let msg = Control::MacAnnounce {
                caps,
                macs: Vec::new(),
            };
            self.send_control(now, i, &msg, tx);
        }
        for chunk in macs.chunks(MAX_MACS) {
            let msg = Control::MacAnnounce {
                caps,
                macs: chunk.to_vec(),
            };
            self.send_control(now, i, &msg, tx);
        }
    }

    fn send_control(&mut self, now: Instant, i: usize, msg: &Control, tx: &mut TxQueue) {
        if tx.is_full() {
            return;
        }
        let Some(p) = self.peers[i].as_mut() else {
            return;
        };
        let (Some(to), Some(session)) = (p.endpoint, p.current.as_mut()) else {
            return;
        };
        self.control.clear();
        msg.emit(&mut self.control);
        let mut b = tx.buffer(0);
        match session.seal_frame(FLAG_CONTROL, &[&self.control], usize::MAX, &mut 0, &mut b) {
            Ok(_) => {
                tx.push(to, b);
                if !matches!(msg, Control::Pong(_)) {
                    note_sent(p, now);
                }
            }
            Err(_) => tx.recycle(b),
        }
    }

    /// Open a data packet under peer `i`'s session with index `index`.
    /// Confirms a pending session, tracks the peer's endpoint (roaming).
    pub fn open(
        &mut self,
        now: Instant,
        from: SocketAddr,
        i: usize,
        buf: &mut [u8],
        tx: &mut TxQueue,
    ) -> Result<Range<usize>, DropReason> {
        // HOT PATH
        let index = Header::new_unchecked(&buf[..]).receiver_index();
        let p = self.peers[i].as_mut().ok_or(DropReason::UnknownSession)?;
        let is_pending = p.pending.as_ref().is_some_and(|s| s.local_index() == index);
        let session = [p.current.as_mut(), p.pending.as_mut(), p.previous.as_mut()]
            .into_iter()
            .flatten()
            .find(|s| s.local_index() == index)
            .ok_or(DropReason::UnknownSession)?;
        if session.is_expired(now) {
            return Err(DropReason::Expired);
        }
        let range = session.open(buf)?;
        p.awaiting_since = None;
        p.probe_sent = false;
        if p.suspect_until.take().is_some() {
            p.hint_disproved = Some(now);
        }
        p.endpoint = Some(from);
        if is_pending {
            let was_direct = p.is_direct(now);
            let new = p.pending.take();
            if let Some(old) = p.previous.take() {
                self.by_index.remove(&old.local_index());
            }
            p.previous = std::mem::replace(&mut p.current, new);
            p.last_handshake = Some(now);
            if !was_direct {
                self.path_up(now, i, tx);
            }
        }
        Ok(range)
    }

    fn path_up(&mut self, now: Instant, i: usize, tx: &mut TxQueue) {
        if let Some(p) = self.peers[i].as_mut() {
            p.path_changes += 1;
            p.retry_delay = HANDSHAKE_RETRY_MIN;
            self.events.push(PathEvent {
                peer: p.name.clone(),
                path: Path::Direct,
            });
        }
        self.announce_all(now, i, tx);
    }

    /// A frame (or reassembled payload) peer `i` sent us directly, `frame`
    /// starting at the Ethernet header: classify it by the peer's port as
    /// the switch would, refuse it unless we are a member of its VLAN too
    /// (`vlan_filtered`), and learn its source MAC in that VLAN. Returns the
    /// frame's ingress if our port takes it in the other form (a tag to add
    /// or remove), `None` if it goes to the TAP as it is.
    pub fn admit(
        &mut self,
        now: Instant,
        i: usize,
        frame: &[u8],
    ) -> Result<Option<Ingress>, DropReason> {
        // HOT PATH
        if vlan::is_truncated_tag(frame) {
            return Err(DropReason::Runt);
        }
        let p = self
            .peers
            .get_mut(i)
            .and_then(Option::as_mut)
            .ok_or(DropReason::UnknownSession)?;
        let ing = p.vlan.ingress(frame).ok_or(DropReason::VlanFiltered)?;
        let as_is = self
            .vlan
            .egress(ing.vid)
            .keeps_form(ing)
            .ok_or(DropReason::VlanFiltered)?;
        p.rx_frames += 1;
        if let Ok(f) = Frame::new_checked(frame) {
            self.learn_mac(now, i, ing.vid, f.src());
        }
        Ok((!as_is).then_some(ing))
    }

    /// Peer `i` claims `mac` in VLAN `vid`. Refused (and counted): one of
    /// our own MACs, one the switch placed behind another member (in any
    /// VLAN: `MacOwners` carries none), and any past the peer's limit or the
    /// table's (aged entries make room at the next `handle_timeout`).
    fn learn_mac(&mut self, now: Instant, i: usize, vid: Vid, mac: MacAddr) {
        // HOT PATH (a refresh is one lookup)
        if !mac.is_valid_source() || self.macs.refresh(now, vid, mac, i) {
            return;
        }
        if self.local_macs.contains_key(&mac) {
            // A peer claiming one of our own hosts' MACs: never.
            self.mac_counters.refused_local += 1;
            return;
        }
        let Some(key) = self.peers[i].as_ref().map(|p| p.key) else {
            return;
        };
        if self
            .owners
            .get(&mac)
            .is_some_and(|(k, t)| *k != key && now.saturating_duration_since(*t) < MAC_AGING)
        {
            self.mac_counters.refused_owner += 1;
            return;
        }
        if let Learned::Moved { from } = self.macs.learn(now, vid, mac, i) {
            self.moves_pending.0 += 1;
            self.moves_pending.1 = Some((mac, from, i));
        }
    }

    /// The switch saw `macs` behind the member with `key`: no other peer may
    /// claim them, and one that did loses them. `MacOwners` names no VLAN
    /// (and the switch tells us only of MACs in VLANs we are a member of),
    /// so this holds in every VLAN: a MAC the switch placed behind one
    /// member is claimed by no other peer in any VLAN.
    pub fn set_owners(&mut self, now: Instant, key: PublicKey, mut macs: Vec<MacAddr>) {
        if self.owners.len() + macs.len() > OWNER_LIMIT {
            self.owners
                .retain(|_, (_, t)| now.saturating_duration_since(*t) < MAC_AGING);
        }
        let mut taken = 0;
        for mac in &macs {
            if self.owners.len() >= OWNER_LIMIT && !self.owners.contains_key(mac) {
                break;
            }
            self.owners.insert(*mac, (key, now));
            taken += 1;
        }
        macs.truncate(taken);
        if macs.is_empty() {
            return;
        }
        macs.sort_unstable();
        let peers = &self.peers;
        self.macs.retain(|_, mac, e| {
            let Some(p) = peers.get(e.port).and_then(|p| p.as_ref()) else {
                return true;
            };
            p.key == key || macs.binary_search(&mac).is_err()
        });
    }

    /// A frame the switch relayed to us (`frame` starts at the Ethernet
    /// header, in our port's form). Unicast from a MAC we route to a peer
    /// (in the frame's VLAN) over a direct path
    /// means that peer sends to us through the switch: its direct path is
    /// probably down. Relay to it at once and `Ping` it; the path is lost
    /// unless it answers within [`PEER_PROBE_TIMEOUT`].
    pub fn note_relayed(&mut self, now: Instant, frame: &[u8], tx: &mut TxQueue) {
        // HOT PATH (one lookup per relayed frame)
        let Ok(f) = Frame::new_checked(frame) else {
            return;
        };
        if f.dst().is_group() {
            return; // group traffic always goes via the switch
        }
        let Some(ing) = self.vlan.ingress(frame) else {
            return;
        };
        let Some(i) = self.macs.lookup(now, ing.vid, &f.src()) else {
            return;
        };
        let timeout = self.probe_timeout(i);
        let Some(p) = self.peers.get_mut(i).and_then(|p| p.as_mut()) else {
            return;
        };
        if !p.is_direct(now)
            || p.suspect_until.is_some()
            || p.hint_disproved
                .is_some_and(|t| now.saturating_duration_since(t) < HINT_HOLDOFF)
        {
            return;
        }
        p.suspect_until = Some(now + timeout);
        self.ping(now, i, tx);
    }

    /// How long a `Ping` to peer `i` may stay unanswered.
    fn probe_timeout(&self, i: usize) -> Duration {
        let rtt = self
            .peers
            .get(i)
            .and_then(|p| p.as_ref())
            .and_then(|p| p.rtt)
            .unwrap_or_default();
        PEER_PROBE_TIMEOUT.max(rtt * 4)
    }

    /// Peer `i`'s reassembly buffer.
    pub fn reassembler(&mut self, i: usize) -> Option<&mut Reassembler> {
        self.peers.get_mut(i)?.as_mut().map(|p| &mut p.reassembly)
    }

    /// A control message from peer `i`.
    pub fn handle_control(
        &mut self,
        now: Instant,
        i: usize,
        payload: &[u8],
        tx: &mut TxQueue,
    ) -> Result<(), DropReason> {
        match Control::parse(payload).map_err(|_| DropReason::Control)? {
            Control::MacAnnounce { caps, macs } => {
                let Some(p) = self.peers[i].as_mut() else {
                    return Err(DropReason::UnknownSession);
                };
                p.accepts_vnet = caps & CAP_VNET != 0;
                // Announced MACs stand for untagged frames on the peer's
                // port: its native VLAN, if we share it.
                if let Some(vid) = p.vlan.native() {
                    for m in macs {
                        self.learn_mac(now, i, vid, m);
                    }
                }
            }
            Control::Ping(id) => self.send_control(now, i, &Control::Pong(id), tx),
            Control::Pong(id) => {
                if let Some(p) = self.peers[i].as_mut()
                    && let Some((sent_id, at)) = p.ping
                    && sent_id == id
                {
                    p.rtt = Some(now.saturating_duration_since(at));
                    p.ping = None;
                }
            }
            _ => return Err(DropReason::Control),
        }
        Ok(())
    }

    /// A handshake initiation: from a peer the switch vouched for, answer it
    /// (unless we win a simultaneous open) and keep the session pending until
    /// its first packet arrives.
    pub fn handle_init(
        &mut self,
        now: Instant,
        from: SocketAddr,
        h: &Header<&[u8]>,
        tx: &mut TxQueue,
    ) -> Result<(), DropReason> {
        if !self.enabled {
            return Err(DropReason::UnexpectedMessage);
        }
        self.guard.admit(now, from, h, tx)?;
        let inc = handshake::read_init(&self.local, &self.psk, h)
            .map_err(|_| DropReason::HandshakeFailed)?;
        let i = self.slot(&inc.peer).ok_or(DropReason::HandshakeFailed)?;
        let local_key = self.local_key;
        let index = self.new_index();
        let p = self.peers[i].as_mut().ok_or(DropReason::HandshakeFailed)?;
        if inc.timestamp <= p.last_timestamp {
            return Err(DropReason::Replay);
        }
        if p.handshake.is_some() && local_key.0 < p.key.0 {
            // Simultaneous open: our initiation wins; theirs is ignored.
            return Ok(());
        }
        p.last_timestamp = inc.timestamp;
        p.handshake = None;
        p.accepts_vnet = inc.caps & CAP_VNET != 0;
        let remote_index = inc.initiator_index;
        let mut out = [0u8; HS_RESP_LEN];
        let keys = inc
            .accept(self.network_id, index, &mut out)
            .map_err(|_| DropReason::HandshakeFailed)?;
        if let Some(old) = p.pending.take() {
            self.by_index.remove(&old.local_index());
        }
        p.pending = Some(Session::new(
            keys,
            index,
            remote_index,
            self.network_id,
            now,
        ));
        self.by_index.insert(index, i);
        if !tx.is_full() {
            let mut b = tx.buffer(HS_RESP_LEN);
            b[..HS_RESP_LEN].copy_from_slice(&out);
            b.truncate(HS_RESP_LEN);
            tx.push(from, b);
        }
        Ok(())
    }

    /// A cookie reply: `Ok(false)` if it answers none of our peer
    /// initiations (it may be the switch's). Like the uplink, the next
    /// initiation to that peer carries `mac2`; nothing is resent at once.
    pub fn handle_cookie_reply(
        &mut self,
        now: Instant,
        h: &Header<&[u8]>,
    ) -> Result<bool, DropReason> {
        let want = h.receiver_index();
        let Some(p) = self.peers.iter_mut().flatten().find(|p| {
            p.handshake
                .as_ref()
                .is_some_and(|f| f.initiation.sender_index() == want)
        }) else {
            return Ok(false);
        };
        let mac1 = p.handshake.as_ref().map(|f| f.initiation.mac1());
        let cookie = mac1
            .and_then(|m| MacKeys::new(&p.key).open_reply(&m, h).ok())
            .ok_or(DropReason::HandshakeFailed)?;
        p.cookies.store(now, cookie);
        Ok(true)
    }

    /// The guard's state, for `status`.
    pub fn guard_status(&self, now: Instant) -> GuardStatus {
        self.guard.status(now)
    }

    /// A handshake response: `Ok(false)` if it answers none of our peer
    /// initiations (it may be the switch's).
    pub fn handle_resp(
        &mut self,
        now: Instant,
        from: SocketAddr,
        h: &Header<&[u8]>,
        tx: &mut TxQueue,
    ) -> Result<bool, DropReason> {
        let want = h.receiver_index();
        let Some(i) = self.peers.iter().position(|p| {
            p.as_ref()
                .and_then(|p| p.handshake.as_ref())
                .is_some_and(|f| f.initiation.sender_index() == want)
        }) else {
            return Ok(false);
        };
        let p = self.peers[i].as_mut().ok_or(DropReason::HandshakeFailed)?;
        let inflight = p.handshake.as_mut().ok_or(DropReason::HandshakeFailed)?;
        // A forged or corrupted response leaves the initiation in flight.
        let (keys, remote_index) = inflight
            .initiation
            .finish(h)
            .map_err(|_| DropReason::ForgedResponse)?;
        p.handshake = None;
        let was_direct = p.is_direct(now);
        let session = Session::new(keys, want, remote_index, self.network_id, now);
        if let Some(old) = p.previous.take() {
            self.by_index.remove(&old.local_index());
        }
        p.previous = p.current.replace(session);
        p.endpoint = Some(from);
        p.last_handshake = Some(now);
        p.awaiting_since = None;
        p.probe_sent = false;
        self.by_index.insert(want, i);
        // Confirm at once (the responder waits for a packet) and measure RTT.
        self.ping(now, i, tx);
        if !was_direct {
            self.path_up(now, i, tx);
        }
        Ok(true)
    }

    fn ping(&mut self, now: Instant, i: usize, tx: &mut TxQueue) {
        let id: u64 = self.rng.random();
        if let Some(p) = self.peers[i].as_mut() {
            p.ping = Some((id, now));
        }
        self.send_control(now, i, &Control::Ping(id), tx);
    }

    fn new_index(&mut self) -> u32 {
        loop {
            let i: u32 = self.rng.random();
            if !self.by_index.contains_key(&i) {
                return i;
            }
        }
    }

    fn timestamp(&mut self, now: Instant) -> Timestamp {
        let t = self.wall_base.1 + now.saturating_duration_since(self.wall_base.0);
        let mut ts = Timestamp::from_unix(t.as_secs(), t.subsec_nanos());
        if ts <= self.last_timestamp {
            ts = crate::core::bump(self.last_timestamp);
        }
        self.last_timestamp = ts;
        ts
    }

    fn start_handshake(&mut self, now: Instant, i: usize, tx: &mut TxQueue) {
        let index = self.new_index();
        let ts = self.timestamp(now);
        let Some(p) = self.peers[i].as_mut() else {
            return;
        };
        let mut out = [0u8; HS_INIT_LEN];
        let Ok(initiation) = handshake::initiate(
            &self.local,
            &p.key,
            &self.psk,
            self.network_id,
            index,
            ts,
            self.caps,
            p.cookies.current(now),
            &mut out,
        ) else {
            return;
        };
        p.handshake = Some(InFlight {
            initiation,
            sent_at: now,
        });
        // To every candidate at once: whichever answers becomes the endpoint.
        for to in p.targets() {
            if tx.is_full() {
                break;
            }
            let mut b = tx.buffer(HS_INIT_LEN);
            b[..HS_INIT_LEN].copy_from_slice(&out);
            b.truncate(HS_INIT_LEN);
            tx.push(to, b);
        }
    }

    fn lose(&mut self, i: usize, now: Instant) {
        let Some(p) = self.peers[i].as_mut() else {
            return;
        };
        let dead: Vec<u32> = p.indices().collect();
        p.current = None;
        p.previous = None;
        p.pending = None;
        p.awaiting_since = None;
        p.probe_sent = false;
        p.suspect_until = None;
        p.handshake = None;
        p.retry_delay = HANDSHAKE_RETRY_MIN;
        p.next_attempt = now;
        p.path_changes += 1;
        self.events.push(PathEvent {
            peer: p.name.clone(),
            path: Path::Relayed,
        });
        for d in dead {
            self.by_index.remove(&d);
        }
    }

    /// Run every peer's timers: liveness probes, path loss, handshake
    /// retries, rekeys, idle keepalives, fragment expiry.
    pub fn handle_timeout(&mut self, now: Instant, tx: &mut TxQueue) {
        if !self.enabled {
            return;
        }
        self.drop_unvouched(now);
        self.guard.sweep(now);
        self.macs.expire(now);
        let local_key = self.local_key;
        for i in 0..self.peers.len() {
            let probe_timeout = self.probe_timeout(i);
            let Some(p) = self.peers[i].as_mut() else {
                continue;
            };
            p.reassembly.expire(now);
            if p.pending
                .as_ref()
                .is_some_and(|s| s.age(now) >= PENDING_SESSION_TIMEOUT)
            {
                let s = p.pending.take();
                self.by_index.remove(&s.map_or(0, |s| s.local_index()));
            }
            let Some(p) = self.peers[i].as_mut() else {
                continue;
            };
            if p.previous.as_ref().is_some_and(|s| s.is_expired(now)) {
                let s = p.previous.take();
                self.by_index.remove(&s.map_or(0, |s| s.local_index()));
                continue;
            }
            if p.current.as_ref().is_some_and(|s| s.is_expired(now)) {
                self.lose(i, now);
                continue;
            }
            let Some(p) = self.peers[i].as_mut() else {
                continue;
            };
            if p.current.is_some() {
                if p.suspect_until.is_some_and(|t| now >= t) {
                    self.lose(i, now);
                    continue;
                }
                if let Some(since) = p.awaiting_since {
                    if now >= since + PEER_PROBE_AFTER + probe_timeout {
                        self.lose(i, now);
                        continue;
                    }
                    if now >= since + PEER_PROBE_AFTER && !p.probe_sent {
                        p.probe_sent = true;
                        self.ping(now, i, tx);
                        continue;
                    }
                }
                let Some(p) = self.peers[i].as_mut() else {
                    continue;
                };
                let age = p.current.as_ref().map_or(Duration::ZERO, |s| s.age(now));
                let we_rekey = local_key.0 < p.key.0 || age >= REKEY_AFTER_TIME + REKEY_GRACE;
                let rekey_due = age >= REKEY_AFTER_TIME && we_rekey;
                match &p.handshake {
                    Some(f) if now >= f.sent_at + p.retry_delay => {
                        p.retry_delay = (p.retry_delay * 2).min(PEER_RETRY_MAX);
                        self.start_handshake(now, i, tx);
                    }
                    None if rekey_due => self.start_handshake(now, i, tx),
                    _ => {}
                }
                let Some(p) = self.peers[i].as_mut() else {
                    continue;
                };
                if p.last_tx.is_none_or(|t| now >= t + KEEPALIVE_INTERVAL) {
                    self.ping(now, i, tx);
                }
                continue;
            }
            // No direct path: keep trying, with backoff.
            match &p.handshake {
                Some(f) if now >= f.sent_at + p.retry_delay => {
                    p.retry_delay = (p.retry_delay * 2).min(PEER_RETRY_MAX);
                    let jitter = self
                        .rng
                        .random_range(0..=p.retry_delay.as_millis() as u64 / 8);
                    p.retry_delay =
                        (p.retry_delay + Duration::from_millis(jitter)).min(PEER_RETRY_MAX);
                    self.start_handshake(now, i, tx);
                }
                Some(_) => {}
                None if now >= p.next_attempt => self.start_handshake(now, i, tx),
                None => {}
            }
        }
    }

    /// Apply renewals from the switch to the vouches of the peers it listed.
    fn apply_renewal(&mut self) {
        let Some(until) = self.renewed_at.map(|t| t + self.vouch_lifetime) else {
            return;
        };
        let all = !self.ends_seen;
        for p in self.peers.iter_mut().flatten() {
            if p.listed || all {
                p.vouched_until = p.vouched_until.max(until);
            }
        }
    }

    /// Drop the peers the switch no longer vouches for: missing from its
    /// complete list for [`UNLISTED_GRACE`], or whose vouch ran out.
    fn drop_unvouched(&mut self, now: Instant) {
        self.apply_renewal();
        let mut gone = Vec::new();
        for p in self.peers.iter().flatten() {
            if p.unlisted_since.is_some_and(|t| now >= t + UNLISTED_GRACE) {
                self.mac_counters.peers_unlisted += 1;
                gone.push(p.key);
            } else if now >= p.vouched_until {
                self.mac_counters.peers_expired += 1;
                gone.push(p.key);
            }
        }
        for key in gone {
            self.remove(&key);
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.enabled {
            return None;
        }
        let mut next: Option<Instant> = None;
        let mut at = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        if let Some(t) = self.macs.next_expiry() {
            at(t);
        }
        let renewed = self.renewed_at.map(|t| t + self.vouch_lifetime);
        for p in self.peers.iter().flatten() {
            // Renewals are applied lazily: wake at the later of the two.
            at(renewed
                .filter(|_| p.listed || !self.ends_seen)
                .map_or(p.vouched_until, |r| r.max(p.vouched_until)));
            if let Some(t) = p.unlisted_since {
                at(t + UNLISTED_GRACE);
            }
            if let Some(t) = p.suspect_until {
                at(t);
            }
            if let Some(s) = &p.pending {
                at(s.created() + PENDING_SESSION_TIMEOUT);
            }
            if let Some(s) = &p.previous {
                at(s.created() + overlay_proto::timers::REJECT_AFTER_TIME);
            }
            match (&p.current, &p.handshake) {
                (_, Some(f)) => at(f.sent_at + p.retry_delay),
                (None, None) => at(p.next_attempt),
                (Some(s), None) => at(s.created() + REKEY_AFTER_TIME),
            }
            if let Some(s) = &p.current {
                at(s.created() + overlay_proto::timers::REJECT_AFTER_TIME);
                at(p.last_tx.map_or(s.created(), |t| t + KEEPALIVE_INTERVAL));
                if let Some(since) = p.awaiting_since {
                    at(if p.probe_sent {
                        since
                            + PEER_PROBE_AFTER
                            + PEER_PROBE_TIMEOUT.max(p.rtt.unwrap_or_default() * 4)
                    } else {
                        since + PEER_PROBE_AFTER
                    });
                }
            }
        }
        next
    }

    /// Each peer's path, for `status`.
    pub fn status(&self, now: Instant) -> Vec<PeerStatus> {
        let ago = |t: Option<Instant>| t.map(|t| now.saturating_duration_since(t).as_secs_f64());
        self.peers
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Some((i, p.as_ref()?)))
            .map(|(i, p)| PeerStatus {
                name: p.name.clone(),
                public_key: p.key.to_base64(),
                path: if p.is_direct(now) {
                    Path::Direct
                } else {
                    Path::Relayed
                },
                endpoint: p
                    .endpoint
                    .filter(|_| p.is_direct(now))
                    .map(|e| e.to_string()),
                candidates: p.candidates.iter().map(|c| c.to_string()).collect(),
                last_handshake_secs_ago: ago(p.last_handshake),
                rtt_secs: p.rtt.map(|d| d.as_secs_f64()),
                tx_frames: p.tx_frames,
                rx_frames: p.rx_frames,
                path_changes: p.path_changes,
                macs: self.macs.count_for(i),
                vlans: match p.vlan {
                    PortVlan::Transparent => Vec::new(),
                    PortVlan::Member { .. } => p.vlan.vlans().collect(),
                },
                vouch_secs_left: p
                    .vouched_until
                    .max(
                        self.renewed_at
                            .filter(|_| p.listed || !self.ends_seen)
                            .map_or(now, |t| t + self.vouch_lifetime),
                    )
                    .saturating_duration_since(now)
                    .as_secs_f64(),
            })
            .collect()
    }

    /// The path to the peer named `name` (tests, status).
    pub fn path_of(&self, now: Instant, name: &str) -> Option<Path> {
        let p = self.peers.iter().flatten().find(|p| p.name == name)?;
        Some(if p.is_direct(now) {
            Path::Direct
        } else {
            Path::Relayed
        })
    }
}

fn note_sent(p: &mut Peer, now: Instant) {
    p.last_tx = Some(now);
    if p.awaiting_since.is_none() {
        p.awaiting_since = Some(now);
    }
}
