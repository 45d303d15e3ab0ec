//! `tapmesh-switch status` as a human table, rendered from the [`Status`]
//! the switch sent as JSON.
use super::{MulticastStatus, NodeStatus, Status};

/// Render a status JSON document as a human table (the JSON itself if it
/// is not a status).
pub fn render_table(json: &str) -> String {
    match serde_json::from_str::<Status>(json) {
        Ok(s) => render(&s),
        Err(_) => format!("{json}\n"),
    }
}

fn render(v: &Status) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if v.networks.len() > 1 {
        let list: Vec<String> = v
            .networks
            .iter()
            .map(|n| {
                format!(
                    "{} (id {}, {}, {}/{} connected)",
                    n.name,
                    n.id,
                    tapmesh_shell::admin::variant_name(&n.mode),
                    n.connected,
                    n.nodes
                )
            })
            .collect();
        let _ = writeln!(out, "networks: {}\n", list.join(", "));
    }
    let _ = writeln!(
        out,
        "{:<16} {:<4} {:<28} {:>8} {:>9} {:>7} {:>11} {:>9} {:>11} {:>9} {:>6}",
        "NODE",
        "UP",
        "ENDPOINT",
        "SESSION",
        "HANDSHAKE",
        "HEARD",
        "RX FRAMES",
        "RX BYTES",
        "TX FRAMES",
        "TX BYTES",
        "MACS"
    );
    let secs = |s: Option<f64>| s.map_or_else(|| "-".into(), |s| format!("{s:.0}s"));
    let ago = |s: Option<f64>| s.map_or_else(|| "-".into(), |s| format!("{s:.0}s ago"));
    for n in &v.nodes {
        let c = &n.counters;
        let _ = writeln!(
            out,
            "{:<16} {:<4} {:<28} {:>8} {:>9} {:>7} {:>11} {:>9} {:>11} {:>9} {:>6}",
            n.name,
            if n.connected { "yes" } else { "no" },
            n.endpoint.as_deref().unwrap_or("-"),
            secs(n.session_age_secs),
            ago(n.last_handshake_secs_ago),
            ago(n.last_heard_secs_ago),
            c.rx_frames.to_string(),
            human_bytes(c.rx_bytes),
            c.tx_frames.to_string(),
            human_bytes(c.tx_bytes),
            n.macs.to_string()
        );
    }
    let f = &v.forwarded;
    let _ = writeln!(
        out,
        "\nforwarded: unicast {} flooded-unicast {} broadcast {} multicast {} (flood copies {})",
        f.unicast, f.flooded_unicast, f.broadcast, f.multicast, f.flood_copies
    );
    let m = &v.mac_table;
    let _ = writeln!(
        out,
        "mac table: {} entries (limit {}), learned {} moves {} aged out {}",
        m.entries, m.limit, m.counters.learned, m.counters.moves, m.counters.aged_out
    );
    let se = &v.sessions;
    let _ = writeln!(
        out,
        "sessions: handshakes {} confirmed {} rekeys {} timeouts {} keepalives {}",
        se.handshakes, se.confirmed, se.rekeys, se.node_timeouts, se.keepalives
    );
    let _ = writeln!(out, "drops: {}", tapmesh_shell::admin::drops_line(&v.drops));
    let storm: Vec<String> = v
        .nodes
        .iter()
        .filter_map(|n| {
            let c = &n.counters;
            let kinds: Vec<String> = [
                ("broadcast", c.storm_dropped_broadcast),
                ("multicast", c.storm_dropped_multicast),
                ("unknown_unicast", c.storm_dropped_unknown_unicast),
            ]
            .iter()
            .filter(|(_, c)| *c > 0)
            .map(|(k, c)| format!("{k} {c}"))
            .collect();
            (!kinds.is_empty()).then(|| format!("{} ({})", n.name, kinds.join(", ")))
        })
        .collect();
    if !storm.is_empty() {
        let _ = writeln!(out, "storm control drops: {}", storm.join("; "));
    }
    render_impair(&mut out, &v.nodes);
    super::switches::render_switches(&mut out, &v.switches);
    for m in &v.mirrors {
        let _ = writeln!(out, "mirror {m}");
    }
    out.push_str(&v.capture.status_line().unwrap_or_default());
    render_multicast(&mut out, &v.multicast);
    if let Some(e) = &v.etcd {
        crate::etcd::status::render(&mut out, e);
    }
    if let Some(w) = &v.workers {
        crate::workers::status::render(&mut out, w);
    }
    if let Some(macs) = &v.macs {
        let _ = writeln!(
            out,
            "\n{:<5} {:<18} {:<16} {:>8}",
            "VLAN", "MAC", "NODE", "EXPIRES"
        );
        for m in macs {
            let _ = writeln!(
                out,
                "{:<5} {:<18} {:<16} {:>7.0}s",
                m.vlan, m.mac, m.node, m.expires_in_secs
            );
        }
    }
    out
}

