//! The snooper's rules with synthetic time and hand-built IGMP/MLD packets.
use super::wire::{ETHERTYPE_IPV4, ETHERTYPE_IPV6, checksum, icmpv6_checksum};
use super::*;

const H1: NodeId = NodeId(0);
const H2: NodeId = NodeId(1);
const H3: NodeId = NodeId(2);
const V: Vid = 0;

fn g4() -> IpAddr {
    "239.1.2.3".parse().unwrap()
}

fn src(n: u8) -> IpAddr {
    IpAddr::from([198, 19, 0, n])
}

/// An IPv4 packet with `proto` from `s` to `d` carrying `payload`.
fn ipv4(proto: u8, s: IpAddr, d: IpAddr, payload: &[u8]) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (s, d) else {
        panic!()
    };
    let mut p = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 1, proto, 0, 0];
    p.extend_from_slice(&s.octets());
    p.extend_from_slice(&d.octets());
    p.extend_from_slice(payload);
    let len = p.len() as u16;
    p[2..4].copy_from_slice(&len.to_be_bytes());
    p
}

fn igmp(mut m: Vec<u8>) -> Vec<u8> {
    let c = checksum(0, &m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

fn v2(kind: u8, group: IpAddr, from: IpAddr) -> Vec<u8> {
    let IpAddr::V4(g) = group else { panic!() };
    let mut m = vec![kind, 0, 0, 0];
    m.extend_from_slice(&g.octets());
    ipv4(2, from, group, &igmp(m))
}

/// An IGMPv3 report with one record.
fn v3(kind: u8, group: IpAddr, sources: &[IpAddr], from: IpAddr) -> Vec<u8> {
    let IpAddr::V4(g) = group else { panic!() };
    let mut m = vec![0x22, 0, 0, 0, 0, 0, 0, 1, kind, 0, 0, sources.len() as u8];
    m.extend_from_slice(&g.octets());
    for s in sources {
        let IpAddr::V4(s) = s else { panic!() };
        m.extend_from_slice(&s.octets());
    }
    ipv4(2, from, "224.0.0.22".parse().unwrap(), &igmp(m))
}

fn query_from(from: IpAddr) -> Vec<u8> {
    let m = vec![0x11, 100, 0, 0, 0, 0, 0, 0, 0x02, 125, 0, 0];
    ipv4(2, from, "224.0.0.1".parse().unwrap(), &igmp(m))
}

fn udp_to(group: IpAddr, from: IpAddr) -> Vec<u8> {
    ipv4(
        17,
        from,
        group,
        &[0x30, 0x39, 0x30, 0x39, 0, 12, 0, 0, 1, 2, 3, 4],
    )
}

/// An MLDv2 report with one record, from fe80::`n`.
fn mld2(kind: u8, group: &str, n: u16) -> Vec<u8> {
    let s = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, n);
    let d: Ipv6Addr = "ff02::16".parse().unwrap();
    let g: Ipv6Addr = group.parse().unwrap();
    let mut m = vec![143, 0, 0, 0, 0, 0, 0, 1, kind, 0, 0, 0];
    m.extend_from_slice(&g.octets());
    let mut addrs = s.octets().to_vec();
    addrs.extend_from_slice(&d.octets());
    let c = icmpv6_checksum(&addrs, &m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&((m.len() + 8) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 1]);
    p.extend_from_slice(&addrs);
    p.extend_from_slice(&[58, 0, 5, 2, 0, 0, 1, 0]);
    p.extend_from_slice(&m);
    p
}

fn udp6_to(group: &str) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0, 0, 8, 17, 1];
    p.extend_from_slice(&"fd00:19::1".parse::<Ipv6Addr>().unwrap().octets());
    p.extend_from_slice(&group.parse::<Ipv6Addr>().unwrap().octets());
    p.extend_from_slice(&[0, 1, 0, 2, 0, 8, 0, 0]);
    p
}

#[path = "controls_tests.rs"]
mod controls;

struct T {
    s: Snooping,
    t0: Instant,
    targets: Vec<NodeId>,
}

impl T {
    fn new(cfg: SnoopConfig) -> T {
        let t0 = Instant::now();
        T {
            s: Snooping::new(cfg, vec![false, false, true], &[V], t0),
            t0,
            targets: Vec::new(),
        }
    }

