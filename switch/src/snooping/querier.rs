//! The built-in querier and router ports: queries heard and sent, and the timers that age them.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::wire::{self, Family, QuerySpec};
use super::{SnoopConfig, Snooping, v2_queries};
use crate::NodeId;
use crate::vlan::Vid;

#[derive(Debug, Clone, Copy)]
pub(super) struct RouterPort {
    pub(super) vid: Vid,
    pub(super) node: NodeId,
    pub(super) until: Instant,
}

#[derive(Debug, Clone)]
pub(super) struct Querier {
    pub(super) vid: Vid,
    pub(super) family: Family,
    /// Another querier with a lower address, and until when it counts as present.
    pub(super) other: Option<(IpAddr, Instant)>,
    /// The version of the other querier's last query.
    pub(super) other_version: u8,
    pub(super) next_query: Instant,
    pub(super) startup_left: u32,
}

impl Querier {
    /// A querier for VLAN `vid` and `family` whose startup queries begin now.
    pub(super) fn new(vid: Vid, family: Family, now: Instant) -> Querier {
        Querier {
            vid,
            family,
            other: None,
            other_version: 0,
            next_query: now,
            startup_left: 1,
        }
    }
}

impl Snooping {
    pub(super) fn heard_query(&mut self, now: Instant, vid: Vid, from: NodeId, q: wire::Query) {
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
            qr.other_version = q.version;
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

    pub(super) fn mark_router(&mut self, now: Instant, vid: Vid, node: NodeId) {
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

    pub(super) fn add_routers(&self, now: Instant, vid: Vid, targets: &mut Vec<NodeId>) {
        // HOT PATH (multicast frames only): a few entries each.
        for r in &self.routers {
            if r.vid == vid && r.until > now && !targets.contains(&r.node) {
                targets.push(r.node);
            }
        }
        for &(v, node) in &self.static_routers {
            if v == vid && !targets.contains(&node) {
                targets.push(node);
            }
        }
    }

    pub(super) fn our_address(&self, f: Family) -> IpAddr {
        match f {
            Family::V4 => self.cfg.querier_v4.into(),
            Family::V6 => self.cfg.querier_v6.into(),
        }
    }

    pub(super) fn is_querier_active(&self, now: Instant, vid: Vid, family: Family) -> bool {
        self.cfg.querier
            && self.queriers.iter().any(|q| {
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
            if !self.cfg.querier || q.other.is_some() || now < q.next_query {
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

    pub(super) fn send(&mut self, query: (Vid, Vec<u8>)) {
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
}

/// A query from the built-in querier, for every node of VLAN `vid`.
pub(super) fn query_frame(
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
        Family::V4 if cfg.igmp_version == 2 => v2_queries::igmp_v2_query(&spec, cfg.querier_v4),
        Family::V4 => wire::igmp_query(&spec, cfg.querier_v4),
        Family::V6 if cfg.mld_version == 1 => v2_queries::mld_v1_query(&spec, cfg.querier_v6),
        Family::V6 => wire::mld_query(&spec, cfg.querier_v6),
    };
    (vid, frame)
}

pub(super) fn family_of(a: &IpAddr) -> Family {
    match a {
        IpAddr::V4(_) => Family::V4,
        IpAddr::V6(_) => Family::V6,
    }
}
