//! The switch's sans-IO core: sessions with every admitted node, MAC learning
//! and forwarding.
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
use std::collections::{HashMap, VecDeque};

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use overlay_proto::frag::{self, FragHeader, Reassembler};
use overlay_proto::handshake::{self, CAP_VNET, Timestamp};
use overlay_proto::handshake_guard::{GuardConfig, HandshakeGuard};
use overlay_proto::keys::{Psk, PublicKey, StaticSecret};
use overlay_proto::notice::NoticeKey;
use overlay_proto::session::Session;
use overlay_proto::timers::PENDING_SESSION_TIMEOUT;
pub use overlay_proto::transmit::Transmit;
use overlay_proto::transmit::TxQueue;
use overlay_proto::vnet::{self, VNET_HDR_LEN, VnetHdr};
use overlay_proto::wire::{
    FLAG_CONTROL, FLAG_FRAGMENT, FLAG_RELAYED, FLAG_VNET, HS_RESP_LEN, Header, MessageType,
    RESTART_NOTICE_LEN, ethernet,
};
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::NodeId;
use crate::impair::{self, Direction, ImpairCounters, LinkImpair, PortImpair};
use crate::mac_table::{Learned, MacTable};
use crate::mesh::{MemberView, Mesh};
use crate::snooping::limits::GroupTotal;
use crate::snooping::{SnoopConfig, Snooping, Verdict};
use crate::stats::{DropReason, Drops, Forwarded, MacCounters, NodeCounters, SessionCounters};
use crate::status::{MacStatus, NodeStatus, Status};
use crate::storm::{StormClass, StormConfig, StormControl};
use crate::vlan::{self, Ingress, PortVlan, Vid};

mod reload;
pub use reload::{Changes, Unchangeable};

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
}

impl NodeSpec {
    /// A node on a VLAN-unaware switch, without fast-leave.
    pub fn new(name: impl Into<String>, public_key: PublicKey) -> NodeSpec {
        NodeSpec {
            name: name.into(),
            public_key,
            vlan: PortVlan::Transparent,
            fast_leave: false,
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
            mac_aging: Duration::from_secs(300),
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
}

#[derive(Debug)]
#[cfg_attr(fuzzing, derive(Clone))]
struct Port {
    spec: NodeSpec,
    endpoint: Option<SocketAddr>,
    // Boxed: a session (keys, replay window) is ~2.5 KB, and most of the
    // three slots are empty; inline they cost every configured node 7.5 KB.
    current: Option<Box<Session>>,
    previous: Option<Box<Session>>,
    pending: Option<Box<Session>>,
    last_timestamp: Timestamp,
    last_heard: Option<Instant>,
    last_handshake: Option<Instant>,
    counters: NodeCounters,
    /// The node accepts frames with a virtio-net header (handshake capability).
    accepts_vnet: bool,
    /// Fragments from the node being put back together.
    reassembly: Reassembler,
    /// Fragment ids for frames sent to the node.
    next_frame_id: u32,
    /// Removed from the config by a reload: no sessions, not in status; the
    /// slot waits for the next added node (see `reload`).
    retired: bool,
    /// Link impairment, while any is set or frames are held (see `impair`).
    impair: Option<Box<PortImpair>>,
    /// What impairment did, egress and ingress (kept when it is cleared).
    impair_counters: [ImpairCounters; 2],
}

impl Port {
    fn new(spec: NodeSpec) -> Port {
        Port {
            spec,
            endpoint: None,
            current: None,
            previous: None,
            pending: None,
            last_timestamp: Timestamp::default(),
            last_heard: None,
            last_handshake: None,
            counters: NodeCounters::default(),
            accepts_vnet: false,
            reassembly: Reassembler::default(),
            next_frame_id: 0,
            retired: false,
            impair: None,
            impair_counters: Default::default(),
        }
    }

    /// Its link's impairment for status, if any was ever set.
    fn impair_status(&self) -> Option<impair::ImpairStatus> {
        let c = &self.impair_counters;
        if self.impair.is_none() && c.iter().all(|c| c.frames == 0) {
            return None;
        }
        let (l, held) = match &self.impair {
            Some(p) => (p.setting(), [p.egress.held(), p.ingress.held()]),
            None => (LinkImpair::default(), [0, 0]),
        };
        Some(impair::ImpairStatus::new(&l, held, c))
    }

    fn is_connected(&self) -> bool {
        self.current.is_some() && self.endpoint.is_some()
    }

    fn indices(&self) -> impl Iterator<Item = u32> + '_ {
        [&self.current, &self.previous, &self.pending]
            .into_iter()
            .flatten()
            .map(|s| s.local_index())
    }
}

/// The switch state machine.
#[derive(Debug)]
#[cfg_attr(fuzzing, derive(Clone))]
pub struct Switch {
    cfg: SwitchConfig,
    ports: Vec<Port>,
    by_key: HashMap<PublicKey, NodeId>,
    by_index: HashMap<u32, NodeId>,
    macs: MacTable,
    tx: TxQueue,
    rng: StdRng,
    next_sweep: Instant,
    drops: Drops,
    forwarded: Forwarded,
    mac_counters: MacCounters,
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
    /// `mac1`/`mac2` checks and cookie replies before any Diffie-Hellman.
    guard: HandshakeGuard,
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
}

impl Switch {
    /// A switch with no sessions yet. `seed` feeds the session-index generator
    /// (indices travel in clear; the cookie secret comes from the operating
    /// system, see [`HandshakeGuard`]).
    pub fn new(cfg: SwitchConfig, now: Instant, seed: u64) -> Switch {
        let ports: Vec<Port> = cfg.nodes.iter().cloned().map(Port::new).collect();
        let by_key = ports
            .iter()
            .enumerate()
            .map(|(i, p)| (p.spec.public_key, NodeId(i as u32)))
            .collect();
        let macs = MacTable::new(
            ports.len(),
            cfg.mac_aging,
            cfg.mac_limit_per_node,
            cfg.mac_table_limit,
        );
        let vlans = member_vlans(&cfg.nodes);
        let fast_leave = cfg.nodes.iter().map(|n| n.fast_leave).collect();
        let snoop = Snooping::new(cfg.multicast.clone(), fast_leave, &vlans, now);
        let storm = StormControl::new(cfg.storm.clone(), ports.len());
        let guard = HandshakeGuard::new(
            cfg.handshake_guard.clone(),
            &cfg.private_key.public_key(),
            now,
        );
        let mut rng = StdRng::seed_from_u64(seed);
        Switch {
            impaired: Vec::new(),
            impair_seed: rng.random(),
            impair_scratch: Vec::new(),
            timer_slack: Duration::ZERO,
            mesh: None,
            guard,
            cfg,
            ports,
            by_key,
            by_index: HashMap::new(),
            macs,
            tx: TxQueue::new(TX_QUEUE_LIMIT),
            rng,
            next_sweep: now + SWEEP_INTERVAL,
            drops: Drops::default(),
            forwarded: Forwarded::default(),
            mac_counters: MacCounters::default(),
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

    /// Process one received UDP datagram. `buf` is decrypted in place.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, buf: &mut [u8]) {
        // HOT PATH
        if let Err(r) = self.datagram(now, from, buf) {
            self.drops.add(r);
        }
    }

    fn datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        buf: &mut [u8],
    ) -> Result<(), DropReason> {
        let h = Header::new_checked(&buf[..])?;
        if h.network_id() != self.cfg.network_id {
            return Err(DropReason::UnknownNetwork);
        }
        match h.message_type() {
            MessageType::Data => {
                let index = h.receiver_index();
                self.data(now, from, index, buf)
            }
            MessageType::HandshakeInit => self.handshake_init(now, from, &h),
            MessageType::HandshakeResp | MessageType::RestartNotice | MessageType::CookieReply => {
                Err(DropReason::UnexpectedMessage)
            }
            MessageType::Unknown(_) => Err(DropReason::UnknownType),
        }
    }

