//! The `status` snapshot of the snooping state.

use std::time::Instant;

use super::Snooping;
use super::controls::QuerierSettings;
use super::wire::Family;
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
                expires_in_secs: g
                    .members
                    .iter()
                    .filter_map(|m| m.until())
                    .max()
                    .map_or(0.0, secs),
                group_queries_left: g.queries_left,
                members: g
                    .members
                    .iter()
                    .filter(|m| m.is_live(now))
                    .map(|m| MemberStatus {
                        node: name(m.node),
                        mode: if m.any_source_until.is_some_and(|t| t > now) {
                            "exclude"
                        } else {
                            "include"
                        }
                        .into(),
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
            querier_settings: vec![QuerierSettings::of(&self.cfg)],
            metrics_top_groups: self.cfg.metrics_top_groups,
            queriers: self
                .queriers
                .iter()
                .map(|q| {
                    let other = q.other.filter(|(_, t)| *t > now);
                    let ours = self.cfg.querier && other.is_none();
                    QuerierStatus {
                        network: String::new(),
                        vlan: q.vid,
                        family: q.family.name().into(),
                        querier: match (ours, other) {
                            (true, _) => "us",
                            (false, Some(_)) => "other",
                            (false, None) => "none",
                        }
                        .into(),
                        active: ours,
                        version: match (ours, q.family) {
                            (false, _) if other.is_some() => q.other_version,
                            (false, _) => 0,
                            (true, Family::V4) => self.cfg.igmp_version,
                            (true, Family::V6) => self.cfg.mld_version,
                        },
                        next_query_in_secs: ours.then(|| secs(q.next_query)),
                        address: self.our_address(q.family).to_string(),
                        other_querier: other.map(|(a, _)| a.to_string()),
                        other_querier_expires_in_secs: other.map(|(_, t)| secs(t)),
                    }
                })
                .collect(),
            router_ports: self
                .static_routers
                .iter()
                .map(|&(vlan, node)| RouterPortStatus {
                    network: String::new(),
                    vlan,
                    node: name(node),
                    kind: "static".into(),
                    expires_in_secs: 0.0,
                })
                .chain(
                    self.routers
                        .iter()
                        .filter(|r| r.until > now)
                        .map(|r| RouterPortStatus {
                            network: String::new(),
                            vlan: r.vid,
                            node: name(r.node),
                            kind: "learned".into(),
                            expires_in_secs: secs(r.until),
                        }),
                )
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
