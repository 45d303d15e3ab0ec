//! `tapmesh-hops [--pings N] [--json PATH] [--busy-poll-us N]`: where a ping's
//! round trip spends its time, hop by hop, for kernel VXLAN, tapmesh central
//! and tapmesh mesh (direct), on the namespace topology `tapmesh-bench` uses.
//! `tcpdump` with nanosecond timestamps runs on every interface along the path
//! while h1 pings h2 (`--pings`, 10 ms apart); per hop the median and p90 over
//! the pings are printed and written as JSON (see `integration::bench::hops`).
//! `--busy-poll-us N` runs the daemons with `busy-poll-us = N`. For the
//! tapmesh paths it also reports the daemons' CPU (utime + stime, in CPU
//! seconds per second of wall time) idle for 2 s before the pings, and
//! during the pings.
//! `TAPMESH_BIN_DIR=DIR` runs the daemons from DIR (A/B comparisons).
//! Needs root, `ip`, `bridge`, `ping` and `tcpdump`; exits 1 if a path could
//! not be measured, 130 on Ctrl-C, after removing what it made.
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use integration::bench::cpu::CpuSample;
use integration::bench::hops::{self, Breakdown, Capture, Match, PathSpec, Point};
use integration::bench::{vxlan, wait_for_path};
use integration::stop;
use integration::topology::{TAP, overlay_v4, underlay_v4};
use integration::{Topology, wait_until};
use serde_json::{Value, json};

const USAGE: &str = "usage: tapmesh-hops [--pings N] [--json PATH] [--busy-poll-us N]\n\
  --pings N          pings per path, 10 ms apart (default 200)\n\
  --json PATH        where to write the results (default target/bench/hops.json)\n\
  --busy-poll-us N   run the switch and nodes with `busy-poll-us = N`";

struct Args {
    pings: u32,
    json: PathBuf,
    busy_poll_us: Option<u32>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        pings: 200,
        json: PathBuf::from("target/bench/hops.json"),
        busy_poll_us: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--pings" => a.pings = value("--pings")?.parse().map_err(|_| "bad --pings")?,
            "--json" => a.json = value("--json")?.into(),
            "--busy-poll-us" => {
                let v = value("--busy-poll-us")?;
                a.busy_poll_us = Some(v.parse().map_err(|_| "bad --busy-poll-us")?);
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if a.pings == 0 {
        return Err("--pings must be > 0".into());
    }
    Ok(a)
}

/// The switch's underlay address (`br0` in the switch namespace).
fn switch_v4() -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::new(198, 18, 0, 3)
}

/// Kernel VXLAN: h1 brov -> h1 eth0 -> h2 eth0 -> h2 brov and back.
fn vxlan_spec(topo: &Topology) -> PathSpec<'_> {
    let (a, b) = (underlay_v4(1), underlay_v4(2));
    let cap = |i: usize, ifname, overlay| Capture {
        ns: topo.ns(i),
        ifname,
        overlay,
    };
    PathSpec {
        captures: vec![
            cap(1, "brov", true),
            cap(1, "eth0", false),
            cap(2, "eth0", false),
            cap(2, "brov", true),
        ],
        points: points(&[
            (0, Match::Request),
            (1, Match::Udp(a, b)),
            (2, Match::Udp(a, b)),
            (3, Match::Request),
            (3, Match::Reply),
            (2, Match::Udp(b, a)),
            (1, Match::Udp(b, a)),
            (0, Match::Reply),
        ]),
        hops: vec![
            "h1 kernel: VXLAN encap",
            "underlay h1 -> h2",
            "h2 kernel: VXLAN decap",
            "h2 kernel: echo reply",
            "h2 kernel: VXLAN encap",
            "underlay h2 -> h1",
            "h1 kernel: VXLAN decap",
        ],
    }
}

