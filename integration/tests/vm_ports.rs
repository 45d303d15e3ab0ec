//! VM ports (issue #6) without QEMU: a unix-socket client speaking QEMU's
//! framing stands in for the VM's network card, so these tests can look at
//! the port itself: a node running as `nobody` with no TAP, garbage on the
//! stream, a node restart under a connected VM, and the node's local switch
//! keeping VM-to-VM traffic on the host. `qemu_vms.rs` runs real VMs.
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use integration::Topology;
use integration::status::counter;
use integration::topology::overlay_v4;
use integration::vm_client::{VmClient, icmp_echo};

const UP: Duration = Duration::from_secs(20);
/// `nobody` / `nogroup` on Debian.
const NOBODY: (u32, u32) = (65534, 65534);

fn port<'a>(status: &'a serde_json::Value, kind: &str, nth: usize) -> &'a serde_json::Value {
    status["local"]["ports"]
        .as_array()
        .expect("status has local ports")
        .iter()
        .filter(|p| p["kind"] == kind)
        .nth(nth)
        .unwrap_or_else(|| panic!("no {kind} port #{nth} in {status}"))
}

#[test]
fn rootless_node_with_only_a_vm_port_reaches_a_tap_host_and_survives_garbage_and_restarts() {
    let mut topo = Topology::central(2);
    let socks = topo.set_node_vm_ports(1, &["stream"], false);
    topo.set_node_user(1, NOBODY.0, NOBODY.1);
    topo.start_switch();
    topo.start_node(1);
    topo.start_node(2);

    // The node runs as nobody, has no TAP, and its socket is 0660.
    let uid_line = std::fs::read_to_string(format!("/proc/{}/status", topo.node_pid(1)))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap()
        .to_owned();
    assert!(uid_line.contains("\t65534\t"), "{uid_line}");
    assert!(!topo.ns(1).has_link("tapmesh0"));
    let mode = std::fs::metadata(&socks[0]).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);

    let mac = [0x52, 0x54, 0, 0, 1, 1];
    let ip = Ipv4Addr::new(198, 19, 0, 101);
    let mut vm = VmClient::stream(&socks[0], mac, ip);
    assert!(
        vm.ping_within(overlay_v4(2), UP),
        "the fake VM behind the rootless node cannot ping h2"
    );
    // And h2 reaches the VM (the client answers, as the VM would).
    let pinger = std::thread::scope(|s| {
        let t = s.spawn(|| topo.ping_ok_within(2, ip, Duration::from_secs(5)));
        vm.answer_for(Duration::from_secs(6));
        t.join().unwrap()
    });
    assert!(pinger, "h2 cannot ping the fake VM");
    let st = topo.node_status(1);
    assert_eq!(port(&st, "vm", 0)["up"], true, "{st}");
    // `tapmesh-node status` shows the port.
    let out = std::process::Command::new(integration::bins::bin(integration::bins::NODE))
        .arg("status")
        .arg("--socket")
        .arg(topo.node_admin_socket_path(1))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains(&*socks[0].to_string_lossy()));
    assert!(
        line.is_some_and(|l| l.contains("vm") && l.contains(" up ")),
        "{text}"
    );

    // Garbage: a length no QEMU sends. The node closes that connection,
    // counts it, and keeps running; a new connection works.
    vm.send_raw(&[0xff, 0xff, 0xff, 0xf0, 1, 2, 3, 4]).unwrap();
    assert!(
        vm.closed_within(Duration::from_secs(5)),
        "garbage connection not closed"
    );
    topo.assert_all_running();
    assert_eq!(counter(&topo.node_status(1), &["drops", "framing"]), 1);
    let mut vm = VmClient::stream(&socks[0], mac, ip);
    assert!(
        vm.ping_within(overlay_v4(2), UP),
        "no ping after reconnecting"
    );

    // The node crashes and comes back (stale socket left behind); the VM side
    // reconnects as QEMU's reconnect-ms would, without anything else changing.
    topo.kill9_node(1);
    assert!(socks[0].exists(), "a crash leaves the socket behind");
    let t0 = std::time::Instant::now();
    topo.start_node(1);
    let mut vm = VmClient::stream(&socks[0], mac, ip);
    assert!(
        vm.ping_within(overlay_v4(2), UP),
        "no ping after the node restarted"
    );
    println!(
        "fake VM traffic resumed {:?} after the node restart began",
        t0.elapsed()
    );
}

