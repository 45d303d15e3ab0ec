//! Sealing on several cores: a multi-queue TAP with one worker thread per
//! extra queue (`workers` in node.toml).
//!
//! The TAP is opened with `IFF_MULTI_QUEUE` and `workers` queues
//! ([`crate::tap`]). Queue 0 stays with the node task, which does
//! everything it did before: it reads that queue, receives and opens every
//! datagram, writes the TAP, and runs handshakes, control, mesh, timers.
//! Each other queue has a thread that reads frames and seals them under the
//! uplink's current session, through a [`Sender`] (the session's read-only
//! key and its shared atomic counter), and sends them on the node's UDP
//! socket
//! ([`ThreadSender`](tapmesh_shell::udp::ThreadSender)) to the switch.
//!
//! Which frames a worker reads is the kernel's choice: it sends a flow out
//! of the queue its frames were last written to. The node task writes every
//! frame of a flow to one worker queue ([`flow::queue_for`], a symmetric
//! flow hash), so each flow's outgoing direction is read and sealed by one
//! worker, in order, while its incoming direction is opened by the node
//! task, in order: no flow is reordered by the split. Queue 0 then only
//! sees a flow's first frames, before anything was written for it.
//!
//! Workers seal for the switch while the node task has published a
//! [`FastPath`]: central mode, one switch, a TAP as the only local port, a
//! live session. In mesh mode (one switch, a TAP as the only local port,
//! no live capture) they seal for the peers on a direct path while the
//! node task has published a [`MeshPath`] ([`mesh`]): known unicast to
//! such a peer from an announced source MAC; the rest (group and unknown
//! destinations, which go to the switch, relayed or suspect peers, a new
//! source MAC) goes to the node task. Otherwise (VM ports and userspace
//! hosts need the local switch, several switches learn local MACs, no
//! session or direct peer yet) a worker hands each frame to the node task
//! as if read from queue 0 (a copy per frame, over a bounded channel), and
//! the node task writes the TAP through queue 0 only, so flows move back
//! to it. A flow moving between queues or between a worker and the node
//! task (a path published or withdrawn, a new source MAC, a peer's path
//! changing) may see the frames in flight at that moment reordered once.
//!
//! Opening ([`open`]) has its own condition: the TAP is the only local
//! port and the uplink (with one switch) or a mesh peer has a live session
//! ([`Node::open_sessions`]).
//!
//! Liveness: for the uplink, the node task keeps its keepalives and probes
//! (it does not see the workers' sends, so an idle-looking uplink gets a
//! keepalive every 10 s even under load), and rekeys by age and by the
//! shared counter. For a mesh peer it does see them: the workers count
//! their sends per peer ([`mesh::PeerTx`]), and the node task folds them
//! into the peer's `tx_frames` and its tunnel's liveness after each turn
//! (woken by the first send since the last fold), so a silent direct path
//! is probed and relayed as when the node task seals. Fragmented frames carry frame ids from a range of the
//! worker's own (top bit set, worker index in bits 24..31), apart from the
//! node task's, which counts up from 0.
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Instant;

use overlay_proto::ethernet::MacAddr;
use overlay_proto::session::{Sender, Session};
use tapmesh_shell::udp::UdpLink;
use tokio::sync::{Notify, mpsc};

use crate::engine::{Node, Status};

mod coalesce;
pub mod config;
pub mod flow;
pub mod mesh;
pub mod open;
mod seal;
mod stats;

use mesh::{Geometry, MeshPath, MeshRoutes};
use open::{Datagram, OpenPath, Openers, Opening};
use stats::Stats;
use tapmesh_shell::udp::RecvBuffers;

/// Frames a worker hands to the node task that it could not seal itself,
/// queued before more are dropped (`tx_queue_full`).
const FALLBACK_QUEUE: usize = 1024;

/// Our source MACs the workers saw due to be announced again, queued for
/// the node task (at most one per MAC and published copy).
const ANNOUNCE_QUEUE: usize = 256;

/// What a worker needs to seal a frame from the TAP for the switch.
#[derive(Debug)]
pub struct FastPath {
    sender: Sender,
    to: SocketAddr,
    geometry: Geometry,
}

/// State shared by the node task and the workers.
#[derive(Debug, Default)]
struct Shared {
    path: RwLock<Option<Arc<FastPath>>>,
    /// Mesh mode: the routes to the peers on a direct path ([`mesh`]).
    mesh: RwLock<Option<Arc<MeshPath>>>,
    /// A worker sealed for a mesh peer: the node task is to take note.
    sealed: Notify,
    stop: AtomicBool,
}

