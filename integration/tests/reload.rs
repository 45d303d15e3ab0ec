//! Live reload (`tapmesh-switch reload`, `tapmesh-node reload`, SIGHUP) on
//! the real binaries: nodes added and removed on a running switch (central
//! and mesh), a VLAN changed, broken and unchangeable configs refused, a TCP
//! transfer across a reload, and a node's VM ports and forwards changed
//! without touching its TAP or session, and the log level changed live.
use std::process::Command;
use std::time::{Duration, Instant};

use integration::bench::iperf::{self, Load};
use integration::reload::{self, counts};
use integration::status::{counter, switch_node};
use integration::topology::overlay_v4;
use integration::vm_client::VmClient;
use integration::{Topology, bins, wait_until};
use serde_json::Value;

/// How long a fresh overlay gets to pass pings between every pair.
const UP: Duration = Duration::from_secs(20);
/// An added node connects at its next handshake attempt (every few seconds
/// while it is refused), then pings.
const JOIN: Duration = Duration::from_secs(20);

/// Handshakes the switch answered for node `name`.
fn handshakes(status: &Value, name: &str) -> u64 {
    switch_node(status, name)
        .and_then(|n| n["handshakes"].as_u64())
        .unwrap_or_else(|| panic!("no handshakes for {name} in {status}"))
}

