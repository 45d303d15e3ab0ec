//! The per-network switching engine, sans-IO: sessions with every admitted
//! node, MAC learning and forwarding.
//!
//! Inputs: [`Switch::handle_datagram`] for every UDP datagram received and
//! [`Switch::handle_timeout`] when [`Switch::poll_timeout`]'s deadline passes.
//! Outputs: [`Switch::poll_transmit`], to be drained after every input. Time is
//! always an argument; nothing here reads a clock or touches a socket.
//!
//! Frames are hop by hop: the switch decrypts a node's frame, decides where it
//! goes from the plaintext Ethernet header, and re-encrypts one copy per
//! receiving node under that node's session. Learning happens only after the
//! tag verified, from the sending node's own frame.
//!
//! # Rooms
//! - `admission`: datagrams in, handshakes, sessions, restart notices.
//! - `forwarding`: learning and the unicast, flood or multicast decision.
//! - `egress`: one sealed copy per receiver, fragments, the transmit queue.
//! - `port`: what the switch keeps per admitted node.
//! - `status`: the snapshot for `tapmesh-switch status`.
//! - `mesh`: mesh mode's control messages.
//! - `remote_members`: mesh mode across a cluster: members homed on other
//!   switches, announced to the nodes here.
//! - `impair`: frames through an impaired node's link.
//! - `mirror`: copies of a node's frames for a mirror port (SPAN).
//! - `capture`: the live capture hook (`crate::capture`).
//! - `reload`: a new configuration applied to a running engine.
//! - `trunk`: ports to the other switches of a cluster (split horizon,
//!   liveness, what this switch publishes).
//! - `snoop_controls`: static multicast router ports, the querier changed live.
//! - `announce`: what each switch tells the others over the trunks (VLANs
//!   served, groups wanted) and how floods and group traffic use it.

use overlay_proto::receiver::Receiver;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use overlay_proto::ethernet::MacAddr;
use overlay_proto::frag;
use overlay_proto::handshake_guard::{GuardConfig, HandshakeGuard};
use overlay_proto::keys::{Psk, PublicKey, StaticSecret};
use overlay_proto::mac_table::{MAC_AGING, MacDashMap, MacTable};
use overlay_proto::transmit::Transmit;
use overlay_proto::transmit::TxQueue;
use overlay_proto::tunnel::{Ctx, IndexTable, Local};

use crate::NodeId;
use crate::counters::{Drops, Forwarded, MacCounters, SessionCounters};
use crate::mesh::Mesh;
use crate::snooping::limits::GroupTotal;
use crate::snooping::{SnoopConfig, Snooping};
use crate::storm::{StormConfig, StormControl};
use crate::vlan::{PortVlan, Vid};
use crate::workers::gate::{self, SharedGuard};

mod admission;
mod announce;
mod capture;
mod egress;
mod fastpath;
mod forwarding;
mod impair;
mod mesh;
mod mirror;
mod port;
mod reload;
mod remote_members;
mod snoop_controls;
mod status;
mod trunk;
pub use announce::{ANNOUNCE_GAP, ANNOUNCE_REFRESH};
use port::Port;
pub use reload::{Changes, Unchangeable};
pub use trunk::{TRUNK_PROBE_AFTER, TRUNK_PROBE_TIMEOUT, TRUNK_RETRY_MAX};

/// How often [`Switch::handle_timeout`] sweeps timers and ages MACs.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(500);
/// The largest Ethernet frame the switch forwards: an offloaded TCP
/// super-frame of up to 64 KiB, as reassembly allows.
pub const MAX_FRAME: usize = frag::MAX_TOTAL;
/// Datagrams waiting in the transmit queue before new ones are dropped.
pub const TX_QUEUE_LIMIT: usize = 8192;

/// An admitted node, as configured.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Its name, for logs and status.
    pub name: String,
    /// Its static public key.
    pub public_key: PublicKey,
    /// Its VLAN membership (access port, trunk, or a VLAN-unaware switch).
    pub vlan: PortVlan,
    /// Prune its multicast memberships at once on a leave (no last-member
    /// query): for nodes with a single listener, such as a VM.
    pub fast_leave: bool,
    /// A static multicast router port: gets every multicast frame of its
    /// VLANs, joined or not (see `snooping::controls`).
    pub multicast_router: bool,
}

impl NodeSpec {
    /// A node on a VLAN-unaware switch, without fast-leave.
    pub fn new(name: impl Into<String>, public_key: PublicKey) -> NodeSpec {
        NodeSpec {
            name: name.into(),
            public_key,
            vlan: PortVlan::Transparent,
            fast_leave: false,
            multicast_router: false,
        }
    }
}