    fn at(&self, secs: f64) -> Instant {
        self.t0 + Duration::from_secs_f64(secs)
    }

    fn v4(&mut self, secs: f64, from: NodeId, p: &[u8]) -> Classified {
        let now = self.at(secs);
        let typed = [&ETHERTYPE_IPV4.to_be_bytes()[..], p].concat();
        self.s
            .handle_frame(now, V, from, &typed, p.len() + 14, &mut self.targets)
    }

    fn v6(&mut self, secs: f64, from: NodeId, p: &[u8]) -> Classified {
        let now = self.at(secs);
        let typed = [&ETHERTYPE_IPV6.to_be_bytes()[..], p].concat();
        self.s
            .handle_frame(now, V, from, &typed, p.len() + 14, &mut self.targets)
    }

    /// Who gets data from `source` to `group` at `secs`: `None` for a flood.
    fn data(&mut self, secs: f64, group: IpAddr, source: IpAddr) -> Option<Vec<NodeId>> {
        let c = self.v4(secs, H1, &udp_to(group, source));
        (c.verdict == Verdict::Only).then(|| {
            let mut v = self.targets.clone();
            v.sort();
            v
        })
    }

    fn tick(&mut self, secs: f64) -> Vec<(Vid, Vec<u8>)> {
        self.s.handle_timeout(self.at(secs));
        std::iter::from_fn(|| self.s.poll_query()).collect()
    }
}

#[test]
fn joined_groups_go_to_members_only_and_others_flood() {
    let mut t = T::new(SnoopConfig::default());
    assert_eq!(t.data(0.0, g4(), src(1)), None, "unregistered: flooded");
    let c = t.v4(0.0, H2, &v3(4, g4(), &[], src(2)));
    assert_eq!(c, ROUTERS_ONLY);
    assert!(
        t.targets.is_empty(),
        "no router port: the report goes nowhere"
    );
    t.v4(0.0, H3, &v2(0x16, g4(), src(3)));
    assert_eq!(t.data(1.0, g4(), src(1)), Some(vec![H2, H3]));
    // Link-local groups flood, and are marked as control for storm control.
    let c = t.v4(1.0, H1, &udp_to("224.0.0.251".parse().unwrap(), src(1)));
    assert_eq!(c, FLOOD_CONTROL);
    let st = t.s.status(t.at(1.0), |n| format!("h{}", n.0 + 1));
    assert_eq!(st.groups.len(), 1);
    assert_eq!(st.groups[0].frames, 1);
    assert_eq!(st.groups[0].members.len(), 2);
    assert_eq!(t.s.counters().registered_frames, 1);
    assert_eq!(t.s.counters().unregistered_frames, 1);
}

#[test]
fn memberships_age_out_at_the_membership_interval() {
    let mut t = T::new(SnoopConfig::default());
    t.v4(0.0, H2, &v2(0x16, g4(), src(2)));
    assert_eq!(t.data(259.0, g4(), src(1)), Some(vec![H2]));
    assert_eq!(
        t.data(260.5, g4(), src(1)),
        None,
        "expired: unregistered again"
    );
    t.tick(261.0);
    assert!(t.s.status(t.at(261.0), |_| String::new()).groups.is_empty());
    assert_eq!(t.s.counters().expired, 1);
}

#[test]
fn leave_waits_for_the_last_member_queries_then_prunes() {
    let mut t = T::new(SnoopConfig::default());
    t.tick(0.0); // startup general queries
    t.v4(1.0, H2, &v2(0x16, g4(), src(2)));
    t.v4(1.0, H3, &v2(0x16, g4(), src(3)));
    t.v4(2.0, H2, &v2(0x17, g4(), src(2)));
    let q = std::iter::from_fn(|| t.s.poll_query()).collect::<Vec<_>>();
    assert_eq!(q.len(), 1, "a group-specific query at once");
    assert_eq!(&q[0].1[..6], &[1, 0, 0x5e, 1, 2, 3], "sent to the group");
    assert_eq!(
        t.data(3.5, g4(), src(1)),
        Some(vec![H2, H3]),
        "within 2 x 1 s"
    );
    assert_eq!(t.tick(3.0).len(), 1, "the second group-specific query");
    assert_eq!(
        t.data(4.1, g4(), src(1)),
        Some(vec![H3]),
        "pruned after 2 s"
    );
    // A member that answers the query stays.
    t.v4(5.0, H3, &v2(0x17, g4(), src(3)));
    t.v4(5.5, H3, &v2(0x16, g4(), src(3)));
    assert_eq!(t.data(8.0, g4(), src(1)), Some(vec![H3]));
}