    fn handshake_init(
        &mut self,
        now: Instant,
        from: SocketAddr,
        h: &Header<&[u8]>,
    ) -> Result<(), DropReason> {
        // Cheap checks first: no Diffie-Hellman for floods (see handshake_guard).
        self.guard.admit(now, from, h, &mut self.tx)?;
        let incoming = handshake::read_init(&self.cfg.private_key, &self.cfg.psk, h)
            .map_err(|_| DropReason::HandshakeFailed)?;
        // Unknown keys get no answer at all.
        let id = *self
            .by_key
            .get(&incoming.peer)
            .ok_or(DropReason::UnknownKey)?;
        if incoming.timestamp <= self.ports[id.0 as usize].last_timestamp {
            return Err(DropReason::HandshakeReplay);
        }
        if self.tx.is_full() {
            return Err(DropReason::TxQueueFull);
        }
        let index = self.new_index();
        let timestamp = incoming.timestamp;
        let caps = incoming.caps;
        let mut out = [0u8; HS_RESP_LEN];
        let keys = incoming
            .accept(self.cfg.network_id, index, &mut out)
            .map_err(|_| DropReason::HandshakeFailed)?;
        let remote_index = h.sender_index();
        let session = Box::new(Session::new(
            keys,
            index,
            remote_index,
            self.cfg.network_id,
            now,
        ));
        let port = &mut self.ports[id.0 as usize];
        port.last_timestamp = timestamp;
        port.last_handshake = Some(now);
        port.accepts_vnet = caps & CAP_VNET != 0;
        port.counters.handshakes += 1;
        // The new session waits for the node's first packet under it; until
        // then the current one keeps carrying traffic.
        if let Some(old) = port.pending.replace(session) {
            self.by_index.remove(&old.local_index());
        }
        self.by_index.insert(index, id);
        self.sessions.handshakes += 1;
        let mut b = self.tx.buffer(HS_RESP_LEN);
        b[..HS_RESP_LEN].copy_from_slice(&out);
        b.truncate(HS_RESP_LEN);
        self.tx.push(from, b);
        Ok(())
    }

