//! Monitoring, end to end: the switch and the nodes serve `/metrics`, a real
//! Prometheus (Debian's package) scrapes them inside the test's namespaces,
//! and every PromQL expression of the shipped Grafana dashboard returns data.
//! The cluster row has its own test: two switches, etcd, a node on each.
//! Also: `promtool check metrics` on each exposition, counters that match the
//! pings sent, a bad datagram counted under its reason, `status --json`, and
//! the admin socket closed to non-root users.
use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use integration::config::{EtcdSettings, SwitchRef, cluster_section};
use integration::etcd::{EtcdCluster, HEALTHY_TIMEOUT};
use integration::monitoring::{
    node_metrics_addr, scrape, switch_metrics_addr, topology_with_metrics,
};
use integration::multicast::{join_v4, send, sender};
use integration::peer_switch::PeerSwitch;
use integration::prometheus::{self, Job, Prometheus};
use integration::topology::overlay_v4;
use integration::traffic::udp_spray;
use integration::{Topology, bins, dashboard, http, wait_until};

const UP: Duration = Duration::from_secs(20);
const HOSTS: usize = 3;
/// The group h2 joins, for the per-group counters.
const GROUP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(239, 1, 2, 3);
/// Pings h1 → h2 in the measured window.
const PINGS: u64 = 20;

