//! Several isolated networks in one switch process.
//!
//! Each network (`[[network]]` in switch.toml, or the top-level nodes) is a
//! [`Switch`] core of its own: its own nodes, sessions, MAC table, multicast
//! groups and mode. Nothing is shared between cores but the UDP socket and the
//! switch's static key, so frames, MACs and groups cannot cross networks, even
//! when both sides use the same MACs and IPs.
//!
//! [`Networks::handle_datagram`] reads the network id from the common header
//! and hands the datagram to that network's core; a datagram whose id no
//! network has is dropped and counted (`unknown_network`) before any
//! cryptographic work. The handshake binds the id too (it is in the Noise
//! prologue), so a node cannot move its session to another network.
use std::net::SocketAddr;
use std::time::Instant;

use overlay_proto::handshake::Timestamp;
use overlay_proto::receiver::Receiver;
use overlay_proto::transmit::Transmit;
use overlay_proto::wire::Header;

use tapmesh_shell::capture::{Capture, CaptureSpec};

use crate::cluster::{ClusterConfig, ClusterUpdate, LocalChange, SwitchFacts};
use crate::counters::{DropReason, Drops, ReloadCounters};
use crate::fabric::{Changes, Event, Switch, SwitchConfig, Unchangeable};
use crate::impair::LinkImpair;
use crate::mesh::Mode;
use crate::mirror::MirrorSpec;
use crate::snooping::limits::GroupTotal;
use crate::status::{NetworkStatus, Status};

/// One network's validated configuration.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// Its name (`default` for the top-level nodes).
    pub name: String,
    /// Central or mesh.
    pub mode: Mode,
    /// The core's configuration (`core.network_id` is the network's id).
    pub core: SwitchConfig,
    /// Links impaired from the start, by node name (see [`crate::impair`]).
    pub impair: Vec<(String, LinkImpair)>,
    /// Mirror sessions (see [`crate::mirror`]), checked against the nodes.
    pub mirrors: Vec<MirrorSpec>,
}

struct Network {
    name: String,
    id: u32,
    mode: Mode,
    core: Switch,
}

/// The switch's networks, each a core of its own.
pub struct Networks {
    nets: Vec<Network>,
    /// Drops before any network got the datagram (bad header, unknown id).
    drops: Drops,
    /// `max-groups-total`'s count, shared by every core (and cores a reload adds).
    groups: GroupTotal,
    /// Seeds the cores' random numbers.
    seed: u64,
    reloads: ReloadCounters,
    /// For cores a reload adds (see [`set_timer_slack`](Self::set_timer_slack)).
    timer_slack: std::time::Duration,
    /// Live captures started (see [`add_capture`](Self::add_capture)).
    captures: Vec<Capture>,
    /// The cluster every core joined, with the wall-clock time matching an
    /// instant (for cores a reload adds).
    cluster: Option<(ClusterConfig, Instant, std::time::Duration)>,
}

/// What a reload changed, network by network (only networks with changes).
pub type Reloaded = Vec<(String, Changes)>;

/// Why [`Networks::apply`] refused: for each setting that cannot change
/// while running, the index of its network in the new config and its key.
pub type Refused = Vec<(usize, Unchangeable)>;

impl std::fmt::Debug for Networks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.nets.iter().map(|n| (&n.name, n.id, n.mode)))
            .finish()
    }
}

impl Networks {
    /// One core per network. `seed` seeds the cores' random numbers (each
    /// gets a different one).
    ///
    /// # Panics
    /// If `cfgs` is empty (the config always yields at least one network).
    pub fn new(cfgs: Vec<NetworkConfig>, now: Instant, seed: u64) -> Networks {
        assert!(!cfgs.is_empty(), "a switch needs at least one network");
        let groups = GroupTotal::default();
        let nets = cfgs
            .into_iter()
            .enumerate()
            .map(|(i, c)| network(c, now, seed, i, &groups))
            .collect();
        Networks {
            nets,
            drops: Drops::default(),
            groups,
            seed,
            reloads: ReloadCounters::default(),
            timer_slack: std::time::Duration::ZERO,
            captures: Vec::new(),
            cluster: None,
        }
    }