    fn new_index(&mut self) -> u32 {
        loop {
            let i: u32 = self.rng.random();
            if !self.by_index.contains_key(&i) {
                return i;
            }
        }
    }

    fn data(
        &mut self,
        now: Instant,
        from: SocketAddr,
        index: u32,
        buf: &mut [u8],
    ) -> Result<(), DropReason> {
        // HOT PATH
        let id = *self
            .by_index
            .get(&index)
            .ok_or(DropReason::UnknownSession)?;
        let port = &mut self.ports[id.0 as usize];
        let (session, is_pending) = if port
            .current
            .as_ref()
            .is_some_and(|s| s.local_index() == index)
        {
            (port.current.as_mut(), false)
        } else if port
            .pending
            .as_ref()
            .is_some_and(|s| s.local_index() == index)
        {
            (port.pending.as_mut(), true)
        } else {
            (port.previous.as_mut(), false)
        };
        let session = session.ok_or(DropReason::UnknownSession)?;
        if session.is_expired(now) {
            return Err(DropReason::Expired);
        }
        let flags = Header::new_unchecked(&buf[..]).flags();
        let range = session.open(buf)?;
        if is_pending {
            // First packet under the new session: it is confirmed.
            let new = port.pending.take();
            if let Some(old) = port.previous.take() {
                self.by_index.remove(&old.local_index());
            }
            let was_connected = port.is_connected();
            port.previous = std::mem::replace(&mut port.current, new);
            self.sessions.confirmed += 1;
            let node = port.spec.name.clone();
            self.sessions.rekeys += u64::from(was_connected);
            self.events.push_back(if was_connected {
                Event::Rekeyed { node }
            } else {
                Event::Connected {
                    node,
                    endpoint: from,
                }
            });
        }
        port.last_heard = Some(now);
        if port.endpoint != Some(from) {
            if port.endpoint.is_some() && !is_pending {
                self.events.push_back(Event::Roamed {
                    node: port.spec.name.clone(),
                    endpoint: from,
                });
            }
            port.endpoint = Some(from);
        }
        if range.is_empty() {
            self.sessions.keepalives += 1;
            self.send_keepalive(id);
            return Ok(());
        }
        if flags & FLAG_CONTROL != 0 {
            return self.handle_control(now, id, flags, &buf[range]);
        }
        if flags & FLAG_FRAGMENT == 0 {
            return self.switch_payload(now, id, flags, &buf[range]);
        }
        let (fh, chunk) = FragHeader::parse(&buf[range]).ok_or(DropReason::Fragment)?;
        let mut scratch = std::mem::take(&mut self.scratch);
        let r = match port.reassembly.push(now, fh, chunk) {
            Err(_) => Err(DropReason::Fragment),
            Ok(None) => Ok(()),
            Ok(Some(whole)) => {
                scratch.clear();
                scratch.extend_from_slice(whole);
                self.switch_payload(now, id, flags, &scratch)
            }
        };
        self.scratch = scratch;
        r
    }

    /// A complete payload from a node: a frame, or a virtio header and a frame.
    fn switch_payload(
        &mut self,
        now: Instant,
        from: NodeId,
        flags: u8,
        payload: &[u8],
    ) -> Result<(), DropReason> {
        if flags & FLAG_VNET == 0 {
            return self.switch_frame(now, from, None, payload);
        }
        let hdr = VnetHdr::parse(payload).ok_or(DropReason::Runt)?;
        let frame = &payload[VNET_HDR_LEN..];
        if !hdr.fits(frame) {
            return Err(DropReason::Offload);
        }
        self.switch_frame(now, from, Some(hdr), frame)
    }

    fn switch_frame(
        &mut self,
        now: Instant,
        from: NodeId,
        vnet: Option<VnetHdr>,
        frame: &[u8],
    ) -> Result<(), DropReason> {
        // HOT PATH: one branch when the node's link is not impaired.
        if self.ports[from.0 as usize].impair.is_some() {
            return self.impair_frame(now, from, Direction::Ingress, vnet, frame);
        }
        self.forward_frame(now, from, vnet, frame)
    }