#[test]
fn fast_leave_prunes_at_once() {
    let mut t = T::new(SnoopConfig::default());
    t.v4(0.0, H3, &v2(0x16, g4(), src(3))); // h3 is fast-leave in T
    t.v4(0.0, H2, &v2(0x16, g4(), src(2)));
    t.v4(1.0, H3, &v3(3, g4(), &[], src(3))); // IGMPv3 leave: TO_IN {}
    assert_eq!(t.data(1.0, g4(), src(1)), Some(vec![H2]));
    assert_eq!(t.s.counters().fast_leaves, 1);
}

#[test]
fn source_specific_joins_get_only_their_sources() {
    let mut t = T::new(SnoopConfig::default());
    t.v4(0.0, H2, &v3(5, g4(), &[src(1)], src(2))); // ALLOW {h1}
    assert_eq!(t.data(1.0, g4(), src(1)), Some(vec![H2]));
    assert_eq!(
        t.data(1.0, g4(), src(9)),
        Some(vec![]),
        "registered, other source: nobody"
    );
    t.v4(2.0, H2, &v3(6, g4(), &[src(1)], src(2))); // BLOCK {h1}
    assert_eq!(
        t.data(4.5, g4(), src(1)),
        None,
        "left after the last-member time"
    );
}

#[test]
fn queries_make_router_ports_and_reports_go_there() {
    let mut t = T::new(SnoopConfig::default());
    assert_eq!(t.v4(0.0, H1, &query_from(src(1))), FLOOD_CONTROL);
    t.v4(0.0, H2, &v2(0x16, g4(), src(2)));
    assert_eq!(t.targets, vec![H1], "report to the router port only");
    assert_eq!(t.data(1.0, g4(), src(3)), Some(vec![H1, H2]));
    let unreg: IpAddr = "239.9.9.9".parse().unwrap();
    t.s.cfg.flood_unregistered = false;
    assert_eq!(t.data(1.0, unreg, src(3)), Some(vec![H1]));
}

#[test]
fn querier_sends_and_yields_to_a_lower_address() {
    let cfg = SnoopConfig {
        querier_v4: Ipv4Addr::new(198, 19, 0, 254),
        ..SnoopConfig::default()
    };
    let mut t = T::new(cfg);
    let q = t.tick(0.0);
    assert_eq!(q.len(), 2, "IGMP and MLD general queries at start");
    assert_eq!(t.tick(10.0).len(), 0);
    assert_eq!(
        t.tick(31.25).len(),
        2,
        "startup query after a quarter interval"
    );
    assert_eq!(t.tick(100.0).len(), 0);
    assert_eq!(t.tick(156.25).len(), 2, "then every query interval");
    // A querier at a higher address does not silence us; a lower one does.
    t.v4(157.0, H1, &query_from(IpAddr::from([198, 19, 0, 255])));
    t.v4(157.0, H1, &query_from(src(1)));
    let st = t.s.status(t.at(157.0), |_| String::new());
    let v4 = st.queriers.iter().find(|q| q.family == "ipv4").unwrap();
    assert!(!v4.active);
    assert_eq!(v4.other_querier.as_deref(), Some("198.19.0.1"));
    let q = t.tick(290.0);
    assert_eq!(q.len(), 1, "only MLD still queries");
    assert_eq!(q[0].1[12..14], [0x86, 0xdd]);
    // The other querier is gone after 255 s: we take over.
    let q = t.tick(412.5);
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].1[12..14], [0x08, 0x00]);
}

#[test]
fn mld_joins_and_link_local_reports_leave_no_state() {
    let mut t = T::new(SnoopConfig::default());
    t.v6(0.0, H2, &mld2(4, "ff15::1234", 2));
    t.v6(0.0, H3, &mld2(4, "ff02::1:ff00:3", 3));
    let c = t.v6(1.0, H1, &udp6_to("ff15::1234"));
    assert_eq!(c.verdict, Verdict::Only);
    assert_eq!(t.targets, vec![H2]);
    assert_eq!(t.v6(1.0, H1, &udp6_to("ff02::1:ff00:3")), FLOOD_CONTROL);
    let st = t.s.status(t.at(1.0), |_| String::new());
    assert_eq!(st.groups.len(), 1);
    assert_eq!(st.groups[0].group, "ff15::1234");
}

