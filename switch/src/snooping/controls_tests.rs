//! The snooping controls: the querier changed while running, static router
//! ports, the group table's timers, in synthetic time.
use super::*;
use crate::snooping::controls::{QuerierChange, QuerierRequest};

/// IGMP queries among `q`: (IGMP message length, max response code).
fn igmp_queries(q: &[(Vid, Vec<u8>)]) -> Vec<(usize, u8)> {
    q.iter()
        .filter(|(_, f)| f[12..14] == [0x08, 0x00])
        .map(|(_, f)| (f.len() - 14 - 24, f[14 + 24 + 1]))
        .collect()
}

/// MLD queries among `q`: the ICMPv6 message length.
fn mld_queries(q: &[(Vid, Vec<u8>)]) -> Vec<usize> {
    q.iter()
        .filter(|(_, f)| f[12..14] == [0x86, 0xdd])
        .map(|(_, f)| f.len() - 14 - 40 - 8)
        .collect()
}

fn change(line: &str) -> QuerierChange {
    QuerierRequest::parse(line).unwrap().change
}

#[test]
fn querier_off_stops_queries_and_on_restarts_them_with_the_set_version_and_interval() {
    let mut t = T::new(SnoopConfig::default());
    let q = t.tick(0.0);
    assert_eq!(igmp_queries(&q), [(12, 100)], "IGMPv3 at start");
    assert_eq!(mld_queries(&q), [28], "MLDv2 at start");
    t.s.set_querier(t.at(1.0), &change("querier off")).unwrap();
    assert!(t.tick(31.25).is_empty(), "no startup query while off");
    assert!(t.tick(500.0).is_empty(), "no general query while off");
    let st = t.s.status(t.at(500.0), |_| String::new());
    assert!(st.queriers.iter().all(|q| q.querier == "none" && !q.active));
    assert!(!st.querier_settings[0].enabled);

    t.s.set_querier(
        t.at(501.0),
        &change("querier on version=2 interval=8s response=2s"),
    )
    .unwrap();
    let q = t.tick(501.0);
    assert_eq!(igmp_queries(&q), [(8, 20)], "IGMPv2 at once, 2 s to answer");
    assert_eq!(mld_queries(&q), [24], "MLDv1");
    assert!(t.tick(502.5).is_empty());
    assert_eq!(
        t.tick(503.0).len(),
        2,
        "startup query a quarter interval later"
    );
    assert!(t.tick(510.5).is_empty());
    assert_eq!(t.tick(511.0).len(), 2, "then every 8 s");
    let st = t.s.status(t.at(511.0), |_| String::new());
    let v4 = st.queriers.iter().find(|q| q.family == "ipv4").unwrap();
    assert_eq!((v4.querier.as_str(), v4.version), ("us", 2));
    assert_eq!(v4.next_query_in_secs, Some(8.0));
    assert_eq!(st.querier_settings[0].query_interval_secs, 8.0);
}

#[test]
fn a_shorter_interval_moves_the_next_query_up() {
    let mut t = T::new(SnoopConfig::default());
    t.tick(0.0);
    t.tick(31.25);
    // Next general query due at 156.25; a 20 s interval brings it to 50 + 20.
    t.s.set_querier(t.at(50.0), &change("querier interval=20s"))
        .unwrap();
    assert!(t.tick(69.5).is_empty());
    assert_eq!(t.tick(70.0).len(), 2);
    assert!(t.tick(89.5).is_empty());
    assert_eq!(t.tick(90.0).len(), 2);
}

#[test]
fn timers_that_do_not_fit_are_refused_and_change_nothing() {
    let mut t = T::new(SnoopConfig::default());
    let before = t.s.config().clone();
    let e =
        t.s.set_querier(t.at(0.0), &change("querier off response=200s"))
            .unwrap_err();
    assert!(e.contains("response"), "{e}");
    let e =
        t.s.set_querier(t.at(0.0), &change("querier interval=300s response=1s"))
            .unwrap_err();
    assert!(e.contains("membership"), "{e}");
    assert_eq!(t.s.config(), &before);
}

#[test]
fn querier_requests_parse_and_bad_ones_name_the_key() {
    let r = QuerierRequest::parse(
        "querier network=lab on igmp-version=2 mld-version=1 interval=30s response=5s \
         last-member-interval=500ms last-member-count=3",
    )
    .unwrap();
    assert_eq!(r.network, Some("lab"));
    let c = r.change;
    assert_eq!(c.enabled, Some(true));
    assert_eq!((c.igmp_version, c.mld_version), (Some(2), Some(1)));
    assert_eq!(c.interval, Some(Duration::from_secs(30)));
    assert_eq!(c.response, Some(Duration::from_secs(5)));
    assert_eq!(c.last_member_interval, Some(Duration::from_millis(500)));
    assert_eq!(c.last_member_count, Some(3));
    let v3 = change("querier version=3");
    assert_eq!((v3.igmp_version, v3.mld_version), (Some(3), Some(2)));
    assert_eq!(change("querier"), QuerierChange::default());
    for (line, key) in [
        ("querier version=1", "version"),
        ("querier igmp-version=1", "igmp-version"),
        ("querier mld-version=3", "mld-version"),
        ("querier interval=0s", "interval"),
        ("querier response=soon", "response"),
        ("querier last-member-count=0", "last-member-count"),
        ("querier colour=red", "colour"),
        ("querier maybe", "maybe"),
    ] {
        let e = QuerierRequest::parse(line).unwrap_err();
        assert!(e.contains(key), "{line}: {e}");
    }
    assert!(QuerierRequest::parse("impair h1 clear").is_err());
}

