//! Live capture (`tapmesh-switch capture`), with the real binaries: a ping
//! and an IGMPv3 join read back from the pcapng (interface per node,
//! directions, VLAN tags as on each port) and by `tcpdump -r`; a libpcap
//! filter; two captures at once; a reader that never reads costs
//! forwarding nothing, and its losses are counted and marked in the
//! capture.
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::time::{Duration, Instant};

use integration::bench::iperf::{self, Load};
use integration::live_capture::{CaptureCommand, Packet, StalledReader, read_packets, tcpdump};
use integration::status::counter;
use integration::topology::{TAP, overlay_v4};
use integration::trunk::TrunkPort;
use integration::{Topology, bins, wait_until};
use socket2::{Domain, Protocol, Socket, Type};

const UP: Duration = Duration::from_secs(20);
const ETH_IPV4: u16 = 0x0800;
const ETH_ARP: u16 = 0x0806;
const ICMP: u8 = 1;
const IGMP: u8 = 2;

fn wait_connected(topo: &Topology, hosts: &[usize]) {
    assert!(
        wait_until(UP, || hosts.iter().all(|&i| topo.is_connected(i))),
        "not all of {hosts:?} connected: {}",
        topo.switch_status()
    );
}

/// Waits until the switch reports `n` captures running.
fn wait_captures(topo: &Topology, n: u64) {
    assert!(
        wait_until(Duration::from_secs(10), || {
            counter(&topo.switch_status(), &["capture", "active"]) == n
        }),
        "captures running: {}",
        topo.switch_status()["capture"]
    );
}

/// Whether `p` was captured on `name`'s interface in that direction.
fn on(p: &Packet, name: &str, inbound: bool) -> bool {
    p.interface == name && p.inbound == Some(inbound)
}

fn packets(file: &Path) -> Vec<Packet> {
    read_packets(&std::fs::read(file).expect("read the capture"))
}

/// A socket in host `i` joined to `group` on its TAP: the kernel sends an
/// IGMPv3 report.
fn join(topo: &Topology, i: usize, group: Ipv4Addr) -> Socket {
    topo.ns(i).enter(move || {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).expect("socket");
        s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 5001).into())
            .expect("bind");
        s.join_multicast_v4(&group, &overlay_v4(i)).expect("join");
        s
    })
}

