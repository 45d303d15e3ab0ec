//! IGMP/MLD snooping: which nodes want which multicast groups, so group
//! traffic goes only to them (and to multicast routers), not to every node.
//!
//! Why: a central switch floods every multicast frame to every node unless it
//! knows better, and multicast labs are a main use of tapmesh. The rules are
//! RFC 4541's, as a Linux bridge applies them:
//! - link-local groups (224.0.0.0/24, ff02::/16) are always flooded, so ARP,
//!   neighbour discovery, mDNS and routing hellos never break;
//! - a registered group goes to the nodes with a member and to router ports
//!   (nodes behind which a query or PIM was seen); an unregistered group is
//!   flooded or goes to router ports only (`flood-unregistered`);
//! - reports and leaves go to router ports only; queries are flooded;
//! - memberships age out after the group membership interval (260 s: 2 x
//!   125 s query interval + 10 s response, RFC 3376 8.4); a leave lowers the
//!   member's timer to the last-member query time (2 x 1 s) and, if the
//!   switch is the querier, triggers group-specific queries, so remaining
//!   listeners behind that node answer and stay; `fast-leave` nodes are
//!   pruned at once.
//!
//! Source lists, the simple model: a member is either "any source" (IGMPv1/2,
//! MLDv1, and any EXCLUDE-mode record: the exclusions are ignored, so at
//! worst a node gets a source it excluded) or a set of INCLUDE sources, each
//! with its own timer (IGMPv3/MLDv2 source-specific joins). Data from S to G
//! goes to a member if it takes any source or lists S.
//!
//! The built-in querier (like Linux `mcast_querier`): per VLAN and family,
//! it sends general queries every query interval (two quick ones at start)
//! while no other querier is heard, and goes silent for the other-querier-
//! present interval (255 s) when a query comes from a lower address (any
//! address beats an unspecified 0.0.0.0 source). Its queries are IGMPv3/MLDv2
//! so hosts stay in v3/v2 mode. They are frames the switch originates:
//! [`Snooping::poll_query`] hands them to the switch, which sends them to
//! every node of the VLAN.
//!
//! The state is keyed by (VLAN, group): VLANs never share groups.
//!
//! Bounded (see [`limits`]): memberships per node, groups per network and
//! over all networks, sources per membership. Over a limit the new state is
//! refused and counted by reason; forwarding stays safe, never narrower than
//! what was asked: a refused group stays unregistered, so it is flooded (or,
//! with `flood-unregistered = false`, goes to router ports, as any group
//! nobody joined); a membership refused on an existing group leaves only the
//! node over its limit without the group; a source over the limit turns its
//! membership into "any source", a superset of what it asked for. Every
//! lookup is a hash lookup (groups by (VLAN, group), sources in
//! [`sources::Sources`]); the sweep touches each membership once and only
//! the sources that expired.
//!
//! Leaves are rate-limited per node (`leaves-per-sec`, a token bucket; one
//! per v2 leave or IGMPv3/MLDv2 leave record, however many sources a BLOCK
//! lists); beyond it a leave is ignored and counted, so the membership runs
//! to its timer: the node keeps the group a while longer, nobody loses it.
//! Group-specific queries go out at most once per group per last-member
//! query interval: a leave while the group is being queried (or was queried
//! less than an interval ago) extends that sequence instead of starting
//! another at once (counted as deferred), and the leaving member waits the
//! last-member time from the next query. Fast-leave nodes send no queries
//! and are not limited.
pub mod limits;
mod sources;
pub mod wire;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use foldhash::fast::RandomState;
use overlay_proto::ethernet::MacAddr;

use crate::NodeId;
use crate::counters::SnoopCounters;
use crate::status::{
    GroupStatus, MemberStatus, MulticastStatus, QuerierStatus, RouterPortStatus, SnoopLimits,
    SourceStatus,
};
use crate::storm::{Bucket, Rate};
use crate::vlan::Vid;
use limits::{Budget, GroupTotal, Refused};
use sources::Sources;
use wire::{Family, Parsed, QuerySpec, Record, RecordType};