/// The switch's MAC table (`status --macs --json`): (node, MAC) pairs.
fn switch_macs(topo: &Topology) -> Vec<(String, String)> {
    let out = Command::new(bins::bin(bins::SWITCH))
        .args(["status", "--json", "--macs", "--socket"])
        .arg(topo.admin_socket())
        .output()
        .expect("run tapmesh-switch status");
    let v: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    v["macs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                m["node"].as_str().unwrap_or("").to_owned(),
                m["mac"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn listed(status: &Value, name: &str) -> bool {
    switch_node(status, name).is_some()
}

/// Whether host `i`'s node lists `peer` among its mesh peers.
fn has_peer(topo: &Topology, i: usize, peer: usize) -> bool {
    let name = topo.host_name(peer).to_owned();
    topo.node_status(i)["peers"]
        .as_array()
        .is_some_and(|a| a.iter().any(|p| p["name"] == name.as_str()))
}

/// Three admitted hosts and a fourth the switch does not know yet; all four
/// nodes run. A reload removes h3 and admits h4.
fn add_and_remove(mut topo: Topology, mesh: bool) {
    let h4 = topo.add_unadmitted_node();
    topo.start_all(UP);
    topo.start_node(h4);
    let before = topo.switch_status();
    assert!(!listed(&before, "h4"));
    assert!(
        switch_macs(&topo).iter().any(|(n, _)| n == "h3"),
        "no MAC learned behind h3 before the reload"
    );
    if mesh {
        assert!(wait_until(UP, || has_peer(&topo, 1, 3) && has_peer(&topo, 2, 3)));
    }
    topo.set_admitted(3, false);
    topo.set_admitted(h4, true);
    let started = Instant::now();
    let r = reload::switch(&mut topo);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("added h4") && r.stdout.contains("removed h3"),
        "{r:?}"
    );
    // h3's session and MACs are gone within a second; in mesh mode every
    // peer has dropped it too.
    let gone = wait_until(Duration::from_secs(1), || {
        let s = topo.switch_status();
        !listed(&s, "h3")
            && !switch_macs(&topo).iter().any(|(n, _)| n == "h3")
            && (!mesh || (!has_peer(&topo, 1, 3) && !has_peer(&topo, 2, 3)))
    });
    assert!(
        gone,
        "h3 still present {:?} after the reload: {}",
        started.elapsed(),
        topo.switch_status()
    );
    assert!(!topo.ping(3, overlay_v4(1)), "h3 still reaches h1");
    // h4 connects and pings; h1 and h2 kept their sessions.
    assert!(
        topo.ping_ok_within(h4, overlay_v4(1), JOIN),
        "h4 never reached h1 after being admitted: {}",
        topo.switch_status()
    );
    assert!(topo.ping(1, overlay_v4(2)));
    let after = topo.switch_status();
    for name in ["h1", "h2"] {
        assert_eq!(
            handshakes(&before, name),
            handshakes(&after, name),
            "{name} handshook again across the reload"
        );
    }
    assert_eq!(counts(&after), (1, 0));
    topo.assert_all_running();
}

#[test]
fn central_reload_adds_and_removes_nodes() {
    add_and_remove(Topology::central(3), false);
}

#[test]
fn mesh_reload_adds_and_removes_nodes() {
    add_and_remove(Topology::mesh(3), true);
}

#[test]
fn reload_moves_a_node_to_another_vlan() {
    let mut topo = Topology::central(3);
    for (i, v) in [(1, 10), (2, 10), (3, 20)] {
        topo.set_switch_node_entry_extra(i, &format!("vlan = {v}"));
    }
    topo.start_switch();
    for i in 1..=3 {
        topo.start_node(i);
    }
    assert!(
        topo.ping_ok_within(2, overlay_v4(1), UP),
        "h2 -> h1 in VLAN 10"
    );
    assert!(
        !topo.ping(2, overlay_v4(3)),
        "VLAN 20 reachable from VLAN 10"
    );
    let before = topo.switch_status();
    topo.set_switch_node_entry_extra(2, "vlan = 20");
    let r = reload::switch(&mut topo);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("changed h2"), "{r:?}");
    assert!(
        topo.ping_ok_within(2, overlay_v4(3), Duration::from_secs(5)),
        "h2 cannot reach VLAN 20 after the reload"
    );
    assert!(!topo.ping(2, overlay_v4(1)), "h2 still reaches VLAN 10");
    let after = topo.switch_status();
    assert_eq!(switch_node(&after, "h2").unwrap()["vlan"], 20);
    assert_eq!(
        handshakes(&before, "h2"),
        handshakes(&after, "h2"),
        "the VLAN change cost h2 its session"
    );
    topo.assert_all_running();
}

#[test]
fn broken_or_unchangeable_config_is_refused_and_nothing_changes() {
    let mut topo = Topology::central(2);
    topo.start_all(UP);
    let before = topo.switch_status();
    // Does not validate: exit 2, the usual one line naming file and key.
    topo.set_switch_config_extra("mac-limit-per-node = 0\n");
    let r = reload::switch(&mut topo);
    assert_eq!(r.code, 2, "{r:?}");
    let line = r.stderr.trim();
    assert!(!line.contains('\n'), "more than one line: {line:?}");
    assert!(
        line.starts_with("tapmesh-switch: config error: ")
            && line.contains("switch.toml: mac-limit-per-node: must be greater than 0"),
        "{line:?}"
    );
    // A new listen address (and state file) cannot change live: both are
    // named, and the rest of the file is not applied either.
    topo.set_switch_config_extra("");
    topo.set_admitted(2, false);
    let config = topo.write_switch_config();
    let text = std::fs::read_to_string(&config).unwrap();
    let moved = text
        .replace(":7777\"", ":7778\"")
        .replace("switch.state", "other.state");
    assert_ne!(text, moved);
    std::fs::write(&config, moved).unwrap();
    let r = reload::run_switch(&topo.admin_socket());
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr
            .contains("listen, state-file: cannot change while the switch runs"),
        "{r:?}"
    );
    // Everything still runs as before: h2 admitted, same sessions.
    assert!(topo.ping(1, overlay_v4(2)));
    let after = topo.switch_status();
    assert!(listed(&after, "h2"));
    for name in ["h1", "h2"] {
        assert_eq!(handshakes(&before, name), handshakes(&after, name));
    }
    assert_eq!(counts(&after), (0, 2));
    // metrics-listen does change live: the exporter starts serving.
    topo.set_admitted(2, true);
    let metrics: std::net::SocketAddr = "127.0.0.1:9203".parse().unwrap();
    topo.set_switch_config_extra(&format!("metrics-listen = \"{metrics}\"\n"));
    let r = reload::switch(&mut topo);
    assert_eq!(r.code, 0, "{r:?}");
    let served = wait_until(Duration::from_secs(2), || {
        integration::http::get(topo.switch_ns(), metrics, "/metrics").is_ok_and(|r| {
            r.body
                .contains("tapmesh_switch_reloads_total{result=\"refused\"} 2")
        })
    });
    assert!(served, "no metrics at {metrics} after the reload");
    topo.assert_all_running();
}