    /// Start a live capture of the frames `spec` selects (see
    /// [`crate::capture`]); the reply names how many networks it watches.
    /// Refused with one line if it names a network, node or VLAN the
    /// switch does not have.
    pub fn add_capture(&mut self, spec: &CaptureSpec, capture: Capture) -> Result<usize, String> {
        self.captures.retain(|c| !c.is_closed());
        let nets: Vec<usize> = (0..self.nets.len())
            .filter(|&i| {
                spec.network
                    .as_ref()
                    .is_none_or(|n| *n == self.nets[i].name)
            })
            .collect();
        if let Some(n) = &spec.network
            && nets.is_empty()
        {
            return Err(format!("no network {n:?}"));
        }
        if let Some(v) = spec.vlan
            && !(1..=4094).contains(&v)
        {
            return Err(format!("bad VLAN {v}: must be 1 to 4094"));
        }
        if let Some(missing) = (spec.nodes.iter()).find(|name| {
            !nets
                .iter()
                .any(|&i| self.nets[i].core.node_id(name).is_some())
        }) {
            return Err(format!("no node {missing:?}"));
        }
        let mut watched = 0;
        for i in nets {
            let n = &mut self.nets[i];
            let has = |name: &String| n.core.node_id(name).is_some();
            if !spec.nodes.is_empty() && !spec.nodes.iter().any(has) {
                continue;
            }
            n.core
                .add_capture(capture.clone(), &n.name, &spec.nodes, spec.vlan);
            watched += 1;
        }
        self.captures.push(capture);
        Ok(watched)
    }

    /// Apply a reloaded configuration: networks matched by name keep their
    /// cores ([`Switch::apply_config`]), new ones get a core, and ones no
    /// longer configured are dropped with their sessions. All or nothing: if
    /// a network's id, mode, secret or the switch's key changed, nothing is
    /// applied and every such setting is named.
    pub fn apply(&mut self, now: Instant, cfgs: Vec<NetworkConfig>) -> Result<Reloaded, Refused> {
        let mut refused = Refused::new();
        for (k, c) in cfgs.iter().enumerate() {
            let Some(n) = self.nets.iter().find(|n| n.name == c.name) else {
                continue;
            };
            if n.mode != c.mode {
                refused.push((k, Unchangeable("mode")));
            }
            if let Err(u) = n.core.check_config(&c.core) {
                refused.push((k, u));
            }
        }
        if !refused.is_empty() {
            return Err(refused);
        }
        let mut out = Reloaded::new();
        let mut old = std::mem::take(&mut self.nets);
        let first_new = old.len();
        for (k, c) in cfgs.into_iter().enumerate() {
            let name = c.name.clone();
            let changes = match old.iter().position(|n| n.name == c.name) {
                Some(i) => {
                    let mut n = old.swap_remove(i);
                    // Checked above, so this applies; a refusal would leave
                    // the core as it was.
                    let mut changes = n.core.apply_config(now, c.core).unwrap_or_default();
                    // Links impaired in the file: from the start, so for
                    // added nodes; a running node keeps what it has.
                    for (node, l) in c.impair.iter().filter(|x| changes.added.contains(&x.0)) {
                        n.core.set_impair(node, l);
                    }
                    changes.settings |= n.core.set_configured_mirrors(&c.mirrors);
                    self.nets.push(n);
                    changes
                }
                None => {
                    let added = c.core.nodes.iter().map(|n| n.name.clone()).collect();
                    let seed_index = first_new + k;
                    let mut n = network(c, now, self.seed, seed_index, &self.groups);
                    n.core.set_timer_slack(self.timer_slack);
                    if let Some((cfg, t0, wall)) = &self.cluster {
                        let wall = *wall + now.saturating_duration_since(*t0);
                        n.core.join_cluster(now, wall, &n.name, cfg);
                    }
                    self.nets.push(n);
                    Changes {
                        added,
                        settings: true,
                        ..Changes::default()
                    }
                }
            };
            if !changes.is_empty() {
                out.push((name, changes));
            }
        }
        for mut gone in old {
            // Its groups no longer count against `max-groups-total`.
            gone.core.share_group_total(GroupTotal::default());
            let removed = gone.core.status(now, false).nodes;
            out.push((
                gone.name,
                Changes {
                    removed: removed.into_iter().map(|n| n.name).collect(),
                    settings: true,
                    ..Changes::default()
                },
            ));
        }
        Ok(out)
    }

