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
//! the node's `vouch-lifetime-secs` (default [`DEFAULT_VOUCH_LIFETIME`]) past the last
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
use overlay_proto::ethernet::{Frame, MacAddr};
use overlay_proto::handshake::{self, CAP_VNET};
use overlay_proto::handshake_guard::{GuardConfig, GuardStatus, HandshakeGuard};
use overlay_proto::keys::{Psk, PublicKey, StaticSecret};
use overlay_proto::mac_table::{Learned, MAC_AGING, MAC_LIMIT, MacTable};
#[cfg(doc)]
use overlay_proto::timers::REKEY_AFTER_TIME;
use overlay_proto::transmit::TxQueue;
use overlay_proto::tunnel::{
    Ctx, IndexTable, Local, Role, Sealed, Tunnel, TunnelConfig, TunnelEvent,
};
use overlay_proto::vlan::{self, EgressForm, Ingress, PortVlan, Vid};
use overlay_proto::wire::{FLAG_CONTROL, Header};
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

/// Who owns a receiver index of this node: the uplink to the switch, or
/// the mesh peer in that slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexOwner {
    /// The session with the switch.
    Uplink,
    /// A mesh peer.
    Peer(usize),
}

/// Where one peer's initiations go: its endpoint and candidates.
type Targets = ([SocketAddr; MAX_ENDPOINTS + 1], usize);

#[derive(Debug)]
#[cfg_attr(fuzzing, derive(Clone))]
struct Peer {
    /// Sessions, handshakes, liveness and reassembly with it; its endpoint.
    tunnel: Tunnel<IndexOwner>,
    name: String,
    /// Its port, restricted to the VLANs we share.
    vlan: PortVlan,
    candidates: Vec<SocketAddr>,
    ping: Option<(u64, Instant)>,
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
    fn key(&self) -> PublicKey {
        *self.tunnel.remote_key()
    }

    fn is_direct(&self, now: Instant) -> bool {
        self.tunnel.is_up(now)
    }

    fn accepts_vnet(&self) -> bool {
        self.tunnel.remote_caps() & CAP_VNET != 0
    }

    /// Its endpoint, then its other candidates.
    fn targets(&self) -> Targets {
        let mut t = ([SocketAddr::from(([0, 0, 0, 0], 0)); MAX_ENDPOINTS + 1], 0);
        for c in self.tunnel.endpoint().iter().chain(&self.candidates) {
            if t.1 < t.0.len() && !t.0[..t.1].contains(c) {
                t.0[t.1] = *c;
                t.1 += 1;
            }
        }
        t
    }
}