/// Sender retransmits of a `secs`-second iperf3 TCP run h1 -> h2; `during`
/// runs on another thread one second into it.
fn transfer(topo: &Topology, secs: u32, tag: &str, during: impl FnOnce() + Send) -> u64 {
    std::thread::scope(|s| {
        let t = s.spawn(|| {
            iperf::run(
                topo.ns(2),
                topo.ns(1),
                overlay_v4(2).into(),
                Load::Tcp { streams: 1 },
                secs,
                topo.dir(),
                tag,
            )
        });
        std::thread::sleep(Duration::from_secs(2));
        during();
        let r = t.join().unwrap().unwrap_or_else(|e| panic!("{tag}: {e}"));
        assert!(r.bytes > 0, "{tag}: nothing transferred");
        eprintln!(
            "{tag}: {:.0} Mbit/s, {} retransmits",
            r.bits_per_sec / 1e6,
            r.retransmits
        );
        r.retransmits
    })
}

#[test]
fn tcp_transfer_across_a_reload_has_no_retransmission_spike() {
    let mut topo = Topology::central(3);
    topo.start_all(UP);
    let baseline = transfer(&topo, 6, "baseline", || {});
    let before = topo.switch_status();
    // The reload removes h3 and changes settings of the whole network
    // (MAC limit, storm control); h1 and h2 are not touched.
    topo.set_admitted(3, false);
    topo.set_switch_config_extra(
        "mac-limit-per-node = 512\n[storm-control]\nbroadcast-pps = 1000\n",
    );
    topo.write_switch_config();
    let socket = topo.admin_socket();
    let with_reload = transfer(&topo, 6, "reload", || {
        let r = reload::run_switch(&socket);
        assert_eq!(r.code, 0, "{r:?}");
    });
    let after = topo.switch_status();
    assert_eq!(counts(&after), (1, 0));
    assert!(!listed(&after, "h3"));
    for name in ["h1", "h2"] {
        assert_eq!(
            handshakes(&before, name),
            handshakes(&after, name),
            "{name} handshook again"
        );
    }
    // A lost frame costs the sender at least one retransmission; a busy
    // machine has some anyway, so the bound is relative to the same run
    // without a reload, with room for noise.
    assert!(
        with_reload <= baseline * 2 + 20,
        "retransmits with a reload {with_reload}, without {baseline}"
    );
    topo.assert_all_running();
}

#[test]
fn sighup_reloads_like_the_command() {
    let mut topo = Topology::central(2);
    let h3 = topo.add_unadmitted_node();
    topo.start_all(UP);
    topo.start_node(h3);
    topo.set_admitted(h3, true);
    assert_eq!(reload::switch_sighup(&mut topo), (1, 0));
    assert!(
        topo.ping_ok_within(h3, overlay_v4(1), JOIN),
        "h3 never reached h1 after SIGHUP admitted it"
    );
    // A broken file on SIGHUP: refused, counted, the switch runs on.
    topo.set_switch_config_extra("colour = \"blue\"\n");
    assert_eq!(reload::switch_sighup(&mut topo), (1, 1));
    assert!(topo.ping(h3, overlay_v4(2)));
    let log = std::fs::read_to_string(topo.dir().join("switch.1.log")).unwrap_or_default();
    assert!(
        log.contains("config reloaded: network default: added h3")
            && log.contains("config reload refused")
            && log.contains("colour"),
        "log:\n{log}"
    );
    topo.assert_all_running();
}