/// tapmesh central: h1 TAP -> node 1 -> h1 eth0 -> switch (br0) -> h2 eth0
/// -> node 2 -> h2 TAP and back.
fn central_spec(topo: &Topology) -> PathSpec<'_> {
    let (a, b, s) = (underlay_v4(1), underlay_v4(2), switch_v4());
    PathSpec {
        captures: vec![
            Capture {
                ns: topo.ns(1),
                ifname: TAP,
                overlay: true,
            },
            Capture {
                ns: topo.ns(1),
                ifname: "eth0",
                overlay: false,
            },
            Capture {
                ns: topo.switch_ns(),
                ifname: "br0",
                overlay: false,
            },
            Capture {
                ns: topo.ns(2),
                ifname: "eth0",
                overlay: false,
            },
            Capture {
                ns: topo.ns(2),
                ifname: TAP,
                overlay: true,
            },
        ],
        points: points(&[
            (0, Match::Request),
            (1, Match::Udp(a, s)),
            (2, Match::Udp(a, s)),
            (2, Match::Udp(s, b)),
            (3, Match::Udp(s, b)),
            (4, Match::Request),
            (4, Match::Reply),
            (3, Match::Udp(b, s)),
            (2, Match::Udp(b, s)),
            (2, Match::Udp(s, a)),
            (1, Match::Udp(s, a)),
            (0, Match::Reply),
        ]),
        hops: vec![
            "h1 node: TAP read -> UDP send",
            "underlay h1 -> switch",
            "switch: UDP recv -> send",
            "underlay switch -> h2",
            "h2 node: UDP recv -> TAP write",
            "h2 kernel: echo reply",
            "h2 node: TAP read -> UDP send",
            "underlay h2 -> switch",
            "switch: UDP recv -> send",
            "underlay switch -> h1",
            "h1 node: UDP recv -> TAP write",
        ],
    }
}

/// tapmesh mesh, direct path: h1 TAP -> node 1 -> h1 eth0 -> h2 eth0 ->
/// node 2 -> h2 TAP and back.
fn mesh_spec(topo: &Topology) -> PathSpec<'_> {
    let (a, b) = (underlay_v4(1), underlay_v4(2));
    let cap = |i: usize, ifname, overlay| Capture {
        ns: topo.ns(i),
        ifname,
        overlay,
    };
    PathSpec {
        captures: vec![
            cap(1, TAP, true),
            cap(1, "eth0", false),
            cap(2, "eth0", false),
            cap(2, TAP, true),
        ],
        points: points(&[
            (0, Match::Request),
            (1, Match::Udp(a, b)),
            (2, Match::Udp(a, b)),
            (3, Match::Request),
            (3, Match::Reply),
            (2, Match::Udp(b, a)),
            (1, Match::Udp(b, a)),
            (0, Match::Reply),
        ]),
        hops: vec![
            "h1 node: TAP read -> UDP send",
            "underlay h1 -> h2",
            "h2 node: UDP recv -> TAP write",
            "h2 kernel: echo reply",
            "h2 node: TAP read -> UDP send",
            "underlay h2 -> h1",
            "h1 node: UDP recv -> TAP write",
        ],
    }
}

fn points(p: &[(usize, Match)]) -> Vec<Point> {
    p.iter()
        .map(|&(capture, what)| Point { capture, what })
        .collect()
}

/// The daemons' CPU use, CPU seconds per wall second: idle, and while
/// pinging.
#[derive(Debug, Clone, Copy)]
struct DaemonCpu {
    idle: f64,
    pinging: f64,
}

/// One path's result: the breakdown, and the daemons' CPU for tapmesh.
struct Measured {
    key: String,
    breakdown: Breakdown,
    cpu: Option<DaemonCpu>,
}

fn per_sec(s: &CpuSample) -> f64 {
    let u = s.finish();
    u.process_secs / u.wall_secs.max(1e-9)
}

fn report(label: &str, b: &Breakdown) {
    println!(
        "== {label}: {} of {} pings seen at every point; ping RTT median {:.1} µs",
        b.complete, b.sent, b.rtt_median_us
    );
    println!("   {:<34} {:>12} {:>10}", "hop", "median µs", "p90 µs");
    for h in &b.hops {
        println!("   {:<34} {:>12.1} {:>10.1}", h.name, h.median_us, h.p90_us);
    }
    println!(
        "   {:<34} {:>12.1}",
        "ping: send + wakeup (not captured)", b.outside_us
    );
}

fn breakdown_json(m: &Measured) -> Value {
    let (key, b) = (&m.key, &m.breakdown);
    json!({
        "key": key,
        "daemon_cpu_per_sec_idle": m.cpu.map(|c| c.idle),
        "daemon_cpu_per_sec_pinging": m.cpu.map(|c| c.pinging),
        "pings": b.sent,
        "complete": b.complete,
        "rtt_median_us": b.rtt_median_us,
        "outside_captures_median_us": b.outside_us,
        "hops": b.hops.iter().map(|h| json!({
            "hop": h.name, "median_us": h.median_us, "p90_us": h.p90_us,
        })).collect::<Vec<_>>(),
    })
}

/// `busy-poll-us` for the switch and both nodes; `switch_extra` is the
/// switch's other extra lines (the setter replaces them).
fn configure(topo: &mut Topology, busy_poll_us: Option<u32>, switch_extra: &str) {
    if let Some(us) = busy_poll_us {
        let line = format!("busy-poll-us = {us}\n");
        topo.set_switch_config_extra(&format!("{switch_extra}{line}"));
        for i in 1..=2 {
            topo.set_node_config_extra(i, &line);
        }
    }
}

