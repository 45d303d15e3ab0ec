//! The `status` snapshot of the snooping state.

use std::time::Instant;

use super::Snooping;
use crate::NodeId;
use crate::status::{
    GroupStatus, MemberStatus, MulticastStatus, QuerierStatus, RouterPortStatus, SnoopLimits,
    SourceStatus,
};

impl Snooping {
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