/// The TAP's interface index in host `i` (a recreated TAP gets a new one).
fn tap_index(topo: &Topology, i: usize) -> String {
    let out = topo.ns(i).exec("ip", &["-o", "link", "show", "tapmesh0"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let index = text.split(':').next().unwrap_or("").trim().to_owned();
    assert!(!index.is_empty(), "no tapmesh0 in h{i}: {text}");
    index
}

/// A userspace host on h1 at this overlay address, forwarding a port.
const HOST_V4: std::net::Ipv4Addr = std::net::Ipv4Addr::new(198, 19, 0, 50);

#[test]
fn node_reload_adds_and_removes_vm_ports_and_hosts_keeping_tap_and_session() {
    let mut topo = Topology::central(2);
    let socks = topo.set_node_vm_ports(1, &["stream"], true);
    topo.start_all(UP);
    let tap = tap_index(&topo, 1);
    let before = topo.node_status(1);
    let handshakes = counter(&before, &["handshakes_completed"]);

    // Add a second VM port and a userspace host with a forward.
    let socks2 = topo.set_node_vm_ports(1, &["stream", "stream"], true);
    topo.set_node_tables(
        1,
        &format!(
            "[[host]]\naddress = [\"{HOST_V4}/24\"]\n[[host.forward]]\nport = 80\nto = \"127.0.0.1:8080\"\n"
        ),
    );
    let r = reload::node(&mut topo, 1);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("vm-ports added") && r.stdout.contains("hosts added"),
        "{r:?}"
    );
    let mut vm = VmClient::stream(
        &socks2[1],
        [0x52, 0x54, 0, 0, 2, 2],
        std::net::Ipv4Addr::new(198, 19, 0, 102),
    );
    assert!(
        vm.ping_within(overlay_v4(2), UP),
        "a VM on the added port cannot ping h2"
    );
    assert!(
        topo.ping_ok_within(2, HOST_V4, UP),
        "h2 cannot ping the added userspace host"
    );

    // Remove them again: the socket goes, the VM is disconnected, the host
    // stops answering.
    topo.set_node_vm_ports(1, &["stream"], true);
    topo.set_node_tables(1, "");
    let r = reload::node(&mut topo, 1);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("vm-ports removed") && r.stdout.contains("hosts removed"),
        "{r:?}"
    );
    assert!(
        vm.closed_within(Duration::from_secs(2)),
        "the VM is still connected"
    );
    assert!(
        !socks2[1].exists(),
        "the removed port's socket is still there"
    );
    assert!(socks[0].exists(), "the kept port's socket is gone");
    assert!(!topo.ping(2, HOST_V4), "the removed host still answers");

    // The TAP and the session were never touched.
    assert_eq!(tap_index(&topo, 1), tap, "the TAP was recreated");
    let after = topo.node_status(1);
    assert_eq!(
        counter(&after, &["handshakes_completed"]),
        handshakes,
        "the session was renewed: {after}"
    );
    assert!(topo.ping(1, overlay_v4(2)));
    let kinds: Vec<&str> = after["local"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["kind"].as_str())
        .collect();
    assert_eq!(kinds.iter().filter(|k| **k == "vm").count(), 1, "{after}");
    assert_eq!(counts(&after), (2, 0));
    topo.assert_all_running();
}

#[test]
fn node_reload_refuses_what_cannot_change_and_sighup_applies() {
    let mut topo = Topology::central(2);
    topo.start_all(UP);
    topo.set_node_config_extra(1, "underlay-mtu = 1400\n");
    let r = reload::node(&mut topo, 1);
    assert_eq!(r.code, 2, "{r:?}");
    let line = r.stderr.trim();
    assert!(
        !line.contains('\n')
            && line.starts_with("tapmesh-node: config error: ")
            && line.contains("h1.toml: underlay-mtu: cannot change while the node runs"),
        "{line:?}"
    );
    // A VM port above the node's largest MTU (the TAP's 1400) cannot be
    // added live either; the refusal names it.
    topo.set_node_config_extra(1, "");
    topo.set_node_vm_ports(1, &["stream"], true);
    let r = reload::node(&mut topo, 1);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("h1.toml: vm-port[0].mtu: cannot change"),
        "{r:?}"
    );
    // SIGHUP: a userspace host appears.
    topo.set_node_vm_ports(1, &[], true);
    topo.set_node_tables(1, &format!("[[host]]\naddress = [\"{HOST_V4}/24\"]\n"));
    assert_eq!(reload::node_sighup(&mut topo, 1), (1, 2));
    assert!(
        topo.ping_ok_within(2, HOST_V4, UP),
        "h2 cannot ping the host SIGHUP added"
    );
    topo.assert_all_running();
}

