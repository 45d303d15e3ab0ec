//! `tapmesh-switch groups`: the multicast group table, per network and
//! VLAN, read from the `groups` admin reply (the `multicast` part of the
//! status snapshot): who is querier, router ports, groups with their
//! members, filter modes, sources and timers.
use std::fmt::Write;

use super::{GroupStatus, MulticastStatus};
use crate::vlan::Vid;

/// The reply read back, with only `network`'s entries if one is given (an
/// error if no entry names it).
pub fn only_network(reply: &str, network: Option<&str>) -> Result<MulticastStatus, String> {
    let mut m: MulticastStatus =
        serde_json::from_str(reply).map_err(|e| format!("unreadable reply: {e}"))?;
    let Some(want) = network else {
        return Ok(m);
    };
    if !m.querier_settings.iter().any(|q| q.network == want) {
        return Err(format!("no network {want:?}"));
    }
    m.querier_settings.retain(|q| q.network == want);
    m.queriers.retain(|q| q.network == want);
    m.router_ports.retain(|r| r.network == want);
    m.groups.retain(|g| g.network == want);
    Ok(m)
}

/// The `n` groups with the most bytes (ties: by network, VLAN, group), for
/// the per-group metrics: at most `n` label sets, however many groups.
pub fn busiest(groups: &[GroupStatus], n: usize) -> Vec<&GroupStatus> {
    let mut v: Vec<&GroupStatus> = groups.iter().collect();
    v.sort_by(|a, b| {
        b.bytes
            .cmp(&a.bytes)
            .then_with(|| (&a.network, a.vlan, &a.group).cmp(&(&b.network, b.vlan, &b.group)))
    });
    v.truncate(n);
    v
}

/// The table a human reads.
pub fn render(m: &MulticastStatus) -> String {
    let mut out = String::new();
    if !m.snooping {
        out.push_str("snooping off: every multicast frame is flooded\n");
    }
    for s in &m.querier_settings {
        let net = s.network.as_str();
        let _ = writeln!(out, "network {net}: querier {}", s.describe());
        let mut vlans: Vec<Vid> = m
            .queriers
            .iter()
            .filter(|q| q.network == net)
            .map(|q| q.vlan)
            .chain(
                m.router_ports
                    .iter()
                    .filter(|r| r.network == net)
                    .map(|r| r.vlan),
            )
            .chain(m.groups.iter().filter(|g| g.network == net).map(|g| g.vlan))
            .collect();
        vlans.sort_unstable();
        vlans.dedup();
        for vid in vlans {
            render_vlan(&mut out, m, net, vid);
        }
    }
    out
}

