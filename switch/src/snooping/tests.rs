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