/// The value of the sample `name{labels}` (labels exactly as exposed, e.g.
/// `node="h1",direction="rx"`), 0 if absent.
fn sample(text: &str, name: &str, labels: &str) -> f64 {
    let key = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{labels}}} ")
    };
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// `promtool check metrics` must find nothing to complain about.
fn promtool_check(what: &str, text: &str) {
    use std::io::Write;
    let mut child = Command::new(prometheus::PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running promtool");
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(text.as_bytes())
        .expect("writing to promtool");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "promtool check metrics on {what}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn prometheus_scrapes_switch_and_nodes_and_every_dashboard_panel_has_data() {
    prometheus::require_installed();
    let mut topo = topology_with_metrics(HOSTS);
    // A mirror session h1 -> h3, so that the port mirroring panel has data;
    // two workers, so that the workers' panels have.
    topo.set_switch_config_extra(&format!(
        "metrics-listen = \"{}\"\nworkers = 2\n[[mirror]]\nname = \"span\"\nsource = \"h1\"\ndestination = \"h3\"\n",
        switch_metrics_addr()
    ));
    topo.start_all(UP);
    let sw = topo.switch_ns();

    // Health and the exporter's edges.
    let health = http::get(sw, switch_metrics_addr(), "/healthz").expect("GET /healthz");
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    let missing = http::get(sw, switch_metrics_addr(), "/nope").expect("GET /nope");
    assert_eq!(missing.status, 404);

    // Counters before the measured window.
    let sw_before = scrape(sw, switch_metrics_addr());
    let h1_before = scrape(topo.ns(1), node_metrics_addr(1));
    let h2_before = scrape(topo.ns(2), node_metrics_addr(2));

    let mut ok = 0;
    for _ in 0..PINGS {
        if topo.ping(1, overlay_v4(2)) {
            ok += 1;
        }
    }
    assert_eq!(ok, PINGS, "h1 -> h2 pings lost on a quiet overlay");
    // One datagram too short for any header: counted as `truncated`.
    assert_eq!(
        udp_spray(topo.ns(3), topo.switch_addr(), &[vec![0x01]], 0),
        1
    );

    // The switch answers a scrape from its own loop, so the datagram may be
    // read after a scrape that arrived with it: wait until it is counted.
    let truncated_before = sample(
        &sw_before,
        "tapmesh_switch_drops_total",
        "reason=\"truncated\"",
    );
    wait_until(Duration::from_secs(3), || {
        let now = scrape(sw, switch_metrics_addr());
        sample(&now, "tapmesh_switch_drops_total", "reason=\"truncated\"") > truncated_before
    });
    let sw_after = scrape(sw, switch_metrics_addr());
    let h1_after = scrape(topo.ns(1), node_metrics_addr(1));
    let h2_after = scrape(topo.ns(2), node_metrics_addr(2));
    let moved = |before: &str, after: &str, name: &str, labels: &str| {
        sample(after, name, labels) - sample(before, name, labels)
    };
    let n = PINGS as f64;
    // The switch: each echo request comes from h1 and goes to h2, each reply
    // the other way, so each of the two nodes' frame counters moved by >= 2N.
    for (node, peer) in [("h1", "h2"), ("h2", "h1")] {
        let rx = moved(
            &sw_before,
            &sw_after,
            "tapmesh_switch_node_frames_total",
            &format!("node=\"{node}\",direction=\"rx\""),
        );
        let tx = moved(
            &sw_before,
            &sw_after,
            "tapmesh_switch_node_frames_total",
            &format!("node=\"{node}\",direction=\"tx\""),
        );
        assert!(
            rx >= n && tx >= n && rx + tx >= 2.0 * n,
            "switch counted {rx} frames from and {tx} to {node} for {PINGS} pings with {peer}"
        );
    }
    for (name, before, after) in [("h1", &h1_before, &h1_after), ("h2", &h2_before, &h2_after)] {
        let rx = moved(
            before,
            after,
            "tapmesh_node_tap_frames_total",
            &format!("node=\"{name}\",direction=\"rx\""),
        );
        let tx = moved(
            before,
            after,
            "tapmesh_node_tap_frames_total",
            &format!("node=\"{name}\",direction=\"tx\""),
        );
        assert!(
            rx >= n && tx >= n,
            "{name} counted {rx} TAP frames read and {tx} written for {PINGS} pings"
        );
    }
    let truncated = moved(
        &sw_before,
        &sw_after,
        "tapmesh_switch_drops_total",
        "reason=\"truncated\"",
    );
    assert_eq!(
        truncated, 1.0,
        "the short datagram is not counted as truncated"
    );

    // Every exposition is clean for promtool, and shows no key material.
    promtool_check("the switch", &sw_after);
    for i in 1..=HOSTS {
        let text = scrape(topo.ns(i), node_metrics_addr(i));
        promtool_check(&format!("h{i}"), &text);
        assert!(
            text.contains("process_resident_memory_bytes"),
            "h{i}: no process metrics"
        );
        assert!(
            !text.contains(&topo.tap_mac(i)),
            "h{i}'s metrics show its MAC"
        );
    }
    assert!(
        sw_after.contains("process_cpu_seconds_total"),
        "switch: no process metrics"
    );
    assert!(
        sw_after.contains("tapmesh_build_info{program=\"tapmesh-switch\""),
        "switch: no build info"
    );

    // A real Prometheus in the switch's namespace scrapes all of them.
    let prom = Prometheus::start(
        sw,
        &topo.dir().join("prometheus"),
        &[
            Job {
                name: "tapmesh-switch".into(),
                targets: vec![switch_metrics_addr()],
            },
            Job {
                name: "tapmesh-node".into(),
                targets: (1..=HOSTS).map(node_metrics_addr).collect(),
            },
        ],
    );
    let all_up = format!("count(up == 1) == {}", HOSTS + 1);
    assert!(
        prom.wait_for(&all_up, Duration::from_secs(30)),
        "not every target is up in Prometheus: {:?}\n{}",
        prom.query("up"),
        prom.log_tail()
    );
    // Traffic while Prometheus watches, so rates have something to show:
    // pings, and a multicast group h2 joined (the busiest-groups panel).
    let _member = join_v4(&topo, 2, GROUP, None);
    assert!(
        wait_until(Duration::from_secs(10), || {
            topo.switch_status()["multicast"]["groups"]
                .as_array()
                .is_some_and(|g| !g.is_empty())
        }),
        "h2's join never reached the switch"
    );
    let to_group = sender(&topo, 1, false);
    for _ in 0..5 {
        assert!(topo.ping(2, overlay_v4(3)));
        assert!(topo.ping(3, overlay_v4(1)));
        send(&to_group, GROUP.into(), "panel", 10);
    }
    // Enough scrapes in the window for every rate().
    assert!(
        prom.wait_for(
            "count_over_time(tapmesh_switch_multicast_group_bytes_total[1m]) >= 2",
            Duration::from_secs(20)
        ),
        "the group's counters were not scraped"
    );
    assert!(
        prom.wait_for(
            "count_over_time(tapmesh_switch_nodes_connected[1m]) >= 5",
            Duration::from_secs(20)
        ),
        "too few scrapes"
    );
    assert_eq!(
        prom.value("tapmesh_switch_nodes_connected"),
        Some(HOSTS as f64)
    );
    assert_eq!(
        prom.value("tapmesh_switch_drops_total{reason=\"truncated\"}"),
        Some(1.0)
    );

    // Every panel outside the cluster row (which needs several switches
    // and etcd: see the next test).
    let exprs: Vec<_> = dashboard::exprs()
        .into_iter()
        .filter(|e| e.row != dashboard::CLUSTER_ROW)
        .collect();
    assert!(
        exprs.len() >= 20,
        "only {} expressions in the dashboard",
        exprs.len()
    );
    // The workers' panels are among them (and have data: two workers).
    for m in [
        "tapmesh_switch_worker_datagrams_total",
        "tapmesh_switch_gate_datagrams_total",
    ] {
        assert!(
            exprs.iter().any(|e| e.expr.contains(m)),
            "no panel shows {m}"
        );
    }
    dashboard::assert_have_data(&prom, &exprs);
    eprintln!("{} dashboard expressions return data", exprs.len());
    drop(prom);
    topo.assert_all_running();
}

/// The cluster row, from two switches with static peering that share state
/// through etcd (one member: the panels need data, not fault tolerance), a
/// node homed on each (h1 on sw1, h2 on sw2, which runs in h3's namespace),
/// and one Prometheus scraping both switches.
#[test]
fn prometheus_scrapes_two_switches_with_etcd_and_every_cluster_panel_has_data() {
    prometheus::require_installed();
    let started = Instant::now();
    // etcd comes up while the rest is set up.
    let mut etcd = EtcdCluster::start(1);
    let mut topo = Topology::central(3);
    let mut sw2 = PeerSwitch::new(&mut topo, 3, "sw2");
    let sw2_metrics = node_metrics_addr(sw2.host());
    etcd.attach(topo.switch_ns(), "etcd0");
    etcd.attach(topo.ns(sw2.host()), "etcd0");
    let store = EtcdSettings {
        endpoints: vec![etcd.client_url(1)],
        lease_ttl_secs: 3,
    };
    let sw1 = SwitchRef {
        name: "sw1".into(),
        public_key: topo.switch_public_key(),
        endpoint: topo.switch_addr(),
    };
    topo.set_switch_config_extra(&format!(
        "metrics-listen = \"{}\"\n{}",
        switch_metrics_addr(),
        cluster_section("sw1", Some(&store), &[sw2.switch_ref()])
    ));
    topo.set_node_switch(2, sw2.addr(), sw2.public_key());
    etcd.wait_healthy(HEALTHY_TIMEOUT)
        .unwrap_or_else(|e| panic!("etcd: {e}"));
    sw2.start(
        &mut topo,
        &[1, 2],
        &format!(
            "metrics-listen = \"{sw2_metrics}\"\n{}",
            cluster_section("sw2", Some(&store), &[sw1])
        ),
    );
    // h1 and h2 ping each other across the trunk.
    topo.start_all(UP);

    let prom = Prometheus::start(
        topo.switch_ns(),
        &topo.dir().join("prometheus"),
        &[Job {
            name: "tapmesh-switch".into(),
            targets: vec![switch_metrics_addr(), sw2_metrics],
        }],
    );
    // Both trunks up, both switches connected to etcd, and each knows from
    // etcd the node homed on the other.
    for (what, expr) in [
        ("trunk up", "count(tapmesh_switch_peer_up == 1) == 2"),
        (
            "etcd connected",
            "count(tapmesh_switch_etcd_connection{state=\"connected\"} == 1) == 2",
        ),
        (
            "the other switch's node in etcd",
            "count(tapmesh_switch_peer_owned{kind=\"nodes\"} == 1) == 2",
        ),
        // Enough scrapes of each switch for every rate().
        (
            "scrapes",
            "count(count_over_time(tapmesh_switch_etcd_writes_total[1m]) >= 3) == 2",
        ),
    ] {
        assert!(
            prom.wait_for(expr, Duration::from_secs(30)),
            "{what}: {expr} not true\n{:?}",
            prom.query("{__name__=~\"tapmesh_switch_(peer|etcd)_.*\"}")
        );
    }
    // Frames crossed the trunk both ways, as each switch counts them.
    let trunk_frames = prom
        .query("tapmesh_switch_peer_frames_total > 0")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        trunk_frames.len(),
        4,
        "frames rx and tx on both switches: {trunk_frames:?}"
    );

    let exprs: Vec<_> = dashboard::exprs()
        .into_iter()
        .filter(|e| e.row == dashboard::CLUSTER_ROW)
        .collect();
    assert!(
        exprs.len() >= 10,
        "only {} expressions in the cluster row",
        exprs.len()
    );
    dashboard::assert_have_data(&prom, &exprs);
    eprintln!(
        "{} cluster row expressions return data; test took {:.1}s",
        exprs.len(),
        started.elapsed().as_secs_f64()
    );
    drop(prom);
    topo.assert_all_running();
    assert!(sw2.status().is_ok(), "sw2 stopped answering");
}