/// Snooping settings (`[multicast]` in `switch.toml`), RFC 3376 defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnoopConfig {
    /// Snoop at all; `false` floods every multicast frame.
    pub enabled: bool,
    /// Flood groups nobody joined (else: router ports only).
    pub flood_unregistered: bool,
    /// Group membership interval: a membership not refreshed for this long
    /// ends.
    pub membership: Duration,
    /// Run the built-in querier when no other querier is present.
    pub querier: bool,
    /// Source of its IGMP queries (0.0.0.0: yields to any other querier).
    pub querier_v4: Ipv4Addr,
    /// Source of its MLD queries (link-local).
    pub querier_v6: Ipv6Addr,
    /// Source MAC of its queries.
    pub querier_mac: MacAddr,
    /// Time between general queries.
    pub query_interval: Duration,
    /// Max response time in general queries.
    pub query_response: Duration,
    /// Time between group-specific queries after a leave, and their max
    /// response time.
    pub last_member_interval: Duration,
    /// Group-specific queries sent after a leave.
    pub last_member_count: u32,
    /// Memberships one node may hold (like Linux's per-port `mcast_max_groups`).
    pub max_groups_per_node: usize,
    /// Groups one network may hold (like Linux's `mcast_hash_max`).
    pub max_groups: usize,
    /// Groups all networks of the switch may hold together.
    pub max_groups_total: usize,
    /// INCLUDE sources one node may list for one group (Linux: 32 per port
    /// and group); beyond, its membership takes every source.
    pub max_sources_per_group: usize,
    /// Leaves per second each node may send (and as many back to back).
    pub leaves_per_sec: u32,
}

/// The querier's default MAC: locally administered, "tm" for tapmesh.
pub const DEFAULT_QUERIER_MAC: MacAddr = MacAddr([0x02, 0x74, 0x6d, 0x00, 0x00, 0x01]);

impl Default for SnoopConfig {
    fn default() -> Self {
        SnoopConfig {
            enabled: true,
            flood_unregistered: true,
            membership: Duration::from_secs(260),
            querier: true,
            querier_v4: Ipv4Addr::UNSPECIFIED,
            querier_v6: link_local_from_mac(&DEFAULT_QUERIER_MAC),
            querier_mac: DEFAULT_QUERIER_MAC,
            query_interval: Duration::from_secs(125),
            query_response: Duration::from_secs(10),
            last_member_interval: Duration::from_secs(1),
            last_member_count: 2,
            max_groups_per_node: 1024,
            max_groups: 4096,
            max_groups_total: 16384,
            max_sources_per_group: 32,
            leaves_per_sec: 100,
        }
    }
}

impl SnoopConfig {
    /// Other-querier-present interval: robustness (2) x query interval +
    /// half the response time (RFC 3376 8.5). Router ports last as long.
    pub fn other_querier_present(&self) -> Duration {
        self.query_interval * 2 + self.query_response / 2
    }

    /// Last-member query time: how long a leaving member is kept waiting for
    /// a report from another listener behind the same node.
    pub fn last_member_time(&self) -> Duration {
        self.last_member_interval * self.last_member_count
    }
}

/// The EUI-64 link-local address of a MAC (RFC 4291 appendix A).
pub fn link_local_from_mac(m: &MacAddr) -> Ipv6Addr {
    let m = &m.0;
    Ipv6Addr::new(
        0xfe80,
        0,
        0,
        0,
        u16::from_be_bytes([m[0] ^ 2, m[1]]),
        u16::from_be_bytes([m[2], 0xff]),
        u16::from_be_bytes([0xfe, m[3]]),
        u16::from_be_bytes([m[4], m[5]]),
    )
}

/// Where a multicast frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// To every node of its VLAN.
    Flood,
    /// Only to the nodes [`Snooping::handle_frame`] put in its target list
    /// (perhaps none).
    Only,
}