    /// Learn from a frame of node `from` and forward it.
    fn forward_frame(
        &mut self,
        now: Instant,
        from: NodeId,
        vnet: Option<VnetHdr>,
        frame: &[u8],
    ) -> Result<(), DropReason> {
        // HOT PATH
        let (Some(dst), Some(src)) = (ethernet::dst(frame), ethernet::src(frame)) else {
            return Err(DropReason::Runt);
        };
        if frame.len() > MAX_FRAME {
            return Err(DropReason::Oversize);
        }
        if vlan::is_truncated_tag(frame) {
            return Err(DropReason::Runt);
        }
        if ethernet::is_group(&src) || ethernet::is_zero(&src) {
            return Err(DropReason::InvalidSource);
        }
        let ing = self.ports[from.0 as usize]
            .spec
            .vlan
            .ingress(frame)
            .ok_or(DropReason::VlanFiltered)?;
        match self.macs.learn(now, ing.vid, src, from) {
            Learned::Refreshed => {}
            l @ (Learned::New | Learned::Moved { .. }) => {
                match l {
                    Learned::New => self.mac_counters.learned += 1,
                    _ => self.mac_counters.moves += 1,
                }
                if let Some(mesh) = self.mesh.as_mut() {
                    mesh.note_learned(from, ing.vid, src);
                }
            }
            Learned::NodeLimit => {
                self.mac_counters.node_limit_hits += 1;
                return Err(DropReason::MacLimit);
            }
            Learned::TableFull => {
                self.mac_counters.table_limit_hits += 1;
                return Err(DropReason::TableFull);
            }
        }
        let c = &mut self.ports[from.0 as usize].counters;
        c.rx_frames += 1;
        c.rx_bytes += frame.len() as u64;

        let mut targets = std::mem::take(&mut self.targets);
        targets.clear();
        let class = if !ethernet::is_group(&dst) {
            match self.macs.lookup(now, ing.vid, &dst) {
                Some(to) if to == from => {
                    self.forwarded.filtered += 1;
                    self.targets = targets;
                    return Ok(());
                }
                Some(to) if self.ports[to.0 as usize].is_connected() => {
                    self.forwarded.unicast += 1;
                    targets.push(to);
                    self.fan_out(now, Some(from), ing, vnet, frame, Some(&targets));
                    self.targets = targets;
                    return Ok(());
                }
                _ => StormClass::UnknownUnicast,
            }
        } else if ethernet::is_broadcast(&dst) {
            StormClass::Broadcast
        } else {
            StormClass::Multicast
        };
        // Multicast: snooping decides (and learns from IGMP/MLD).
        let (only, link_local) = if class == StormClass::Multicast {
            let typed = frame.get(ing.ethertype_offset()..).unwrap_or(&[]);
            let c = self
                .snoop
                .handle_frame(now, ing.vid, from, typed, frame.len(), &mut targets);
            (c.verdict == Verdict::Only, c.link_local)
        } else {
            (false, false)
        };
        if !self.storm.allow(now, from, class, link_local) {
            let c = &mut self.ports[from.0 as usize].counters;
            match class {
                StormClass::Broadcast => c.storm_dropped_broadcast += 1,
                StormClass::Multicast => c.storm_dropped_multicast += 1,
                StormClass::UnknownUnicast => c.storm_dropped_unknown_unicast += 1,
            }
            self.targets = targets;
            return Err(DropReason::StormControl);
        }
        match class {
            StormClass::UnknownUnicast => self.forwarded.flooded_unicast += 1,
            StormClass::Broadcast => self.forwarded.broadcast += 1,
            StormClass::Multicast => self.forwarded.multicast += 1,
        }
        // Flood (every other node of the VLAN), or the snooper's receivers;
        // never back to the sender.
        let copies = self.fan_out(
            now,
            Some(from),
            ing,
            vnet,
            frame,
            only.then_some(&targets[..]),
        );
        self.forwarded.flood_copies += copies;
        self.targets = targets;
        if self.snoop.has_queries() {
            self.send_queries(now);
        }
        Ok(())
    }

    /// Send a frame of VLAN `ing.vid` to the nodes in `only`, or to every
    /// node of the VLAN, in the form each needs (tagged or not); never to
    /// `from` or to a node that is not connected or not in the VLAN. Returns
    /// the copies sent.
    fn fan_out(
        &mut self,
        now: Instant,
        from: Option<NodeId>,
        ing: Ingress,
        vnet: Option<VnetHdr>,
        frame: &[u8],
        only: Option<&[NodeId]>,
    ) -> u64 {
        // HOT PATH
        let mut other = std::mem::take(&mut self.vlan_scratch);
        let mut other_vnet = None;
        let mut other_ready = false;
        let mut copies = 0;
        let count = only.map_or(self.ports.len(), <[NodeId]>::len);
        for k in 0..count {
            let to = only.map_or(NodeId(k as u32), |t| t[k]);
            let Some(port) = self.ports.get(to.0 as usize) else {
                continue;
            };
            if Some(to) == from || !port.is_connected() {
                continue;
            }
            let Some(as_is) = port.spec.vlan.egress(ing.vid).keeps_form(ing) else {
                continue;
            };
            copies += 1;
            if as_is {
                self.send_frame(now, to, vnet, frame);
            } else {
                if !other_ready {
                    other_vnet = vlan::other_form(frame, ing, vnet, &mut other);
                    other_ready = true;
                }
                self.send_frame(now, to, other_vnet, &other);
            }
        }
        self.vlan_scratch = other;
        copies
    }