/// Everything the core needs, already validated.
#[derive(Debug, Clone)]
pub struct SwitchConfig {
    /// The switch's static key.
    pub private_key: StaticSecret,
    /// The network secret (all zeros if none).
    pub psk: Psk,
    /// The network id carried in every header.
    pub network_id: u32,
    /// The admitted nodes.
    pub nodes: Vec<NodeSpec>,
    /// MAC aging time.
    pub mac_aging: Duration,
    /// A node silent this long is forgotten and its MACs flushed.
    pub node_timeout: Duration,
    /// MACs one node may own.
    pub mac_limit_per_node: usize,
    /// MACs in the whole table.
    pub mac_table_limit: usize,
    /// The underlay's MTU towards the nodes: datagrams are kept within it
    /// (larger frames travel as fragments).
    pub underlay_mtu: usize,
    /// IGMP/MLD snooping and the built-in querier.
    pub multicast: SnoopConfig,
    /// Per-node flood limits.
    pub storm: StormConfig,
    /// Handshake flood defence: when `mac2` is demanded, cookie reply rate.
    pub handshake_guard: GuardConfig,
}

impl SwitchConfig {
    /// Network 0 without a secret and with switch.toml's defaults (300 s
    /// MAC aging, 30 s node timeout, 1024 MACs per node, 2^20 in the table,
    /// a 1500-byte underlay, default multicast, storm and guard settings).
    pub fn new(private_key: StaticSecret, nodes: Vec<NodeSpec>) -> SwitchConfig {
        SwitchConfig {
            private_key,
            psk: Psk::default(),
            network_id: 0,
            nodes,
            mac_aging: MAC_AGING,
            node_timeout: Duration::from_secs(30),
            mac_limit_per_node: 1024,
            mac_table_limit: 1 << 20,
            underlay_mtu: 1500,
            multicast: SnoopConfig::default(),
            storm: StormConfig::default(),
            handshake_guard: GuardConfig::default(),
        }
    }

    /// The largest UDP payload towards `to` (IP and UDP headers removed).
    pub fn max_datagram(&self, to: SocketAddr) -> usize {
        let ip = if to.is_ipv4() { 20 } else { 40 };
        self.underlay_mtu.saturating_sub(ip + 8)
    }
}

/// Something an operator wants in the log. Drained with [`Switch::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A node's first session was confirmed.
    Connected {
        /// Its name.
        node: String,
        /// Its underlay address.
        endpoint: SocketAddr,
    },
    /// A connected node's new session was confirmed.
    Rekeyed {
        /// Its name.
        node: String,
    },
    /// A connected node's underlay address changed (NAT rebinding, roaming).
    Roamed {
        /// Its name.
        node: String,
        /// Its new underlay address.
        endpoint: SocketAddr,
    },
    /// A node went silent for the node timeout and was forgotten.
    TimedOut {
        /// Its name.
        node: String,
    },
    /// The trunk to another switch of the cluster came up.
    SwitchUp {
        /// Its name.
        switch: String,
        /// Its underlay address.
        endpoint: SocketAddr,
    },
    /// The trunk to another switch went down (it stopped answering): the
    /// MACs behind it are forgotten.
    SwitchDown {
        /// Its name.
        switch: String,
    },
}

/// The switch's MAC table, its entries in a concurrent `DashMap` behind an
/// `Arc`: the core learns into it, a multi-core switch's workers read the
/// same map (and refresh the age of entries they forward from), see
/// [`crate::workers::fastpath`].
pub type SharedMacs = MacTable<NodeId, Arc<MacDashMap<NodeId>>>;