#[test]
fn ping_and_igmp_join_read_back_with_interfaces_directions_and_vlans() {
    let mut topo = Topology::central(3);
    topo.set_switch_node_entry_extra(1, "vlan = 10");
    topo.set_switch_node_entry_extra(2, "vlan = 10");
    topo.set_switch_node_entry_extra(3, "trunk = [10, 20]");
    topo.start_switch();
    for i in 1..=3 {
        topo.start_node(i);
    }
    wait_connected(&topo, &[1, 2, 3]);
    // Force IGMPv3 on h2 whatever the namespace's default is.
    topo.ns(2).exec_ok(
        "sysctl",
        &["-qw", &format!("net.ipv4.conf.{TAP}.force_igmp_version=3")],
    );
    let all = CaptureCommand::start(
        bins::SWITCH,
        &topo.admin_socket(),
        topo.dir().join("all.pcapng"),
        &[],
    );
    let icmp_only = CaptureCommand::start(
        bins::SWITCH,
        &topo.admin_socket(),
        topo.dir().join("icmp.pcapng"),
        &["icmp"],
    );
    wait_captures(&topo, 2);

    assert!(
        topo.ping_ok_within(1, overlay_v4(2), UP),
        "h1 cannot ping h2"
    );
    let group = Ipv4Addr::new(239, 1, 2, 3);
    let _member = join(&topo, 2, group);
    // The trunk h3 asks for h1 on VLAN 10: tagged on h3's port, untagged
    // on h1's.
    let trunk = TrunkPort::open(&topo, 3);
    let answered = wait_until(UP, || {
        trunk.arp_request(10, Ipv4Addr::new(198, 19, 0, 103), overlay_v4(1));
        trunk
            .arp_replies(Duration::from_millis(300))
            .contains(&(Some(10), overlay_v4(1)))
    });
    assert!(answered, "h1 did not answer the trunk's ARP on VLAN 10");
    let h2_mac = integration::capture::parse_mac(&topo.tap_mac(2));
    let joined = wait_until(UP, || {
        counter(&topo.switch_status(), &["capture", "captured"]) > 0
            && topo.switch_status()["multicast"]["groups"]
                .as_array()
                .is_some_and(|g| !g.is_empty())
    });
    assert!(
        joined,
        "no group learnt: {}",
        topo.switch_status()["multicast"]
    );
    // Let the captures take the last frames before they stop.
    std::thread::sleep(Duration::from_millis(500));
    let st = topo.switch_status();
    let all = all.finish();
    let icmp_only = icmp_only.finish();

    let p = packets(&all);
    let names: Vec<&str> = p.iter().map(|p| p.interface.as_str()).collect();
    for h in ["h1", "h2", "h3"] {
        assert!(names.contains(&h), "no interface {h} in {names:?}");
    }
    let icmp_on = |name: &str, inbound: bool| {
        p.iter()
            .any(|p| p.ip_protocol() == Some(ICMP) && on(p, name, inbound))
    };
    // The echo request: in from h1, out to h2; the reply the other way.
    assert!(icmp_on("h1", true), "no ICMP in from h1");
    assert!(icmp_on("h2", false), "no ICMP out to h2");
    assert!(icmp_on("h2", true), "no ICMP in from h2");
    assert!(icmp_on("h1", false), "no ICMP out to h1");
    assert!(
        p.iter()
            .filter(|p| p.ip_protocol() == Some(ICMP))
            .all(|p| p.vlan().is_none()),
        "access ports' frames are untagged"
    );
    // The join: an IGMPv3 report (type 0x22) in from h2.
    let report = p.iter().find(|p| {
        p.interface == "h2"
            && p.inbound == Some(true)
            && p.src_mac() == Some(h2_mac)
            && p.ip_protocol() == Some(IGMP)
    });
    let report = report.expect("no IGMP report from h2 captured");
    let ihl = usize::from(report.data[14] & 0x0f) * 4;
    assert_eq!(report.data[14 + ihl], 0x22, "not an IGMPv3 report");
    // VLAN tags as on each port: h3's ARP request arrives tagged 10 and
    // leaves to h1 untagged; h1's reply leaves to h3 tagged 10.
    let arp_on = |name: &str, inbound: bool, vlan: Option<u16>| {
        p.iter()
            .any(|p| p.ethertype() == Some(ETH_ARP) && on(p, name, inbound) && p.vlan() == vlan)
    };
    assert!(
        arp_on("h3", true, Some(10)),
        "no tagged ARP in from the trunk h3"
    );
    assert!(
        arp_on("h3", false, Some(10)),
        "no tagged ARP out to the trunk h3"
    );
    assert!(arp_on("h1", true, None), "no untagged ARP in from h1");
    assert!(arp_on("h1", false, None), "no untagged ARP out to h1");

    // tcpdump reads the same file: the echo, the report, the VLAN tag.
    let lines = tcpdump(&all, &[]);
    assert!(
        lines.iter().any(|l| l.contains("ICMP echo request")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("igmp v3 report")),
        "{lines:#?}"
    );
    assert!(lines.iter().any(|l| l.contains("vlan 10")), "{lines:#?}");
    // The filtered capture has only ICMP, and has it.
    let only = tcpdump(&icmp_only, &[]);
    assert!(!only.is_empty(), "the icmp capture is empty");
    assert!(
        only.iter().all(|l| l.contains("ICMP")),
        "not only ICMP: {only:#?}"
    );
    assert!(
        packets(&icmp_only)
            .iter()
            .all(|p| p.ethertype() == Some(ETH_IPV4))
    );
    assert_eq!(counter(&st, &["capture", "active"]), 2);
    // Both readers gone: the switch forgets their captures.
    wait_captures(&topo, 0);
    topo.assert_all_running();
}

/// Receiver goodput of a `secs`-second iperf3 TCP run h1 -> h2, in bit/s.
fn throughput(topo: &Topology, secs: u32, tag: &str) -> f64 {
    let r = iperf::run(
        topo.ns(2),
        topo.ns(1),
        overlay_v4(2).into(),
        Load::Tcp { streams: 1 },
        secs,
        topo.dir(),
        tag,
    )
    .unwrap_or_else(|e| panic!("{tag}: {e}"));
    eprintln!("{tag}: {:.0} Mbit/s", r.bits_per_sec / 1e6);
    r.bits_per_sec
}

