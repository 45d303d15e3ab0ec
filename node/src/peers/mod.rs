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
use std::time::{Duration, Instant};

use overlay_proto::control::MAX_ENDPOINTS;
use overlay_proto::ethernet::MacAddr;
use overlay_proto::handshake::CAP_VNET;
use overlay_proto::handshake_guard::{GuardConfig, HandshakeGuard};
use overlay_proto::keys::{Psk, PublicKey, StaticSecret};
use overlay_proto::mac_table::{MAC_AGING, MAC_LIMIT, MacTable};
#[cfg(doc)]
use overlay_proto::timers::REKEY_AFTER_TIME;
use overlay_proto::transmit::TxQueue;
use overlay_proto::tunnel::{Ctx, IndexTable, Local, Role, Tunnel, TunnelConfig};
use overlay_proto::vlan::{PortVlan, Vid};
use serde::Serialize;

mod control;
mod macs;
mod membership;
mod path;
mod routes;
mod session;

pub use routes::DirectRoute;

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
    /// Changes to what routes frames ([`Peers::generation`]).
    generation: u64,
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
            generation: 0,
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
            self.changed();
        }
    }

    /// Whether `index` is one of our peer sessions, and whose.
    pub fn lookup(&self, index: u32) -> Option<usize> {
        match self.indices.get(index)? {
            IndexOwner::Peer(i) => Some(i),
            IndexOwner::Uplink => None,
        }
    }

    /// Peer `i`'s name and port (restricted to the VLANs we share), for
    /// live capture.
    pub fn port(&self, i: usize) -> Option<(&str, &PortVlan)> {
        let p = self.peers.get(i)?.as_ref()?;
        Some((&p.name, &p.vlan))
    }

    /// Every peer's name.
    pub fn names(&self) -> Vec<String> {
        self.peers
            .iter()
            .flatten()
            .map(|p| p.name.clone())
            .collect()
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

    /// Run every peer's timers: liveness probes, path loss, handshake
    /// retries, rekeys, idle keepalives, fragment expiry.
    pub fn handle_timeout(&mut self, now: Instant, tx: &mut TxQueue) {
        if !self.enabled {
            return;
        }
        self.drop_unvouched(now);
        self.guard.sweep(now);
        if self.macs.expire(now) > 0 {
            self.changed();
        }
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