/// The switch state machine.
#[derive(Debug)]
#[cfg_attr(fuzzing, derive(Clone))]
pub struct Switch {
    cfg: SwitchConfig,
    ports: Vec<Port>,
    by_key: HashMap<PublicKey, NodeId>,
    /// The switch's side of every handshake.
    local: Local,
    /// Receiver indices, one table for every port's sessions.
    indices: IndexTable<NodeId>,
    macs: SharedMacs,
    tx: TxQueue,
    next_sweep: Instant,
    drops: Drops,
    forwarded: Forwarded,
    sessions: SessionCounters,
    events: VecDeque<Event>,
    started: Instant,
    /// Reassembled payloads and frames cut for non-offload nodes are copied
    /// here so the port they came from is free to borrow again.
    scratch: Vec<u8>,
    segment_scratch: Vec<u8>,
    snoop: Snooping,
    storm: StormControl,
    /// Receivers of the frame being forwarded (reused, never shrunk).
    targets: Vec<NodeId>,
    /// The frame being forwarded with its VLAN tag added or removed.
    vlan_scratch: Vec<u8>,
    /// `mac1`/`mac2` checks and cookie replies before any Diffie-Hellman;
    /// shared with the workers' handshake gate ([`crate::workers::gate`]).
    guard: SharedGuard,
    /// Mesh mode's membership announcements (`None` in central mode).
    mesh: Option<Mesh>,
    /// Ports with an impairment (see `impair`): their held frames are
    /// released by `handle_timeout`.
    impaired: Vec<NodeId>,
    /// Seeds the impairments that have no seed of their own.
    impair_seed: u64,
    /// Offloaded frames cut into plain frames for an impaired port.
    impair_scratch: Vec<u8>,
    /// Held frames are released this much before they are due (see
    /// `set_timer_slack`).
    timer_slack: Duration,
    /// Port mirroring sessions (see `mirror`).
    mirrors: crate::mirror::Mirrors,
    /// Live captures of this network's frames (empty: none running).
    captures: crate::capture::Captures,
    /// Trunks to the other switches of a cluster (`None` alone).
    cluster: Option<Box<trunk::Cluster>>,
    /// What the workers' fast path shares with this core (see `fastpath`).
    fast: fastpath::FastShared,
}

impl Switch {
    /// A switch with no sessions yet. `seed` feeds the session-index generator
    /// (indices travel in clear; the cookie secret comes from the operating
    /// system, see [`HandshakeGuard`]).
    pub fn new(cfg: SwitchConfig, now: Instant, seed: u64) -> Switch {
        let ports: Vec<Port> = (cfg.nodes.iter().cloned().enumerate())
            .map(|(i, spec)| Port::new(now, NodeId(i as u32), spec))
            .collect();
        let by_key = ports
            .iter()
            .enumerate()
            .map(|(i, p)| (p.spec.public_key, NodeId(i as u32)))
            .collect();
        let macs = MacTable::new(cfg.mac_aging, cfg.mac_limit_per_node, cfg.mac_table_limit);
        let vlans = member_vlans(&cfg.nodes);
        let fast_leave = cfg.nodes.iter().map(|n| n.fast_leave).collect();
        let mut snoop = Snooping::new(cfg.multicast.clone(), fast_leave, &vlans, now);
        snoop.set_static_routers(snoop_controls::static_router_ports(&ports));
        let storm = StormControl::new(cfg.storm.clone(), ports.len());
        let guard = Arc::new(std::sync::Mutex::new(HandshakeGuard::new(
            cfg.handshake_guard.clone(),
            &cfg.private_key.public_key(),
            now,
        )));
        let mut indices = IndexTable::new(seed);
        // The switch only answers handshakes: no capabilities of its own and
        // no initiation timestamps, so no wall clock.
        let local = Local::new(
            cfg.private_key.clone(),
            cfg.psk.clone(),
            cfg.network_id,
            0,
            now,
            Duration::ZERO,
        );
        Switch {
            impaired: Vec::new(),
            impair_seed: indices.random(),
            impair_scratch: Vec::new(),
            timer_slack: Duration::ZERO,
            mirrors: Default::default(),
            captures: Default::default(),
            cluster: None,
            fast: Default::default(),
            mesh: None,
            guard,
            cfg,
            ports,
            by_key,
            local,
            indices,
            macs,
            tx: TxQueue::new(TX_QUEUE_LIMIT),
            next_sweep: now + SWEEP_INTERVAL,
            drops: Drops::default(),
            forwarded: Forwarded::default(),
            sessions: SessionCounters::default(),
            events: VecDeque::new(),
            started: now,
            scratch: Vec::new(),
            segment_scratch: Vec::new(),
            snoop,
            storm,
            targets: Vec::new(),
            vlan_scratch: Vec::new(),
        }
    }