#[test]
fn snooping_off_floods_everything_and_forget_drops_a_node() {
    let mut t = T::new(SnoopConfig {
        enabled: false,
        ..SnoopConfig::default()
    });
    t.v4(0.0, H2, &v2(0x16, g4(), src(2)));
    assert_eq!(t.data(0.0, g4(), src(1)), None);
    assert!(t.tick(0.0).is_empty(), "no querier without snooping");
    let mut t = T::new(SnoopConfig::default());
    t.v4(0.0, H2, &v2(0x16, g4(), src(2)));
    t.s.forget_node(H2);
    assert_eq!(t.data(0.0, g4(), src(1)), None);
}

#[test]
fn malformed_and_unknown_are_counted_and_flooded() {
    let mut t = T::new(SnoopConfig::default());
    let mut p = v2(0x16, g4(), src(2));
    p[21] ^= 0xff; // breaks the checksum
    assert_eq!(t.v4(0.0, H2, &p), FLOOD_CONTROL);
    assert_eq!(t.v4(0.0, H2, &v2(0x1e, g4(), src(2))), FLOOD_CONTROL);
    assert_eq!(t.v4(0.0, H2, &v3(9, g4(), &[], src(2))), ROUTERS_ONLY);
    let c = t.s.counters();
    assert_eq!((c.malformed, c.unknown_types, c.unknown_records), (1, 1, 1));
    assert_eq!(t.data(0.0, g4(), src(1)), None, "nothing was learned");
}

/// An IGMPv3 report with several records: (type, group, sources).
fn v3_records(records: &[(u8, IpAddr, &[IpAddr])], from: IpAddr) -> Vec<u8> {
    let mut m = vec![0x22, 0, 0, 0, 0, 0];
    m.extend_from_slice(&(records.len() as u16).to_be_bytes());
    for (kind, group, sources) in records {
        let IpAddr::V4(g) = group else { panic!() };
        m.extend_from_slice(&[*kind, 0]);
        m.extend_from_slice(&(sources.len() as u16).to_be_bytes());
        m.extend_from_slice(&g.octets());
        for s in *sources {
            let IpAddr::V4(s) = s else { panic!() };
            m.extend_from_slice(&s.octets());
        }
    }
    ipv4(2, from, "224.0.0.22".parse().unwrap(), &igmp(m))
}

/// The `n`th group of 239.2.0.0/16.
fn gn(n: u16) -> IpAddr {
    let [a, b] = n.to_be_bytes();
    IpAddr::from([239, 2, a, b])
}

/// Source `n` of 198.18.0.0/15.
fn sn(n: u32) -> IpAddr {
    let [_, a, b, c] = n.to_be_bytes();
    IpAddr::from([198, 18 | (a & 1), b, c])
}

fn limited(per_node: usize, network: usize, total: usize, sources: usize) -> SnoopConfig {
    SnoopConfig {
        max_groups_per_node: per_node,
        max_groups: network,
        max_groups_total: total,
        max_sources_per_group: sources,
        ..SnoopConfig::default()
    }
}

/// Group-specific queries among `queries` (general ones go to 224.0.0.1).
fn group_queries(queries: &[(Vid, Vec<u8>)]) -> usize {
    queries
        .iter()
        .filter(|(_, f)| f[..6] != [1, 0, 0x5e, 0, 0, 1] && f[12..14] == [8, 0])
        .count()
}