/// Measures one path; `pids` are the daemons whose CPU is counted (none
/// for kernel VXLAN).
#[allow(clippy::too_many_arguments)]
fn measure_one(
    results: &mut Vec<Measured>,
    key: &str,
    label: &str,
    spec: &PathSpec<'_>,
    topo: &Topology,
    to: IpAddr,
    args: &Args,
    dir: &Path,
    pids: &[u32],
) -> Result<(), String> {
    stop::check()?;
    let idle = (!pids.is_empty()).then(|| {
        let s = CpuSample::start(pids);
        std::thread::sleep(Duration::from_secs(2));
        per_sec(&s)
    });
    let s = CpuSample::start(pids);
    let b = hops::measure(spec, topo.ns(1), to, args.pings, dir, key)?;
    let cpu = idle.map(|idle| DaemonCpu {
        idle,
        pinging: per_sec(&s),
    });
    report(label, &b);
    if let Some(c) = cpu {
        println!(
            "   daemons' CPU (switch + 2 nodes): idle {:.3}, pinging {:.3} CPU s per s",
            c.idle, c.pinging
        );
    }
    results.push(Measured {
        key: key.to_string(),
        breakdown: b,
        cpu,
    });
    Ok(())
}

fn pids(topo: &Topology) -> [u32; 3] {
    [topo.switch_pid(), topo.node_pid(1), topo.node_pid(2)]
}

fn run(args: &Args) -> Result<Vec<Measured>, String> {
    let mut results = Vec::new();
    let mut topo = Topology::central(2);
    configure(&mut topo, args.busy_poll_us, "");
    let dir = topo.dir().to_path_buf();
    println!(
        "namespaces {}-{{sw,h1,h2}}; captures in {}",
        topo.prefix(),
        dir.display()
    );

    vxlan::add(&topo);
    let to: IpAddr = vxlan::v4(2).into();
    if !wait_until(Duration::from_secs(10), || topo.ping(1, to)) {
        return Err("kernel VXLAN: h1 cannot ping h2 over vx0".into());
    }
    let spec = vxlan_spec(&topo);
    measure_one(
        &mut results,
        "vxlan",
        "kernel VXLAN + bridge",
        &spec,
        &topo,
        to,
        args,
        &dir,
        &[],
    )?;
    vxlan::remove(&topo);

    stop::check()?;
    topo.start_all(Duration::from_secs(30));
    let to: IpAddr = overlay_v4(2).into();
    if !wait_until(Duration::from_secs(10), || topo.ping(1, to)) {
        return Err("tapmesh central: h1 cannot ping h2".into());
    }
    let spec = central_spec(&topo);
    let p = pids(&topo);
    measure_one(
        &mut results,
        "tapmesh_central",
        "tapmesh central",
        &spec,
        &topo,
        to,
        args,
        &dir,
        &p,
    )?;
    topo.assert_all_running();
    drop(topo);

    stop::check()?;
    let mut topo = Topology::mesh(2);
    configure(&mut topo, args.busy_poll_us, "mode = \"mesh\"\n");
    let dir = topo.dir().to_path_buf();
    topo.start_all(Duration::from_secs(30));
    if !wait_for_path(&topo, "direct") {
        return Err("mesh: h1's path to h2 never became direct".into());
    }
    let spec = mesh_spec(&topo);
    let p = pids(&topo);
    measure_one(
        &mut results,
        "tapmesh_mesh",
        "tapmesh mesh (direct)",
        &spec,
        &topo,
        to,
        args,
        &dir,
        &p,
    )?;
    topo.assert_all_running();
    Ok(results)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("tapmesh-hops: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = integration::bins::build_if_run_by_cargo(&["tapmesh-switch", "tapmesh-node"]) {
        eprintln!("tapmesh-hops: {e}");
        return ExitCode::from(1);
    }
    use integration::tools;
    tools::preflight(
        "tapmesh-hops",
        &[tools::IP, tools::BRIDGE, tools::PING, tools::TCPDUMP],
    );
    stop::install_handlers();
    let results = match run(&args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tapmesh-hops: {e}");
            return ExitCode::from(if stop::requested() { 130 } else { 1 });
        }
    };
    let doc = json!({
        "tool": "tapmesh-hops",
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "busy_poll_us": args.busy_poll_us,
        "paths": results.iter().map(breakdown_json).collect::<Vec<_>>(),
    });
    println!();
    integration::bench::write_json("tapmesh-hops", &args.json, &doc);
    ExitCode::SUCCESS
}
