//! The fast path: what the core publishes so a worker can forward a plain
//! unicast frame itself, and the counters both share.
//!
//! The core decides (`Switch::fast_path`) which ports are eligible and
//! publishes them per network as one [`FastNet`]: each eligible port's send
//! half (the session's read-only key and its atomic counter, shared with the
//! core's own seals, so no nonce is used twice), endpoint and datagram size,
//! and the network's MAC table itself (the same `DashMap` the core learns
//! into, not a copy). A [`FastNet`] carries the epoch it was built at; the
//! core bumps its network's epoch whenever something that decides
//! eligibility changes (a node connects, rekeys, roams or is forgotten, a
//! reload, any admin request such as a mirror, a capture or an impairment),
//! and a worker that sees the epoch moved hands its datagrams to the core
//! until the core published again. When in doubt, the core.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use overlay_proto::mac_table::MacDashMap;
use overlay_proto::session::Sender;

use crate::NodeId;

/// What the workers forwarded for one port, folded into the port's counters
/// by the core (status and metrics).
#[derive(Debug, Default)]
pub struct PortTally {
    /// Frames received from the node and forwarded by a worker.
    pub rx_frames: AtomicU64,
    /// Their bytes.
    pub rx_bytes: AtomicU64,
    /// Frames a worker sent to the node.
    pub tx_frames: AtomicU64,
    /// Their bytes.
    pub tx_bytes: AtomicU64,
    /// When a worker last heard the node, in milliseconds since the
    /// network's start plus one (0: never): the core's liveness check reads it.
    pub heard_ms: AtomicU64,
}

impl PortTally {
    /// Note that an authentic datagram came from the node at `now`.
    pub fn heard(&self, base: Instant, now: Instant) {
        let ms = now.saturating_duration_since(base).as_millis() as u64 + 1;
        if self.heard_ms.load(Ordering::Relaxed) < ms {
            self.heard_ms.store(ms, Ordering::Relaxed);
        }
    }

    /// When a worker last heard the node, if ever.
    pub fn last_heard(&self, base: Instant) -> Option<Instant> {
        match self.heard_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(base + Duration::from_millis(ms - 1)),
        }
    }
}

/// One eligible port, as a worker needs it.
#[derive(Debug)]
pub struct FastPort {
    /// Its current session's send half.
    pub sender: Sender,
    /// Its current session's receiver index (datagrams from the node carry it).
    pub index: u32,
    /// Where the node is.
    pub endpoint: SocketAddr,
    /// The largest datagram towards it (larger payloads go as fragments).
    pub max_datagram: usize,
    /// It takes frames with a virtio-net header.
    pub accepts_vnet: bool,
    /// Its counters, shared with the core.
    pub tally: Arc<PortTally>,
}

/// One network's fast path, as the core built it at `epoch`.
#[derive(Debug)]
pub struct FastNet {
    /// The epoch it was built at.
    pub epoch: u64,
    /// The network's live epoch (the core's).
    pub live: Arc<AtomicU64>,
    /// The network's MAC table (the core's own map).
    pub macs: Arc<MacDashMap<NodeId>>,
    /// The MAC aging time (a worker refreshes an entry nearing it).
    pub aging: Duration,
    /// Eligible ports by node id (`None`: to the core).
    pub ports: Vec<Option<FastPort>>,
    /// Eligible ports by their current session's receiver index.
    pub by_index: HashMap<u32, NodeId>,
    /// Unicast frames the workers forwarded (the core adds them to its own).
    pub unicast: Arc<AtomicU64>,
    /// The network's start, the base of [`PortTally::heard_ms`].
    pub base: Instant,
}

impl FastNet {
    /// Still what the core would decide now.
    pub fn is_live(&self) -> bool {
        // HOT PATH: one atomic load.
        self.live.load(Ordering::Acquire) == self.epoch
    }

    /// The eligible port `id`.
    pub fn port(&self, id: NodeId) -> Option<&FastPort> {
        self.ports.get(id.0 as usize)?.as_ref()
    }
}

/// The published fast paths, by network id.
#[derive(Debug, Default)]
pub struct FastTable {
    by_network: DashMap<u32, Arc<FastNet>>,
    /// The epoch each network was last published at (also when nothing
    /// was eligible).
    epochs: DashMap<u32, u64>,
}

impl FastTable {
    /// Publish `net` for network `network` as its core decided at `epoch`,
    /// or withdraw it (`None`).
    pub fn publish(&self, network: u32, epoch: u64, net: Option<FastNet>) {
        self.epochs.insert(network, epoch);
        match net {
            Some(n) => {
                self.by_network.insert(network, Arc::new(n));
            }
            None => {
                self.by_network.remove(&network);
            }
        }
    }

    /// The published fast path of `network`, if live.
    pub fn get(&self, network: u32) -> Option<Arc<FastNet>> {
        // HOT PATH: one shard read lock, one atomic increment.
        let n = self.by_network.get(&network)?.clone();
        n.is_live().then_some(n)
    }

    /// The epoch `network` was last published at, if ever.
    pub fn epoch(&self, network: u32) -> Option<u64> {
        self.epochs.get(&network).map(|e| *e)
    }

    /// Withdraw every network not in `keep`.
    pub fn retain(&self, keep: impl Fn(u32) -> bool) {
        self.by_network.retain(|id, _| keep(*id));
        self.epochs.retain(|id, _| keep(*id));
    }
}