#[test]
fn the_group_limits_refuse_and_count_and_lookups_stay_right() {
    let mut t = T::new(limited(3, 5, 1000, 32));
    // One report of 10 EXCLUDE {} records from h2: 3 memberships, 7 refused.
    let recs: Vec<(u8, IpAddr, &[IpAddr])> = (0..10).map(|n| (2, gn(n), &[][..])).collect();
    assert_eq!(t.v4(0.0, H2, &v3_records(&recs, src(2))), ROUTERS_ONLY);
    assert_eq!(t.s.counters().refused_node_limit, 7);
    assert_eq!(t.s.budget.memberships(H2), 3);
    // h3 may join h2's groups (no new group) and 2 new ones: then the
    // network has its 5 groups.
    for n in 0..3 {
        t.v4(0.0, H3, &v2(0x16, gn(n), src(3)));
    }
    let c = t.s.counters();
    assert_eq!((c.refused_node_limit, c.refused_network_limit), (7, 0));
    t.v4(0.0, H1, &v2(0x16, gn(3), src(1)));
    t.v4(0.0, H1, &v2(0x16, gn(4), src(1)));
    t.v4(0.0, H1, &v2(0x16, gn(5), src(1)));
    assert_eq!(t.s.counters().refused_network_limit, 1);
    assert_eq!(t.s.groups.len(), 5);
    // Lookups: members get their groups; a refused group is unregistered
    // and floods, so its would-be listener still gets it.
    assert_eq!(t.data(1.0, gn(0), src(9)), Some(vec![H2, H3]));
    assert_eq!(t.data(1.0, gn(4), src(9)), Some(vec![H1]));
    assert_eq!(t.data(1.0, gn(5), src(9)), None, "refused: flooded");
    assert_eq!(t.data(1.0, gn(7), src(9)), None, "refused: flooded");
    // Expiry gives the budget back.
    t.tick(261.0);
    assert_eq!((t.s.groups.len(), t.s.budget.memberships(H2)), (0, 0));
    t.v4(262.0, H2, &v3_records(&recs[7..], src(2)));
    assert_eq!(t.data(263.0, gn(9), src(9)), Some(vec![H2]));
    assert_eq!(t.s.counters().refused_node_limit, 7);
}

#[test]
fn the_total_limit_is_shared_by_networks() {
    let total = limits::GroupTotal::default();
    let mut a = T::new(limited(100, 100, 4, 32));
    let mut b = T::new(limited(100, 100, 4, 32));
    a.s.share_group_total(total.share());
    b.s.share_group_total(total.share());
    for n in 0..3 {
        a.v4(0.0, H2, &v2(0x16, gn(n), src(2)));
    }
    b.v4(0.0, H2, &v2(0x16, gn(0), src(2)));
    b.v4(0.0, H2, &v2(0x16, gn(1), src(2)));
    assert_eq!(b.s.counters().refused_total_limit, 1);
    assert_eq!(b.data(1.0, gn(0), src(9)), Some(vec![H2]));
    assert_eq!(b.data(1.0, gn(1), src(9)), None, "refused: flooded");
    assert_eq!(
        b.s.status(b.at(1.0), |_| String::new()).limits.groups_total,
        4
    );
    // A network forgetting its node frees its share.
    a.s.forget_node(H2);
    b.v4(2.0, H2, &v2(0x16, gn(1), src(2)));
    assert_eq!(b.data(3.0, gn(1), src(9)), Some(vec![H2]));
    assert_eq!(b.s.counters().refused_total_limit, 1);
}

#[test]
fn sources_over_the_limit_make_the_membership_take_every_source() {
    let mut t = T::new(limited(100, 100, 100, 4));
    let first: Vec<IpAddr> = (0..3).map(sn).collect();
    t.v4(0.0, H2, &v3(5, g4(), &first, src(2))); // ALLOW 3 sources
    assert_eq!(t.data(0.5, g4(), sn(1)), Some(vec![H2]));
    assert_eq!(t.data(0.5, g4(), sn(9)), Some(vec![]), "not listed");
    // 100,000 more, 300 per record, 10 records per report: one fits.
    for chunk in 0..34u32 {
        let lists: Vec<Vec<IpAddr>> = (0..10)
            .map(|r| {
                let base = 3 + (chunk * 10 + r) * 300;
                (base..base + 300).map(sn).collect()
            })
            .collect();
        let recs: Vec<(u8, IpAddr, &[IpAddr])> = lists.iter().map(|l| (5, g4(), &l[..])).collect();
        t.v4(1.0, H2, &v3_records(&recs, src(2)));
    }
    assert_eq!(t.s.counters().refused_sources, 34 * 3000 - 1);
    let st = t.s.status(t.at(1.0), |_| String::new());
    assert_eq!(st.groups[0].members[0].sources.len(), 4);
    // Over the limit: every source reaches h2 (a superset of its list), and
    // still only h2.
    assert_eq!(t.data(2.0, g4(), sn(9)), Some(vec![H2]));
    assert_eq!(t.data(2.0, g4(), sn(50_000)), Some(vec![H2]));
    // h3's list is its own.
    t.v4(2.0, H3, &v3(5, g4(), &[sn(7)], src(3)));
    assert_eq!(t.data(3.0, g4(), sn(7)), Some(vec![H2, H3]));
    assert_eq!(t.data(3.0, g4(), sn(8)), Some(vec![H2]));
}

