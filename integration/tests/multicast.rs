//! Acceptance tests for multicast snooping, storm control and VLANs (issue
//! 5), with real senders and receivers: UDP sockets opened inside the host
//! namespaces by this test program, joining groups on `tapmesh0` through the
//! kernel's own IGMP/MLD, and `AF_PACKET` captures on the TAPs to see what
//! the switch delivered (the kernel filters unjoined groups before a socket
//! could tell).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use integration::status::counter;
use integration::topology::{TAP, overlay_v4};
use integration::trunk::{TrunkPort, tap_index};
use integration::{Capture, Frame, Topology, wait_until};
use serde_json::Value;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

const UP: Duration = Duration::from_secs(20);
const PORT: u16 = 5001;
const G4: Ipv4Addr = Ipv4Addr::new(239, 1, 2, 3);
const G6: Ipv6Addr = Ipv6Addr::new(0xff15, 0, 0, 0, 0, 0, 0, 0x1234);
/// How long the switch gets to learn a join or a leave.
const LEARN: Duration = Duration::from_secs(10);

/// A UDP socket in host `i` bound to `PORT`, joined to `group` on its TAP
/// (source-specific if `source` is given).
fn join_v4(topo: &Topology, i: usize, group: Ipv4Addr, source: Option<Ipv4Addr>) -> Socket {
    topo.ns(i).enter(move || {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).expect("socket");
        s.set_reuse_address(true).expect("SO_REUSEADDR");
        s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, PORT).into())
            .expect("bind");
        match source {
            None => s.join_multicast_v4(&group, &overlay_v4(i)),
            Some(src) => s.join_ssm_v4(&src, &group, &overlay_v4(i)),
        }
        .expect("join");
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        s
    })
}

fn join_v6(topo: &Topology, i: usize, group: Ipv6Addr) -> Socket {
    topo.ns(i).enter(move || {
        let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP)).expect("socket");
        s.set_only_v6(true).expect("IPV6_V6ONLY");
        s.set_reuse_address(true).expect("SO_REUSEADDR");
        s.bind(&SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, PORT, 0, 0).into())
            .expect("bind");
        s.join_multicast_v6(&group, tap_index()).expect("join");
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        s
    })
}

/// A socket in host `i` that sends multicast out of its TAP, hop limit 1.
fn sender(topo: &Topology, i: usize, v6: bool) -> Socket {
    topo.ns(i).enter(move || {
        let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
        let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).expect("socket");
        if v6 {
            s.set_multicast_if_v6(tap_index())
                .expect("IPV6_MULTICAST_IF");
            s.set_multicast_hops_v6(1).expect("hops");
            s.set_multicast_loop_v6(false).expect("loop");
        } else {
            s.set_multicast_if_v4(&overlay_v4(i))
                .expect("IP_MULTICAST_IF");
            s.set_multicast_ttl_v4(1).expect("ttl");
            s.set_multicast_loop_v4(false).expect("loop");
        }
        s
    })
}