    /// Join a cluster (`[cluster]`): every network's core gets a trunk to
    /// each other switch. `wall` is the wall-clock time (since the Unix
    /// epoch) matching `now`. See [`crate::cluster`].
    pub fn join_cluster(&mut self, now: Instant, wall: std::time::Duration, cfg: ClusterConfig) {
        for n in &mut self.nets {
            n.core.join_cluster(now, wall, &n.name, &cfg);
        }
        self.cluster = Some((cfg, now, wall));
    }

    /// The cluster this switch is in, if any.
    pub fn cluster(&self) -> Option<&ClusterConfig> {
        self.cluster.as_ref().map(|c| &c.0)
    }

    /// One update from the cluster's store, for every network's view (each
    /// keeps its own network's facts). See [`crate::cluster`].
    pub fn handle_cluster_update(&mut self, now: Instant, u: &ClusterUpdate) {
        for n in &mut self.nets {
            n.core.handle_cluster_update(now, u);
        }
    }

    /// The next change of what this switch owns, over all networks, for
    /// the store to write (collected on each sweep; only with etcd
    /// endpoints configured).
    pub fn poll_local_change(&mut self) -> Option<LocalChange> {
        self.nets
            .iter_mut()
            .find_map(|n| n.core.poll_local_change())
    }

    /// Everything this switch owns, over all networks, as of the last
    /// sweep: for a store that must write it all again (a new lease).
    pub fn local_snapshot(&self) -> SwitchFacts {
        let mut all = SwitchFacts::default();
        for n in &self.nets {
            let f = n.core.local_facts();
            all.macs.extend(f.macs);
            all.groups.extend(f.groups);
            all.nodes.extend(f.nodes);
        }
        all
    }

    /// Count a reload, applied or refused (for `status` and `/metrics`).
    pub fn count_reload(&mut self, ok: bool) {
        self.reloads.count(ok);
    }

