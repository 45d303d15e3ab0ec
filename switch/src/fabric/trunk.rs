//! Trunks: the engine's ports to the other switches of a cluster (see
//! [`crate::cluster`]).
//!
//! Each other switch listed in `[[cluster.switch]]` is one more port of the
//! network's core, after the nodes: a [`Port`] whose tunnel takes
//! [`Role::Both`] (the lower key wins a simultaneous open, as between mesh
//! peers), starts handshakes towards the configured endpoint, and carries
//! every VLAN of the network tagged (a VLAN-unaware network's frames as they
//! are). One session per network and pair of switches: datagrams are
//! dispatched by network id before any crypto, as for nodes, so each
//! network's engine stays whole and isolated.
//!
//! Forwarding (in `forwarding`), with split horizon:
//! - a frame from a node for a MAC behind another switch goes to that
//!   switch's trunk once; a flood goes once to every trunk whose switch
//!   serves the VLAN (per its announcement, see `announce`);
//! - a frame from a trunk goes to local nodes only, never to another trunk;
//! - MACs seen in frames from a trunk are learned behind it (trunks have no
//!   per-port MAC limit; the table limit holds), and the cluster view fills
//!   and cleans the table ahead of traffic;
//! - multicast from a node goes to the trunks whose switch wants the group
//!   per its announcement or the cluster view, or to every trunk while
//!   neither is fresh (the rule is in `announce`);
//! - IGMP/MLD (queries, reports, leaves) and PIM hellos never cross a trunk:
//!   each switch snoops its own nodes and runs its own querier and storm
//!   control; frames from a trunk are not rate-limited again.
//!
//! Liveness: each side sends a keepalive on every sweep (every 500 ms); a
//! trunk that sent and heard nothing for [`TRUNK_PROBE_AFTER`] probes, and
//! is down [`TRUNK_PROBE_TIMEOUT`] later: about 3 s after the other switch
//! died. A trunk going down forgets every MAC learned behind it at once;
//! its tunnel keeps trying to handshake (backoff up to [`TRUNK_RETRY_MAX`]).
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use overlay_proto::ethernet::MacAddr;
use overlay_proto::tunnel::{Ctx, Local, Role, Tunnel, TunnelConfig, TunnelEvent};
use overlay_proto::wire::{Header, MessageType};

use super::announce::{Announcer, PeerAnnounced};
use super::port::drop_reason;
use super::{Event, NodeSpec, Port, Switch};
use crate::NodeId;
use crate::cluster::view::ViewChange;
use crate::cluster::{
    ClusterConfig, ClusterUpdate, ClusterView, GroupRef, LocalChange, MacRef, Name, NodeRef,
    PeerSwitch, SwitchFacts,
};
use crate::counters::DropReason;
use crate::snooping::wire::{self, Parsed};
use crate::status::{PeerAnnouncedStatus, PeerSwitchStatus};
use crate::vlan::{PortVlan, Vid};

/// A trunk that sent and heard nothing this long sends a probe.
pub const TRUNK_PROBE_AFTER: Duration = Duration::from_secs(2);
/// An unanswered probe this old: the other switch is down.
pub const TRUNK_PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// The cap on the handshake retry backoff towards another switch.
pub const TRUNK_RETRY_MAX: Duration = Duration::from_secs(2);
/// MACs noted between two sweeps before the sweep rescans the whole table
/// instead.
const PENDING_MACS: usize = 4096;

/// What a trunk port keeps besides its tunnel.
#[derive(Debug, Clone)]
pub(crate) struct TrunkState {
    /// The configured endpoint: where initiations go.
    pub(super) endpoint: SocketAddr,
    /// Times the trunk came up, and went down.
    pub(super) ups: u64,
    pub(super) downs: u64,
    /// Up since (`None` while down).
    pub(super) up_since: Option<Instant>,
    /// What the other switch announced (see `announce`).
    pub(super) peer: PeerAnnounced,
}