    /// Send the queries the built-in querier made to every node of their VLAN.
    fn send_queries(&mut self, now: Instant) {
        while let Some((vid, frame)) = self.snoop.poll_query() {
            let ing = Ingress { vid, tagged: false };
            self.fan_out(now, None, ing, None, &frame, None);
        }
    }

    /// Answer a keepalive.
    fn send_keepalive(&mut self, to: NodeId) {
        self.send_sealed(to, None, &[]);
    }

    /// Send a frame (with its virtio header, if any) to node `to`, through
    /// its link's impairment if it has one.
    fn send_frame(&mut self, now: Instant, to: NodeId, vnet: Option<VnetHdr>, frame: &[u8]) {
        // HOT PATH: one branch when the node's link is not impaired.
        if self.ports[to.0 as usize].impair.is_some() {
            if let Err(r) = self.impair_frame(now, to, Direction::Egress, vnet, frame) {
                self.drops.add(r);
            }
            return;
        }
        self.send_unimpaired(to, vnet, frame);
    }

    /// Send a frame to node `to`. A node that did not announce offload
    /// support gets plain frames: an offloaded super-frame is cut into
    /// segments for it here.
    fn send_unimpaired(&mut self, to: NodeId, vnet: Option<VnetHdr>, frame: &[u8]) {
        // HOT PATH
        match vnet {
            Some(h) if !self.ports[to.0 as usize].accepts_vnet => {
                if h.is_plain() {
                    self.send_sealed(to, None, frame);
                    return;
                }
                let mut scratch = std::mem::take(&mut self.segment_scratch);
                scratch.clear();
                scratch.extend_from_slice(frame);
                if vnet::segment(&h, &mut scratch, |seg| self.send_sealed(to, None, seg)).is_err() {
                    self.drops.add(DropReason::Offload);
                }
                self.segment_scratch = scratch;
            }
            _ => self.send_sealed(to, vnet, frame),
        }
    }

    /// Encrypt for node `to` (fragmenting if needed) and queue. An empty frame
    /// is a keepalive.
    fn send_sealed(&mut self, to: NodeId, vnet: Option<VnetHdr>, frame: &[u8]) {
        // HOT PATH
        if self.tx.is_full() {
            self.drops.add(DropReason::TxQueueFull);
            return;
        }
        let port = &mut self.ports[to.0 as usize];
        let (Some(session), Some(dst)) = (port.current.as_mut(), port.endpoint) else {
            return;
        };
        let max = self.cfg.max_datagram(dst);
        let mut hdr = [0u8; VNET_HDR_LEN];
        let (flags, parts): (u8, [&[u8]; 2]) = match vnet {
            Some(h) => {
                h.emit(&mut hdr);
                (FLAG_VNET, [&hdr, frame])
            }
            None => (0, [&[], frame]),
        };
        let mut b = self.tx.buffer(0);
        // In mesh mode every frame the switch carries is a relayed one.
        let flags = if self.mesh.is_some() && !frame.is_empty() {
            flags | FLAG_RELAYED
        } else {
            flags
        };
        match session.seal_frame(flags, &parts, max, &mut port.next_frame_id, &mut b) {
            Ok(stride) => {
                if !frame.is_empty() {
                    port.counters.tx_frames += 1;
                    port.counters.tx_bytes += frame.len() as u64;
                }
                match stride {
                    None => self.tx.push(dst, b),
                    Some(s) => self.tx.push_batch(dst, b, s),
                }
            }
            Err(e) => {
                // Counter exhausted (the node must rekey) or a frame too large
                // even for fragments.
                self.drops.add(DropReason::from(e));
                self.tx.recycle(b);
            }
        }
    }

    /// Run timers: release impaired frames that are due; forget silent
    /// nodes, drop stale sessions, age MACs.
    pub fn handle_timeout(&mut self, now: Instant) {
        if !self.impaired.is_empty() {
            self.release_impaired(now);
        }
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + SWEEP_INTERVAL;
        for i in 0..self.ports.len() {
            let id = NodeId(i as u32);
            let port = &mut self.ports[i];
            let silent = port
                .last_heard
                .is_none_or(|t| now.saturating_duration_since(t) >= self.cfg.node_timeout);
            if port.is_connected() && silent {
                self.forget(id);
                self.sessions.node_timeouts += 1;
                let node = self.ports[i].spec.name.clone();
                self.events.push_back(Event::TimedOut { node });
                continue;
            }
            let port = &mut self.ports[i];
            let mut dead = Vec::new();
            if port
                .pending
                .as_ref()
                .is_some_and(|s| s.age(now) >= PENDING_SESSION_TIMEOUT)
            {
                dead.extend(port.pending.take().map(|s| s.local_index()));
            }
            if port.previous.as_ref().is_some_and(|s| s.is_expired(now)) {
                dead.extend(port.previous.take().map(|s| s.local_index()));
            }
            if port.current.as_ref().is_some_and(|s| s.is_expired(now)) {
                dead.extend(port.current.take().map(|s| s.local_index()));
            }
            for d in dead {
                self.by_index.remove(&d);
            }
        }
        self.mac_counters.aged_out += self.macs.expire(now) as u64;
        self.guard.sweep(now);
        self.snoop.handle_timeout(now);
        self.send_queries(now);
        self.mesh_sync(now);
    }