/// Sends `n` datagrams `"{tag} {seq}"` to `to`, 5 ms apart.
fn send(s: &Socket, to: IpAddr, tag: &str, n: usize) {
    let to: SockAddr = SocketAddr::new(to, PORT).into();
    for k in 0..n {
        s.send_to(format!("{tag} {k}").as_bytes(), &to)
            .unwrap_or_else(|e| panic!("send {tag} {k}: {e}"));
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Datagrams `s` holds whose text starts with `tag `, reading until it has
/// been quiet for 300 ms.
fn received(s: &Socket, tag: &str) -> usize {
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1500];
    let mut n = 0;
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_millis(300) {
        if let Ok(len) = s.recv(&mut buf) {
            // SAFETY: recv initialised the first `len` bytes.
            let data: Vec<u8> = buf[..len]
                .iter()
                .map(|b| unsafe { b.assume_init() })
                .collect();
            if data.starts_with(format!("{tag} ").as_bytes()) {
                n += 1;
            }
            quiet_since = Instant::now();
        }
    }
    n
}

/// Frames in `frames` that the TAP received (not sent) for the group's MAC.
fn group_frames(frames: &[Frame], group: IpAddr) -> usize {
    let mac = match group {
        IpAddr::V4(g) => {
            let o = g.octets();
            [1, 0, 0x5e, o[1] & 0x7f, o[2], o[3]]
        }
        IpAddr::V6(g) => {
            let o = g.octets();
            [0x33, 0x33, o[12], o[13], o[14], o[15]]
        }
    };
    let udp = |f: &Frame| match group {
        IpAddr::V4(_) => f.data.get(23) == Some(&17),
        IpAddr::V6(_) => f.data.get(20) == Some(&17),
    };
    frames
        .iter()
        .filter(|f| !f.outgoing && f.dst_mac() == Some(mac) && udp(f))
        .count()
}

/// The switch's members of `group` (node names), from `status --json`.
fn members(topo: &Topology, group: IpAddr) -> Vec<String> {
    let st = topo.switch_status();
    group_entry(&st, group)
        .and_then(|g| g["members"].as_array().cloned())
        .into_iter()
        .flatten()
        .filter_map(|m| m["node"].as_str().map(String::from))
        .collect()
}

fn group_entry(st: &Value, group: IpAddr) -> Option<Value> {
    st["multicast"]["groups"]
        .as_array()?
        .iter()
        .find(|g| g["group"].as_str() == Some(&group.to_string()))
        .cloned()
}

fn wait_members(topo: &Topology, group: IpAddr, want: &[&str]) {
    let ok = wait_until(LEARN, || {
        let mut m = members(topo, group);
        m.sort();
        m == want
    });
    assert!(
        ok,
        "switch members of {group}: {:?}, want {want:?}; status {}",
        members(topo, group),
        topo.switch_status()["multicast"]
    );
}

fn wait_connected(topo: &Topology, hosts: &[usize]) {
    assert!(
        wait_until(UP, || hosts.iter().all(|&i| topo.is_connected(i))),
        "not all of {hosts:?} connected: {}",
        topo.switch_status()
    );
}

#[test]
fn groups_reach_members_only_over_igmp_and_mld() {
    let mut topo = Topology::central(4);
    topo.start_all(UP);
    // h3 speaks IGMPv2 and MLDv1, h2 the kernel defaults (IGMPv3, MLDv2).
    topo.ns(3).exec_ok(
        "sh",
        &[
            "-c",
            "echo 2 > /proc/sys/net/ipv4/conf/tapmesh0/force_igmp_version && \
             echo 1 > /proc/sys/net/ipv6/conf/tapmesh0/force_mld_version",
        ],
    );
    let r2 = join_v4(&topo, 2, G4, None);
    let r3 = join_v4(&topo, 3, G4, None);
    let r2v6 = join_v6(&topo, 2, G6);
    let r3v6 = join_v6(&topo, 3, G6);
    wait_members(&topo, G4.into(), &["h2", "h3"]);
    wait_members(&topo, G6.into(), &["h2", "h3"]);

    let cap4 = Capture::start(topo.ns(4), TAP);
    send(&sender(&topo, 1, false), G4.into(), "v4", 50);
    send(&sender(&topo, 1, true), G6.into(), "v6", 50);
    assert_eq!(received(&r2, "v4"), 50, "h2 (IGMPv3) over IPv4");
    assert_eq!(received(&r3, "v4"), 50, "h3 (IGMPv2) over IPv4");
    assert_eq!(received(&r2v6, "v6"), 50, "h2 (MLDv2) over IPv6");
    assert_eq!(received(&r3v6, "v6"), 50, "h3 (MLDv1) over IPv6");
    let at_h4 = cap4.finish();
    assert_eq!(group_frames(&at_h4, G4.into()), 0, "h4 joined nothing");
    assert_eq!(group_frames(&at_h4, G6.into()), 0, "h4 joined nothing");

    let st = topo.switch_status();
    let g = group_entry(&st, G4.into()).expect("group listed");
    assert!(g["frames"].as_u64().unwrap_or(0) >= 50, "{g}");
    assert!(counter(&st, &["multicast", "counters", "reports"]) >= 4);
    topo.assert_all_running();
}

#[test]
fn a_leave_stops_delivery_and_snooping_off_floods() {
    let mut topo = Topology::central(4);
    topo.start_all(UP);
    let r2 = join_v4(&topo, 2, G4, None);
    let r3 = join_v4(&topo, 3, G4, None);
    wait_members(&topo, G4.into(), &["h2", "h3"]);
    let tx = sender(&topo, 1, false);
    send(&tx, G4.into(), "before", 10);
    assert_eq!(received(&r2, "before"), 10);

    // h2 leaves (closing the socket drops the membership: the kernel sends
    // a leave). The switch queries the group, nobody behind h2 answers, and
    // h2 is pruned after 2 x 1 s.
    let left = Instant::now();
    drop(r2);
    wait_members(&topo, G4.into(), &["h3"]);
    eprintln!("h2 pruned {:?} after its leave", left.elapsed());
    assert!(
        left.elapsed() < Duration::from_secs(5),
        "leave took {:?}",
        left.elapsed()
    );
    let cap2 = Capture::start(topo.ns(2), TAP);
    send(&tx, G4.into(), "after", 20);
    assert_eq!(received(&r3, "after"), 20);
    assert_eq!(
        group_frames(&cap2.finish(), G4.into()),
        0,
        "h2 still gets the group after leaving"
    );

    // With snooping off, the group floods: h4, which never joined, sees it.
    topo.stop_switch();
    topo.set_switch_config_extra("[multicast]\nsnooping = false\n");
    topo.start_switch();
    wait_connected(&topo, &[1, 2, 3, 4]);
    let cap4 = Capture::start(topo.ns(4), TAP);
    let tx = sender(&topo, 1, false);
    send(&tx, G4.into(), "flood", 20);
    assert_eq!(
        group_frames(&cap4.finish(), G4.into()),
        20,
        "snooping off floods to h4"
    );
    topo.assert_all_running();
}

#[test]
fn a_source_specific_join_gets_only_that_source() {
    let mut topo = Topology::central(3);
    topo.start_all(UP);
    let g: Ipv4Addr = Ipv4Addr::new(239, 1, 2, 4);
    let r2 = join_v4(&topo, 2, g, Some(overlay_v4(1)));
    let ok = wait_until(LEARN, || {
        group_entry(&topo.switch_status(), g.into())
            .is_some_and(|e| e["members"][0]["sources"][0]["source"].as_str() == Some("198.19.0.1"))
    });
    assert!(
        ok,
        "no INCLUDE {{h1}} membership: {}",
        topo.switch_status()["multicast"]
    );
    let cap2 = Capture::start(topo.ns(2), TAP);
    send(&sender(&topo, 1, false), g.into(), "h1", 20);
    send(&sender(&topo, 3, false), g.into(), "h3", 20);
    assert_eq!(received(&r2, "h1"), 20);
    let frames = cap2.finish();
    let from = |ip: [u8; 4]| {
        frames
            .iter()
            .filter(|f| {
                !f.outgoing
                    && f.data.get(12..14) == Some(&[8, 0])
                    && f.data.get(26..30) == Some(&ip)
            })
            .filter(|f| f.data.get(30..34) == Some(&g.octets()))
            .count()
    };
    assert_eq!(from([198, 19, 0, 1]), 20, "the included source arrives");
    assert_eq!(
        from([198, 19, 0, 3]),
        0,
        "another source must not reach h2's TAP"
    );
    topo.assert_all_running();
}

#[test]
fn the_builtin_querier_keeps_memberships_alive() {
    let mut topo = Topology::central(2);
    topo.set_switch_config_extra(
        "[multicast]\nmembership-secs = 6\nquery-interval-secs = 2\nquery-response-secs = 1\n",
    );
    topo.start_all(UP);
    let r2 = join_v4(&topo, 2, G4, None);
    wait_members(&topo, G4.into(), &["h2"]);
    // Twice the membership interval: only answers to queries keep h2 in.
    std::thread::sleep(Duration::from_secs(13));
    assert_eq!(members(&topo, G4.into()), vec!["h2".to_string()]);
    send(&sender(&topo, 1, false), G4.into(), "late", 20);
    assert_eq!(received(&r2, "late"), 20);
    let st = topo.switch_status();
    assert!(
        counter(&st, &["multicast", "counters", "queries_sent"]) >= 6,
        "{}",
        st["multicast"]
    );
    assert_eq!(st["multicast"]["queriers"][0]["active"], true);
    topo.assert_all_running();
}

#[test]
fn a_broadcast_storm_is_cut_and_pings_survive() {
    let mut topo = Topology::central(3);
    topo.set_switch_config_extra("[storm-control]\nbroadcast-pps = 1000\n");
    topo.start_all(UP);
    let storm = topo.ns(1).enter(|| {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).expect("socket");
        s.set_broadcast(true).expect("SO_BROADCAST");
        s.set_nonblocking(true).expect("nonblocking");
        s
    });
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let storm_thread = std::thread::spawn(move || {
        let to: SockAddr = SocketAddr::from(([198, 19, 0, 255], 9)).into();
        let mut sent = 0u64;
        while !stop2.load(Ordering::Relaxed) {
            if storm.send_to(&[0u8; 64], &to).is_ok() {
                sent += 1;
            }
        }
        sent
    });
    std::thread::sleep(Duration::from_millis(500));
    let out = topo.ns(2).exec(
        "ping",
        &[
            "-n",
            "-q",
            "-c",
            "500",
            "-i",
            "0.01",
            "-W",
            "1",
            "198.19.0.3",
        ],
    );
    stop.store(true, Ordering::Relaxed);
    let sent = storm_thread.join().expect("storm thread");
    let text = String::from_utf8_lossy(&out.stdout);
    let got: u32 = text
        .split(", ")
        .find_map(|p| {
            p.strip_suffix(" received")
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("no ping summary: {text}"));
    eprintln!("storm: h1 sent {sent} broadcasts; h2 -> h3 pings: {got}/500");
    assert!(
        got >= 496,
        "lost more than 1% of pings during the storm: {text}"
    );
    let st = topo.switch_status();
    let h1 = integration::status::switch_node(&st, "h1").expect("h1 listed");
    let cut = h1["storm_dropped_broadcast"].as_u64().unwrap_or(0);
    assert!(cut > 0, "no storm drops counted for h1: {h1}");
    assert_eq!(counter(&st, &["drops", "storm_control"]), cut);
    topo.assert_all_running();
}

#[test]
fn vlans_are_isolated_and_a_trunk_reaches_both() {
    let mut topo = Topology::central(3);
    topo.set_switch_node_entry_extra(1, "vlan = 10");
    topo.set_switch_node_entry_extra(2, "vlan = 20");
    topo.set_switch_node_entry_extra(3, "trunk = [10, 20]");
    topo.start_switch();
    for i in 1..=3 {
        topo.start_node(i);
    }
    wait_connected(&topo, &[1, 2, 3]);
    let (a10, a20) = (Ipv4Addr::new(198, 19, 10, 1), Ipv4Addr::new(198, 19, 20, 2));
    topo.ns(1)
        .ip(&["addr", "add", "198.19.10.1/24", "dev", TAP]);
    topo.ns(2)
        .ip(&["addr", "add", "198.19.20.2/24", "dev", TAP]);

    // The trunk h3 asks on VLAN 10 and VLAN 20: each access host answers,
    // and its answer comes back tagged with its VLAN.
    let trunk = TrunkPort::open(&topo, 3);
    let mut replies = Vec::new();
    let ok = wait_until(UP, || {
        trunk.arp_request(10, Ipv4Addr::new(198, 19, 10, 3), a10);
        trunk.arp_request(20, Ipv4Addr::new(198, 19, 20, 3), a20);
        replies.extend(trunk.arp_replies(Duration::from_millis(300)));
        replies.contains(&(Some(10), a10)) && replies.contains(&(Some(20), a20))
    });
    assert!(ok, "trunk h3 did not reach both VLANs; replies {replies:?}");
    // Asking VLAN 20 for the VLAN 10 host gets nothing; a VLAN the trunk
    // does not carry is dropped at the switch.
    trunk.arp_request(20, Ipv4Addr::new(198, 19, 10, 3), a10);
    trunk.arp_request(30, Ipv4Addr::new(198, 19, 10, 3), a10);
    let stray: Vec<_> = trunk
        .arp_replies(Duration::from_secs(1))
        .into_iter()
        .filter(|r| r.0 != Some(10))
        .collect();
    assert!(stray.is_empty(), "answers across VLANs: {stray:?}");

    // h1 and h2 share 198.19.0.0/24 on their TAPs but not a VLAN.
    let h1_mac = integration::capture::parse_mac(&topo.tap_mac(1));
    let cap2 = Capture::start(topo.ns(2), TAP);
    for _ in 0..3 {
        assert!(!topo.ping(1, overlay_v4(2)), "VLAN 10 reached VLAN 20");
        assert!(!topo.ping(2, overlay_v4(1)), "VLAN 20 reached VLAN 10");
    }
    let leaked = cap2
        .finish()
        .iter()
        .filter(|f| !f.outgoing && f.src_mac() == Some(h1_mac))
        .count();
    assert_eq!(leaked, 0, "frames from h1 (VLAN 10) reached h2 (VLAN 20)");
    let st = topo.switch_status();
    assert!(
        counter(&st, &["drops", "vlan_filtered"]) >= 1,
        "VLAN 30 not counted"
    );
    let h3 = integration::status::switch_node(&st, "h3").expect("h3 listed");
    assert_eq!(h3["trunk"], serde_json::json!([10, 20]));
    topo.assert_all_running();
}