    /// Process one received UDP datagram: to its network's core, or dropped.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, buf: &mut [u8]) {
        // HOT PATH: one header check and a scan of a few ids, no crypto.
        let id = match Header::new_checked(&buf[..]) {
            Ok(h) => h.network_id(),
            Err(e) => return self.drops.add(DropReason::from(e)),
        };
        match self.nets.iter_mut().find(|n| n.id == id) {
            Some(n) => n.core.handle_datagram(now, from, buf),
            None => self.drops.add(DropReason::UnknownNetwork),
        }
    }

    /// A data datagram a worker opened in place with `result`
    /// ([`crate::workers`]): to its network's core.
    pub fn handle_opened(
        &mut self,
        now: Instant,
        from: SocketAddr,
        buf: &mut [u8],
        result: Result<std::ops::Range<usize>, overlay_proto::Error>,
    ) {
        // HOT PATH: the worker checked the header.
        let id = Header::new_unchecked(&buf[..]).network_id();
        match self.nets.iter_mut().find(|n| n.id == id) {
            Some(n) => n.core.handle_opened(now, from, buf, result),
            None => self.drops.add(DropReason::UnknownNetwork),
        }
    }

    /// A handshake initiation the workers' gate admitted
    /// ([`crate::workers::gate`]): to its network's core.
    pub fn handle_admitted(&mut self, now: Instant, from: SocketAddr, buf: &[u8]) {
        let id = Header::new_unchecked(buf).network_id();
        match self.nets.iter_mut().find(|n| n.id == id) {
            Some(n) => n.core.handle_admitted(now, from, buf),
            None => self.drops.add(DropReason::UnknownNetwork),
        }
    }

    /// Every network's handshake guard, with its network id (for the
    /// workers' gate).
    pub fn guards(&self) -> impl Iterator<Item = (u32, crate::workers::gate::SharedGuard)> + '_ {
        self.nets.iter().map(|n| (n.id, n.core.guard().clone()))
    }

    /// Each network's core, with its id (the workers' fast paths).
    pub fn cores_by_id(&self) -> impl Iterator<Item = (u32, &Switch)> {
        self.nets.iter().map(|n| (n.id, &n.core))
    }

    /// Take every network's fast path back to the core until it is
    /// published again (before a reload or an admin change).
    pub fn revoke_fast_paths(&self) {
        for n in &self.nets {
            n.core.revoke_fast_path();
        }
    }

    /// Every current session's receive half, with its network id.
    pub fn receivers(&self) -> impl Iterator<Item = (u32, &std::sync::Arc<Receiver>)> {
        self.nets
            .iter()
            .flat_map(|n| n.core.receivers().map(move |r| (n.id, r)))
    }

    /// Let every core run its timers (each does only what is due).
    pub fn handle_timeout(&mut self, now: Instant) {
        for n in &mut self.nets {
            n.core.handle_timeout(now);
        }
    }

    /// The earliest time any core wants [`handle_timeout`](Self::handle_timeout).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.nets.iter().filter_map(|n| n.core.poll_timeout()).min()
    }

    /// The next datagram any core queued. The bytes stay valid until the next call.
    pub fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        let i = self
            .nets
            .iter()
            .position(|n| n.core.pending_transmits() > 0)?;
        self.nets[i].core.poll_transmit()
    }

    /// The next event for the log, with the name of its network.
    pub fn poll_event(&mut self) -> Option<(&str, Event)> {
        let i = self.nets.iter_mut().position(|n| n.core.has_event())?;
        let n = &mut self.nets[i];
        n.core.poll_event().map(|e| (n.name.as_str(), e))
    }

    /// After a restart: restart notices to the nodes' last endpoints (each
    /// core picks its own nodes by name). Returns how many were queued.
    pub fn announce_restart(
        &mut self,
        timestamp: Timestamp,
        known: &[(String, SocketAddr)],
    ) -> usize {
        self.nets
            .iter_mut()
            .map(|n| {
                n.core
                    .announce_restart(timestamp, known.iter().map(|(s, a)| (s.as_str(), *a)))
            })
            .sum()
    }

    /// Every connected node's name and endpoint, over all networks.
    pub fn endpoints(&self) -> Vec<(String, SocketAddr)> {
        self.nets.iter().flat_map(|n| n.core.endpoints()).collect()
    }

    /// All drops: before dispatch and in every core.
    pub fn drops_total(&self) -> u64 {
        self.drops.total()
            + self
                .nets
                .iter()
                .map(|n| n.core.drops().total())
                .sum::<u64>()
    }

    /// Set node `name`'s link impairment (see [`Switch::set_impair`]).
    /// Returns false if no network has the node.
    pub fn set_impair(&mut self, name: &str, l: &LinkImpair) -> bool {
        self.nets.iter_mut().any(|n| n.core.set_impair(name, l))
    }

    /// What is set on node `name`'s link, if there is such a node.
    pub fn impair(&self, name: &str) -> Option<LinkImpair> {
        self.nets.iter().find_map(|n| n.core.impair_of(name))
    }

    /// Tell every core how late the shell's timers fire (see
    /// [`Switch::set_timer_slack`]).
    pub fn set_timer_slack(&mut self, slack: std::time::Duration) {
        self.timer_slack = slack;
        for n in &mut self.nets {
            n.core.set_timer_slack(slack);
        }
    }

    /// Answer an admin request line `impair …` or `link …` (see
    /// [`crate::impair::Request`]) with a JSON reply: the node's link as
    /// set now, or an error.
    pub fn impair_request(&mut self, line: &str) -> String {
        let r = crate::impair::Request::parse(line).and_then(|r| {
            let current = self
                .impair(r.node)
                .ok_or_else(|| format!("no node {:?}", r.node))?;
            let new = r.apply(current);
            self.set_impair(r.node, &new);
            Ok(crate::impair::ImpairStatus::new(
                &new,
                [0, 0],
                &Default::default(),
            ))
        });
        match r {
            Ok(s) => serde_json::to_string(&s).unwrap_or_default(),
            Err(e) => serde_json::json!({ "error": e }).to_string(),
        }
    }

    /// Every network's mirror sessions, each marked with its network.
    pub fn status_mirrors(&self) -> Vec<crate::mirror::MirrorStatus> {
        let mut all = Vec::new();
        for n in &self.nets {
            all.extend(n.core.mirror_status().into_iter().map(|mut s| {
                s.network = n.name.clone();
                s
            }));
        }
        all
    }

    /// The networks' cores, mutable, with their names.
    pub(crate) fn cores_mut(&mut self) -> impl Iterator<Item = (&str, &mut Switch)> {
        self.nets.iter_mut().map(|n| (n.name.as_str(), &mut n.core))
    }

    /// Answer an admin request line `querier …` (see
    /// [`crate::snooping::controls::QuerierRequest`]): change the querier
    /// of one network or all, and reply with each one's settings as JSON.
    pub fn querier_request(&mut self, now: Instant, line: &str) -> String {
        crate::snooping::controls::reply(self.querier_change(now, line))
    }

    fn querier_change(
        &mut self,
        now: Instant,
        line: &str,
    ) -> Result<Vec<crate::snooping::controls::QuerierSettings>, String> {
        let r = crate::snooping::controls::QuerierRequest::parse(line)?;
        let chosen = |n: &Network| r.network.is_none_or(|want| want == n.name);
        if !self.nets.iter().any(chosen) {
            return Err(format!("no network {:?}", r.network.unwrap_or_default()));
        }
        // All or nothing: check every chosen network before changing one.
        for n in self.nets.iter().filter(|n| chosen(n)) {
            n.core.check_querier(&r.change)?;
        }
        let mut out = Vec::new();
        for n in self.nets.iter_mut().filter(|n| chosen(n)) {
            let mut s = n.core.set_querier(now, &r.change)?;
            s.network = n.name.clone();
            out.push(s);
        }
        Ok(out)
    }

    /// The networks' cores, for tests and tools.
    pub fn cores(&self) -> impl Iterator<Item = (&str, &Switch)> {
        self.nets.iter().map(|n| (n.name.as_str(), &n.core))
    }

    /// One snapshot of the whole switch: nodes, groups and MACs of every
    /// network (each marked with its network's name), counters summed.
    pub fn status(&self, now: Instant, with_macs: bool) -> Status {
        let mut total: Option<Status> = None;
        let mut networks = Vec::with_capacity(self.nets.len());
        for n in &self.nets {
            let mut s = n.core.status(now, with_macs);
            mark(&mut s, &n.name);
            networks.push(NetworkStatus {
                name: n.name.clone(),
                id: n.id,
                mode: n.mode,
                nodes: s.nodes.len(),
                connected: s.nodes.iter().filter(|x| x.connected).count(),
            });
            match &mut total {
                None => total = Some(s),
                Some(t) => absorb(t, s),
            }
        }
        let mut t = total.expect("Networks::new requires at least one network");
        t.drops += &self.drops;
        t.networks = networks;
        t.reloads = self.reloads;
        t.capture.active = self.captures.iter().filter(|c| !c.is_closed()).count() as u64;
        t
    }
}

