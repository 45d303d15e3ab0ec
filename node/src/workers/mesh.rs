//! Sealing for mesh peers on the workers: what they may decide themselves.
//!
//! In mesh mode the node task publishes a [`MeshPath`], a read-only copy
//! of what [`Peers::route`] and [`Peers::note_local_mac`] decide by: the
//! peers on a direct path (their current session's shared [`Sender`] and
//! endpoint, whether they take offloaded frames), the (VLAN, MAC) pairs
//! learned behind them in VLANs they are members of, our own port, and our
//! source MACs with when each is due to be announced again. A worker seals
//! a frame for a peer only if the copy routes it there and its source MAC
//! was announced; everything else (group and unknown destinations, peers
//! relayed or suspect, a new source MAC, a frame the node would drop) goes
//! to the node task as before, which decides, announces and counts as with
//! one worker. A source MAC due to be announced again (every
//! [`ANNOUNCE_EVERY`](crate::peers)) does not move its flows to the node
//! task, which would reorder them: the worker seals the frame and asks the
//! node task, once per copy, to announce the MAC ([`Route::announce`]).
//!
//! What the node task needs from those sends is kept per peer slot in a
//! [`PeerTx`]: the frames sealed (folded into the peer's `tx_frames`) and a
//! flag that the node task is to note them (the peer then owes an answer,
//! so a silent direct path is probed and falls back to relayed as when the
//! node task seals). The first send after each fold wakes the node task;
//! it folds at most every [`FOLD_EVERY`] (a flow the workers seal without
//! answers, such as a UDP stream, does not wake it per frame), so a probe
//! may start up to that much later than the 0.3 s after the first
//! unanswered send.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use overlay_proto::ethernet::{Frame, MacAddr};
use overlay_proto::session::Sender;
use overlay_proto::vlan::{self, PortVlan, Vid};
use overlay_proto::wire::FLAG_VNET;

use std::time::Duration;

use crate::engine::Node;
use crate::engine::tap::{split_checked, travel_form};
use crate::peers::{DirectRoute, Peers};

/// The frames a worker seals: the largest datagram, the MTU, whether the
/// TAP gives a virtio header.
#[derive(Debug, Clone, Copy)]
pub struct Geometry {
    /// The largest datagram; longer payloads travel as fragments.
    pub max_datagram: usize,
    /// Frames above this IP MTU are dropped.
    pub mtu: usize,
    /// Frames read from the TAP start with a virtio header.
    pub vnet: bool,
}

impl Geometry {
    /// The node's, for a TAP read with a virtio header if `vnet`.
    pub fn of(core: &Node, vnet: bool) -> Geometry {
        Geometry {
            max_datagram: core.max_datagram(),
            mtu: core.mtu(),
            vnet,
        }
    }
}

/// The node task takes note of the workers' sends at most this often.
pub const FOLD_EVERY: Duration = Duration::from_millis(20);

/// What identifies a published peer route: the peer's slot, its session
/// (local index and creation), endpoint and offload.
type MeshKey = (usize, u32, Instant, SocketAddr, bool);

fn mesh_key(d: DirectRoute<'_>) -> MeshKey {
    let s = d.session;
    (d.peer, s.local_index(), s.created(), d.to, d.accepts_vnet)
}

/// The node task's side: makes a [`MeshPath`] when what it is made from
/// changed, and takes note of what the workers sealed.
#[derive(Debug, Default)]
pub struct MeshRoutes {
    /// The [`Peers::generation`] and the direct peers the latest copy was
    /// made from (`None`: none published).
    published: Option<(u64, Vec<MeshKey>)>,
    /// What the workers sealed, per peer slot.
    peer_tx: Vec<Arc<PeerTx>>,
    /// The last fold took note of sends: the next not before this.
    next_fold: Option<Instant>,
}

impl MeshRoutes {
    /// `Some` if what the workers are to seal by changed since the last
    /// call: a new copy of the routes of `peers` (`None` in it: nothing to
    /// seal, mesh mode off or no direct peer). `None` while nothing
    /// changed: [`Peers::generation`] (MACs, ports, our local MACs) and the
    /// direct peers (up, down, suspect, rekeyed, moved) are compared
    /// without allocating.
    pub fn refresh(
        &mut self,
        peers: Option<&Peers>,
        geometry: Geometry,
        now: Instant,
    ) -> Option<Option<MeshPath>> {
        let same = match (peers, &self.published) {
            (None, None) => true,
            (Some(p), Some((generation, keys))) => {
                p.generation() == *generation
                    && keys.iter().copied().eq(p.direct_peers(now).map(mesh_key))
            }
            _ => false,
        };
        if same {
            return None;
        }
        self.published =
            peers.map(|p| (p.generation(), p.direct_peers(now).map(mesh_key).collect()));
        let peer_tx = &mut self.peer_tx;
        let path = peers.map(|p| {
            MeshPath::new(
                geometry,
                p.port_vlan().clone(),
                p.direct_peers(now),
                p.member_macs(now),
                p.local_macs_due(),
                |slot| {
                    if peer_tx.len() <= slot {
                        peer_tx.resize_with(slot + 1, Arc::default);
                    }
                    Arc::clone(&peer_tx[slot])
                },
            )
        });
        Some(path.filter(|m| !m.is_empty()))
    }

    /// Hand what the workers sealed for each peer to the node task
    /// ([`Node::sent_elsewhere`]: `tx_frames`, and the liveness of the
    /// peer's direct path), unless the last fold that found sends was
    /// less than [`FOLD_EVERY`] ago ([`poll_timeout`](Self::poll_timeout)).
    pub fn fold(&mut self, core: &mut Node, now: Instant) {
        if self.next_fold.is_some_and(|t| now < t) {
            return;
        }
        self.fold_now(core, now);
    }