/// The cluster part of one network's engine: its trunks, its view of the
/// other switches, and what it publishes of its own.
#[derive(Debug)]
#[cfg_attr(fuzzing, derive(Clone))]
pub(super) struct Cluster {
    network: Name,
    /// The trunk ports, in config order.
    pub(super) trunks: Vec<NodeId>,
    pub(super) view: ClusterView,
    /// Collect [`LocalChange`]s (a store is configured to take them).
    publish: bool,
    /// MACs learned from local nodes since the last sweep.
    pending_macs: Vec<(Vid, MacAddr)>,
    rescan: bool,
    /// Each MAC published as this switch's, with the node it is behind.
    published_macs: HashMap<(Vid, MacAddr), NodeId>,
    published_groups: BTreeSet<(Vid, IpAddr)>,
    published_nodes: BTreeMap<NodeId, (Name, SocketAddr)>,
    /// The MAC table's aged-out + flushed + moved count at the last sweep.
    mac_churn: u64,
    changes: VecDeque<LocalChange>,
    /// Scratch for the groups wanted here.
    groups_scratch: BTreeSet<(Vid, IpAddr)>,
    /// What this switch announces to the others over the trunks.
    pub(super) announcer: Announcer,
}

impl Switch {
    /// Join a cluster: one trunk port per other switch of `cfg`, which
    /// starts handshaking at the next [`handle_timeout`](Self::handle_timeout).
    /// `network` is this network's name (in the facts it publishes);
    /// `wall` the wall-clock time (since the Unix epoch) matching `now`,
    /// for the timestamps of the handshakes this switch initiates (a
    /// restarted switch must be believed by the others). Nothing happens if
    /// the core already joined.
    pub fn join_cluster(
        &mut self,
        now: Instant,
        wall: Duration,
        network: &str,
        cfg: &ClusterConfig,
    ) {
        if self.cluster.is_some() {
            return;
        }
        self.local = Local::new(
            self.cfg.private_key.clone(),
            self.cfg.psk.clone(),
            self.cfg.network_id,
            0,
            now,
            wall,
        );
        let vlan = self.trunk_vlan();
        let mut trunks = Vec::with_capacity(cfg.switches.len());
        for peer in &cfg.switches {
            let id = NodeId(self.ports.len() as u32);
            self.ports.push(trunk_port(now, id, peer, vlan.clone()));
            self.by_key.insert(peer.public_key, id);
            self.macs.exempt_port(id);
            trunks.push(id);
        }
        self.storm
            .reconfigure(self.cfg.storm.clone(), self.ports.len());
        // A restarted switch announces under a new epoch.
        let epoch = self.indices.random() ^ wall.as_nanos() as u64;
        self.cluster = Some(Box::new(Cluster {
            network: network.into(),
            trunks,
            view: ClusterView::new(network.into(), cfg.name.clone()),
            publish: !cfg.etcd_endpoints.is_empty(),
            pending_macs: Vec::new(),
            rescan: false,
            published_macs: HashMap::new(),
            published_groups: BTreeSet::new(),
            published_nodes: BTreeMap::new(),
            mac_churn: 0,
            changes: VecDeque::new(),
            groups_scratch: BTreeSet::new(),
            announcer: Announcer::new(epoch),
        }));
    }

    /// What a trunk carries: every VLAN of the network's nodes, tagged
    /// (frames as they are on a VLAN-unaware network).
    fn trunk_vlan(&self) -> PortVlan {
        let nodes = self.ports.iter().filter(|p| !p.retired && !p.is_trunk());
        let vlans = super::member_vlans(nodes.map(|p| &p.spec));
        let aware = self
            .ports
            .iter()
            .any(|p| !p.is_trunk() && matches!(p.spec.vlan, PortVlan::Member { .. }));
        if !aware {
            return PortVlan::Transparent;
        }
        PortVlan::Member {
            native: None,
            tagged: vlans,
        }
    }

    /// After a reload changed the nodes: trunks carry the VLANs now in use.
    pub(super) fn retrunk(&mut self) {
        if self.cluster.is_none() {
            return;
        }
        let vlan = self.trunk_vlan();
        for p in self.ports.iter_mut().filter(|p| p.is_trunk()) {
            p.spec.vlan = vlan.clone();
        }
        self.storm
            .reconfigure(self.cfg.storm.clone(), self.ports.len());
    }

    /// Whether port `id` is a trunk to another switch.
    pub(super) fn is_trunk(&self, id: NodeId) -> bool {
        self.ports[id.0 as usize].is_trunk()
    }