/// The multicast part of the human table: queriers, router ports, groups.
fn render_multicast(out: &mut String, m: &MulticastStatus) {
    use std::fmt::Write;
    let c = &m.counters;
    let _ = writeln!(
        out,
        "multicast: snooping {}, unregistered {}; reports {} leaves {} queries in {} out {}, frames registered {} unregistered {} link-local {}, malformed {} unknown {}",
        if m.snooping { "on" } else { "off" },
        if m.flood_unregistered {
            "flooded"
        } else {
            "to routers only"
        },
        c.reports,
        c.leaves,
        c.queries_received,
        c.queries_sent,
        c.registered_frames,
        c.unregistered_frames,
        c.link_local_frames,
        c.malformed,
        c.unknown_types + c.unknown_records,
    );
    let l = &m.limits;
    let _ = writeln!(
        out,
        "multicast limits: {} groups (max {} per network, {} of {} in all), {} per node, {} sources per group, {} leaves/s per node; refused: node-limit {} network-limit {} total-limit {} sources {}; leaves rate-limited {}, group queries deferred {}",
        m.groups.len(),
        l.max_groups,
        l.groups_total,
        l.max_groups_total,
        l.max_groups_per_node,
        l.max_sources_per_group,
        l.leaves_per_sec,
        c.refused_node_limit,
        c.refused_network_limit,
        c.refused_total_limit,
        c.refused_sources,
        c.leaves_rate_limited,
        c.group_queries_deferred,
    );
    for q in &m.queriers {
        let state = match &q.other_querier {
            Some(o) => format!("silent, other querier {o}"),
            None if q.active => "active".into(),
            None => "off".into(),
        };
        let _ = writeln!(
            out,
            "querier vlan {} {}: {} from {}",
            q.vlan, q.family, state, q.address
        );
    }
    for r in &m.router_ports {
        let _ = match r.kind.as_str() {
            "static" => writeln!(out, "router port vlan {}: {} (static)", r.vlan, r.node),
            _ => writeln!(
                out,
                "router port vlan {}: {} ({:.0}s)",
                r.vlan, r.node, r.expires_in_secs
            ),
        };
    }
    if m.groups.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n{:<5} {:<28} {:>10} {:>12}  MEMBERS",
        "VLAN", "GROUP", "FRAMES", "BYTES"
    );
    for g in &m.groups {
        let members: Vec<String> = g
            .members
            .iter()
            .map(|mb| {
                let name = &mb.node;
                let sources: Vec<&str> = mb.sources.iter().map(|s| s.source.as_str()).collect();
                match (mb.any_source_expires_in_secs, sources.is_empty()) {
                    (Some(t), true) => format!("{name} ({t:.0}s)"),
                    (Some(t), false) => format!("{name} ({t:.0}s, +{})", sources.join(" ")),
                    (None, _) => format!("{name} (from {})", sources.join(" ")),
                }
            })
            .collect();
        let _ = writeln!(
            out,
            "{:<5} {:<28} {:>10} {:>12}  {}",
            g.vlan,
            g.group,
            g.frames,
            g.bytes,
            members.join(", ")
        );
    }
}

/// `1234567` → `1.2M` (powers of 1024), for tables.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["", "K", "M", "G", "T"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n}")
    } else {
        format!("{v:.1}{}", UNITS[u])
    }
}