impl Shared {
    fn path(&self) -> Option<Arc<FastPath>> {
        latest(&self.path)
    }

    fn mesh(&self) -> Option<Arc<MeshPath>> {
        latest(&self.mesh)
    }
}

/// What the node task published last in `slot`, if anything.
fn latest<T>(slot: &RwLock<Option<Arc<T>>>) -> Option<Arc<T>> {
    slot.read().map(|p| p.clone()).unwrap_or_default()
}

/// The sealing workers start (`sealing`, doing `what`) or stop sealing.
fn log_sealing(sealing: bool, what: &str) {
    tracing::debug!(
        sealing,
        "sealing workers: {}",
        if sealing {
            what
        } else {
            "leaving frames to the node task"
        }
    );
}

/// Wakes the node task when a worker sealed for a mesh peer.
#[derive(Debug, Clone)]
pub struct Signal(Arc<Shared>);

impl Signal {
    /// Until a worker sealed for a mesh peer since the node task last
    /// took note.
    pub async fn sealed(&self) {
        self.0.sealed.notified().await;
    }
}

/// Until `signal` fires, or never without workers.
pub async fn sealed(signal: Option<&Signal>) {
    match signal {
        Some(s) => s.sealed().await,
        None => std::future::pending().await,
    }
}

/// The sealing workers, as the node task holds them.
#[derive(Debug)]
pub struct Workers {
    shared: Arc<Shared>,
    /// The workers' TAP queues, for the node task's writes.
    queues: Vec<Arc<OwnedFd>>,
    stats: Vec<Arc<Stats>>,
    threads: Vec<JoinHandle<()>>,
    /// The session published (local index and creation), if any.
    published: Option<(u32, Instant)>,
    vnet: bool,
    fallback: mpsc::Receiver<Vec<u8>>,
    /// Our source MACs the workers saw due to be announced again.
    announce: mpsc::Receiver<MacAddr>,
    /// One opening thread per worker queue ([`open`]).
    openers: Openers,
    /// The sessions they open under, if any.
    open_path: Option<OpenPath>,
    /// The sessions published to them (local index and creation).
    open_published: Vec<(u32, Instant)>,
    /// Mesh mode: what the published [`MeshPath`] is made from.
    mesh: MeshRoutes,
    /// A [`MeshPath`] is published.
    mesh_fast: bool,
}

impl Workers {
    /// Start one worker per queue in `queues` (a multi-queue TAP's queues
    /// besides the node task's), sending on `udp`'s socket.
    pub fn start(
        queues: &[Arc<OwnedFd>],
        vnet: bool,
        opening: Opening,
        udp: &UdpLink,
    ) -> io::Result<Workers> {
        let shared = Arc::new(Shared::default());
        let (tx, rx) = mpsc::channel(FALLBACK_QUEUE);
        let (announce_tx, announce) = mpsc::channel(ANNOUNCE_QUEUE);
        let mut w = Workers {
            shared,
            queues: queues.to_vec(),
            stats: Vec::new(),
            threads: Vec::new(),
            published: None,
            vnet,
            fallback: rx,
            announce,
            openers: Openers::start(queues.len(), opening)?,
            open_path: None,
            open_published: Vec::new(),
            mesh: MeshRoutes::default(),
            mesh_fast: false,
        };
        for (i, q) in queues.iter().enumerate() {
            let stats = Arc::new(Stats::default());
            let worker = seal::Worker::new(
                i + 1,
                Arc::clone(q),
                Arc::clone(&w.shared),
                Arc::clone(&stats),
                udp.thread_sender()?,
                (tx.clone(), announce_tx.clone()),
            );
            let t = std::thread::Builder::new()
                .name(format!("tapmesh-seal-{}", i + 1))
                .spawn(move || worker.run())?;
            w.stats.push(stats);
            w.threads.push(t);
        }
        Ok(w)
    }

    /// Take note of what the workers sealed for mesh peers, publish the
    /// uplink's session or the mesh routes to the sealing workers and the
    /// sessions to open under to the opening threads, or withdraw them:
    /// called by the node task after each turn. `eligible`: the TAP is the
    /// only local port.
    pub fn refresh(&mut self, core: &mut Node, eligible: bool, now: Instant) {
        self.mesh.fold(core, now);
        while let Ok(mac) = self.announce.try_recv() {
            core.note_local_mac(now, mac);
        }
        self.refresh_open(core, eligible, now);
        self.refresh_seal(core, eligible, now);
        self.refresh_mesh(core, eligible, now);
    }

    /// What the node task wakes on when a worker sealed for a mesh peer.
    pub fn signal(&self) -> Signal {
        Signal(Arc::clone(&self.shared))
    }

