//! Port mirroring (`[[mirror]]`, `tapmesh-switch mirror`) with the real
//! binaries: a session h1 -> h3 puts h1's frames, both ways, on h3's TAP;
//! h2 and h4 see nothing more than without it; direction, removal and the
//! rate bound work on a running switch.
use std::net::Ipv4Addr;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use integration::capture::{Capture, Frame, parse_mac};
use integration::monitoring::{scrape, switch_metrics_addr, topology_with_metrics};
use integration::status::counter;
use integration::topology::{TAP, overlay_v4};
use integration::{Topology, bins, reload};

const UP: Duration = Duration::from_secs(20);
/// Pings per measured window.
const PINGS: usize = 20;

/// `tapmesh-switch mirror ARGS… --socket ADMIN`.
fn mirror_cmd(topo: &Topology, args: &[&str]) -> Output {
    Command::new(bins::bin(bins::SWITCH))
        .arg("mirror")
        .args(args)
        .arg("--socket")
        .arg(topo.admin_socket())
        .output()
        .expect("run tapmesh-switch mirror")
}

/// As [`mirror_cmd`]; panics unless it succeeds, returns its stdout.
fn mirror_ok(topo: &Topology, args: &[&str]) -> String {
    let out = mirror_cmd(topo, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "tapmesh-switch mirror {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The frames hosts 2, 3 and 4 got on their TAPs (written there by their
/// node) while h1 pinged h2 `PINGS` times.
fn window(topo: &Topology) -> [Vec<Frame>; 3] {
    let caps = [2, 3, 4].map(|i| Capture::start(topo.ns(i), TAP));
    let dst = overlay_v4(2).to_string();
    let count = PINGS.to_string();
    let out = topo.ns(1).exec(
        "ping",
        &["-n", "-q", "-c", &count, "-i", "0.05", "-W", "2", &dst],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("{PINGS} received")),
        "h1 -> h2 lost pings: {text}"
    );
    // Let the last reply's copy arrive.
    std::thread::sleep(Duration::from_millis(300));
    caps.map(|c| c.finish().into_iter().filter(|f| !f.outgoing).collect())
}

/// ICMP echo frames h1 -> h2 and h2 -> h1 among `frames`.
fn pings(frames: &[Frame]) -> (usize, usize) {
    let (a, b) = (overlay_v4(1), overlay_v4(2));
    let way =
        |s: Ipv4Addr, d: Ipv4Addr| frames.iter().filter(|f| f.icmp4() == Some((s, d))).count();
    (way(a, b), way(b, a))
}

fn session<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["mirrors"]
        .as_array()
        .and_then(|l| l.iter().find(|m| m["name"] == name))
        .unwrap_or_else(|| panic!("no mirror {name} in {status}"))
}

#[test]
fn a_mirror_of_h1_shows_its_frames_both_ways_on_h3_and_nobody_else_sees_more() {
    let mut topo = Topology::central(4);
    topo.start_all(UP);
    let [b0, c0, d0] = window(&topo);
    // Written to h2's TAP: the requests (its replies go the other way).
    assert_eq!(pings(&b0), (PINGS, 0), "h2 gets every ping once");
    assert_eq!(pings(&c0), (0, 0), "h3 sees no unicast of others");
    assert_eq!(pings(&d0), (0, 0));

    // The session comes from switch.toml, applied by a reload.
    topo.set_switch_config_extra(
        "[[mirror]]\nname = \"span\"\nsource = \"h1\"\ndestination = \"h3\"\n",
    );
    let r = reload::switch(&mut topo);
    assert_eq!(r.code, 0, "reload: {}{}", r.stdout, r.stderr);
    let [b1, c1, d1] = window(&topo);
    // h3's TAP sees h1's frames both ways, each once, as h1 saw them.
    assert_eq!(pings(&c1), (PINGS, PINGS), "h3 sees h1's echo both ways");
    let (h1, h2) = (parse_mac(&topo.tap_mac(1)), parse_mac(&topo.tap_mac(2)));
    assert!(c1.iter().filter(|f| f.icmp4().is_some()).all(|f| {
        let macs = (f.src_mac().unwrap(), f.dst_mac().unwrap());
        macs == (h1, h2) || macs == (h2, h1)
    }));
    // h2 and h4 see what they saw without the session.
    assert_eq!(pings(&b1), (PINGS, 0), "h2 gets no extra copy");
    assert_eq!(pings(&d1), (0, 0), "h4 gets no copy");
    for (who, before, after) in [("h2", &b0, &b1), ("h4", &d0, &d1)] {
        // The same traffic but for the odd ARP or neighbour refresh.
        assert!(
            after.len() <= before.len() + 4,
            "{who}: {} frames without the session, {} with it",
            before.len(),
            after.len()
        );
    }
    let status = topo.switch_status();
    let m = session(&status, "span");
    assert_eq!(
        (m["source"].as_str(), m["destination"].as_str()),
        (Some("h1"), Some("h3"))
    );
    assert_eq!(m["configured"], true);
    assert!(counter(m, &["mirrored"]) >= 2 * PINGS as u64, "{m}");
    assert_eq!(counter(m, &["dropped_rate"]), 0);

    // Out of the file again: the reload ends the session.
    topo.set_switch_config_extra("");
    let r = reload::switch(&mut topo);
    assert_eq!(r.code, 0, "reload: {}{}", r.stdout, r.stderr);
    let [_, c2, _] = window(&topo);
    assert_eq!(pings(&c2), (0, 0), "the session ended with the reload");
    assert!(
        topo.switch_status()["mirrors"]
            .as_array()
            .is_none_or(Vec::is_empty)
    );
    topo.assert_all_running();
}