/// All peers of a mesh node.
#[derive(Debug)]
#[cfg_attr(fuzzing, derive(Clone))]
pub struct Peers {
    enabled: bool,
    /// Our key, network and capabilities, for every handshake (the uplink's too).
    local: Local,
    /// The node's receiver indices: the peers' and the uplink's.
    indices: IndexTable<IndexOwner>,
    /// `mac1`, load, `mac2` and per-prefix limits before any Diffie-Hellman
    /// on a peer's initiation, as at the switch.
    guard: HandshakeGuard,
    /// Our own port, as the switch told us.
    vlan: PortVlan,
    peers: Vec<Option<Peer>>,
    /// The peer (slot) behind each MAC, per VLAN: [`MAC_LIMIT`] in all,
    /// [`MAC_LIMIT_PER_PEER`] per peer. Aged in `handle_timeout`.
    macs: MacTable<usize>,
    local_macs: HashMap<MacAddr, Instant>,
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
        let caps = if offload { CAP_VNET } else { 0 };
        let local = Local::new(local, psk, network_id, caps, wall_base.0, wall_base.1);
        Peers {
            enabled: false,
            guard: HandshakeGuard::new(GuardConfig::default(), &local.public, wall_base.0),
            local,
            indices: IndexTable::new(seed),
            vlan: PortVlan::Transparent,
            peers: Vec::new(),
            macs: MacTable::new(MAC_AGING, MAC_LIMIT_PER_PEER, MAC_LIMIT),
            local_macs: HashMap::new(),
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

    /// The node's identity and index table, which the uplink shares.
    pub fn endpoint(&mut self) -> (&Local, &mut IndexTable<IndexOwner>) {
        (&self.local, &mut self.indices)
    }

    /// Who holds receiver index `index`.
    pub fn index_owner(&self, index: u32) -> Option<IndexOwner> {
        // HOT PATH
        self.indices.get(index)
    }

    fn tunnel_config(&self, key: &PublicKey) -> TunnelConfig {
        TunnelConfig {
            // The lower key rekeys first; the other only if it has not.
            rekey_grace: if self.local.public.0 < key.0 {
                Duration::ZERO
            } else {
                REKEY_GRACE
            },
            probe_after: PEER_PROBE_AFTER,
            probe_timeout: PEER_PROBE_TIMEOUT,
            retry_max: PEER_RETRY_MAX,
            ..TunnelConfig::new(Role::Both)
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
            let keys: Vec<PublicKey> = self.peers.iter().flatten().map(Peer::key).collect();
            for k in &keys {
                self.remove(k);
            }
            self.vlan = vlan;
        }
    }

    /// Whether `index` is one of our peer sessions, and whose.
    pub fn lookup(&self, index: u32) -> Option<usize> {
        match self.indices.get(index)? {
            IndexOwner::Peer(i) => Some(i),
            IndexOwner::Uplink => None,
        }
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
            .position(|p| p.as_ref().is_some_and(|p| p.key() == *key))
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
        if key == self.local.public {
            return;
        }
        let Some(vlan) = vlan.shared_with(&self.vlan) else {
            self.remove(&key);
            return;
        };
        let i = match self.slot(&key) {
            Some(i) => i,
            None => {
                let i = self
                    .peers
                    .iter()
                    .position(Option::is_none)
                    .unwrap_or(self.peers.len());
                let cfg = self.tunnel_config(&key);
                let peer = Peer {
                    tunnel: Tunnel::new(now, IndexOwner::Peer(i), key, cfg),
                    name: String::new(),
                    vlan: PortVlan::Transparent,
                    candidates: Vec::new(),
                    ping: None,
                    tx_frames: 0,
                    rx_frames: 0,
                    path_changes: 0,
                    listed: true,
                    unlisted_since: None,
                    vouched_until: now + self.vouch_lifetime,
                    suspect_until: None,
                    hint_disproved: None,
                };
                if i == self.peers.len() {
                    self.peers.push(Some(peer));
                } else {
                    self.peers[i] = Some(peer);
                }
                i
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
            p.tunnel.restart_handshakes(now, &mut self.indices);
        }
    }

    /// The switch said a member left.
    pub fn remove(&mut self, key: &PublicKey) {
        let Some(i) = self.slot(key) else { return };
        if let Some(mut p) = self.peers[i].take() {
            p.tunnel.close(&mut self.indices);
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
        (member && p.is_direct(now) && p.suspect_until.is_none() && (!vnet || p.accepts_vnet()))
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
        let r = match p.tunnel.seal(now, flags, buf, plen, max, tx)? {
            Sealed::InPlace(r) => Some((p.tunnel.endpoint().ok_or(DropReason::NoSession)?, r)),
            Sealed::Queued(_) => None,
        };
        p.tx_frames += 1;
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
            caps: self.local.caps,
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
        let caps = self.local.caps;
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
        self.control.clear();
        msg.emit(&mut self.control);
        let parts: [&[u8]; 1] = [&self.control];
        // A `Pong` owes the peer nothing, so it does not wait for an answer.
        let _ = if matches!(msg, Control::Pong(_)) {
            p.tunnel
                .send_reply(now, FLAG_CONTROL, &parts, usize::MAX, tx)
        } else {
            p.tunnel.send(now, FLAG_CONTROL, &parts, usize::MAX, tx)
        };
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
        let p = self.peers[i].as_mut().ok_or(DropReason::UnknownSession)?;
        let opened = p.tunnel.open(now, from, &mut self.indices, buf)?;
        if p.suspect_until.take().is_some() {
            p.hint_disproved = Some(now);
        }
        self.tunnel_events(now, i, tx);
        Ok(opened.range)
    }

    /// Act on what peer `i`'s tunnel reports.
    fn tunnel_events(&mut self, now: Instant, i: usize, tx: &mut TxQueue) {
        while let Some(e) = self.peers[i].as_mut().and_then(|p| p.tunnel.poll_event()) {
            match e {
                TunnelEvent::Established { rekey: false } => self.path_up(now, i, tx),
                TunnelEvent::Lost => {
                    if let Some(p) = self.peers[i].as_mut() {
                        p.suspect_until = None;
                        p.path_changes += 1;
                        self.events.push(PathEvent {
                            peer: p.name.clone(),
                            path: Path::Relayed,
                        });
                    }
                }
                TunnelEvent::ProbeDue | TunnelEvent::KeepaliveDue => self.ping(now, i, tx),
                _ => {}
            }
        }
    }

    fn path_up(&mut self, now: Instant, i: usize, tx: &mut TxQueue) {
        if let Some(p) = self.peers[i].as_mut() {
            p.path_changes += 1;
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
        let Some(key) = self.peers[i].as_ref().map(Peer::key) else {
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
            p.key() == key || macs.binary_search(&mac).is_err()
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
            .and_then(|p| p.tunnel.rtt())
            .unwrap_or_default();
        PEER_PROBE_TIMEOUT.max(rtt * 4)
    }

    /// A fragment (decrypted payload) from peer `i`: the whole payload
    /// once complete, valid until the next call.
    pub fn reassemble(
        &mut self,
        now: Instant,
        i: usize,
        payload: &[u8],
    ) -> Result<Option<&[u8]>, DropReason> {
        let p = self
            .peers
            .get_mut(i)
            .and_then(Option::as_mut)
            .ok_or(DropReason::UnknownSession)?;
        p.tunnel
            .reassemble(now, payload)
            .map_err(|_| DropReason::Fragment)
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
                p.tunnel.set_remote_caps(caps);
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
                    p.tunnel.note_rtt(now.saturating_duration_since(at));
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
        let inc = handshake::read_init(&self.local.secret, &self.local.psk, h)
            .map_err(|_| DropReason::HandshakeFailed)?;
        let i = self.slot(&inc.peer).ok_or(DropReason::HandshakeFailed)?;
        let p = self.peers[i].as_mut().ok_or(DropReason::HandshakeFailed)?;
        let mut ctx = Ctx {
            local: &self.local,
            indices: &mut self.indices,
            tx,
        };
        // A simultaneous open we win is ignored: our initiation stands.
        p.tunnel.handle_init(now, from, &mut ctx, inc)?;
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
        let Some(i) = self.lookup(h.receiver_index()) else {
            return Ok(false);
        };
        let p = self.peers[i].as_mut().ok_or(DropReason::HandshakeFailed)?;
        p.tunnel.handle_cookie_reply(now, h)?;
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
        let Some(i) = self.lookup(h.receiver_index()) else {
            return Ok(false);
        };
        let p = self.peers[i].as_mut().ok_or(DropReason::HandshakeFailed)?;
        // A forged or corrupted response leaves the initiation in flight.
        p.tunnel.handle_response(now, from, &mut self.indices, h)?;
        // Confirm at once (the responder waits for a packet) and measure RTT.
        self.ping(now, i, tx);
        self.tunnel_events(now, i, tx);
        Ok(true)
    }

    fn ping(&mut self, now: Instant, i: usize, tx: &mut TxQueue) {
        let id = self.indices.random();
        if let Some(p) = self.peers[i].as_mut() {
            p.ping = Some((id, now));
        }
        self.send_control(now, i, &Control::Ping(id), tx);
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
        for i in 0..self.peers.len() {
            let Some(p) = self.peers[i].as_mut() else {
                continue;
            };
            if p.tunnel.current().is_some() && p.suspect_until.is_some_and(|t| now >= t) {
                p.tunnel.lose(now, &mut self.indices);
            } else {
                let (targets, n) = p.targets();
                let mut ctx = Ctx {
                    local: &self.local,
                    indices: &mut self.indices,
                    tx: &mut *tx,
                };
                p.tunnel.handle_timeout(now, &mut ctx, &targets[..n]);
            }
            self.tunnel_events(now, i, tx);
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
                gone.push(p.key());
            } else if now >= p.vouched_until {
                self.mac_counters.peers_expired += 1;
                gone.push(p.key());
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
            if let Some(t) = p.tunnel.poll_timeout() {
                at(t);
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
                public_key: p.key().to_base64(),
                path: if p.is_direct(now) {
                    Path::Direct
                } else {
                    Path::Relayed
                },
                endpoint: p
                    .tunnel
                    .endpoint()
                    .filter(|_| p.is_direct(now))
                    .map(|e| e.to_string()),
                candidates: p.candidates.iter().map(|c| c.to_string()).collect(),
                last_handshake_secs_ago: ago(p.tunnel.last_handshake()),
                rtt_secs: p.tunnel.rtt().map(|d| d.as_secs_f64()),
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