    fn forget(&mut self, id: NodeId) {
        let port = &mut self.ports[id.0 as usize];
        for i in port.indices().collect::<Vec<_>>() {
            self.by_index.remove(&i);
        }
        port.current = None;
        port.previous = None;
        port.pending = None;
        port.endpoint = None;
        self.mac_counters.flushed += self.macs.flush_node(id) as u64;
        self.snoop.forget_node(id);
    }

    /// After a restart: tell every node at its last known endpoint to
    /// handshake again now (see `overlay_proto::notice`). `timestamp` is the
    /// wall-clock time; `endpoints` come from the state file, by node name.
    /// Returns how many notices were queued.
    pub fn announce_restart<'a>(
        &mut self,
        timestamp: Timestamp,
        endpoints: impl IntoIterator<Item = (&'a str, SocketAddr)>,
    ) -> usize {
        let mut sent = 0;
        for (name, addr) in endpoints {
            let Some(port) = self
                .ports
                .iter()
                .find(|p| !p.retired && p.spec.name == name)
            else {
                continue;
            };
            let Ok(key) = NoticeKey::derive(&self.cfg.private_key, &port.spec.public_key) else {
                continue;
            };
            if self.tx.is_full() {
                break;
            }
            let mut out = [0u8; RESTART_NOTICE_LEN];
            key.seal(self.cfg.network_id, timestamp, &mut out);
            let mut b = self.tx.buffer(RESTART_NOTICE_LEN);
            b[..RESTART_NOTICE_LEN].copy_from_slice(&out);
            b.truncate(RESTART_NOTICE_LEN);
            self.tx.push(addr, b);
            sent += 1;
        }
        sent
    }

    /// Every connected node's name and endpoint (for the state file).
    pub fn endpoints(&self) -> Vec<(String, SocketAddr)> {
        self.ports
            .iter()
            .filter_map(|p| p.endpoint.map(|e| (p.spec.name.clone(), e)))
            .collect()
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
        Some(held.map_or(self.next_sweep, |t| t.min(self.next_sweep)))
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

    /// Forwarding counters.
    pub fn forwarded(&self) -> &Forwarded {
        &self.forwarded
    }

    /// MAC table counters.
    pub fn mac_counters(&self) -> &MacCounters {
        &self.mac_counters
    }

    /// The MAC table.
    pub fn mac_table(&self) -> &MacTable {
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
    pub fn lookup_mac(&self, now: Instant, vlan: Vid, mac: &ethernet::Mac) -> Option<NodeId> {
        self.macs.lookup(now, vlan, mac)
    }

    /// The multicast snooper (group table, queriers, counters).
    pub fn snooping(&self) -> &Snooping {
        &self.snoop
    }

    /// Count this network's multicast groups against `total`, shared by
    /// every network of the switch (`max-groups-total`).
    pub fn share_group_total(&mut self, total: GroupTotal) {
        self.snoop.share_group_total(total);
    }

    /// A snapshot for `status`. `with_macs` adds the MAC table.
    pub fn status(&self, now: Instant, with_macs: bool) -> Status {
        let ago = |t: Option<Instant>| t.map(|t| now.saturating_duration_since(t).as_secs_f64());
        let nodes = self
            .ports
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.retired)
            .map(|(i, p)| NodeStatus {
                network: String::new(),
                name: p.spec.name.clone(),
                public_key: p.spec.public_key.to_base64(),
                connected: p.is_connected(),
                endpoint: p.endpoint.map(|e| e.to_string()),
                session_age_secs: p.current.as_ref().map(|s| s.age(now).as_secs_f64()),
                last_handshake_secs_ago: ago(p.last_handshake),
                last_heard_secs_ago: ago(p.last_heard),
                macs: self.macs.count_for(NodeId(i as u32)),
                vlan: match &p.spec.vlan {
                    PortVlan::Member { native, .. } => *native,
                    PortVlan::Transparent => None,
                },
                trunk: match &p.spec.vlan {
                    PortVlan::Member { tagged, .. } => tagged.clone(),
                    PortVlan::Transparent => Vec::new(),
                },
                counters: p.counters.clone(),
                impair: p.impair_status(),
            })
            .collect();
        let macs = with_macs.then(|| {
            let mut v: Vec<MacStatus> = self
                .macs
                .reader()
                .iter()
                .map(|e| MacStatus {
                    network: String::new(),
                    vlan: e.key().0,
                    mac: crate::status::format_mac(&e.key().1),
                    node: self.ports[e.value().node.0 as usize].spec.name.clone(),
                    expires_in_secs: e
                        .value()
                        .expires_at
                        .saturating_duration_since(now)
                        .as_secs_f64(),
                })
                .collect();
            v.sort_by(|a, b| (a.vlan, &a.mac).cmp(&(b.vlan, &b.mac)));
            v
        });
        Status {
            uptime_secs: now.saturating_duration_since(self.started).as_secs_f64(),
            nodes,
            drops: self.drops.clone(),
            forwarded: self.forwarded.clone(),
            mac_table: crate::status::MacTableStatus {
                entries: self.macs.len(),
                limit: self.cfg.mac_table_limit,
                limit_per_node: self.cfg.mac_limit_per_node,
                aging_secs: self.cfg.mac_aging.as_secs(),
                counters: self.mac_counters.clone(),
            },
            sessions: self.sessions.clone(),
            handshake_guard: self.guard.status(now),
            multicast: self
                .snoop
                .status(now, |id| self.ports[id.0 as usize].spec.name.clone()),
            networks: Vec::new(),
            reloads: Default::default(),
            macs,
        }
    }
}

/// Every VLAN one of `nodes` is a member of, sorted, once each.
fn member_vlans<'a>(nodes: impl IntoIterator<Item = &'a NodeSpec>) -> Vec<Vid> {
    let mut vlans: Vec<Vid> = nodes.into_iter().flat_map(|n| n.vlan.vlans()).collect();
    vlans.sort_unstable();
    vlans.dedup();
    vlans
}

/// Mesh mode (see [`crate::mesh`]): control messages in and out.
impl Switch {
    /// Run this network in mesh mode: tell nodes about each other.
    pub fn enable_mesh(&mut self) {
        self.mesh = Some(Mesh::new(self.ports.len()));
    }