/// One network's core, mesh mode on if configured, counting its groups in `groups`.
fn network(c: NetworkConfig, now: Instant, seed: u64, i: usize, groups: &GroupTotal) -> Network {
    let id = c.core.network_id;
    let seed = seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut core = Switch::new(c.core, now, seed);
    core.share_group_total(groups.share());
    for (node, l) in &c.impair {
        core.set_impair(node, l);
    }
    core.set_configured_mirrors(&c.mirrors);
    if c.mode == Mode::Mesh {
        core.enable_mesh();
    }
    Network {
        name: c.name,
        id,
        mode: c.mode,
        core,
    }
}

/// Writes the network's name into every entry that names a node.
fn mark(s: &mut Status, name: &str) {
    let m = &mut s.multicast;
    for n in &mut s.nodes {
        n.network = name.to_string();
    }
    for g in &mut m.groups {
        g.network = name.to_string();
    }
    for q in &mut m.queriers {
        q.network = name.to_string();
    }
    for q in &mut m.querier_settings {
        q.network = name.to_string();
    }
    for r in &mut m.router_ports {
        r.network = name.to_string();
    }
    for x in s.macs.iter_mut().flatten() {
        x.network = name.to_string();
    }
    for x in &mut s.mirrors {
        x.network = name.to_string();
    }
    for x in &mut s.switches {
        x.network = name.to_string();
    }
}

