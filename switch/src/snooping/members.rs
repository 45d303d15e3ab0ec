//! Memberships: which node wants which group (and sources), joined, included and left.

use std::net::IpAddr;
use std::time::Instant;

use super::Snooping;
use super::limits::Refused;
use super::querier::{family_of, query_frame};
use super::sources::Sources;
use super::wire::Record;
use crate::NodeId;
use crate::storm::Rate;
use crate::vlan::Vid;

#[derive(Debug, Clone)]
pub(super) struct Member {
    pub(super) node: NodeId,
    /// Takes every source until then (v1/v2, EXCLUDE mode, or more sources
    /// than `max-sources-per-group`).
    pub(super) any_source_until: Option<Instant>,
    /// INCLUDE-mode sources and their timers.
    pub(super) sources: Sources,
}

impl Member {
    pub(super) fn wants(&self, now: Instant, source: &IpAddr) -> bool {
        // HOT PATH (registered groups)
        self.any_source_until.is_some_and(|t| t > now) || self.sources.is_live(now, source)
    }

    pub(super) fn is_live(&self, now: Instant) -> bool {
        self.any_source_until.is_some_and(|t| t > now) || self.sources.any_live(now)
    }

    /// When the membership ends unless refreshed: its latest timer.
    pub(super) fn until(&self) -> Option<Instant> {
        self.any_source_until.max(self.sources.latest())
    }

    pub(super) fn expire(&mut self, now: Instant) {
        if self.any_source_until.is_some_and(|t| t <= now) {
            self.any_source_until = None;
        }
        self.sources.expire(now);
    }

    /// Lowers the timer of the any-source part (`None`) or of the sources
    /// `block` lists to `deadline`. Returns whether any of them was held.
    pub(super) fn lower(&mut self, block: Option<&Record<'_>>, deadline: Instant) -> bool {
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
pub(super) struct Group {
    pub(super) members: Vec<Member>,
    pub(super) frames: u64,
    pub(super) bytes: u64,
    /// Group-specific queries still to send after a leave.
    pub(super) queries_left: u32,
    /// When the next group-specific query is due; after a sequence, the
    /// earliest time a new one may start (one per last-member interval).
    pub(super) next_query: Option<Instant>,
}

impl Snooping {
    /// `node`'s membership of `group`, made if it is new and the limits
    /// allow it (a refusal is counted by reason).
    pub(super) fn member(&mut self, vid: Vid, group: IpAddr, node: NodeId) -> Option<&mut Member> {
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
    pub(super) fn include(&mut self, vid: Vid, r: &Record<'_>, node: NodeId, until: Instant) {
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
    pub(super) fn leave(
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
}