    /// Publish a copy of the mesh routes to the sealing workers (mesh
    /// mode, see [`mesh`]) when what it is made from changed.
    fn refresh_mesh(&mut self, core: &Node, eligible: bool, now: Instant) {
        let peers = core.mesh_for_workers().filter(|_| eligible);
        let Some(path) = self.mesh.refresh(peers, self.geometry(core), now) else {
            return;
        };
        if self.mesh_fast != path.is_some() {
            log_sealing(
                path.is_some(),
                "sealing for the mesh peers on a direct path",
            );
        }
        self.mesh_fast = path.is_some();
        if let Ok(mut m) = self.shared.mesh.write() {
            *m = path.map(Arc::new);
        }
    }

    fn geometry(&self, core: &Node) -> Geometry {
        Geometry::of(core, self.vnet)
    }

    /// Publish the uplink's and the mesh peers' current sessions to the
    /// opening threads, again after each rekey or change of peers.
    fn refresh_open(&mut self, core: &Node, eligible: bool, now: Instant) {
        let key = |s: &Session| (s.local_index(), s.created());
        let sessions = || core.open_sessions(now).filter(|_| eligible);
        if self.open_published.iter().copied().eq(sessions().map(key)) {
            return;
        }
        self.open_published = sessions().map(key).collect();
        self.open_path = (!self.open_published.is_empty())
            .then(|| OpenPath::new(core.network_id(), sessions().map(Session::receiver)));
    }

    fn refresh_seal(&mut self, core: &Node, eligible: bool, now: Instant) {
        let session = core.plain_uplink(now).filter(|_| eligible);
        let key = session.map(|s| (s.local_index(), s.created()));
        if key == self.published {
            return;
        }
        self.published = key;
        log_sealing(key.is_some(), "sealing under the session with the switch");
        let path = session.map(|s| {
            Arc::new(FastPath {
                sender: s.sender(),
                to: core.uplink_destination(),
                geometry: self.geometry(core),
            })
        });
        if let Ok(mut p) = self.shared.path.write() {
            *p = path;
        }
    }

    /// Take note of what the workers sealed for mesh peers now, however
    /// recently the last note was taken (for a status snapshot).
    pub fn take_note(&mut self, core: &mut Node, now: Instant) {
        self.mesh.fold_now(core, now);
    }

    /// When [`refresh`](Self::refresh) has work even if nothing else
    /// happens: taking note of the workers' sends for mesh peers.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.mesh.poll_timeout()
    }

    /// The first `n` buffers of a receive batch, the datagrams of the
    /// published sessions opened by the node task and the opening threads
    /// together, if any session is published and the batch holds at least
    /// [`open::SPLIT_MIN_BYTES`] and splitting pays ([`open::gate`]);
    /// `None` otherwise (the node task opens the batch as it comes).
    pub fn open_batch<'a>(
        &mut self,
        now: Instant,
        rx: &'a mut RecvBuffers,
        n: usize,
    ) -> Option<Vec<Datagram<'a>>> {
        let path = self.open_path.as_ref()?;
        if !self.openers.splits(now) {
            return None;
        }
        let bytes: usize = rx.datagrams(n).map(|(_, d)| d.len()).sum();
        if bytes < open::SPLIT_MIN_BYTES {
            return None;
        }
        Some(self.openers.open(path, now, rx.datagrams(n)))
    }

    /// Whether the workers seal (and the TAP is written through their
    /// queues).
    pub fn is_fast(&self) -> bool {
        self.published.is_some() || self.mesh_fast
    }

    /// Write a frame for the TAP (local format) to its flow's worker queue.
    /// False if the kernel refused it.
    pub fn write_tap(&self, frame: &[u8]) -> bool {
        // HOT PATH
        let q = &self.queues[flow::queue_for(frame, self.vnet, self.queues.len())];
        crate::tap::write(q, frame).is_ok()
    }

    /// The next frame a worker could not seal, to handle as one read from
    /// the TAP.
    pub async fn fallback(&mut self) -> Option<Vec<u8>> {
        self.fallback.recv().await
    }

    /// Add the workers' counters to the node's status.
    pub fn add_to(&self, s: &mut Status) {
        for st in &self.stats {
            st.add_to(s);
        }
        s.counters.worker_opened_datagrams += self.openers.opened();
        s.counters.worker_open_pauses += self.openers.pauses();
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The next fallback frame of `workers`, or never if there are none.
pub async fn fallback(workers: Option<&mut Workers>) -> Option<Vec<u8>> {
    match workers {
        Some(w) => w.fallback().await,
        None => std::future::pending().await,
    }
}