#[test]
fn a_reader_that_never_reads_costs_forwarding_nothing() {
    let mut topo = Topology::central(2);
    topo.start_all(UP);
    // Runs alternate so that load on the machine hits both kinds alike.
    let before = throughput(&topo, 4, "no capture (1)");
    let stalled = StalledReader::start(&topo.admin_socket(), "{}");
    wait_captures(&topo, 1);
    let during = throughput(&topo, 4, "stalled capture");
    let after = throughput(&topo, 4, "no capture (2)");
    let without = (before + after) / 2.0;
    let st = topo.switch_status();
    let dropped = counter(&st, &["capture", "dropped"]);
    assert!(dropped > 0, "no frames counted as lost: {}", st["capture"]);
    // Within noise of the runs without: a stalled reader would otherwise
    // hold the whole switch (zero throughput). Generous: 2 busy cores.
    assert!(
        during >= without * 0.5,
        "throughput with a stalled capture {:.0} Mbit/s, without {:.0} Mbit/s",
        during / 1e6,
        without / 1e6
    );

    // The reader catches up: what it finally reads marks the losses.
    let mut conn = stalled.conn;
    conn.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut bytes = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let start = Instant::now();
    let mut pinged = false;
    while start.elapsed() < Duration::from_secs(15) {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(_) if !pinged => {
                // Drained: new frames now fit, the first one marked.
                pinged = true;
                assert!(topo.ping(1, overlay_v4(2)), "h1 cannot ping h2");
            }
            Err(_) => break,
        }
    }
    let p = read_packets(&bytes);
    let marked: u64 = p.iter().map(|p| p.dropped_before).sum();
    assert!(
        marked > 0,
        "no epb_dropcount in {} packets read back ({dropped} lost)",
        p.len()
    );
    assert!(marked <= dropped, "marked {marked} > counted {dropped}");
    drop(conn);
    wait_captures(&topo, 0);
    topo.assert_all_running();
}

#[test]
fn a_bad_capture_request_is_refused_with_one_line() {
    let mut topo = Topology::central(1);
    topo.start_switch();
    let run = |args: &[&str]| {
        std::process::Command::new(bins::bin(bins::SWITCH))
            .arg("capture")
            .arg("--socket")
            .arg(topo.admin_socket())
            .args(args)
            .output()
            .expect("run tapmesh-switch capture")
    };
    let bad_filter = run(&["icmp", "and", "and"]);
    assert_eq!(bad_filter.status.code(), Some(2), "{bad_filter:?}");
    let err = String::from_utf8_lossy(&bad_filter.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("icmp and and"), "{err}");
    let unknown = run(&["--node", "nobody"]);
    assert_eq!(unknown.status.code(), Some(1), "{unknown:?}");
    let err = String::from_utf8_lossy(&unknown.stderr);
    assert!(err.contains("no node \"nobody\""), "{err}");
    assert!(
        unknown.stdout.is_empty(),
        "pcapng written for a refused capture"
    );
    assert_eq!(counter(&topo.switch_status(), &["capture", "active"]), 0);
}

#[test]
fn a_mesh_node_captures_its_direct_paths_per_peer() {
    let mut topo = Topology::mesh(3);
    topo.start_all(UP);
    let direct = |a: usize, b: &str| {
        topo.node_status(a)["peers"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["name"] == b && p["path"] == "direct"))
    };
    assert!(
        wait_until(UP, || direct(1, "h2") && direct(1, "h3")),
        "h1 has no direct paths: {}",
        topo.node_status(1)["peers"]
    );
    let socket = topo.node_admin_socket_path(1);
    let cap = CaptureCommand::start(
        bins::NODE,
        &socket,
        topo.dir().join("h1.pcapng"),
        &["--node", "h2", "icmp"],
    );
    let running = wait_until(Duration::from_secs(10), || {
        counter(&topo.node_status(1), &["capture", "active"]) == 1
    });
    assert!(running, "no capture running: {}", topo.node_status(1));
    for to in [2, 3] {
        assert!(topo.ping(1, overlay_v4(to)), "h1 cannot ping h{to}");
    }
    assert!(
        wait_until(Duration::from_secs(10), || {
            counter(&topo.node_status(1), &["capture", "captured"]) >= 2
        }),
        "nothing captured: {}",
        topo.node_status(1)["capture"]
    );
    std::thread::sleep(Duration::from_millis(300));
    let file = cap.finish();
    let p = packets(&file);
    assert!(!p.is_empty(), "empty capture");
    // Only the selected peer, one interface named after it, both ways.
    assert!(p.iter().all(|p| p.interface == "h2"), "{p:?}");
    assert!(p.iter().all(|p| p.ip_protocol() == Some(ICMP)));
    assert!(p.iter().any(|p| on(p, "h2", false)), "no ICMP out to h2");
    assert!(p.iter().any(|p| on(p, "h2", true)), "no ICMP in from h2");
    let lines = tcpdump(&file, &[]);
    assert!(
        lines.iter().any(|l| l.contains("ICMP echo reply")),
        "{lines:#?}"
    );
    let gone = wait_until(Duration::from_secs(10), || {
        counter(&topo.node_status(1), &["capture", "active"]) == 0
    });
    assert!(gone, "the capture outlived its reader");
    topo.assert_all_running();
}
