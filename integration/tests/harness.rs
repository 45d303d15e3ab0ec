//! Tests of the harness itself, without the tapmesh binaries: namespaces,
//! veths and bridge, underlay reachability, TCP transfer via `setns`, packet
//! capture, the process guard, and that everything is gone after drop.
use std::net::IpAddr;
use std::time::Duration;

use integration::topology::{underlay_v4, underlay_v6};
use integration::traffic::tcp_transfer;
use integration::{Capture, Netns, Process, Topology, netns, wait_until};

#[test]
fn harness_selftest() {
    let prefix;
    {
        let topo = Topology::central(3);
        prefix = topo.prefix().to_string();
        let names = netns::list_with_prefix(&format!("{prefix}-"));
        assert_eq!(names.len(), 4, "expected sw + 3 hosts, got {names:?}");

        // Underlay: host to switch bridge and host to host, IPv4 and IPv6.
        assert!(topo.ping_ok_within(1, underlay_v4(2), Duration::from_secs(5)));
        assert!(topo.ping_ok_within(3, topo.switch_addr().ip(), Duration::from_secs(5)));
        assert!(topo.ping_ok_within(2, underlay_v6(3), Duration::from_secs(5)));

        // A 1 MiB TCP transfer over the underlay, sockets made via setns.
        let report = topo
            .tcp_transfer(1, 2, underlay_v4(2), 1 << 20)
            .expect("underlay TCP transfer");
        assert_eq!(report.bytes, 1 << 20);

        // Nothing was configured in the root namespace (read-only check).
        let root_addrs = std::process::Command::new("ip")
            .args(["-o", "addr", "show"])
            .output()
            .expect("ip runs");
        let root_addrs = String::from_utf8_lossy(&root_addrs.stdout);
        assert!(
            !root_addrs.contains("198.18.0.") && !root_addrs.contains("fd00:18::"),
            "a test address appeared in the root namespace:\n{root_addrs}"
        );

        // The switch readiness probe reads the namespace's own /proc/net/udp.
        assert!(!topo.switch_udp_bound());
        let sock = topo
            .switch_ns()
            .enter(|| std::net::UdpSocket::bind(topo.switch_addr()))
            .expect("bind the switch address inside the switch namespace");
        assert!(topo.switch_udp_bound());
        drop(sock);
        // Gone once closed; a child another test of this file forks at that
        // moment holds a copy of the descriptor until its exec closes it.
        assert!(wait_until(Duration::from_secs(2), || !topo.switch_udp_bound()));

        // Capture on h3's eth0 sees h1's pings to h3 but not h1's pings to h2
        // (the bridge has learned h2's port by now).
        let h3 = IpAddr::from(underlay_v4(3));
        assert!(topo.ping_ok_within(1, h3, Duration::from_secs(5)));
        let cap = Capture::start(topo.ns(3), "eth0");
        assert!(topo.ping(1, underlay_v4(2)));
        assert!(topo.ping(1, h3));
        let frames = cap.finish();
        let seen_h3 = frames
            .iter()
            .filter(|f| f.is_icmp4_between(underlay_v4(1), underlay_v4(3)))
            .count();
        let seen_h2 = frames
            .iter()
            .filter(|f| f.is_icmp4_between(underlay_v4(1), underlay_v4(2)))
            .count();
        assert_eq!(seen_h3, 2, "request in and reply out on h3's eth0");
        assert_eq!(seen_h2, 0, "h1<->h2 unicast reached h3");
    }
    let left = netns::list_with_prefix(&format!("{prefix}-"));
    assert!(left.is_empty(), "namespaces left after drop: {left:?}");
    assert!(!std::env::temp_dir().join(&prefix).exists());
}

#[test]
fn process_guard_stops_its_process_by_pid() {
    let ns = Netns::new(&format!("{}-p", netns::unique_prefix()));
    let log = std::env::temp_dir().join(format!("{}.log", ns.name()));
    let pid;
    {
        let mut p = Process::spawn("sleep", &ns, std::path::Path::new("sleep"), &["600"], &log);
        pid = p.pid();
        assert!(p.is_running());
        // `ip netns exec` execs: the PID is sleep's own.
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        assert!(
            wait_until(Duration::from_secs(5), || {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.trim() == "sleep")
            }),
            "pid {pid} is {comm:?}, not sleep"
        );
    }
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "process {pid} survived its guard"
    );
    let _ = std::fs::remove_file(log);
}

#[test]
fn transfer_detects_a_wrong_address() {
    // The check must be able to fail: nothing listens in h2 at h1's address.
    let topo = Topology::central(2);
    let err = tcp_transfer(
        topo.ns(1),
        topo.ns(2),
        underlay_v4(1).into(),
        1024,
        Duration::from_secs(2),
    );
    assert!(err.is_err(), "bind to another host's address succeeded");
}

#[test]
fn udp_spray_arrives_or_is_counted_by_the_kernel() {
    use integration::traffic::{Rng, udp_in_errors, udp_spray};
    const COUNT: usize = 2000;
    let topo = Topology::central(1);
    let target = topo.switch_addr();
    let sock = topo
        .switch_ns()
        .enter(|| std::net::UdpSocket::bind(target))
        .expect("bind in the switch namespace");
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut rng = Rng::new(7);
    let datagrams: Vec<Vec<u8>> = (0..COUNT)
        .map(|_| {
            let len = rng.below(1501);
            rng.bytes(len)
        })
        .collect();
    let before = udp_in_errors(topo.switch_ns());
    let receiver = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let mut n = 0;
        while sock.recv_from(&mut buf).is_ok() {
            n += 1;
        }
        n
    });
    let sent = udp_spray(topo.ns(1), target, &datagrams, 50);
    let received: usize = receiver.join().expect("receiver");
    let lost = udp_in_errors(topo.switch_ns()) - before;
    assert_eq!(sent, COUNT);
    assert_eq!(
        received as u64 + lost,
        COUNT as u64,
        "received {received}, kernel dropped {lost}"
    );
}