#[test]
fn vm_to_vm_traffic_on_one_node_stays_local_stream_and_dgram() {
    let mut topo = integration::monitoring::topology_with_metrics(2);
    let socks = topo.set_node_vm_ports(1, &["stream", "dgram"], true);
    topo.start_switch();
    topo.start_node(1);
    topo.start_node(2);
    let a_mac = [0x52, 0x54, 0, 0, 2, 1];
    let b_mac = [0x52, 0x54, 0, 0, 2, 2];
    let a_ip = Ipv4Addr::new(198, 19, 0, 111);
    let b_ip = Ipv4Addr::new(198, 19, 0, 112);
    let mut a = VmClient::stream(&socks[0], a_mac, a_ip);
    let b_own = topo.node_run_dir(1).join("b.sock");
    let mut b = VmClient::dgram(&socks[1], &b_own, b_mac, b_ip);
    // Both reach the TAP host on the same node and the remote one.
    assert!(a.ping_within(overlay_v4(1), UP), "stream VM -> local TAP");
    assert!(b.ping_within(overlay_v4(2), UP), "dgram VM -> remote TAP");
    // B is known now (it sent); A's unicast to B goes to B's port only.
    let before = topo.node_status(1);
    let uplink_tx = counter(port(&before, "uplink", 0), &["tx_frames"]);
    let tap_tx = counter(port(&before, "tap", 0), &["tx_frames"]);
    let b_tx = counter(port(&before, "vm", 1), &["tx_frames"]);
    let frame = icmp_echo(a_mac, b_mac, a_ip, b_ip, 1, true);
    for _ in 0..20 {
        a.send(&frame).unwrap();
    }
    let mut got = 0;
    while got < 20 {
        match b.recv(Duration::from_secs(3)) {
            Some(f) if f == frame => got += 1,
            Some(_) => {}
            None => break,
        }
    }
    assert_eq!(got, 20, "B received {got} of A's 20 frames");
    let after = topo.node_status(1);
    // Other traffic (IPv6 neighbour discovery from h1's TAP, flooded) may
    // add a few frames anywhere; A's 20 would show up in full.
    let delta = |kind, n, before| counter(port(&after, kind, n), &["tx_frames"]) - before;
    let to_b = delta("vm", 1, b_tx);
    assert!(
        (20..30).contains(&to_b),
        "{to_b} frames went to B for A's 20"
    );
    let up = delta("uplink", 0, uplink_tx);
    assert!(
        up < 20,
        "VM-to-VM frames left the host ({up} to the uplink)"
    );
    let tap = delta("tap", 0, tap_tx);
    assert!(tap < 20, "VM-to-VM frames reached the TAP ({tap})");
    // The same, as metrics.
    let metrics =
        integration::monitoring::scrape(topo.ns(1), integration::monitoring::node_metrics_addr(1));
    let b_series = format!(
        "tapmesh_node_port_frames_total{{node=\"h1\",port=\"{}\",kind=\"vm\",direction=\"tx\"}} ",
        socks[1].display()
    );
    let b_line = metrics.lines().find(|l| l.starts_with(&b_series));
    let b_metric: u64 = b_line
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {b_series} in\n{metrics}"));
    assert!(
        b_metric >= b_tx + to_b,
        "metric {b_metric}, status {}",
        b_tx + to_b
    );
    assert!(metrics.contains(&format!(
        "tapmesh_node_port_up{{node=\"h1\",port=\"{}\",kind=\"vm\"}} 1",
        socks[0].display()
    )));
    // A full-size (1514-byte) broadcast from A: B (MTU 1500) gets it, the
    // TAP (MTU 1400) does not: each port is held to its own MTU.
    let oversize = counter(&after, &["drops", "oversize"]);
    let mut full = frame.clone();
    full[..6].copy_from_slice(&[0xff; 6]);
    full.resize(1514, 0x5a);
    a.send(&full).unwrap();
    let got_full = std::iter::from_fn(|| b.recv(Duration::from_secs(3))).any(|f| f == full);
    assert!(got_full, "B did not get the 1514-byte broadcast");
    let st = topo.node_status(1);
    assert_eq!(
        counter(&st, &["drops", "oversize"]),
        oversize + 1,
        "TAP MTU not enforced"
    );
    // A frame longer than the VM port's MTU allows is dropped and counted.
    let mut big = frame.clone();
    big.resize(1600, 0);
    a.send(&big).unwrap();
    assert!(
        integration::wait_until(Duration::from_secs(3), || {
            counter(&topo.node_status(1), &["drops", "oversize"]) == oversize + 2
        }),
        "oversize frame not counted"
    );
    topo.assert_all_running();
}