    /// One update from the cluster's store (see [`crate::cluster`]).
    pub fn handle_cluster_update(&mut self, now: Instant, u: &ClusterUpdate) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let change = c.view.apply(u);
        let port = |c: &Cluster, ports: &[Port], name: &str| {
            c.trunks
                .iter()
                .copied()
                .find(|id| *ports[id.0 as usize].spec.name == *name)
        };
        match change {
            ViewChange::None => {}
            ViewChange::MacOwned(vid, mac, switch, node) => {
                if let Some(id) = port(c, &self.ports, &switch) {
                    self.macs.learn(now, vid, mac, id);
                }
                if node.is_some() {
                    self.note_remote_mac(vid, mac);
                }
            }
            ViewChange::MacReleased(vid, mac, switch) => {
                if let Some(id) = port(c, &self.ports, &switch) {
                    self.macs.release(now, vid, mac, id);
                }
            }
            ViewChange::SwitchDown(switch) => {
                if let Some(id) = port(c, &self.ports, &switch) {
                    self.macs.flush_port(id);
                }
            }
            ViewChange::Replaced => {
                let mut learn = Vec::new();
                for &id in &c.trunks {
                    for (vid, mac, owner) in c.view.macs() {
                        if *self.ports[id.0 as usize].spec.name == **owner {
                            learn.push((vid, mac, id));
                        }
                    }
                }
                for &id in &c.trunks {
                    self.macs.flush_port(id);
                }
                for (vid, mac, id) in learn {
                    self.macs.learn(now, vid, mac, id);
                }
            }
        }
    }

    /// The next change of what this switch owns, for the store (only with
    /// etcd endpoints configured; see [`crate::cluster`]).
    pub fn poll_local_change(&mut self) -> Option<LocalChange> {
        self.cluster.as_mut()?.changes.pop_front()
    }

    /// Everything this network's engine has published as this switch's, as
    /// of the last sweep.
    pub fn local_facts(&self) -> SwitchFacts {
        let Some(c) = self.cluster.as_ref() else {
            return SwitchFacts::default();
        };
        let mut macs: Vec<(MacRef, Option<Name>)> = (c.published_macs.iter())
            .map(|(&(v, m), id)| (c.mac_ref(v, m), Some(self.port_name(*id))))
            .collect();
        macs.sort();
        SwitchFacts {
            macs,
            groups: (c.published_groups.iter())
                .map(|&(v, g)| c.group_ref(v, g))
                .collect(),
            nodes: (c.published_nodes.values())
                .map(|(n, e)| (c.node_ref(n), *e))
                .collect(),
        }
    }

    /// This network's view of the cluster, if it is in one.
    pub fn cluster_view(&self) -> Option<&ClusterView> {
        self.cluster.as_ref().map(|c| &c.view)
    }

    /// A MAC learned (new or moved) from local node `from`.
    pub(super) fn note_local_mac(&mut self, vid: Vid, mac: MacAddr) {
        if let Some(c) = self.cluster.as_mut().filter(|c| c.publish) {
            if c.pending_macs.len() < PENDING_MACS {
                c.pending_macs.push((vid, mac));
            } else {
                c.rescan = true;
            }
        }
    }

    /// For a frame from a node to a MAC the table does not know: the trunk
    /// of the switch the cluster view says has it, if up.
    pub(super) fn view_owner(&self, vid: Vid, dst: &MacAddr) -> Option<NodeId> {
        let c = self.cluster.as_ref()?;
        let owner = c.view.mac_owner(vid, dst)?;
        c.trunks
            .iter()
            .copied()
            .find(|id| *self.ports[id.0 as usize].spec.name == **owner)
            .filter(|id| self.ports[id.0 as usize].is_connected())
    }

    /// Add to `targets` the trunks that get a multicast frame of VLAN `vid`
    /// (`typed`: from its ethertype on) from a local node. Group data goes
    /// to a trunk unless the fresh sources (its announcement, the cluster
    /// view) all say its switch does not want the group, or to every trunk
    /// if neither is fresh (see `announce`); any other multicast to the
    /// trunks whose switch serves the VLAN.
    pub(super) fn add_trunk_targets(&mut self, vid: Vid, typed: &[u8], targets: &mut Vec<NodeId>) {
        let Some(c) = self.cluster.as_ref() else {
            return;
        };
        let group = match parse(typed) {
            Parsed::Data { dst, .. } if dst.is_multicast() && !wire::is_link_local_group(&dst) => {
                Some(dst)
            }
            // Snooping control stays on this switch.
            Parsed::Query(_)
            | Parsed::RouterHello
            | Parsed::Join { .. }
            | Parsed::Leave { .. }
            | Parsed::Report(_) => return,
            _ => None,
        };
        for &id in &c.trunks {
            let port = &mut self.ports[id.0 as usize];
            let Some(t) = port.trunk.as_mut() else {
                continue;
            };
            let send = match group {
                None => t.peer.serves(vid),
                Some(g) => {
                    let view = c.view.switch_wants(vid, &g, &port.spec.name);
                    match (t.peer.wants(vid, &g), view) {
                        (None, None) => true,
                        (Some(a), None) | (None, Some(a)) => a,
                        (Some(a), Some(b)) => a || b,
                    }
                }
            };
            if !send {
                t.peer.pruned += 1;
            } else if !targets.contains(&id) {
                targets.push(id);
            }
        }
    }

    /// A handshake response or cookie reply: only trunks initiate.
    pub(super) fn trunk_handshake(
        &mut self,
        now: Instant,
        from: SocketAddr,
        h: &Header<&[u8]>,
    ) -> Result<(), DropReason> {
        let id = (self.indices.get(h.receiver_index()))
            .filter(|id| self.ports[id.0 as usize].is_trunk())
            .ok_or(DropReason::UnexpectedMessage)?;
        let tunnel = &mut self.ports[id.0 as usize].tunnel;
        match h.message_type() {
            MessageType::HandshakeResp => {
                tunnel
                    .handle_response(now, from, &mut self.indices, h)
                    .map_err(drop_reason)?;
                self.sessions.handshakes += 1;
                let port = &mut self.ports[id.0 as usize];
                port.counters.handshakes += 1;
                port.last_handshake = Some(now);
            }
            _ => tunnel.handle_cookie_reply(now, h).map_err(drop_reason)?,
        }
        self.trunk_events(now, id);
        Ok(())
    }

    /// Trunk `id` confirmed a session we answered (its first packet).
    pub(super) fn trunk_confirmed(&mut self, now: Instant, id: NodeId, was_up: bool) {
        if !was_up {
            self.trunk_up(now, id);
        }
    }

    fn trunk_up(&mut self, now: Instant, id: NodeId) {
        let port = &mut self.ports[id.0 as usize];
        let Some(t) = port.trunk.as_mut() else {
            return;
        };
        if t.up_since.is_some() {
            return;
        }
        t.up_since = Some(now);
        t.ups += 1;
        let endpoint = port.tunnel.endpoint().unwrap_or(t.endpoint);
        self.events.push_back(Event::SwitchUp {
            switch: port.spec.name.clone(),
            endpoint,
        });
        self.announce_to(now, id);
    }

    fn trunk_down(&mut self, id: NodeId) {
        let port = &mut self.ports[id.0 as usize];
        let Some(t) = port.trunk.as_mut() else {
            return;
        };
        if t.up_since.take().is_none() {
            return;
        }
        t.downs += 1;
        // What it announced is void: send it everything until it says again.
        t.peer.forget();
        // It is gone with everything behind it.
        self.events.push_back(Event::SwitchDown {
            switch: port.spec.name.clone(),
        });
        self.macs.flush_port(id);
    }

    /// What trunk `id`'s tunnel reported.
    fn trunk_events(&mut self, now: Instant, id: NodeId) {
        while let Some(e) = self.ports[id.0 as usize].tunnel.poll_event() {
            match e {
                TunnelEvent::Established { rekey } => {
                    // The responder confirms the session on our first packet.
                    self.send_keepalive(now, id);
                    if !rekey {
                        self.trunk_up(now, id);
                    }
                }
                TunnelEvent::Lost => self.trunk_down(id),
                TunnelEvent::ProbeDue | TunnelEvent::KeepaliveDue => {
                    self.send_keepalive(now, id);
                }
                _ => {}
            }
        }
    }

    /// The sweep's part for trunks: their tunnels' timers, a keepalive each,
    /// and what this switch now owns.
    pub(super) fn trunk_sweep(&mut self, now: Instant) {
        let Some(trunks) = self.cluster.as_ref().map(|c| c.trunks.clone()) else {
            return;
        };
        for id in trunks {
            let port = &mut self.ports[id.0 as usize];
            let target = port.trunk.as_ref().map(|t| t.endpoint);
            let mut ctx = Ctx {
                local: &self.local,
                indices: &mut self.indices,
                tx: &mut self.tx,
            };
            port.tunnel.handle_timeout(now, &mut ctx, target.as_slice());
            if port.is_connected() && port.tunnel.is_up(now) {
                self.send_keepalive(now, id);
            }
            self.trunk_events(now, id);
        }
        self.announce_sweep(now);
        self.publish(now);
    }

    /// Note what this switch now owns that it did not at the last sweep
    /// (and what it no longer owns) as [`LocalChange`]s.
    fn publish(&mut self, now: Instant) {
        let Some(mut c) = self.cluster.take() else {
            return;
        };
        if c.publish {
            self.publish_macs(now, &mut c);
            self.publish_groups(now, &mut c);
            self.publish_nodes(&mut c);
        }
        self.cluster = Some(c);
    }

    fn publish_macs(&self, now: Instant, c: &mut Cluster) {
        let local = |v, m: &MacAddr| self.macs.lookup(now, v, m).filter(|id| !self.is_trunk(*id));
        let t = self.macs.counters();
        let churn = t.aged_out + t.flushed + t.moves;
        let mut fresh = std::mem::take(&mut c.pending_macs);
        if churn != c.mac_churn {
            c.mac_churn = churn;
            let mut gone = Vec::new();
            for (&(v, m), &id) in &c.published_macs {
                match local(v, &m) {
                    None => gone.push((v, m)),
                    // Moved to another of this switch's nodes: said again.
                    Some(now_behind) if now_behind != id => fresh.push((v, m)),
                    Some(_) => {}
                }
            }
            for (v, m) in gone {
                c.published_macs.remove(&(v, m));
                let r = c.mac_ref(v, m);
                c.changes.push_back(LocalChange::MacReleased(r));
            }
        }
        if std::mem::take(&mut c.rescan) {
            fresh.clear();
            fresh.extend(self.macs.iter().map(|(v, m, _)| (v, m)));
        }
        for (v, m) in fresh.drain(..) {
            let Some(id) = local(v, &m) else { continue };
            if c.published_macs.insert((v, m), id) != Some(id) {
                let r = c.mac_ref(v, m);
                c.changes
                    .push_back(LocalChange::MacOwned(r, self.port_name(id)));
            }
        }
        c.pending_macs = fresh;
    }

    /// Port `id`'s node name, as published.
    fn port_name(&self, id: NodeId) -> Name {
        Name::from(self.ports[id.0 as usize].spec.name.as_str())
    }

    fn publish_groups(&self, now: Instant, c: &mut Cluster) {
        let mut wanted = std::mem::take(&mut c.groups_scratch);
        if self.snoop.is_enabled() {
            self.snoop.wanted_groups(now, &mut wanted);
        } else {
            // Without snooping this switch floods every group to its nodes:
            // it wants them all.
            wanted.clear();
            let nodes = self.ports.iter().filter(|p| !p.retired && !p.is_trunk());
            for v in super::member_vlans(nodes.map(|p| &p.spec)) {
                wanted.insert((v, IpAddr::V4(Ipv4Addr::UNSPECIFIED)));
                wanted.insert((v, IpAddr::V6(Ipv6Addr::UNSPECIFIED)));
            }
        }
        for &(v, g) in c.published_groups.difference(&wanted) {
            c.changes
                .push_back(LocalChange::GroupLeft(c.group_ref(v, g)));
        }
        for &(v, g) in wanted.difference(&c.published_groups) {
            c.changes
                .push_back(LocalChange::GroupJoined(c.group_ref(v, g)));
        }
        std::mem::swap(&mut c.published_groups, &mut wanted);
        c.groups_scratch = wanted;
    }

    fn publish_nodes(&self, c: &mut Cluster) {
        let mut now_homed = BTreeMap::new();
        for (i, p) in self.ports.iter().enumerate() {
            if p.retired || p.is_trunk() || !p.is_connected() {
                continue;
            }
            if let Some(e) = p.tunnel.endpoint() {
                now_homed.insert(NodeId(i as u32), (Name::from(p.spec.name.as_str()), e));
            }
        }
        for (id, (name, _)) in &c.published_nodes {
            if now_homed.get(id).is_none_or(|(n, _)| n != name) {
                c.changes.push_back(LocalChange::NodeGone(c.node_ref(name)));
            }
        }
        for (id, (name, e)) in &now_homed {
            if c.published_nodes.get(id) != Some(&(name.clone(), *e)) {
                c.changes
                    .push_back(LocalChange::NodeHomed(c.node_ref(name), *e));
            }
        }
        c.published_nodes = now_homed;
    }

    /// The trunks for status.
    pub(super) fn trunk_status(&self, now: Instant) -> Vec<PeerSwitchStatus> {
        let Some(c) = self.cluster.as_ref() else {
            return Vec::new();
        };
        let ago = |t: Option<Instant>| t.map(|t| now.saturating_duration_since(t).as_secs_f64());
        c.trunks
            .iter()
            .map(|&id| {
                let p = &self.ports[id.0 as usize];
                let t = p.trunk.as_deref();
                let owned = c.view.counts(&p.spec.name);
                PeerSwitchStatus {
                    network: String::new(),
                    name: p.spec.name.clone(),
                    public_key: p.spec.public_key.to_base64(),
                    up: p.is_connected() && t.is_some_and(|t| t.up_since.is_some()),
                    handshaking: p.tunnel.is_handshaking(),
                    endpoint: p
                        .tunnel
                        .endpoint()
                        .or(t.map(|t| t.endpoint))
                        .map(|e| e.to_string()),
                    up_secs: ago(t.and_then(|t| t.up_since)),
                    last_handshake_secs_ago: ago(p.tunnel.last_handshake()),
                    last_heard_secs_ago: ago(p.tunnel.last_rx()),
                    ups: t.map_or(0, |t| t.ups),
                    downs: t.map_or(0, |t| t.downs),
                    macs: self.macs.count_for(id),
                    store_up: owned.up,
                    store_macs: owned.macs,
                    store_groups: owned.groups,
                    store_nodes: owned.nodes,
                    rx_frames: p.counters.rx_frames,
                    rx_bytes: p.counters.rx_bytes,
                    tx_frames: p.counters.tx_frames,
                    tx_bytes: p.counters.tx_bytes,
                    handshakes: p.counters.handshakes,
                    announced: t.and_then(|t| t.peer.summary()).map(
                        |(generation, vlans, groups, all_groups)| PeerAnnouncedStatus {
                            generation,
                            vlans,
                            groups,
                            all_groups,
                        },
                    ),
                    pruned_frames: t.map_or(0, |t| t.peer.pruned),
                }
            })
            .collect()
    }
}