#[test]
fn node_reload_moves_its_metrics_listener() {
    let mut topo = Topology::central(2);
    let (old, new): (std::net::SocketAddr, std::net::SocketAddr) = (
        "127.0.0.1:9201".parse().unwrap(),
        "127.0.0.1:9202".parse().unwrap(),
    );
    topo.set_node_config_extra(1, &format!("metrics-listen = \"{old}\"\n"));
    topo.start_all(UP);
    let scrape = |topo: &Topology, addr| integration::http::get(topo.ns(1), addr, "/metrics");
    assert!(scrape(&topo, old).is_ok_and(|r| r.body.contains("tapmesh_node_reloads_total")));
    topo.set_node_config_extra(1, &format!("metrics-listen = \"{new}\"\n"));
    let r = reload::node(&mut topo, 1);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains(&format!("metrics-listen {new}")), "{r:?}");
    let moved = wait_until(Duration::from_secs(2), || {
        scrape(&topo, old).is_err()
            && scrape(&topo, new).is_ok_and(|r| {
                r.body
                    .contains("tapmesh_node_reloads_total{node=\"h1\",result=\"ok\"} 1")
            })
    });
    assert!(
        moved,
        "old: {:?}, new: {:?}",
        scrape(&topo, old).err(),
        scrape(&topo, new).map(|r| r.status)
    );
    topo.assert_all_running();
}

/// Whether `log` has a line at `level` (`INFO`, `DEBUG`, as the daemons
/// write them).
fn has_level(log: &str, level: &str) -> bool {
    log.lines().any(|l| l.contains(&format!(" {level} ")))
}

#[test]
fn node_reload_changes_its_log_level_live() {
    let mut topo = Topology::central(2);
    // A port the node connects to, with no VM listening: it logs a debug
    // line at every attempt, once a second.
    topo.set_node_vm_ports(1, &["stream-connect"], true);
    topo.set_node_config_extra(1, "log-level = \"warn\"\n");
    topo.start_all(UP);
    let path = topo.dir().join("h1.1.log");
    let log = || std::fs::read_to_string(&path).unwrap_or_default();
    // Several connect attempts, none logged: the file's level holds.
    std::thread::sleep(Duration::from_secs(3));
    let before = log();
    assert!(
        !has_level(&before, "DEBUG") && !has_level(&before, "INFO"),
        "logged below warn at log-level warn:\n{before}"
    );
    topo.set_node_config_extra(1, "log-level = \"debug\"\n");
    let r = reload::node(&mut topo, 1);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout.trim(), "reloaded: log-level debug", "{r:?}");
    let debug = wait_until(Duration::from_secs(10), || {
        log().contains("cannot connect to the VM yet")
    });
    assert!(debug, "no debug line after the reload:\n{}", log());
    assert_eq!(counts(&topo.node_status(1)), (1, 0));
    topo.assert_all_running();
}

#[test]
fn switch_reload_changes_its_log_level_live() {
    let mut topo = Topology::central(2);
    topo.set_switch_config_extra("log-level = \"warn\"\n");
    topo.start_all(UP);
    let path = topo.dir().join("switch.1.log");
    let log = || std::fs::read_to_string(&path).unwrap_or_default();
    // The nodes connected, which the switch logs at info: not at warn.
    let before = log();
    assert!(
        !has_level(&before, "INFO"),
        "logged below warn at log-level warn:\n{before}"
    );
    topo.set_switch_config_extra("log-level = \"info\"\n");
    let r = reload::switch(&mut topo);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout.trim(), "reloaded: log-level info", "{r:?}");
    // The reload's own summary line is at info: it shows the new level.
    let after = log();
    assert!(
        after.contains(" INFO ") && after.contains("config reloaded: log-level info"),
        "log:\n{after}"
    );
    assert_eq!(counts(&topo.switch_status()), (1, 0));
    // A bad filter is refused with the one-line error naming the key.
    topo.set_switch_config_extra("log-level = \"info,tapmesh_switch=loud\"\n");
    let r = reload::switch(&mut topo);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains(": log-level: "), "{r:?}");
    topo.assert_all_running();
}