    /// Whether mesh mode is on.
    pub fn is_mesh(&self) -> bool {
        self.mesh.is_some()
    }

    /// A control message from node `id`: only `LocalAddrs`, in mesh mode.
    /// The others hear of it at the next sweep, not now: however often a
    /// node announces, each other node gets at most one update per sweep.
    fn handle_control(
        &mut self,
        now: Instant,
        id: NodeId,
        flags: u8,
        payload: &[u8],
    ) -> Result<(), DropReason> {
        use crate::mesh::Announced;
        use overlay_proto::control::Control;
        let (Some(mesh), 0) = (self.mesh.as_mut(), flags & FLAG_FRAGMENT) else {
            return Err(DropReason::UnexpectedMessage);
        };
        let Some(observed) = self.ports[id.0 as usize].endpoint else {
            return Err(DropReason::UnexpectedMessage);
        };
        match Control::parse(payload) {
            Ok(Control::LocalAddrs(addrs)) => match mesh.set_local(now, id, observed, addrs) {
                Announced::Taken { refused } => {
                    self.drops.add_n(DropReason::MeshAddress, refused as u64);
                    Ok(())
                }
                Announced::RateLimited => Err(DropReason::MeshRateLimited),
            },
            _ => Err(DropReason::UnexpectedMessage),
        }
    }

    /// Announce joins, moves and departures, and where MACs were learned
    /// (cheap when nothing changed).
    fn mesh_sync(&mut self, now: Instant) {
        self.mesh_sync_hiding(now, &[]);
    }

    /// [`mesh_sync`](Self::mesh_sync), with the nodes in `hidden` shown as
    /// departed (a reload about to change their VLANs tells their old
    /// VLANs' members that they left).
    fn mesh_sync_hiding(&mut self, now: Instant, hidden: &[NodeId]) {
        let Some(mesh) = self.mesh.as_mut() else {
            return;
        };
        let views: Vec<MemberView<'_>> = self
            .ports
            .iter()
            .enumerate()
            .map(|(i, p)| MemberView {
                key: p.spec.public_key,
                name: &p.spec.name,
                endpoint: p
                    .endpoint
                    .filter(|_| p.is_connected() && !hidden.contains(&NodeId(i as u32))),
                session: p.current.as_ref().map(|s| s.created()),
                vlan: &p.spec.vlan,
            })
            .collect();
        let mut out = mesh.sync(&views);
        let macs = &self.macs;
        out.extend(mesh.sync_owners(&views, || {
            macs.reader()
                .iter()
                .filter(|e| e.value().expires_at > now)
                .map(|e| (e.value().node, e.key().0, e.key().1))
                .collect()
        }));
        let mut buf = Vec::new();
        for (to, msg) in out {
            buf.clear();
            msg.emit(&mut buf);
            self.send_control(to, &buf);
        }
    }