/// Adds another network's snapshot to `t`: lists appended, counters summed.
/// Settings (aging, snooping on or off) are switch-wide, so `t`'s stay.
fn absorb(t: &mut Status, s: Status) {
    t.uptime_secs = t.uptime_secs.max(s.uptime_secs);
    t.nodes.extend(s.nodes);
    t.mirrors.extend(s.mirrors);
    t.switches.extend(s.switches);
    t.drops += &s.drops;
    t.forwarded += &s.forwarded;
    t.mac_table.entries += s.mac_table.entries;
    t.mac_table.limit += s.mac_table.limit;
    t.mac_table.counters += &s.mac_table.counters;
    t.sessions += &s.sessions;
    t.capture += &s.capture;
    t.handshake_guard.under_load |= s.handshake_guard.under_load;
    t.handshake_guard.counters += &s.handshake_guard.counters;
    let (tm, sm) = (&mut t.multicast, s.multicast);
    tm.queriers.extend(sm.queriers);
    tm.querier_settings.extend(sm.querier_settings);
    tm.router_ports.extend(sm.router_ports);
    tm.groups.extend(sm.groups);
    tm.counters += &sm.counters;
    if let (Some(a), Some(b)) = (&mut t.macs, s.macs) {
        a.extend(b);
    }
}

#[cfg(test)]
mod tests {
    use overlay_proto::keys::StaticSecret;
    use overlay_proto::wire::{HS_INIT_LEN, MessageType};

    use super::*;
    use crate::fabric::NodeSpec;

    fn net(name: &str, id: u32, key: &StaticSecret, nodes: &[&str]) -> NetworkConfig {
        let mut rng = rand::rng();
        NetworkConfig {
            name: name.into(),
            mode: Mode::Central,
            impair: Vec::new(),
            mirrors: Vec::new(),
            core: SwitchConfig {
                network_id: id,
                ..SwitchConfig::new(
                    key.clone(),
                    nodes
                        .iter()
                        .map(|n| NodeSpec::new(*n, StaticSecret::generate(&mut rng).public_key()))
                        .collect(),
                )
            },
        }
    }

    fn init(network_id: u32) -> Vec<u8> {
        let mut b = vec![0x5a; HS_INIT_LEN];
        Header::new_unchecked(&mut b[..]).set_common(MessageType::HandshakeInit, 0, 0, network_id);
        b
    }

