//! Link impairment in the switch (`[node.impair]`, `tapmesh-switch impair`
//! and `link`), measured end to end with the real binaries: loss rate, added
//! delay and jitter, a TCP transfer under every impairment at once, and link
//! down/up.
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use integration::monitoring::{scrape, switch_metrics_addr, topology_with_metrics};
use integration::status::{counter, switch_node};
use integration::topology::overlay_v4;
use integration::traffic::tcp_transfer;
use integration::{Topology, bins};

const UP: Duration = Duration::from_secs(20);

/// `tapmesh-switch ARGS… --socket ADMIN`; panics unless it succeeds.
fn switch_cmd(topo: &Topology, args: &[&str]) {
    let out = Command::new(bins::bin(bins::SWITCH))
        .args(args)
        .arg("--socket")
        .arg(topo.admin_socket())
        .output()
        .expect("run tapmesh-switch");
    assert!(
        out.status.success(),
        "tapmesh-switch {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Pings `count` times from host `from` to host `to` at `interval`; returns
/// (sent, received, round-trip times).
fn ping(
    topo: &Topology,
    from: usize,
    to: usize,
    count: u32,
    interval: &str,
) -> (u64, u64, Vec<f64>) {
    let count = count.to_string();
    let dst = overlay_v4(to).to_string();
    let out = topo.ns(from).exec(
        "ping",
        &["-n", "-c", &count, "-i", interval, "-W", "2", &dst],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let rtts: Vec<f64> = text
        .lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|t| t.split_whitespace().next()?.parse().ok())
        .collect();
    let summary = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_else(|| panic!("no ping summary in {text}"));
    let nums: Vec<u64> = summary
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    (nums[0], nums[1], rtts)
}

fn percentile(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn impair_counter(topo: &Topology, host: usize, dir: &str, key: &str) -> u64 {
    let status = topo.switch_status();
    let node = switch_node(&status, topo.host_name(host)).expect("node listed");
    counter(node, &["impair", &format!("{dir}_counters"), key])
}

#[test]
fn configured_loss_of_5_percent_measures_within_one_point() {
    let mut topo = Topology::central(2);
    topo.start_all(UP);
    // Restart the switch with h2's link impaired in switch.toml (the mesh
    // check of start_all ran on a clean link).
    topo.stop_switch();
    topo.set_switch_node_entry_extra(
        2,
        "[node.impair]\nseed = 1\n[node.impair.egress]\nloss-percent = 5\n",
    );
    topo.start_switch();
    assert!(
        topo.ping_ok_within(1, overlay_v4(2), UP),
        "h1 reaches h2 again"
    );
    // Requests to h2 lose 5 %; replies from h2 are untouched. 5000 pings: one
    // standard deviation of the measured rate is 0.31 points.
    let (sent, received, _) = ping(&topo, 1, 2, 5000, "0.002");
    let loss = 100.0 * (sent - received) as f64 / sent as f64;
    eprintln!("5 % set: {sent} sent, {received} received, {loss:.2} % lost");
    assert!((4.0..=6.0).contains(&loss), "measured loss {loss:.2} %");
    let lost = impair_counter(&topo, 2, "egress", "lost");
    assert!(lost >= sent - received, "switch counted {lost} lost");
    let status = topo.switch_status();
    let node = switch_node(&status, topo.host_name(2)).unwrap();
    assert_eq!(node["impair"]["egress"], "loss=5%");
    assert_eq!(node["impair"]["ingress"], "none");
    topo.assert_all_running();
}

#[test]
fn delay_adds_20_ms_and_jitter_spreads_as_set() {
    let mut topo = Topology::central(2);
    topo.start_all(UP);
    let name = topo.host_name(2).to_string();
    let (_, _, base) = ping(&topo, 1, 2, 200, "0.01");
    let base_median = percentile(&base, 0.5);

    switch_cmd(&topo, &["impair", &name, "--egress", "delay=20ms"]);
    let (_, _, delayed) = ping(&topo, 1, 2, 200, "0.01");
    let added = percentile(&delayed, 0.5) - base_median;
    eprintln!("delay=20ms: median RTT {base_median:.2} -> +{added:.2} ms");
    assert!((19.0..=21.0).contains(&added), "added delay {added:.2} ms");

    switch_cmd(
        &topo,
        &["impair", &name, "--egress", "delay=20ms", "jitter=5ms"],
    );
    let (_, _, jittered) = ping(&topo, 1, 2, 400, "0.01");
    let added: Vec<f64> = jittered.iter().map(|r| r - base_median).collect();
    let (p05, p50, p95) = (
        percentile(&added, 0.05),
        percentile(&added, 0.5),
        percentile(&added, 0.95),
    );
    eprintln!("delay=20ms jitter=5ms: added p5 {p05:.2} p50 {p50:.2} p95 {p95:.2} ms");
    // Uniform in 15..25 ms: 5th and 95th percentiles near 15.5 and 24.5.
    assert!((14.0..=17.5).contains(&p05), "p5 {p05:.2}");
    assert!((19.0..=21.0).contains(&p50), "median {p50:.2}");
    assert!((22.5..=26.5).contains(&p95), "p95 {p95:.2}");
    assert!(impair_counter(&topo, 2, "egress", "delayed") >= 600);

    switch_cmd(&topo, &["impair", &name, "--clear"]);
    let (_, _, after) = ping(&topo, 1, 2, 100, "0.01");
    assert!(percentile(&after, 0.5) < base_median + 2.0, "cleared");
    topo.assert_all_running();
}

#[test]
fn tcp_transfer_is_intact_under_every_impairment_at_once() {
    let mut topo = Topology::central(2);
    topo.start_all(UP);
    let name = topo.host_name(2).to_string();
    // The data direction gets everything; the ACKs some loss and jitter.
    switch_cmd(
        &topo,
        &[
            "impair",
            &name,
            "--egress",
            "loss=5%",
            "delay=20ms",
            "jitter=5ms",
            "reorder=5%",
            "duplicate=2%",
            "corrupt=2%",
            "rate=50mbit",
            "seed=3",
        ],
    );
    switch_cmd(
        &topo,
        &[
            "impair",
            &name,
            "--ingress",
            "loss=1%",
            "delay=2ms",
            "jitter=1ms",
        ],
    );
    let csum_before = tcp_csum_errors(&topo, 2);
    let bytes = 8 << 20;
    let report = tcp_transfer(
        topo.ns(1),
        topo.ns(2),
        overlay_v4(2).into(),
        bytes,
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("8 MiB under impairment: {e}"));
    assert_eq!(report.bytes, bytes);
    eprintln!(
        "8 MiB under impairment in {:?} ({:.1} Mbit/s)",
        report.elapsed,
        report.mbit_per_sec()
    );
    for key in ["lost", "delayed", "reordered", "duplicated", "corrupted"] {
        let v = impair_counter(&topo, 2, "egress", key);
        assert!(v > 0, "egress {key} is {v}");
    }
    assert!(impair_counter(&topo, 2, "ingress", "lost") > 0);
    // Corrupted segments reached h2's TCP and failed its checksum.
    let csum = tcp_csum_errors(&topo, 2) - csum_before;
    assert!(csum > 0, "h2 counted no TCP checksum errors");
    topo.assert_all_running();
}

/// `InCsumErrors` of TCP in host `i` (/proc/net/snmp).
fn tcp_csum_errors(topo: &Topology, i: usize) -> u64 {
    let snmp = topo.ns(i).proc_net("snmp");
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next().unwrap(), tcp.next().unwrap());
    let at = names
        .split_whitespace()
        .position(|n| n == "InCsumErrors")
        .unwrap();
    values.split_whitespace().nth(at).unwrap().parse().unwrap()
}

fn unix_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn link_down_stops_frames_and_up_restores_them_within_100_ms() {
    let mut topo = topology_with_metrics(2);
    topo.start_all(UP);
    let name = topo.host_name(2).to_string();
    switch_cmd(&topo, &["link", &name, "down"]);
    let (sent, received, _) = ping(&topo, 1, 2, 100, "0.01");
    assert_eq!((sent, received), (100, 0), "a down link passes nothing");
    assert!(impair_counter(&topo, 2, "egress", "link_down") >= 100);
    let status = topo.switch_status();
    assert_eq!(
        switch_node(&status, &name).unwrap()["impair"]["link"],
        "down"
    );
    let metrics = scrape(topo.switch_ns(), switch_metrics_addr());
    assert!(
        metrics.contains(&format!(
            "tapmesh_switch_impair_link_up{{node=\"{name}\"}} 0\n"
        )),
        "{metrics}"
    );
    let dropped = format!(
        "tapmesh_switch_impair_dropped_total{{node=\"{name}\",direction=\"egress\",reason=\"link_down\"}} "
    );
    let n: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(&dropped)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {dropped} in {metrics}"));
    assert!(n >= 100, "{dropped}{n}");

    // A fast ping with timestamps; the link comes up while it runs.
    let dst = overlay_v4(2).to_string();
    let pinger = topo
        .ns(1)
        .command("ping")
        .args(["-n", "-D", "-c", "600", "-i", "0.005", "-W", "1", &dst])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn ping");
    std::thread::sleep(Duration::from_millis(1000));
    let up_at = unix_secs();
    let t = Instant::now();
    switch_cmd(&topo, &["link", &name, "up"]);
    eprintln!("link up command took {:?}", t.elapsed());
    let out = pinger.wait_with_output().expect("ping");
    let text = String::from_utf8_lossy(&out.stdout);
    let replies: Vec<f64> = text
        .lines()
        .filter(|l| l.contains("bytes from"))
        .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.parse().ok())
        .collect();
    assert!(!replies.is_empty(), "no reply after link up:\n{text}");
    assert!(
        replies.iter().all(|&r| r > up_at),
        "a reply arrived while the link was down"
    );
    let first = replies[0] - up_at;
    eprintln!("first reply {:.1} ms after link up", first * 1000.0);
    assert!(
        first <= 0.100,
        "first reply {:.1} ms after link up",
        first * 1000.0
    );
    assert!(
        replies.len() > 300,
        "{} replies after link up",
        replies.len()
    );
    topo.assert_all_running();
}

#[test]
fn bad_impairment_commands_exit_2_with_one_line() {
    let mut topo = Topology::central(1);
    topo.start_all(UP);
    let name = topo.host_name(1).to_string();
    for args in [
        vec!["impair", name.as_str(), "loss=150%"],
        vec!["impair", name.as_str(), "delay=soon"],
        vec!["impair", name.as_str(), "colour=red"],
    ] {
        let out = Command::new(bins::bin(bins::SWITCH))
            .args(&args)
            .arg("--socket")
            .arg(topo.admin_socket())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
    // An unknown node is refused by the switch.
    let out = Command::new(bins::bin(bins::SWITCH))
        .args(["impair", "nobody", "loss=1%", "--socket"])
        .arg(topo.admin_socket())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no node"));
    topo.assert_all_running();
}