fn render_vlan(out: &mut String, m: &MulticastStatus, net: &str, vid: Vid) {
    let _ = writeln!(out, "  vlan {vid}");
    for q in m
        .queriers
        .iter()
        .filter(|q| q.network == net && q.vlan == vid)
    {
        let proto = if q.family == "ipv6" { "MLD" } else { "IGMP" };
        let who = match (q.querier.as_str(), &q.other_querier) {
            ("us", _) => format!(
                "us ({}, {proto}v{}, next query in {:.0}s)",
                q.address,
                q.version,
                q.next_query_in_secs.unwrap_or(0.0)
            ),
            (_, Some(o)) => format!(
                "other {o} ({proto}v{}, counts as present {:.0}s more)",
                q.version,
                q.other_querier_expires_in_secs.unwrap_or(0.0)
            ),
            _ => "none".into(),
        };
        let _ = writeln!(out, "    {} querier: {who}", q.family);
    }
    let routers: Vec<String> = m
        .router_ports
        .iter()
        .filter(|r| r.network == net && r.vlan == vid)
        .map(|r| match r.kind.as_str() {
            "static" => format!("{} (static)", r.node),
            _ => format!("{} (learned, {:.0}s)", r.node, r.expires_in_secs),
        })
        .collect();
    if !routers.is_empty() {
        let _ = writeln!(out, "    router ports: {}", routers.join(", "));
    }
    for g in m
        .groups
        .iter()
        .filter(|g| g.network == net && g.vlan == vid)
    {
        let _ = write!(
            out,
            "    group {}: {} frames, {} bytes, expires in {:.0}s",
            g.group, g.frames, g.bytes, g.expires_in_secs
        );
        if g.group_queries_left > 0 {
            let _ = write!(out, ", {} group queries left", g.group_queries_left);
        }
        out.push('\n');
        for mb in &g.members {
            let _ = write!(out, "      {} {}", mb.node, mb.mode);
            if let Some(t) = mb.any_source_expires_in_secs {
                let _ = write!(out, " (any source, {t:.0}s)");
            }
            let sources: Vec<String> = mb
                .sources
                .iter()
                .map(|s| format!("{} ({:.0}s)", s.source, s.expires_in_secs))
                .collect();
            if !sources.is_empty() {
                let _ = write!(out, " sources {}", sources.join(", "));
            }
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snooping::controls::QuerierSettings;
    use crate::status::{MemberStatus, QuerierStatus, RouterPortStatus, SourceStatus};

    fn sample() -> MulticastStatus {
        let settings = |network: &str, enabled| QuerierSettings {
            network: network.into(),
            enabled,
            igmp_version: 3,
            mld_version: 2,
            query_interval_secs: 125.0,
            query_response_secs: 10.0,
            last_member_interval_secs: 1.0,
            last_member_count: 2,
        };
        MulticastStatus {
            snooping: true,
            querier_settings: vec![settings("default", true), settings("lab", false)],
            queriers: vec![
                QuerierStatus {
                    network: "default".into(),
                    vlan: 10,
                    family: "ipv4".into(),
                    querier: "us".into(),
                    active: true,
                    version: 3,
                    next_query_in_secs: Some(12.0),
                    address: "198.19.0.254".into(),
                    ..Default::default()
                },
                QuerierStatus {
                    network: "lab".into(),
                    vlan: 0,
                    family: "ipv6".into(),
                    querier: "other".into(),
                    version: 1,
                    other_querier: Some("fe80::1".into()),
                    other_querier_expires_in_secs: Some(200.0),
                    ..Default::default()
                },
            ],
            router_ports: vec![
                RouterPortStatus {
                    network: "default".into(),
                    vlan: 10,
                    node: "h4".into(),
                    kind: "static".into(),
                    expires_in_secs: 0.0,
                },
                RouterPortStatus {
                    network: "default".into(),
                    vlan: 10,
                    node: "h1".into(),
                    kind: "learned".into(),
                    expires_in_secs: 240.4,
                },
            ],
            groups: vec![GroupStatus {
                network: "default".into(),
                vlan: 10,
                group: "239.1.2.3".into(),
                frames: 10,
                bytes: 1000,
                expires_in_secs: 250.0,
                group_queries_left: 1,
                members: vec![
                    MemberStatus {
                        node: "h2".into(),
                        mode: "exclude".into(),
                        any_source_expires_in_secs: Some(250.0),
                        sources: vec![],
                    },
                    MemberStatus {
                        node: "h3".into(),
                        mode: "include".into(),
                        any_source_expires_in_secs: None,
                        sources: vec![SourceStatus {
                            source: "198.19.0.1".into(),
                            expires_in_secs: 249.0,
                        }],
                    },
                ],
            }],
            ..Default::default()
        }
    }

    #[test]
    fn the_table_shows_queriers_router_ports_members_and_sources() {
        let want = "\
network default: querier on, IGMPv3/MLDv2, interval 125s, response 10s, last member 1s x 2
  vlan 10
    ipv4 querier: us (198.19.0.254, IGMPv3, next query in 12s)
    router ports: h4 (static), h1 (learned, 240s)
    group 239.1.2.3: 10 frames, 1000 bytes, expires in 250s, 1 group queries left
      h2 exclude (any source, 250s)
      h3 include sources 198.19.0.1 (249s)
network lab: querier off, IGMPv3/MLDv2, interval 125s, response 10s, last member 1s x 2
  vlan 0
    ipv6 querier: other fe80::1 (MLDv1, counts as present 200s more)
";
        assert_eq!(render(&sample()), want);
    }

    #[test]
    fn only_the_busiest_groups_are_picked() {
        let g = |group: &str, bytes| GroupStatus {
            network: "default".into(),
            group: group.into(),
            bytes,
            ..Default::default()
        };
        let groups = [
            g("239.0.0.1", 5),
            g("239.0.0.2", 50),
            g("239.0.0.3", 20),
            g("239.0.0.4", 20),
        ];
        let top: Vec<&str> = busiest(&groups, 3)
            .iter()
            .map(|g| g.group.as_str())
            .collect();
        assert_eq!(top, ["239.0.0.2", "239.0.0.3", "239.0.0.4"]);
        assert!(busiest(&groups, 0).is_empty());
        assert_eq!(busiest(&groups, 10).len(), 4);
    }

    #[test]
    fn one_network_is_picked_and_an_unknown_one_is_an_error() {
        let json = serde_json::to_string(&sample()).unwrap();
        let m = only_network(&json, Some("lab")).unwrap();
        assert_eq!(m.querier_settings.len(), 1);
        assert!(m.groups.is_empty() && m.router_ports.is_empty());
        assert_eq!(m.queriers[0].network, "lab");
        let all = only_network(&json, None).unwrap();
        assert_eq!((all.groups.len(), all.router_ports.len()), (1, 2));
        assert!(only_network(&json, Some("nope")).is_err());
    }
}