#[test]
fn leaves_are_rate_limited_per_node() {
    let mut t = T::new(SnoopConfig {
        leaves_per_sec: 5,
        ..SnoopConfig::default()
    });
    t.tick(0.0);
    let recs: Vec<(u8, IpAddr, &[IpAddr])> = (0..20).map(|n| (2, gn(n), &[][..])).collect();
    t.v4(0.0, H2, &v3_records(&recs, src(2)));
    t.v4(0.0, H1, &v2(0x16, gn(0), src(1)));
    // h2 leaves all 20 in one report: 5 leaves apply (and query), 15 are
    // ignored, so those memberships run on.
    let leaves: Vec<(u8, IpAddr, &[IpAddr])> = (0..20).map(|n| (3, gn(n), &[][..])).collect();
    t.v4(1.0, H2, &v3_records(&leaves, src(2)));
    let q: Vec<_> = std::iter::from_fn(|| t.s.poll_query()).collect();
    assert_eq!(group_queries(&q), 5);
    assert_eq!(t.s.counters().leaves_rate_limited, 15);
    assert_eq!(t.data(4.0, gn(1), src(9)), None, "left: pruned");
    assert_eq!(t.data(4.0, gn(19), src(9)), Some(vec![H2]), "ignored leave");
    // h1 has its own bucket.
    t.v4(1.0, H1, &v2(0x17, gn(0), src(1)));
    assert_eq!(t.s.counters().leaves_rate_limited, 15);
    // A second later h2 has 5 more.
    t.v4(2.0, H2, &v3_records(&leaves[10..], src(2)));
    assert_eq!(t.s.counters().leaves_rate_limited, 20);
}

#[test]
fn group_queries_stay_at_one_per_interval_under_churn() {
    let mut t = T::new(SnoopConfig::default());
    t.tick(0.0);
    t.v4(0.0, H3, &v2(0x16, g4(), src(3)));
    // h2 joins and leaves every 50 ms for 10 s: 200 leaves.
    let mut queries = 0;
    for k in 0..200 {
        let at = 1.0 + f64::from(k) * 0.05;
        t.v4(at, H2, &v2(0x16, g4(), src(2)));
        t.v4(at + 0.01, H2, &v2(0x17, g4(), src(2)));
        queries += group_queries(&std::iter::from_fn(|| t.s.poll_query()).collect::<Vec<_>>());
        if k % 10 == 0 {
            queries += group_queries(&t.tick(at + 0.02)); // the 500 ms sweep
        }
    }
    queries += group_queries(&t.tick(12.0));
    queries += group_queries(&t.tick(13.0));
    eprintln!("{queries} group-specific queries for 200 leaves in 10 s");
    assert!(
        (10..=13).contains(&queries),
        "{queries}: want one per second, not one per leave"
    );
    assert!(t.s.counters().group_queries_deferred >= 180);
    // The churner is pruned after its last leave; h3 never left and stays.
    assert_eq!(t.data(14.0, g4(), src(1)), Some(vec![H3]));
}

#[test]
fn a_block_of_many_sources_sends_one_query() {
    let mut t = T::new(SnoopConfig::default());
    t.tick(0.0);
    let list: Vec<IpAddr> = (0..30).map(sn).collect();
    t.v4(0.0, H2, &v3(5, g4(), &list, src(2)));
    t.v4(1.0, H2, &v3(6, g4(), &list, src(2)));
    let q: Vec<_> = std::iter::from_fn(|| t.s.poll_query()).collect();
    assert_eq!(
        group_queries(&q),
        1,
        "one query for the group, not one per source"
    );
    assert_eq!(t.data(2.5, g4(), sn(3)), Some(vec![H2]), "within 2 x 1 s");
    assert_eq!(t.data(3.5, g4(), sn(3)), None, "then pruned: unregistered");
}