#[test]
fn node_connects_to_a_listening_vm_and_again_after_its_restart() {
    let mut topo = Topology::central(2);
    let socks = topo.set_node_vm_ports(1, &["stream-connect"], false);
    std::fs::create_dir_all(topo.node_run_dir(1)).unwrap();
    topo.start_switch();
    topo.start_node(1);
    topo.start_node(2);
    // The test plays QEMU with `-netdev stream,server=on`: it listens, and
    // starts after the node (which keeps trying).
    std::thread::sleep(Duration::from_millis(2500));
    let listener = std::os::unix::net::UnixListener::bind(&socks[0]).unwrap();
    let mac = [0x52, 0x54, 0, 0, 3, 1];
    let ip = Ipv4Addr::new(198, 19, 0, 121);
    let mut vm = VmClient::accept(&listener, UP, mac, ip).expect("the node did not connect");
    assert!(
        vm.ping_within(overlay_v4(2), UP),
        "no ping over a node-initiated connection"
    );
    // The node restarts; it connects again by itself and traffic resumes.
    let t0 = std::time::Instant::now();
    topo.stop_node(1);
    assert!(
        vm.closed_within(Duration::from_secs(5)),
        "old connection not closed"
    );
    topo.start_node(1);
    let mut vm = VmClient::accept(&listener, UP, mac, ip).expect("the node did not reconnect");
    assert!(
        vm.ping_within(overlay_v4(2), UP),
        "no ping after the node restarted"
    );
    println!("traffic resumed {:?} after the node stopped", t0.elapsed());
    // The node never deletes a socket it did not make.
    topo.stop_node(1);
    assert!(socks[0].exists());
}

/// Another local user, in the node's group (so the 0660 sockets let it in)
/// but not allowed by the port (`allow-uid` defaults to root and the node's
/// own user).
const INTRUDER: (u32, u32) = (12345, NOBODY.1);

#[test]
fn another_user_cannot_take_over_a_vm_port_stream_or_dgram() {
    use integration::vm_intruder::VmIntruder;
    use std::os::unix::fs::MetadataExt;

    let mut topo = Topology::central(2);
    let socks = topo.set_node_vm_ports(1, &["stream", "dgram"], false);
    topo.set_node_user(1, NOBODY.0, NOBODY.1);
    topo.start_switch();
    topo.start_node(1);
    topo.start_node(2);
    // Not dumpable: its /proc files belong to root though it runs as nobody.
    let environ = std::fs::metadata(format!("/proc/{}/environ", topo.node_pid(1))).unwrap();
    assert_eq!(environ.uid(), 0, "the node is dumpable");

    // Root, allowed by default, is the VM on both ports.
    let (a_mac, a_ip) = ([0x52, 0x54, 0, 0, 4, 1], Ipv4Addr::new(198, 19, 0, 131));
    let (b_mac, b_ip) = ([0x52, 0x54, 0, 0, 4, 2], Ipv4Addr::new(198, 19, 0, 132));
    let mut a = VmClient::stream(&socks[0], a_mac, a_ip);
    assert!(a.ping_within(overlay_v4(2), UP), "stream VM -> h2");
    let b_own = topo.node_run_dir(1).join("b.sock");
    let mut b = VmClient::dgram(&socks[1], &b_own, b_mac, b_ip);
    // The node (nobody) must be able to send to the VM's socket.
    std::fs::set_permissions(&b_own, std::fs::Permissions::from_mode(0o666)).unwrap();
    assert!(b.ping_within(overlay_v4(2), UP), "dgram VM -> h2");

    // The intruder connects to the stream port: closed at once, and the
    // VM's connection stays.
    let listen = Duration::from_secs(3);
    let log = |m: &str| topo.dir().join(format!("intruder-{m}.log"));
    let intruder = VmIntruder::start(
        topo.ns(1),
        INTRUDER,
        "stream",
        &socks[0],
        std::path::Path::new(""),
        listen,
        &log("stream"),
    );
    let seen = intruder.finish(listen + Duration::from_secs(5));
    assert!(
        seen.closed,
        "the node kept the intruder's connection: {seen:?}"
    );
    assert!(
        a.ping_within(overlay_v4(2), Duration::from_secs(5)),
        "the intruder's connection replaced the VM's"
    );

    // The intruder sends from its own socket to the dgram port, then
    // listens while h2 floods ARP requests onto the LAN: none reach it
    // (it did not become the port's peer), and the VM still gets answers.
    let own_dir = topo.dir().join("intruder");
    std::fs::create_dir_all(&own_dir).unwrap();
    std::fs::set_permissions(&own_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let intruder = VmIntruder::start(
        topo.ns(1),
        INTRUDER,
        "dgram",
        &socks[1],
        &own_dir.join("i.sock"),
        listen,
        &log("dgram"),
    );
    let unused = Ipv4Addr::new(198, 19, 0, 199);
    for _ in 0..2 {
        assert!(!topo.ping(2, unused), "{unused} answered");
    }
    let seen = intruder.finish(listen + Duration::from_secs(5));
    assert_eq!(seen.received, 0, "the node sent the intruder LAN frames");
    assert!(
        b.ping_within(overlay_v4(2), UP),
        "dgram VM after the intruder"
    );
    assert!(
        a.ping_within(overlay_v4(2), UP),
        "stream VM after the intruder"
    );

    let refused = counter(&topo.node_status(1), &["drops", "vm_peer_refused"]);
    assert!(refused >= 2, "{refused} refusals counted");
    topo.assert_all_running();
}
