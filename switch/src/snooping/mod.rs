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
mod cluster;
mod frame;
pub mod limits;
mod members;
mod querier;
mod sources;
mod status;
pub mod wire;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use foldhash::fast::RandomState;
use overlay_proto::ethernet::MacAddr;

use crate::NodeId;
use crate::counters::SnoopCounters;
use crate::storm::Bucket;
use crate::vlan::Vid;
use limits::{Budget, GroupTotal};
use members::Group;
use querier::{Querier, RouterPort};
use wire::Family;

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
}

#[cfg(test)]
mod tests;