    /// [`fold`](Self::fold) whenever the last one ran.
    pub fn fold_now(&mut self, core: &mut Node, now: Instant) {
        let mut found = false;
        for (slot, tx) in self.peer_tx.iter().enumerate() {
            if let Some(frames) = tx.take() {
                core.sent_elsewhere(now, slot, frames);
                found = true;
            }
        }
        self.next_fold = found.then_some(now + FOLD_EVERY);
    }

    /// When [`fold`](Self::fold) is to run again: the workers' sends
    /// since the last one wake nobody until then.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_fold
    }
}

/// What the workers sealed for one peer slot, for the node task.
#[derive(Debug, Default)]
pub struct PeerTx {
    frames: AtomicU64,
    pending: AtomicBool,
}

impl PeerTx {
    /// A frame sealed and sent; true if the node task is to be woken (the
    /// first since it last took them).
    pub fn sealed(&self) -> bool {
        // HOT PATH: the flag is read, and written once per fold.
        self.frames.fetch_add(1, Ordering::SeqCst);
        !self.pending.load(Ordering::SeqCst) && !self.pending.swap(true, Ordering::SeqCst)
    }

    /// The frames sealed since the last call, if any were.
    pub fn take(&self) -> Option<u64> {
        self.pending
            .swap(false, Ordering::SeqCst)
            .then(|| self.frames.swap(0, Ordering::SeqCst))
    }
}

/// One peer a worker may seal for.
#[derive(Debug)]
pub struct PeerRoute {
    /// Its current session's sending half.
    pub sender: Sender,
    /// Its endpoint.
    pub to: SocketAddr,
    accepts_vnet: bool,
    /// What the workers sealed for it: call [`PeerTx::sealed`] after each
    /// frame sent.
    pub tx: Arc<PeerTx>,
}

/// The read-only copy of the mesh routes the workers seal by.
#[derive(Debug)]
pub struct MeshPath {
    /// How frames are sealed.
    pub geometry: Geometry,
    vlan: PortVlan,
    /// The peer (in `peers`) behind each (VLAN, MAC).
    routes: HashMap<(Vid, MacAddr), usize>,
    peers: Vec<PeerRoute>,
    /// Our announced source MACs.
    local: HashMap<MacAddr, LocalMac>,
}

/// One of our announced source MACs.
#[derive(Debug)]
struct LocalMac {
    /// When it is due to be announced again.
    due: Instant,
    /// A worker asked the node task to announce it.
    asked: AtomicBool,
}

/// Where a worker seals a frame.
#[derive(Debug)]
pub struct Route<'a> {
    /// The peer.
    pub peer: &'a PeerRoute,
    /// The frame's source MAC is due to be announced again, and no worker
    /// asked for it yet under this copy: hand it to the node task
    /// ([`Node::note_local_mac`]).
    pub announce: Option<MacAddr>,
}

impl MeshPath {
    /// A copy of the routes to `direct` peers through `macs` (VLAN, MAC,
    /// peer slot), our port `vlan`, and our source MACs `local` (with when
    /// each is due to be announced again). `tx(slot)` is that slot's
    /// bookkeeping.
    fn new<'a>(
        geometry: Geometry,
        vlan: PortVlan,
        direct: impl Iterator<Item = DirectRoute<'a>>,
        macs: impl Iterator<Item = (Vid, MacAddr, usize)>,
        local: impl Iterator<Item = (MacAddr, Instant)>,
        mut tx: impl FnMut(usize) -> Arc<PeerTx>,
    ) -> MeshPath {
        let mut slots = HashMap::new();
        let mut peers = Vec::new();
        for d in direct {
            slots.insert(d.peer, peers.len());
            peers.push(PeerRoute {
                sender: d.session.sender(),
                to: d.to,
                accepts_vnet: d.accepts_vnet,
                tx: tx(d.peer),
            });
        }
        let routes = macs
            .filter_map(|(vid, mac, slot)| Some(((vid, mac), *slots.get(&slot)?)))
            .collect();
        MeshPath {
            geometry,
            vlan,
            routes,
            peers,
            local: local
                .map(|(mac, due)| {
                    let asked = AtomicBool::new(false);
                    (mac, LocalMac { due, asked })
                })
                .collect(),
        }
    }

    /// Whether nothing can be sealed by it (no peer on a direct path).
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// The peer to seal `payload` (as read from the TAP) for, if the node
    /// task would send it there and has nothing else to do for it: see
    /// the module doc.
    pub fn route(&self, now: Instant, payload: &[u8]) -> Option<Route<'_>> {
        // HOT PATH: two hash lookups.
        let g = &self.geometry;
        let (hdr, frame) = split_checked(g.vnet, g.mtu, payload).ok()?;
        let (flags, _) = travel_form(hdr);
        if vlan::is_truncated_tag(frame) {
            return None;
        }
        let f = Frame::new_checked(frame).ok()?;
        let src = f.src();
        let local = if src.is_valid_source() {
            Some(self.local.get(&src)?)
        } else {
            None
        };
        let vid = self.vlan.ingress(frame)?.vid;
        let p = &self.peers[*self.routes.get(&(vid, f.dst()))?];
        if flags & FLAG_VNET != 0 && !p.accepts_vnet || p.sender.is_expired(now) {
            return None;
        }
        let due = local.filter(|l| now >= l.due && !l.asked.load(Ordering::Relaxed));
        let announce = due.filter(|l| !l.asked.swap(true, Ordering::Relaxed));
        Some(Route {
            peer: p,
            announce: announce.map(|_| src),
        })
    }
}