    /// Seal a control message for node `to` and queue it.
    fn send_control(&mut self, to: NodeId, payload: &[u8]) {
        if self.tx.is_full() {
            self.drops.add(DropReason::TxQueueFull);
            return;
        }
        let port = &mut self.ports[to.0 as usize];
        let (Some(session), Some(dst)) = (port.current.as_mut(), port.endpoint) else {
            return;
        };
        let mut b = self.tx.buffer(0);
        match session.seal_frame(FLAG_CONTROL, &[payload], usize::MAX, &mut 0, &mut b) {
            Ok(_) => self.tx.push(dst, b),
            Err(_) => self.tx.recycle(b),
        }
    }
}

/// Link impairment (see [`crate::impair`]): frames of an impaired node's
/// link go through its [`PortImpair`]; held ones come back out in
/// `handle_timeout`.
impl Switch {
    /// For a shell whose timers fire late by about `slack` (tokio's round up
    /// to whole milliseconds): held frames are then asked for (`poll_timeout`)
    /// and released `slack` before they are due, so on average they leave
    /// on time. Zero (exact) by default.
    pub fn set_timer_slack(&mut self, slack: Duration) {
        self.timer_slack = slack;
    }

    /// Set node `name`'s link (down/up, and what each direction does),
    /// replacing what was set. Held frames keep their release times; taking
    /// the link down drops them. Returns false if there is no such node.
    pub fn set_impair(&mut self, name: &str, l: &LinkImpair) -> bool {
        let Some(i) = self
            .ports
            .iter()
            .position(|p| !p.retired && p.spec.name == name)
        else {
            return false;
        };
        let seed = self.impair_seed;
        let port = &mut self.ports[i];
        match port.impair.as_mut() {
            Some(p) => p.set(l, name, seed),
            None if l.is_none() => return true,
            None => {
                port.impair = Some(Box::new(PortImpair::new(l, name, seed)));
                self.impaired.push(NodeId(i as u32));
            }
        }
        if l.down
            && let Some(p) = port.impair.as_mut()
        {
            for d in [Direction::Egress, Direction::Ingress] {
                port.impair_counters[d as usize].link_down += p.dir(d).flush() as u64;
            }
        }
        true
    }

    /// What is set on node `name`'s link (up and nothing, if nothing), if
    /// there is such a node.
    pub fn impair_of(&self, name: &str) -> Option<LinkImpair> {
        let p = self
            .ports
            .iter()
            .find(|p| !p.retired && p.spec.name == name)?;
        Some(p.impair.as_ref().map(|p| p.setting()).unwrap_or_default())
    }

    /// A frame of node `node`'s link in direction `dir`: offloaded frames
    /// are cut into plain wire-sized frames with their checksums complete
    /// first, so loss, rate and corruption act per frame as on a wire.
    fn impair_frame(
        &mut self,
        now: Instant,
        node: NodeId,
        dir: Direction,
        vnet: Option<VnetHdr>,
        frame: &[u8],
    ) -> Result<(), DropReason> {
        match vnet {
            Some(h) if !h.is_plain() => {
                let mut scratch = std::mem::take(&mut self.impair_scratch);
                scratch.clear();
                scratch.extend_from_slice(frame);
                let r = vnet::segment(&h, &mut scratch, |seg| {
                    self.impair_plain(now, node, dir, seg);
                });
                self.impair_scratch = scratch;
                r.map_err(|_| DropReason::Offload)
            }
            _ => {
                self.impair_plain(now, node, dir, frame);
                Ok(())
            }
        }
    }

    fn impair_plain(&mut self, now: Instant, node: NodeId, dir: Direction, frame: &[u8]) {
        let port = &mut self.ports[node.0 as usize];
        let Some(p) = port.impair.as_mut() else {
            return;
        };
        let up = p.up;
        let c = &mut port.impair_counters[dir as usize];
        if p.dir(dir).handle_frame(now, up, frame, c) == impair::Verdict::Pass {
            self.impaired_out(now, node, dir, frame);
        }
    }

    /// A frame that passed node `node`'s impairment goes on its way.
    fn impaired_out(&mut self, now: Instant, node: NodeId, dir: Direction, frame: &[u8]) {
        match dir {
            Direction::Egress => self.send_unimpaired(node, None, frame),
            Direction::Ingress => {
                if let Err(r) = self.forward_frame(now, node, None, frame) {
                    self.drops.add(r);
                }
            }
        }
    }

    /// Send or forward every held frame that is due; forget impairments
    /// that were cleared once they hold nothing.
    fn release_impaired(&mut self, now: Instant) {
        let due = now + self.timer_slack;
        let mut k = 0;
        while k < self.impaired.len() {
            let id = self.impaired[k];
            let i = id.0 as usize;
            for dir in [Direction::Egress, Direction::Ingress] {
                while let Some(buf) = self.ports[i]
                    .impair
                    .as_mut()
                    .and_then(|p| p.dir(dir).poll_release(due))
                {
                    self.impaired_out(now, id, dir, &buf);
                    if let Some(p) = self.ports[i].impair.as_mut() {
                        p.dir(dir).recycle(buf);
                    }
                }
            }
            if self.ports[i].impair.as_ref().is_none_or(|p| p.is_idle()) {
                self.ports[i].impair = None;
                self.impaired.swap_remove(k);
            } else {
                k += 1;
            }
        }
    }
}