/// What the snooper decided about a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classified {
    /// Where it goes.
    pub verdict: Verdict,
    /// It is link-local control traffic (link-local group, IGMP, MLD, PIM),
    /// which storm control may exempt.
    pub link_local: bool,
}

const FLOOD: Classified = Classified {
    verdict: Verdict::Flood,
    link_local: false,
};
const FLOOD_CONTROL: Classified = Classified {
    verdict: Verdict::Flood,
    link_local: true,
};
const ROUTERS_ONLY: Classified = Classified {
    verdict: Verdict::Only,
    link_local: true,
};

#[derive(Debug, Clone)]
struct Member {
    node: NodeId,
    /// Takes every source until then (v1/v2, EXCLUDE mode, or more sources
    /// than `max-sources-per-group`).
    any_source_until: Option<Instant>,
    /// INCLUDE-mode sources and their timers.
    sources: Sources,
}

impl Member {
    fn wants(&self, now: Instant, source: &IpAddr) -> bool {
        // HOT PATH (registered groups)
        self.any_source_until.is_some_and(|t| t > now) || self.sources.is_live(now, source)
    }

    fn is_live(&self, now: Instant) -> bool {
        self.any_source_until.is_some_and(|t| t > now) || self.sources.any_live(now)
    }

    fn expire(&mut self, now: Instant) {
        if self.any_source_until.is_some_and(|t| t <= now) {
            self.any_source_until = None;
        }
        self.sources.expire(now);
    }

    /// Lowers the timer of the any-source part (`None`) or of the sources
    /// `block` lists to `deadline`. Returns whether any of them was held.
    fn lower(&mut self, block: Option<&Record<'_>>, deadline: Instant) -> bool {
        match block {
            None => match self.any_source_until.as_mut() {
                Some(t) => {
                    *t = (*t).min(deadline);
                    true
                }
                None => false,
            },
            Some(r) => {
                let mut held = false;
                for s in r.sources() {
                    held |= self.sources.lower(&s, deadline);
                }
                held
            }
        }
    }