impl Cluster {
    fn mac_ref(&self, vlan: Vid, mac: MacAddr) -> MacRef {
        MacRef {
            network: self.network.clone(),
            vlan,
            mac,
        }
    }

    fn group_ref(&self, vlan: Vid, group: IpAddr) -> GroupRef {
        GroupRef {
            network: self.network.clone(),
            vlan,
            group,
        }
    }

    fn node_ref(&self, node: &Name) -> NodeRef {
        NodeRef {
            network: self.network.clone(),
            node: node.clone(),
        }
    }
}

/// IGMP/MLD, PIM or data: the frame from its ethertype on.
fn parse(typed: &[u8]) -> Parsed<'_> {
    match typed {
        [a, b, l3 @ ..] => wire::parse(u16::from_be_bytes([*a, *b]), l3),
        _ => Parsed::NotIp,
    }
}

/// Whether a multicast frame (from its ethertype on) is snooping control:
/// IGMP/MLD or a PIM hello, which never crosses a trunk.
pub(super) fn is_snoop_control(typed: &[u8]) -> bool {
    matches!(
        parse(typed),
        Parsed::Query(_)
            | Parsed::RouterHello
            | Parsed::Join { .. }
            | Parsed::Leave { .. }
            | Parsed::Report(_)
    )
}

/// A trunk port to `peer`, carrying `vlan`.
fn trunk_port(now: Instant, id: NodeId, peer: &PeerSwitch, vlan: PortVlan) -> Port {
    let mut p = Port::new(
        now,
        id,
        NodeSpec {
            name: peer.name.to_string(),
            public_key: peer.public_key,
            vlan,
            fast_leave: false,
            multicast_router: false,
        },
    );
    let cfg = TunnelConfig {
        probe_after: TRUNK_PROBE_AFTER,
        probe_timeout: TRUNK_PROBE_TIMEOUT,
        retry_max: TRUNK_RETRY_MAX,
        ..TunnelConfig::new(Role::Both)
    };
    p.tunnel = Tunnel::new(now, id, peer.public_key, cfg);
    p.tunnel.set_endpoint(Some(peer.endpoint));
    p.trunk = Some(Box::new(TrunkState {
        endpoint: peer.endpoint,
        ups: 0,
        downs: 0,
        up_since: None,
        peer: PeerAnnounced::default(),
    }));
    p
}