/// One line per node whose link is impaired (or ever was): what is set and
/// what it did.
fn render_impair(out: &mut String, nodes: &[NodeStatus]) {
    use std::fmt::Write;
    for n in nodes {
        let Some(i) = &n.impair else {
            continue;
        };
        let _ = write!(out, "impairment {}: link {}", n.name, i.link);
        for (d, set, c) in [
            ("egress", &i.egress, &i.egress_counters),
            ("ingress", &i.ingress, &i.ingress_counters),
        ] {
            let counts: Vec<String> = [
                ("lost", c.lost),
                ("link_down", c.link_down),
                ("queue_full", c.queue_full),
                ("delayed", c.delayed),
                ("reordered", c.reordered),
                ("duplicated", c.duplicated),
                ("corrupted", c.corrupted),
            ]
            .iter()
            .filter(|(_, v)| *v > 0)
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
            let _ = write!(
                out,
                "; {d} {set} ({} frames{}{})",
                c.frames,
                if counts.is_empty() { "" } else { ": " },
                counts.join(", ")
            );
        }
        let _ = writeln!(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::{Drops, NodeCounters};
    use crate::impair::ImpairStatus;
    use crate::status::{
        GroupStatus, MacStatus, MemberStatus, NetworkStatus, QuerierStatus, RouterPortStatus,
        SourceStatus,
    };

    #[test]
    fn human_bytes_rounds_to_one_decimal() {
        assert_eq!(human_bytes(0), "0");
        assert_eq!(human_bytes(1023), "1023");
        assert_eq!(human_bytes(1536), "1.5K");
        assert_eq!(human_bytes(5 << 30), "5.0G");
    }

    #[test]
    fn table_lists_every_node_and_survives_missing_keys() {
        let t = render_table(
            r#"{"nodes":[{"name":"h1","connected":true,"endpoint":"198.18.0.11:4000","session_age_secs":3.2,"last_handshake_secs_ago":3.2,"last_heard_secs_ago":0.4,"rx_frames":5,"rx_bytes":2048,"tx_frames":6,"tx_bytes":100,"macs":1},{"name":"h2","connected":false}],"drops":{"bad_tag":2,"replay":0}}"#,
        );
        assert!(t.contains("h1 "), "{t}");
        assert!(t.contains("2.0K"), "{t}");
        assert!(t.contains("198.18.0.11:4000"), "{t}");
        assert!(
            t.lines()
                .any(|l| l.starts_with("h2 ") && l.contains(" no ")),
            "{t}"
        );
        assert!(t.contains("drops: bad_tag 2\n"), "{t}");
        assert_eq!(render_table("not json"), "not json\n");
    }

    #[test]
    fn table_shows_captures_once_there_were_any() {
        let t = render_table(r#"{"nodes":[],"capture":{"active":2,"captured":40,"dropped":3}}"#);
        assert!(
            t.contains("capture: 2 running, frames captured 40, lost to slow readers 3\n"),
            "{t}"
        );
        let t = render_table(r#"{"nodes":[]}"#);
        assert!(!t.contains("capture:"), "{t}");
    }

    #[test]
    fn table_shows_impaired_links() {
        let t = render_table(
            r#"{"nodes":[{"name":"h1"},{"name":"h2","impair":{"link":"down","egress":"loss=5% delay=20ms","ingress":"none","egress_counters":{"frames":100,"lost":5,"link_down":2},"ingress_counters":{"frames":7}}}]}"#,
        );
        let line = t
            .lines()
            .find(|l| l.starts_with("impairment "))
            .unwrap_or_else(|| panic!("{t}"));
        assert_eq!(
            line,
            "impairment h2: link down; egress loss=5% delay=20ms (100 frames: lost 5, link_down 2); ingress none (7 frames)"
        );
        assert_eq!(t.matches("impairment ").count(), 1, "{t}");
    }

    #[test]
    fn table_shows_mirror_sessions() {
        let t = render_table(
            r#"{"nodes":[],"mirrors":[{"network":"default","name":"span","source":"h1","destination":"h3","direction":"both","rate":10000,"configured":true,"mirrored":42,"dropped_rate":0},{"network":"lab","name":"v20","source":"t1","destination":"t2","direction":"sent","vlan":20,"rate":5,"mirrored":5,"dropped_rate":7}]}"#,
        );
        let lines: Vec<&str> = t.lines().filter(|l| l.starts_with("mirror ")).collect();
        assert_eq!(
            lines,
            [
                "mirror span (network default): h1 -> h3, both, vlan any, rate 10000/s; mirrored 42, dropped by rate 0",
                "mirror v20 (network lab): t1 -> t2, sent, vlan 20, rate 5/s; mirrored 5, dropped by rate 7",
            ],
            "{t}"
        );
    }

    #[test]
    fn table_shows_the_snooping_limits_and_refusals() {
        let t = render_table(
            r#"{"nodes":[],"multicast":{"snooping":true,"groups":[],"limits":{"max_groups_per_node":1024,"max_groups":4096,"max_groups_total":16384,"max_sources_per_group":32,"leaves_per_sec":100,"groups_total":7},"counters":{"refused_node_limit":5,"refused_sources":9,"leaves_rate_limited":3}}}"#,
        );
        let line = t
            .lines()
            .find(|l| l.starts_with("multicast limits:"))
            .unwrap_or_else(|| panic!("{t}"));
        assert!(line.contains("7 of 16384 in all"), "{line}");
        assert!(line.contains("node-limit 5 network-limit 0"), "{line}");
        assert!(line.contains("sources 9; leaves rate-limited 3"), "{line}");
    }

    /// A status with every part filled in, as the switch serializes it.
    fn full_status() -> Status {
        let node = |name: &str, connected: bool| NodeStatus {
            network: "default".into(),
            name: name.into(),
            public_key: "k".into(),
            connected,
            endpoint: connected.then(|| "198.18.0.11:4000".into()),
            session_age_secs: connected.then_some(12.4),
            last_handshake_secs_ago: connected.then_some(3.6),
            last_heard_secs_ago: connected.then_some(0.2),
            macs: 2,
            vlan: Some(10),
            trunk: vec![20, 30],
            counters: NodeCounters {
                rx_frames: 5,
                rx_bytes: 3 << 20,
                tx_frames: 6,
                tx_bytes: 100,
                handshakes: 1,
                storm_dropped_broadcast: 4,
                storm_dropped_multicast: 0,
                storm_dropped_unknown_unicast: 9,
            },
            impair: None,
        };
        let mut h2 = node("h2", false);
        h2.impair = Some(ImpairStatus {
            link: "down".into(),
            egress: "loss=5%".into(),
            ingress: "none".into(),
            egress_counters: crate::impair::ImpairCounters {
                frames: 100,
                lost: 5,
                corrupted: 1,
                ..Default::default()
            },
            ..Default::default()
        });
        let mut drops = Drops::default();
        drops.add_n(crate::counters::DropReason::Replay, 3);
        drops.add_n(crate::counters::DropReason::BadTag, 2);
        let mut s = Status {
            uptime_secs: 100.0,
            nodes: vec![node("h1", true), h2],
            drops,
            ..Default::default()
        };
        s.forwarded.unicast = 7;
        s.forwarded.flood_copies = 8;
        s.mac_table.entries = 3;
        s.mac_table.limit = 1024;
        s.mac_table.counters.moves = 1;
        s.sessions.rekeys = 2;
        s.networks = vec![
            NetworkStatus {
                name: "default".into(),
                id: 0,
                mode: crate::mesh::Mode::Central,
                nodes: 2,
                connected: 1,
            },
            NetworkStatus {
                name: "blue".into(),
                id: 7,
                mode: crate::mesh::Mode::Mesh,
                nodes: 0,
                connected: 0,
            },
        ];
        let m = &mut s.multicast;
        m.snooping = true;
        m.counters.reports = 4;
        m.counters.unknown_types = 1;
        m.counters.unknown_records = 2;
        m.limits.max_groups = 4096;
        m.queriers = vec![
            QuerierStatus {
                network: "default".into(),
                vlan: 10,
                family: "ipv4".into(),
                active: true,
                address: "198.19.0.254".into(),
                other_querier: None,
                other_querier_expires_in_secs: None,
                ..Default::default()
            },
            QuerierStatus {
                network: "default".into(),
                vlan: 10,
                family: "ipv6".into(),
                active: false,
                address: "fe80::1".into(),
                other_querier: Some("fe80::0".into()),
                other_querier_expires_in_secs: Some(3.0),
                ..Default::default()
            },
        ];
        m.router_ports = vec![RouterPortStatus {
            network: "default".into(),
            vlan: 10,
            node: "h1".into(),
            expires_in_secs: 40.2,
            ..Default::default()
        }];
        let source = |a: &str| SourceStatus {
            source: a.into(),
            expires_in_secs: 5.0,
        };
        m.groups = vec![GroupStatus {
            network: "default".into(),
            vlan: 10,
            group: "239.1.1.1".into(),
            frames: 9,
            bytes: 900,
            members: vec![
                MemberStatus {
                    node: "h1".into(),
                    any_source_expires_in_secs: Some(200.0),
                    sources: vec![],
                    ..Default::default()
                },
                MemberStatus {
                    node: "h2".into(),
                    any_source_expires_in_secs: Some(100.0),
                    sources: vec![source("198.19.0.1")],
                    ..Default::default()
                },
                MemberStatus {
                    node: "h3".into(),
                    any_source_expires_in_secs: None,
                    sources: vec![source("198.19.0.1"), source("198.19.0.2")],
                    ..Default::default()
                },
            ],
            ..Default::default()
        }];
        s.macs = Some(vec![MacStatus {
            network: "default".into(),
            vlan: 10,
            mac: "02:00:00:00:00:01".into(),
            node: "h1".into(),
            expires_in_secs: 299.6,
        }]);
        s
    }

    /// The table of a status with every part filled in, as the switch
    /// serializes it: the same text the renderer printed when it read untyped
    /// JSON, except that the group table's VLAN, frame and byte columns are
    /// now padded to their headers.
    #[test]
    fn table_of_a_full_status() {
        let json = serde_json::to_string(&full_status()).unwrap();
        let expected = "\
networks: default (id 0, central, 1/2 connected), blue (id 7, mesh, 0/0 connected)

NODE             UP   ENDPOINT                      SESSION HANDSHAKE   HEARD   RX FRAMES  RX BYTES   TX FRAMES  TX BYTES   MACS
h1               yes  198.18.0.11:4000                  12s    4s ago  0s ago           5      3.0M           6       100      2
h2               no   -                                   -         -       -           5      3.0M           6       100      2

forwarded: unicast 7 flooded-unicast 0 broadcast 0 multicast 0 (flood copies 8)
mac table: 3 entries (limit 1024), learned 0 moves 1 aged out 0
sessions: handshakes 0 confirmed 0 rekeys 2 timeouts 0 keepalives 0
drops: bad_tag 2, replay 3
storm control drops: h1 (broadcast 4, unknown_unicast 9); h2 (broadcast 4, unknown_unicast 9)
impairment h2: link down; egress loss=5% (100 frames: lost 5, corrupted 1); ingress none (0 frames)
multicast: snooping on, unregistered to routers only; reports 4 leaves 0 queries in 0 out 0, frames registered 0 unregistered 0 link-local 0, malformed 0 unknown 3
multicast limits: 1 groups (max 4096 per network, 0 of 0 in all), 0 per node, 0 sources per group, 0 leaves/s per node; refused: node-limit 0 network-limit 0 total-limit 0 sources 0; leaves rate-limited 0, group queries deferred 0
querier vlan 10 ipv4: active from 198.19.0.254
querier vlan 10 ipv6: silent, other querier fe80::0 from fe80::1
router port vlan 10: h1 (40s)

VLAN  GROUP                            FRAMES        BYTES  MEMBERS
10    239.1.1.1                             9          900  h1 (200s), h2 (100s, +198.19.0.1), h3 (from 198.19.0.1 198.19.0.2)

VLAN  MAC                NODE              EXPIRES
10    02:00:00:00:00:01  h1                   300s
";
        assert_eq!(render_table(&json), expected);
    }
}