#[test]
fn a_static_router_port_gets_every_group_and_the_reports() {
    let cfg = SnoopConfig {
        flood_unregistered: false,
        ..SnoopConfig::default()
    };
    let mut t = T::new(cfg);
    let unreg: IpAddr = "239.9.9.9".parse().unwrap();
    assert_eq!(t.data(0.0, unreg, src(1)), Some(vec![]), "nobody yet");
    t.s.set_static_routers(vec![(V, H3)]);
    assert_eq!(t.data(0.0, unreg, src(1)), Some(vec![H3]), "unregistered");
    t.v4(0.0, H2, &v2(0x16, g4(), src(2)));
    assert_eq!(t.targets, vec![H3], "the report goes to the router port");
    assert_eq!(t.data(1.0, g4(), src(1)), Some(vec![H2, H3]), "registered");
    // It does not age: a day later it is still there.
    t.tick(86_400.0);
    assert_eq!(t.data(86_400.0, unreg, src(1)), Some(vec![H3]));
    let st = t.s.status(t.at(86_400.0), |n| format!("h{}", n.0 + 1));
    assert_eq!(st.router_ports.len(), 1);
    assert_eq!(
        (
            st.router_ports[0].node.as_str(),
            st.router_ports[0].kind.as_str()
        ),
        ("h3", "static")
    );
    // Another VLAN's static port gets nothing of this VLAN.
    t.s.set_static_routers(vec![(V + 7, H3)]);
    assert_eq!(t.data(86_400.0, unreg, src(1)), Some(vec![]));
}

#[test]
fn another_querier_is_tracked_while_ours_is_off() {
    let cfg = SnoopConfig {
        querier: false,
        ..SnoopConfig::default()
    };
    let mut t = T::new(cfg);
    assert!(t.tick(0.0).is_empty(), "ours is off");
    // An IGMPv2 query (8 bytes) from a router behind h1.
    let m = vec![0x11, 100, 0, 0, 0, 0, 0, 0];
    let q = ipv4(2, src(1), "224.0.0.1".parse().unwrap(), &igmp(m));
    t.v4(1.0, H1, &q);
    let st = t.s.status(t.at(2.0), |_| String::new());
    let v4 = st.queriers.iter().find(|q| q.family == "ipv4").unwrap();
    assert_eq!((v4.querier.as_str(), v4.version), ("other", 2));
    assert_eq!(v4.other_querier.as_deref(), Some("198.19.0.1"));
    let v6 = st.queriers.iter().find(|q| q.family == "ipv6").unwrap();
    assert_eq!(v6.querier, "none");
}

#[test]
fn with_the_querier_off_a_leave_sends_no_group_query() {
    let mut t = T::new(SnoopConfig::default());
    t.tick(0.0);
    t.v4(1.0, H1, &v2(0x16, g4(), src(1)));
    t.s.set_querier(t.at(1.0), &change("querier off")).unwrap();
    t.v4(2.0, H1, &v2(0x17, g4(), src(1)));
    assert!(
        !t.s.has_queries(),
        "no group-specific query from a querier that is off"
    );
    // The member still goes after the last-member time.
    t.tick(4.5);
    assert_eq!(
        t.data(4.5, g4(), src(2)),
        None,
        "unregistered again: flooded"
    );
}

#[test]
fn the_group_table_shows_modes_sources_and_timers() {
    let mut t = T::new(SnoopConfig::default());
    t.v4(0.0, H1, &v2(0x16, g4(), src(1)));
    t.v4(10.0, H2, &v3(1, g4(), &[src(7)], src(2)));
    let st = t.s.status(t.at(20.0), |n| format!("h{}", n.0 + 1));
    let g = &st.groups[0];
    assert_eq!(g.expires_in_secs, 250.0, "the latest member: h2's source");
    let h1 = g.members.iter().find(|m| m.node == "h1").unwrap();
    assert_eq!(
        (h1.mode.as_str(), h1.any_source_expires_in_secs),
        ("exclude", Some(240.0))
    );
    let h2 = g.members.iter().find(|m| m.node == "h2").unwrap();
    assert_eq!(h2.mode, "include");
    assert_eq!(h2.sources[0].source, "198.19.0.7");
    assert_eq!(h2.sources[0].expires_in_secs, 250.0);
}