#[test]
fn status_json_lists_exactly_the_nodes_and_the_admin_socket_is_root_only() {
    let mut topo = Topology::central(HOSTS);
    topo.start_all(UP);
    let status = topo.switch_status();
    let names: BTreeSet<&str> = status["nodes"]
        .as_array()
        .expect("nodes array")
        .iter()
        .map(|n| n["name"].as_str().expect("node name"))
        .collect();
    let want: BTreeSet<&str> = (1..=HOSTS).map(|i| topo.host_name(i)).collect();
    assert_eq!(names, want, "status --json: {status}");
    for i in 1..=HOSTS {
        let node = topo.node_status(i);
        assert_eq!(node["name"], topo.host_name(i));
        assert_eq!(node["session"], "established", "h{i}: {node}");
        assert!(
            node["rtt_secs"].as_f64().is_some(),
            "h{i} has no RTT sample: {node}"
        );
    }

    // As `nobody` the socket cannot be opened (0600, owned by root).
    let socket = topo.admin_socket();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&socket)
            .expect("admin socket")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "admin socket mode {mode:o}");
    // Run the status client as nobody; a copy of the binary in a directory
    // anyone can read, so a 0700 target directory cannot be the reason.
    let dir = tempdir_for_nobody();
    let bin = dir.join("tapmesh-switch");
    std::fs::copy(bins::bin(bins::SWITCH), &bin).expect("copying the switch binary");
    // Another test thread forking while the copy was open for writing can
    // make exec fail with ETXTBSY for a moment: retry that case only.
    let mut out = None;
    for _ in 0..50 {
        let o = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin)
            .args(["status", "--json", "--socket"])
            .arg(&socket)
            .output()
            .expect("running setpriv (util-linux)");
        if !String::from_utf8_lossy(&o.stderr).contains("Text file busy") {
            out = Some(o);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = out.expect("the copied binary stayed busy (ETXTBSY) for 5 s");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && out.stdout.is_empty(),
        "nobody read the admin socket: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.contains("cannot reach the switch") && stderr.contains("ermission denied"),
        "unexpected failure as nobody: {stderr}"
    );
    topo.assert_all_running();
}

fn tempdir_for_nobody() -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("tapmesh-nobody-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

#[test]
fn bad_metrics_listen_is_a_one_line_config_error() {
    let dir = std::env::temp_dir().join(format!("tapmesh-mcfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let key = dir.join("s.key");
    integration::config::KeyPair::generate(&bins::bin(bins::SWITCH), &key);
    let cfg = dir.join("switch.toml");
    std::fs::write(
        &cfg,
        "listen = \"198.18.0.3:7777\"\nprivate-key-file = \"s.key\"\nmetrics-listen = \"localhost\"\n",
    )
    .expect("writing config");
    let out = Command::new(bins::bin(bins::SWITCH))
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .expect("running the switch");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("metrics-listen: invalid socket address"),
        "{stderr}"
    );
}
