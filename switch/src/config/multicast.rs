//! `[multicast]`: IGMP/MLD snooping and the built-in querier.
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use overlay_proto::ethernet::MacAddr;
use serde::Deserialize;

use super::KeyProblem;
use crate::snooping::controls::TimingProblem;
use crate::snooping::{SnoopConfig, link_local_from_mac};

/// The most groups `metrics-top-groups` may ask for: the label count stays bounded.
pub const MAX_METRICS_TOP_GROUPS: usize = 1000;

/// `[multicast]`: IGMP/MLD snooping and the built-in querier.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub(super) struct MulticastSection {
    snooping: bool,
    flood_unregistered: bool,
    membership_secs: u64,
    querier: bool,
    querier_address: Option<String>,
    querier_address_v6: Option<String>,
    querier_mac: Option<String>,
    query_interval_secs: u64,
    query_response_secs: u64,
    last_member_query_ms: u64,
    last_member_query_count: u32,
    max_groups_per_node: usize,
    max_groups: usize,
    max_groups_total: usize,
    max_sources_per_group: usize,
    leaves_per_sec: u32,
    igmp_version: u8,
    mld_version: u8,
    metrics_top_groups: usize,
}

impl Default for MulticastSection {
    fn default() -> Self {
        let d = SnoopConfig::default();
        MulticastSection {
            snooping: d.enabled,
            flood_unregistered: d.flood_unregistered,
            membership_secs: d.membership.as_secs(),
            querier: d.querier,
            querier_address: None,
            querier_address_v6: None,
            querier_mac: None,
            query_interval_secs: d.query_interval.as_secs(),
            query_response_secs: d.query_response.as_secs(),
            last_member_query_ms: d.last_member_interval.as_millis() as u64,
            last_member_query_count: d.last_member_count,
            max_groups_per_node: d.max_groups_per_node,
            max_groups: d.max_groups,
            max_groups_total: d.max_groups_total,
            max_sources_per_group: d.max_sources_per_group,
            leaves_per_sec: d.leaves_per_sec,
            igmp_version: d.igmp_version,
            mld_version: d.mld_version,
            metrics_top_groups: d.metrics_top_groups,
        }
    }
}

pub(super) fn multicast(m: &MulticastSection) -> Result<SnoopConfig, KeyProblem> {
    for (key, v) in [
        ("membership-secs", m.membership_secs),
        ("query-interval-secs", m.query_interval_secs),
        ("query-response-secs", m.query_response_secs),
        ("last-member-query-ms", m.last_member_query_ms),
        (
            "last-member-query-count",
            u64::from(m.last_member_query_count),
        ),
        ("max-groups-per-node", m.max_groups_per_node as u64),
        ("max-groups", m.max_groups as u64),
        ("max-groups-total", m.max_groups_total as u64),
        ("max-sources-per-group", m.max_sources_per_group as u64),
        ("leaves-per-sec", u64::from(m.leaves_per_sec)),
    ] {
        if v == 0 {
            return Err((key, "must be greater than 0".into()));
        }
    }
    if ![2, 3].contains(&m.igmp_version) {
        return Err(("igmp-version", format!("{} is not 2 or 3", m.igmp_version)));
    }
    if ![1, 2].contains(&m.mld_version) {
        return Err(("mld-version", format!("{} is not 1 or 2", m.mld_version)));
    }
    if m.metrics_top_groups > MAX_METRICS_TOP_GROUPS {
        return Err((
            "metrics-top-groups",
            format!(
                "{} is more than {MAX_METRICS_TOP_GROUPS} (each group is a label set in every scrape)",
                m.metrics_top_groups
            ),
        ));
    }
    let querier_mac = match &m.querier_mac {
        None => crate::snooping::DEFAULT_QUERIER_MAC,
        Some(s) => MacAddr::parse_unicast(s).map_err(|e| ("querier-mac", format!("{s:?} {e}")))?,
    };
    let querier_v4 = match &m.querier_address {
        None => Ipv4Addr::UNSPECIFIED,
        Some(s) => s
            .parse::<Ipv4Addr>()
            .map_err(|_| ("querier-address", format!("{s:?} is not an IPv4 address")))?,
    };
    let querier_v6 = match &m.querier_address_v6 {
        None => link_local_from_mac(&querier_mac),
        Some(s) => match s.parse::<IpAddr>() {
            Ok(IpAddr::V6(a)) if a.segments()[0] & 0xffc0 == 0xfe80 => a,
            _ => {
                return Err((
                    "querier-address-v6",
                    format!(
                        "{s:?} is not a link-local IPv6 address (MLD queries must come from fe80::/10)"
                    ),
                ));
            }
        },
    };
    let cfg = SnoopConfig {
        enabled: m.snooping,
        flood_unregistered: m.flood_unregistered,
        membership: Duration::from_secs(m.membership_secs),
        querier: m.querier,
        querier_v4,
        querier_v6,
        querier_mac,
        query_interval: Duration::from_secs(m.query_interval_secs),
        query_response: Duration::from_secs(m.query_response_secs),
        last_member_interval: Duration::from_millis(m.last_member_query_ms),
        last_member_count: m.last_member_query_count,
        max_groups_per_node: m.max_groups_per_node,
        max_groups: m.max_groups,
        max_groups_total: m.max_groups_total,
        max_sources_per_group: m.max_sources_per_group,
        leaves_per_sec: m.leaves_per_sec,
        igmp_version: m.igmp_version,
        mld_version: m.mld_version,
        metrics_top_groups: m.metrics_top_groups,
    };
    match cfg.timing_problem() {
        None => Ok(cfg),
        Some(TimingProblem::ResponseNotBelowInterval) => Err((
            "query-response-secs",
            format!(
                "must be less than query-interval-secs ({})",
                m.query_interval_secs
            ),
        )),
        Some(TimingProblem::IntervalNotBelowMembership) => Err((
            "query-interval-secs",
            format!(
                "must be less than membership-secs ({}), or memberships lapse between queries",
                m.membership_secs
            ),
        )),
    }
}