    fn holds(&self, block: Option<&Record<'_>>) -> bool {
        match block {
            None => self.any_source_until.is_some(),
            Some(r) => r.sources().any(|s| self.sources.contains(&s)),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Group {
    members: Vec<Member>,
    frames: u64,
    bytes: u64,
    /// Group-specific queries still to send after a leave.
    queries_left: u32,
    /// When the next group-specific query is due; after a sequence, the
    /// earliest time a new one may start (one per last-member interval).
    next_query: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct RouterPort {
    vid: Vid,
    node: NodeId,
    until: Instant,
}

#[derive(Debug, Clone)]
struct Querier {
    vid: Vid,
    family: Family,
    /// Another querier with a lower address, and until when it counts as present.
    other: Option<(IpAddr, Instant)>,
    next_query: Instant,
    startup_left: u32,
}

/// The snooping state of the whole switch.
#[derive(Debug)]
#[cfg_attr(fuzzing, derive(Clone))]
pub struct Snooping {
    cfg: SnoopConfig,
    fast_leave: Vec<bool>,
    groups: HashMap<(Vid, IpAddr), Group, RandomState>,
    routers: Vec<RouterPort>,
    queriers: Vec<Querier>,
    budget: Budget,
    /// Leaves per node (indexed by `NodeId`).
    leave_buckets: Vec<Bucket>,
    out: VecDeque<(Vid, Vec<u8>)>,
    counters: SnoopCounters,
}

impl Snooping {
    /// Snooping for nodes with these fast-leave settings, on these VLANs.
    pub fn new(cfg: SnoopConfig, fast_leave: Vec<bool>, vlans: &[Vid], now: Instant) -> Snooping {
        let queriers = if cfg.enabled && cfg.querier {
            vlans
                .iter()
                .flat_map(|&vid| {
                    [Family::V4, Family::V6].map(|family| Querier {
                        vid,
                        family,
                        other: None,
                        next_query: now,
                        startup_left: 1,
                    })
                })
                .collect()
        } else {
            Vec::new()
        };
        let nodes = fast_leave.len();
        Snooping {
            cfg,
            fast_leave,
            groups: HashMap::default(),
            routers: Vec::new(),
            queriers,
            budget: Budget::new(nodes),
            leave_buckets: vec![Bucket::default(); nodes],
            out: VecDeque::new(),
            counters: SnoopCounters::default(),
        }
    }

    /// New settings (a reload): `fast_leave` for every node (never fewer
    /// than now), the VLANs the nodes are members of. The group table and
    /// router ports are kept, unless snooping is now off; queriers are kept
    /// for VLANs that remain, and a VLAN new to the switch gets its startup
    /// query at once.
    pub fn reconfigure(
        &mut self,
        now: Instant,
        cfg: SnoopConfig,
        fast_leave: Vec<bool>,
        vlans: &[Vid],
    ) {
        let nodes = fast_leave.len().max(self.fast_leave.len());
        self.fast_leave = fast_leave;
        self.fast_leave.resize(nodes, false);
        self.budget.grow(nodes);
        if self.leave_buckets.len() < nodes {
            self.leave_buckets.resize(nodes, Bucket::default());
        }
        if !cfg.enabled {
            self.budget.groups_removed(self.groups.len());
            self.groups.clear();
            self.routers.clear();
            for n in 0..nodes {
                self.budget.forget(NodeId(n as u32));
            }
        }
        if cfg.enabled && cfg.querier {
            let mut queriers = Vec::with_capacity(vlans.len() * 2);
            for &vid in vlans {
                for family in [Family::V4, Family::V6] {
                    let kept = self
                        .queriers
                        .iter()
                        .find(|q| q.vid == vid && q.family == family);
                    queriers.push(kept.cloned().unwrap_or(Querier {
                        vid,
                        family,
                        other: None,
                        next_query: now,
                        startup_left: 1,
                    }));
                }
            }
            self.queriers = queriers;
        } else {
            self.queriers.clear();
        }
        self.routers.retain(|r| vlans.contains(&r.vid));
        self.cfg = cfg;
    }

    /// Count this network's groups against `total` (shared by every network
    /// of the switch, for `max-groups-total`).
    pub fn share_group_total(&mut self, total: GroupTotal) {
        self.budget.share_total(total, self.groups.len());
    }

    /// Decide where a multicast frame from `from` in VLAN `vid` goes, and
    /// learn from it if it is IGMP/MLD. `typed` is the frame from its (inner)
    /// ethertype on; `frame_len` its whole length, for the group's byte
    /// counter. For [`Verdict::Only`], the receivers are put in `targets`
    /// (cleared first, no duplicates, maybe including `from`).
    pub fn handle_frame(
        &mut self,
        now: Instant,
        vid: Vid,
        from: NodeId,
        typed: &[u8],
        frame_len: usize,
        targets: &mut Vec<NodeId>,
    ) -> Classified {
        // HOT PATH (multicast frames only)
        targets.clear();
        let parsed = match typed {
            [a, b, l3 @ ..] => wire::parse(u16::from_be_bytes([*a, *b]), l3),
            _ => Parsed::NotIp,
        };
        if !self.cfg.enabled {
            return match parsed {
                Parsed::NotIp => FLOOD,
                Parsed::Data { dst, .. } => Classified {
                    verdict: Verdict::Flood,
                    link_local: wire::is_link_local_group(&dst),
                },
                _ => FLOOD_CONTROL,
            };
        }
        match parsed {
            Parsed::NotIp => FLOOD,
            Parsed::Data { dst, source } => {
                if !dst.is_multicast() {
                    return FLOOD;
                }
                if wire::is_link_local_group(&dst) {
                    self.counters.link_local_frames += 1;
                    return FLOOD_CONTROL;
                }
                let registered = match self.groups.get_mut(&(vid, dst)) {
                    Some(g) if g.members.iter().any(|m| m.is_live(now)) => {
                        g.frames += 1;
                        g.bytes += frame_len as u64;
                        for m in &g.members {
                            if m.wants(now, &source) {
                                targets.push(m.node);
                            }
                        }
                        true
                    }
                    _ => false,
                };
                if registered {
                    self.counters.registered_frames += 1;
                } else {
                    self.counters.unregistered_frames += 1;
                    if self.cfg.flood_unregistered {
                        return FLOOD;
                    }
                }
                self.add_routers(now, vid, targets);
                Classified {
                    verdict: Verdict::Only,
                    link_local: false,
                }
            }
            Parsed::Query(q) => {
                self.counters.queries_received += 1;
                self.heard_query(now, vid, from, q);
                FLOOD_CONTROL
            }
            Parsed::RouterHello => {
                self.mark_router(now, vid, from);
                FLOOD_CONTROL
            }
            Parsed::Join { group } => {
                self.counters.reports += 1;
                if is_snoopable(&group) {
                    let until = now + self.cfg.membership;
                    if let Some(m) = self.member(vid, group, from) {
                        m.any_source_until = Some(until);
                    }
                }
                self.add_routers(now, vid, targets);
                ROUTERS_ONLY
            }
            Parsed::Leave { group } => {
                self.counters.leaves += 1;
                self.leave(now, vid, group, from, None);
                self.add_routers(now, vid, targets);
                ROUTERS_ONLY
            }
            Parsed::Report(records) => {
                self.counters.reports += 1;
                for r in records {
                    let Ok(r) = r else {
                        self.counters.malformed += 1;
                        break;
                    };
                    if !is_snoopable(&r.group) {
                        continue;
                    }
                    let until = now + self.cfg.membership;
                    match r.kind {
                        RecordType::IsInclude | RecordType::Allow => {
                            if r.source_count() > 0 {
                                self.include(vid, &r, from, until);
                            }
                        }
                        RecordType::IsExclude | RecordType::ToExclude => {
                            if let Some(m) = self.member(vid, r.group, from) {
                                m.any_source_until = Some(until);
                            }
                        }
                        RecordType::ToInclude => {
                            if r.source_count() > 0 {
                                self.include(vid, &r, from, until);
                            } else {
                                self.counters.leaves += 1;
                            }
                            // Leaving "any source" mode: a leave for that part.
                            self.leave(now, vid, r.group, from, None);
                        }
                        RecordType::Block => {
                            self.leave(now, vid, r.group, from, Some(&r));
                        }
                        RecordType::Unknown(_) => self.counters.unknown_records += 1,
                    }
                }
                self.add_routers(now, vid, targets);
                ROUTERS_ONLY
            }
            Parsed::UnknownType(_) => {
                // RFC 4541 2.1.2: unrecognised IGMP is flooded, not dropped.
                self.counters.unknown_types += 1;
                FLOOD_CONTROL
            }
            Parsed::Malformed => {
                self.counters.malformed += 1;
                FLOOD_CONTROL
            }
        }
    }

    /// `node`'s membership of `group`, made if it is new and the limits
    /// allow it (a refusal is counted by reason).
    fn member(&mut self, vid: Vid, group: IpAddr, node: NodeId) -> Option<&mut Member> {
        let key = (vid, group);
        let found = self
            .groups
            .get(&key)
            .map(|g| g.members.iter().position(|m| m.node == node));
        if let Some(Some(i)) = found {
            return self.groups.get_mut(&key).map(|g| &mut g.members[i]);
        }
        let new_group = found.is_none();
        if let Err(why) = self
            .budget
            .check(&self.cfg, node, new_group, self.groups.len())
        {
            let c = &mut self.counters;
            match why {
                Refused::Node => c.refused_node_limit += 1,
                Refused::Network => c.refused_network_limit += 1,
                Refused::Total => c.refused_total_limit += 1,
            }
            return None;
        }
        self.budget.joined(node, new_group);
        self.counters.joins += 1;
        let g = self.groups.entry(key).or_default();
        g.members.push(Member {
            node,
            any_source_until: None,
            sources: Sources::default(),
        });
        g.members.last_mut()
    }

    /// `node` lists `r`'s sources for `r.group` until `until`; sources over
    /// the limit make the membership take every source.
    fn include(&mut self, vid: Vid, r: &Record<'_>, node: NodeId, until: Instant) {
        let max = self.cfg.max_sources_per_group;
        let Some(m) = self.member(vid, r.group, node) else {
            return;
        };
        let mut refused = 0;
        for s in r.sources() {
            if m.sources.len() < max || m.sources.contains(&s) {
                m.sources.set(s, until);
            } else {
                refused += 1;
            }
        }
        if refused > 0 {
            m.any_source_until = Some(m.any_source_until.map_or(until, |t| t.max(until)));
            self.counters.refused_sources += refused;
        }
    }

    /// `node` leaves `group`: its any-source part (`block` = `None`), or the
    /// INCLUDE sources a BLOCK record lists.
    fn leave(
        &mut self,
        now: Instant,
        vid: Vid,
        group: IpAddr,
        node: NodeId,
        block: Option<&Record<'_>>,
    ) {
        let fast = self
            .fast_leave
            .get(node.0 as usize)
            .copied()
            .unwrap_or(false);
        let querier = !fast && self.is_querier_active(now, vid, family_of(&group));
        let Some(g) = self.groups.get_mut(&(vid, group)) else {
            return;
        };
        let Some(m) = g.members.iter_mut().find(|m| m.node == node) else {
            return;
        };
        if !m.holds(block) {
            return;
        }
        if fast {
            m.lower(block, now);
            self.counters.fast_leaves += 1;
            return;
        }
        let rate = Rate {
            per_sec: self.cfg.leaves_per_sec,
            burst: self.cfg.leaves_per_sec,
        };
        if let Some(b) = self.leave_buckets.get_mut(node.0 as usize)
            && !b.allow(now, rate)
        {
            self.counters.leaves_rate_limited += 1;
            return;
        }
        // The next group-specific query: now, unless the group is being
        // queried or was queried less than an interval ago.
        let first = match g.next_query {
            Some(t) if querier && t > now => t,
            _ => now,
        };
        m.lower(block, first + self.cfg.last_member_time());
        if !querier {
            // Another querier (or none) asks; the timer alone prunes.
            return;
        }
        g.queries_left = self.cfg.last_member_count;
        if first > now {
            self.counters.group_queries_deferred += 1;
            return;
        }
        g.queries_left -= 1;
        g.next_query = Some(now + self.cfg.last_member_interval);
        let q = query_frame(
            &self.cfg,
            vid,
            family_of(&group),
            Some(group),
            self.cfg.last_member_interval,
        );
        self.send(q);
    }

    fn heard_query(&mut self, now: Instant, vid: Vid, from: NodeId, q: wire::Query) {
        self.mark_router(now, vid, from);
        let present = now + self.cfg.other_querier_present();
        let ours = self.our_address(q.family);
        if let Some(qr) = self
            .queriers
            .iter_mut()
            .find(|qr| qr.vid == vid && qr.family == q.family)
            && (ours.is_unspecified() || q.source < ours)
        {
            qr.other = Some((q.source, present));
        }
        // A group-specific query from another querier: listeners have
        // `last_member_count` x its response time to answer (RFC 4541 2.1.1).
        if let Some(g) = q.group
            && let Some(group) = self.groups.get_mut(&(vid, g))
        {
            let deadline = now + q.max_response * self.cfg.last_member_count.max(1);
            for m in &mut group.members {
                m.lower(None, deadline);
                m.sources.lower_all(deadline);
            }
        }
    }

    fn mark_router(&mut self, now: Instant, vid: Vid, node: NodeId) {
        let until = now + self.cfg.other_querier_present();
        match self
            .routers
            .iter_mut()
            .find(|r| r.vid == vid && r.node == node)
        {
            Some(r) => r.until = until,
            None => self.routers.push(RouterPort { vid, node, until }),
        }
    }

    fn add_routers(&self, now: Instant, vid: Vid, targets: &mut Vec<NodeId>) {
        for r in &self.routers {
            if r.vid == vid && r.until > now && !targets.contains(&r.node) {
                targets.push(r.node);
            }
        }
    }

    fn our_address(&self, f: Family) -> IpAddr {
        match f {
            Family::V4 => self.cfg.querier_v4.into(),
            Family::V6 => self.cfg.querier_v6.into(),
        }
    }

    fn is_querier_active(&self, now: Instant, vid: Vid, family: Family) -> bool {
        self.queriers.iter().any(|q| {
            q.vid == vid && q.family == family && q.other.is_none_or(|(_, until)| until <= now)
        })
    }

    /// Run timers: age memberships and router ports, send due queries.
    pub fn handle_timeout(&mut self, now: Instant) {
        let (mut expired, mut removed) = (0, 0);
        let (cfg, budget, out) = (&self.cfg, &mut self.budget, &mut self.out);
        let mut sent = 0;
        self.groups.retain(|&(vid, group), g| {
            g.members.retain_mut(|m| {
                m.expire(now);
                let live = m.is_live(now);
                if !live {
                    expired += 1;
                    budget.left(m.node);
                }
                live
            });
            if g.members.is_empty() {
                removed += 1;
                return false;
            }
            if g.queries_left > 0 && g.next_query.is_none_or(|t| t <= now) {
                g.queries_left -= 1;
                g.next_query = Some(now + cfg.last_member_interval);
                out.push_back(query_frame(
                    cfg,
                    vid,
                    family_of(&group),
                    Some(group),
                    cfg.last_member_interval,
                ));
                sent += 1;
            }
            true
        });
        self.budget.groups_removed(removed);
        self.counters.expired += expired;
        self.counters.queries_sent += sent;
        self.routers.retain(|r| r.until > now);
        for i in 0..self.queriers.len() {
            let q = &mut self.queriers[i];
            if q.other.is_some_and(|(_, until)| until <= now) {
                // The other querier went quiet: take over at once.
                q.other = None;
                q.next_query = now;
            }
            if q.other.is_some() || now < q.next_query {
                continue;
            }
            q.next_query = if q.startup_left > 0 {
                q.startup_left -= 1;
                now + self.cfg.query_interval / 4
            } else {
                now + self.cfg.query_interval
            };
            let (vid, family) = (q.vid, q.family);
            let q = query_frame(&self.cfg, vid, family, None, self.cfg.query_response);
            self.send(q);
        }
    }

    fn send(&mut self, query: (Vid, Vec<u8>)) {
        self.counters.queries_sent += 1;
        self.out.push_back(query);
    }

    /// A query frame the switch must send to every node of the VLAN. Call
    /// until `None` after [`handle_timeout`](Self::handle_timeout) and after
    /// frames that may trigger queries (leaves).
    pub fn poll_query(&mut self) -> Option<(Vid, Vec<u8>)> {
        self.out.pop_front()
    }

    /// Are query frames waiting?
    pub fn has_queries(&self) -> bool {
        !self.out.is_empty()
    }

    /// Forget everything learned from `node` (its session died).
    pub fn forget_node(&mut self, node: NodeId) {
        let (budget, mut removed) = (&mut self.budget, 0);
        self.groups.retain(|_, g| {
            g.members.retain(|m| {
                let keep = m.node != node;
                if !keep {
                    budget.left(node);
                }
                keep
            });
            removed += usize::from(g.members.is_empty());
            !g.members.is_empty()
        });
        self.budget.groups_removed(removed);
        self.routers.retain(|r| r.node != node);
    }

    /// Counters.
    pub fn counters(&self) -> &SnoopCounters {
        &self.counters
    }

    /// The snapshot for `status`; `name` gives a node's name.
    pub fn status(&self, now: Instant, name: impl Fn(NodeId) -> String) -> MulticastStatus {
        let secs = |t: Instant| t.saturating_duration_since(now).as_secs_f64();
        let mut groups: Vec<GroupStatus> = self
            .groups
            .iter()
            .map(|((vid, group), g)| GroupStatus {
                network: String::new(),
                vlan: *vid,
                group: group.to_string(),
                frames: g.frames,
                bytes: g.bytes,
                members: g
                    .members
                    .iter()
                    .filter(|m| m.is_live(now))
                    .map(|m| MemberStatus {
                        node: name(m.node),
                        any_source_expires_in_secs: m
                            .any_source_until
                            .filter(|t| *t > now)
                            .map(secs),
                        sources: m
                            .sources
                            .iter()
                            .filter(|(_, t)| *t > now)
                            .map(|(s, t)| SourceStatus {
                                source: s.to_string(),
                                expires_in_secs: secs(t),
                            })
                            .collect(),
                    })
                    .collect(),
            })
            .filter(|g| !g.members.is_empty())
            .collect();
        groups.sort_by(|a, b| (a.vlan, &a.group).cmp(&(b.vlan, &b.group)));
        MulticastStatus {
            snooping: self.cfg.enabled,
            flood_unregistered: self.cfg.flood_unregistered,
            membership_secs: self.cfg.membership.as_secs_f64(),
            queriers: self
                .queriers
                .iter()
                .map(|q| {
                    let other = q.other.filter(|(_, t)| *t > now);
                    QuerierStatus {
                        network: String::new(),
                        vlan: q.vid,
                        family: q.family.name().into(),
                        active: other.is_none(),
                        address: self.our_address(q.family).to_string(),
                        other_querier: other.map(|(a, _)| a.to_string()),
                        other_querier_expires_in_secs: other.map(|(_, t)| secs(t)),
                    }
                })
                .collect(),
            router_ports: self
                .routers
                .iter()
                .filter(|r| r.until > now)
                .map(|r| RouterPortStatus {
                    network: String::new(),
                    vlan: r.vid,
                    node: name(r.node),
                    expires_in_secs: secs(r.until),
                })
                .collect(),
            groups,
            limits: SnoopLimits {
                max_groups_per_node: self.cfg.max_groups_per_node,
                max_groups: self.cfg.max_groups,
                max_groups_total: self.cfg.max_groups_total,
                max_sources_per_group: self.cfg.max_sources_per_group,
                leaves_per_sec: self.cfg.leaves_per_sec,
                groups_total: self.budget.total(),
            },
            counters: self.counters.clone(),
        }
    }
}

/// Groups whose membership is tracked: multicast, not link-local (those are
/// always flooded, so their reports, e.g. solicited-node MLD, leave no state).
fn is_snoopable(g: &IpAddr) -> bool {
    g.is_multicast() && !wire::is_link_local_group(g)
}

/// A query from the built-in querier, for every node of VLAN `vid`.
fn query_frame(
    cfg: &SnoopConfig,
    vid: Vid,
    family: Family,
    group: Option<IpAddr>,
    max_response: Duration,
) -> (Vid, Vec<u8>) {
    let spec = QuerySpec {
        mac: cfg.querier_mac,
        group,
        max_response,
        interval: cfg.query_interval,
    };
    let frame = match family {
        Family::V4 => wire::igmp_query(&spec, cfg.querier_v4),
        Family::V6 => wire::mld_query(&spec, cfg.querier_v6),
    };
    (vid, frame)
}

fn family_of(a: &IpAddr) -> Family {
    match a {
        IpAddr::V4(_) => Family::V4,
        IpAddr::V6(_) => Family::V6,
    }
}

#[cfg(test)]
mod tests;