    /// Run timers: release impaired frames that are due; forget silent
    /// nodes, drop stale sessions, age MACs.
    pub fn handle_timeout(&mut self, now: Instant) {
        if !self.impaired.is_empty() {
            self.release_impaired(now);
        }
        self.announce_due(now);
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + SWEEP_INTERVAL;
        for i in 0..self.ports.len() {
            let id = NodeId(i as u32);
            let heard = self.last_heard(&self.ports[i]);
            let port = &mut self.ports[i];
            if port.is_trunk() {
                continue;
            }
            let silent =
                heard.is_none_or(|t| now.saturating_duration_since(t) >= self.cfg.node_timeout);
            if port.is_connected() && silent {
                self.forget(id);
                self.sessions.node_timeouts += 1;
                let node = self.ports[i].spec.name.clone();
                self.events.push_back(Event::TimedOut { node });
                continue;
            }
            // Stale sessions go (a responder has no timers of its own).
            let mut ctx = Ctx {
                local: &self.local,
                indices: &mut self.indices,
                tx: &mut self.tx,
            };
            let tunnel = &mut self.ports[i].tunnel;
            tunnel.handle_timeout(now, &mut ctx, &[]);
            while tunnel.poll_event().is_some() {}
        }
        self.macs.expire(now);
        self.captures.sweep();
        gate::lock(&self.guard).sweep(now);
        self.snoop.handle_timeout(now);
        self.send_queries(now);
        self.mesh_sync(now);
        self.trunk_sweep(now);
    }

    /// When [`handle_timeout`](Self::handle_timeout) wants to run next: the
    /// next sweep, or earlier when an impaired link holds a frame due sooner.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let held = self
            .impaired
            .iter()
            .filter_map(|id| self.ports[id.0 as usize].impair.as_ref()?.poll_timeout())
            .min()
            .map(|t| t.checked_sub(self.timer_slack).unwrap_or(t));
        let announce = (self.cluster.as_ref()).and_then(|c| c.announcer.poll_timeout());
        let sooner = held.into_iter().chain(announce).min();
        Some(sooner.map_or(self.next_sweep, |t| t.min(self.next_sweep)))
    }

    /// The next datagram to send, if any. Call until it returns `None` after
    /// every `handle_*` call. The returned bytes stay valid until the next call.
    pub fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        self.tx.pop()
    }

    /// The next event for the log, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Whether [`poll_event`](Self::poll_event) has something.
    pub fn has_event(&self) -> bool {
        !self.events.is_empty()
    }

    /// Datagrams waiting in the transmit queue.
    pub fn pending_transmits(&self) -> usize {
        self.tx.len()
    }

    /// Drop counters.
    pub fn drops(&self) -> &Drops {
        &self.drops
    }

    /// Forwarding counters, with the unicast frames the workers forwarded
    /// themselves (the same figures `status` and `/metrics` show).
    pub fn forwarded(&self) -> Forwarded {
        self.forwarded_with_fast()
    }

    /// MAC table counters.
    pub fn mac_counters(&self) -> MacCounters {
        let t = self.macs.counters();
        MacCounters {
            learned: t.learned,
            moves: t.moves,
            aged_out: t.aged_out,
            flushed: t.flushed,
            node_limit_hits: t.port_limit_hits,
            table_limit_hits: t.table_limit_hits,
        }
    }

    /// The MAC table.
    pub fn mac_table(&self) -> &SharedMacs {
        &self.macs
    }

    /// Is the node connected (has a confirmed session and a known endpoint)?
    pub fn is_connected(&self, id: NodeId) -> bool {
        self.ports
            .get(id.0 as usize)
            .is_some_and(Port::is_connected)
    }

    /// Where the MAC is learned in VLAN `vlan`, if anywhere
    /// ([`vlan::NO_VLAN`] on a VLAN-unaware switch).
    pub fn lookup_mac(&self, now: Instant, vlan: Vid, mac: &MacAddr) -> Option<NodeId> {
        self.macs.lookup(now, vlan, mac)
    }

    /// Every port's current session's receive half, for the workers
    /// ([`crate::workers`]).
    pub fn receivers(&self) -> impl Iterator<Item = &Arc<Receiver>> {
        self.ports
            .iter()
            .filter_map(|p| p.tunnel.current().map(|s| s.receiver()))
    }

    /// The handshake guard, for the workers' gate ([`crate::workers::gate`]).
    pub fn guard(&self) -> &SharedGuard {
        &self.guard
    }

    /// Count this network's multicast groups against `total`, shared by
    /// every network of the switch (`max-groups-total`).
    pub fn share_group_total(&mut self, total: GroupTotal) {
        self.snoop.share_group_total(total);
    }
}

/// Every VLAN one of `nodes` is a member of, sorted, once each.
fn member_vlans<'a>(nodes: impl IntoIterator<Item = &'a NodeSpec>) -> Vec<Vid> {
    let mut vlans: Vec<Vid> = nodes.into_iter().flat_map(|n| n.vlan.vlans()).collect();
    vlans.sort_unstable();
    vlans.dedup();
    vlans
}