    #[test]
    fn dispatch_by_network_id_and_drop_unknown_ids_first() {
        let key = StaticSecret::generate(&mut rand::rng());
        let now = Instant::now();
        let mut n = Networks::new(
            vec![
                net("red", 1, &key, &["r1", "r2"]),
                net("blue", 2, &key, &["b1"]),
            ],
            now,
            7,
        );
        let from: SocketAddr = "198.18.0.10:4000".parse().unwrap();
        // An unknown id is counted here and reaches no core.
        n.handle_datagram(now, from, &mut init(3));
        // A known id reaches its core, which checks mac1 (forged: dropped).
        n.handle_datagram(now, from, &mut init(2));
        // Not even a header.
        n.handle_datagram(now, from, &mut [0x10, 0]);
        let core_drops =
            |name: &str, r: DropReason| n.cores().find(|c| c.0 == name).unwrap().1.drops().get(r);
        assert_eq!(n.drops.get(DropReason::UnknownNetwork), 1);
        assert_eq!(n.drops.get(DropReason::Truncated), 1);
        assert_eq!(core_drops("blue", DropReason::BadMac1), 1);
        assert_eq!(core_drops("red", DropReason::BadMac1), 0);
        assert_eq!(n.drops_total(), 3);
        assert!(n.poll_transmit().is_none());

        let s = n.status(now, true);
        let nodes: Vec<(&str, &str)> = s
            .nodes
            .iter()
            .map(|x| (x.network.as_str(), x.name.as_str()))
            .collect();
        assert_eq!(nodes, [("red", "r1"), ("red", "r2"), ("blue", "b1")]);
        assert_eq!(s.drops.get(DropReason::UnknownNetwork), 1);
        assert_eq!(s.drops.get(DropReason::BadMac1), 1);
        let nets: Vec<(&str, u32, usize)> = s
            .networks
            .iter()
            .map(|x| (x.name.as_str(), x.id, x.nodes))
            .collect();
        assert_eq!(nets, [("red", 1, 2), ("blue", 2, 1)]);
        assert_eq!(s.mac_table.limit, 2 << 20);
    }

    #[test]
    fn querier_requests_reach_the_network_named_or_all_and_all_or_nothing() {
        let key = StaticSecret::generate(&mut rand::rng());
        let now = Instant::now();
        let mut n = Networks::new(
            vec![net("a", 1, &key, &["h1"]), net("b", 2, &key, &["h2"])],
            now,
            1,
        );
        let enabled = |n: &Networks| -> Vec<(String, bool)> {
            n.status(now, false)
                .multicast
                .querier_settings
                .into_iter()
                .map(|q| (q.network, q.enabled))
                .collect()
        };
        let r: serde_json::Value =
            serde_json::from_str(&n.querier_request(now, "querier network=b off")).unwrap();
        assert_eq!(r["networks"][0]["network"], "b");
        assert_eq!(r["networks"].as_array().map(Vec::len), Some(1));
        assert_eq!(enabled(&n), [("a".into(), true), ("b".into(), false)]);
        let r: serde_json::Value =
            serde_json::from_str(&n.querier_request(now, "querier network=c off")).unwrap();
        assert_eq!(r["error"], "no network \"c\"");
        let r: serde_json::Value =
            serde_json::from_str(&n.querier_request(now, "querier off response=999s")).unwrap();
        assert!(r["error"].as_str().unwrap().contains("response"), "{r}");
        assert_eq!(enabled(&n), [("a".into(), true), ("b".into(), false)]);
        let r: serde_json::Value =
            serde_json::from_str(&n.querier_request(now, "querier on")).unwrap();
        assert_eq!(r["networks"].as_array().map(Vec::len), Some(2));
        assert_eq!(enabled(&n), [("a".into(), true), ("b".into(), true)]);
    }
}