#[test]
fn direction_and_removal_change_at_runtime() {
    let mut topo = Topology::central(4);
    topo.start_all(UP);
    let out = mirror_ok(
        &topo,
        &[
            "add",
            "rx",
            "source=h1",
            "destination=h3",
            "direction=received",
        ],
    );
    assert!(
        out.contains("rx (network default): h1 -> h3, received"),
        "{out}"
    );
    let [_, c, _] = window(&topo);
    assert_eq!(pings(&c), (PINGS, 0), "received: h1's requests only");

    mirror_ok(
        &topo,
        &["add", "rx", "source=h1", "destination=h3", "direction=sent"],
    );
    let [_, c, _] = window(&topo);
    assert_eq!(pings(&c), (0, PINGS), "sent: the replies to h1 only");

    let list = mirror_ok(&topo, &["list"]);
    assert_eq!(list.lines().count(), 1, "{list}");
    assert!(list.contains("h1 -> h3, sent"), "{list}");
    mirror_ok(&topo, &["remove", "rx"]);
    let [_, c, _] = window(&topo);
    assert_eq!(pings(&c), (0, 0), "removed");

    // A bad request is a usage error (exit 2), an unknown node or session
    // the switch's refusal (exit 1); neither changes anything.
    let bad = mirror_cmd(&topo, &["add", "x", "source=h1", "destination=h1"]);
    assert_eq!(bad.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&bad.stderr).lines().count(), 1);
    let unknown = mirror_cmd(&topo, &["add", "x", "source=h1", "destination=h9"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("h9"));
    assert_eq!(mirror_cmd(&topo, &["remove", "rx"]).status.code(), Some(1));
    assert!(mirror_ok(&topo, &["list"]).is_empty());
    topo.assert_all_running();
}

#[test]
fn the_rate_bound_drops_and_counts_copies_over_it() {
    let mut topo = topology_with_metrics(3);
    topo.start_all(UP);
    mirror_ok(
        &topo,
        &[
            "add",
            "slow",
            "source=h1",
            "destination=h3",
            "direction=received",
            "rate=5",
        ],
    );
    let cap = Capture::start(topo.ns(3), TAP);
    let started = Instant::now();
    let dst = overlay_v4(2).to_string();
    let out = topo.ns(1).exec(
        "ping",
        &["-n", "-q", "-c", "200", "-i", "0.01", "-W", "2", &dst],
    );
    let elapsed = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    std::thread::sleep(Duration::from_millis(300));
    let copies = pings(&cap.finish()).0 as u64;
    let status = topo.switch_status();
    let m = session(&status, "slow");
    let (mirrored, dropped) = (counter(m, &["mirrored"]), counter(m, &["dropped_rate"]));
    eprintln!("rate 5/s, {elapsed:.1} s: {mirrored} mirrored, {dropped} dropped, {copies} seen");
    // One second of burst, then 5 per second (plus what else h1 sent).
    let bound = 5 + (5.0 * (elapsed + 1.0)).ceil() as u64;
    assert!(mirrored <= bound, "{mirrored} mirrored, bound {bound}");
    assert!(copies >= 5 && copies <= mirrored, "{copies} copies seen");
    assert!(dropped >= 200 - bound, "{dropped} dropped");
    // The same count in /metrics, labelled with the session's name.
    let key = "tapmesh_switch_mirror_frames_total{mirror=\"slow\",result=\"dropped_rate\"} ";
    let text = scrape(topo.switch_ns(), switch_metrics_addr());
    let exported: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /metrics"));
    assert!(
        exported >= dropped,
        "{exported} in /metrics, {dropped} in status"
    );
    topo.assert_all_running();
}
