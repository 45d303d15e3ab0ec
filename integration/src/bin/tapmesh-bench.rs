//! `tapmesh-bench [--quick] [--secs N] [--json PATH] [--profile DIR] [--workers N] [--paths LIST]`: issue
//! #7's side-by-side benchmark. In ONE run, on one namespace topology (a
//! switch namespace with a bridge, hosts h1 and h2 on veths), it measures:
//!
//! - **veth**: h1 -> h2 over the underlay bridge (198.18.0.12);
//! - **kernel VXLAN + bridge**: in h1 and h2 a `vx0` VXLAN device over eth0
//!   (VNI 42, MTU 1450) enslaved to a bridge `brov` holding 198.19.1.i/24;
//! - **tapmesh central**: `tapmesh-switch` in the switch namespace and a
//!   `tapmesh-node` in each host (TAP MTU 1400, 198.19.0.i/24);
//! - **tapmesh mesh**: the same with `mode = "mesh"` in switch.toml: once the
//!   nodes' direct path is up, h1 -> h2 traffic bypasses the switch;
//! - **tapmesh mesh relayed**: the same nodes with UDP between h1 and h2
//!   blocked (nft), so their frames go through the switch again.
//!
//! `--paths` measures only some of them (the VXLAN ratios need `vxlan`).
//!
//! For each: ping RTT (avg, p99 over `--pings` pings 10 ms apart), iperf3
//! TCP with 1 and 4 streams, iperf3 UDP with 64-byte payloads at unlimited
//! rate, and the CPU-seconds per GB moved during the 1-stream TCP run. Prints
//! a table with ratios to kernel VXLAN and writes JSON. Needs root, `ip`,
//! `bridge`, `ping` and `iperf3`. Exits 1 if a path could not be measured,
//! 130 on Ctrl-C, after removing everything it made either way.
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use integration::bench::cpu::CpuSample;
use integration::bench::iperf::{self, IperfResult, Load};
use integration::bench::ping::{self, PingResult};
use integration::bench::vxlan;
use integration::stop;
use integration::topology::{overlay_v4, underlay_v4};
use integration::traffic;
use integration::{Netns, Process, Topology, wait_until};
use serde_json::{Value, json};

const USAGE: &str = "usage: tapmesh-bench [--quick] [--secs N] [--pings N] [--json PATH] [--profile DIR] [--workers N] [--worker-opening MODE] [--paths LIST]\n\
  --quick        2 s per iperf3 run (CI smoke); default 10 s\n\
  --secs N       seconds per iperf3 run\n\
  --pings N      pings per path, 10 ms apart (default 200)\n\
  --json PATH    where to write the results (default target/bench/bench.json)\n\
  --profile DIR  after each tapmesh path's runs, record `perf record -e cpu-clock -g` of\n\
                 the tapmesh processes during an extra TCP run into DIR/perf-PATH.data\n\
  --profile-streams N  TCP streams of that extra run (default 1)\n\
  --workers N    `workers = N` in both nodes' configs (default: the node's default)\n\
  --worker-opening MODE  `worker-opening = MODE` (auto, always, off) in both nodes' configs\n\
  --paths LIST   measure only these, comma-separated: veth, vxlan, central, mesh, relayed\n\
                 (default all; the ratios to kernel VXLAN need vxlan)";

/// The paths `--paths` names, in the order they are measured.
const PATHS: &[&str] = &["veth", "vxlan", "central", "mesh", "relayed"];

#[derive(Debug)]
struct Args {
    secs: u32,
    pings: u32,
    json: PathBuf,
    profile: Option<PathBuf>,
    profile_streams: u32,
    quick: bool,
    workers: Option<u32>,
    /// `worker-opening = "..."` in both nodes' configs.
    worker_opening: Option<String>,
    /// Which of [`PATHS`] to measure.
    paths: Vec<&'static str>,
}

impl Args {
    fn wants(&self, path: &str) -> bool {
        self.paths.contains(&path)
    }
}

/// `--paths`' value: names from [`PATHS`], comma-separated.
fn parse_paths(list: &str) -> Result<Vec<&'static str>, String> {
    let mut paths = Vec::new();
    for name in list.split(',').map(str::trim) {
        let Some(p) = PATHS.iter().find(|p| **p == name) else {
            return Err(format!(
                "--paths: unknown path {name:?} (one of {})",
                PATHS.join(", ")
            ));
        };
        paths.push(*p);
    }
    Ok(paths)
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        secs: 10,
        pings: 200,
        json: PathBuf::from("target/bench/bench.json"),
        profile: None,
        profile_streams: 1,
        quick: false,
        workers: None,
        worker_opening: None,
        paths: PATHS.to_vec(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--quick" => {
                a.quick = true;
                a.secs = 2;
            }
            "--secs" => a.secs = value("--secs")?.parse().map_err(|_| "bad --secs")?,
            "--pings" => a.pings = value("--pings")?.parse().map_err(|_| "bad --pings")?,
            "--json" => a.json = value("--json")?.into(),
            "--profile" => a.profile = Some(value("--profile")?.into()),
            "--profile-streams" => {
                a.profile_streams = value("--profile-streams")?
                    .parse()
                    .map_err(|_| "bad --profile-streams")?
            }
            "--paths" => a.paths = parse_paths(&value("--paths")?)?,
            "--workers" => {
                a.workers = Some(value("--workers")?.parse().map_err(|_| "bad --workers")?)
            }
            "--worker-opening" => {
                let v = value("--worker-opening")?;
                if !["auto", "always", "off"].contains(&v.as_str()) {
                    return Err(format!(
                        "--worker-opening: {v:?} is not auto, always or off"
                    ));
                }
                a.worker_opening = Some(v);
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if a.secs == 0 || a.pings == 0 || a.profile_streams == 0 {
        return Err("--secs, --pings and --profile-streams must be > 0".into());
    }
    Ok(a)
}

/// What was measured on one path; each figure is its own `Result` so one
/// failed run does not hide the others.
#[derive(Debug)]
struct PathResult {
    key: &'static str,
    label: &'static str,
    detail: String,
    ping: Result<PingResult, String>,
    tcp1: Result<IperfResult, String>,
    tcp4: Result<IperfResult, String>,
    udp64: Result<IperfResult, String>,
    /// CPU-seconds per GB during the TCP 1-stream run: (tapmesh processes,
    /// whole machine). The first is `None` for kernel paths.
    cpu_per_gb: Option<(Option<f64>, f64)>,
    cpu_busy_frac: Option<f64>,
    /// UDP datagrams the kernel dropped at a receiving socket (`InErrors`:
    /// a full receive buffer, a bad checksum) during the TCP 1-stream and
    /// 4-stream runs.
    udp_in_errors: (InErrors, InErrors),
}

impl PathResult {
    fn errors(&self) -> Vec<String> {
        [
            ("ping", self.ping.as_ref().err()),
            ("tcp 1 stream", self.tcp1.as_ref().err()),
            ("tcp 4 streams", self.tcp4.as_ref().err()),
            ("udp 64 B", self.udp64.as_ref().err()),
        ]
        .into_iter()
        .filter_map(|(what, e)| e.map(|e| format!("{}: {what}: {e}", self.key)))
        .collect()
    }
}

/// Runs every measurement from `client` to `addr` in `server`. `pids` are the
/// tapmesh processes whose CPU is counted (empty for kernel paths).
#[allow(clippy::too_many_arguments)]
fn measure(
    key: &'static str,
    label: &'static str,
    detail: String,
    client: &Netns,
    server: &Netns,
    addr: IpAddr,
    pids: &[u32],
    args: &Args,
    dir: &Path,
) -> Result<PathResult, String> {
    println!("== {label}: {detail}");
    stop::check()?;
    let ping = ping::run(client, addr, args.pings, 10);
    report_ping(&ping);
    stop::check()?;
    let in_errors = || InErrors {
        client: traffic::udp_in_errors(client),
        server: traffic::udp_in_errors(server),
    };
    let before = in_errors();
    let sample = CpuSample::start(pids);
    let tcp1 = iperf::run(
        server,
        client,
        addr,
        Load::Tcp { streams: 1 },
        args.secs,
        dir,
        &format!("{key}-tcp1"),
    );
    let usage = sample.finish();
    let errors_tcp1 = in_errors().since(before);
    stop::check()?;
    let (cpu_per_gb, cpu_busy_frac) = match &tcp1 {
        Ok(r) if r.bytes > 0 => {
            let gb = r.bytes as f64 / 1e9;
            let procs = (!pids.is_empty()).then(|| usage.process_secs / gb);
            (
                Some((procs, usage.machine_busy_secs / gb)),
                Some(usage.machine_busy_frac),
            )
        }
        _ => (None, None),
    };
    report_iperf("tcp 1 stream", &tcp1);
    report_in_errors(errors_tcp1);
    if !pids.is_empty() {
        let per: Vec<String> = usage
            .per_process
            .iter()
            .map(|(p, s)| format!("pid {p}: {:.0} %", 100.0 * s / usage.wall_secs))
            .collect();
        println!(
            "   tapmesh processes during tcp 1 stream: {}",
            per.join(", ")
        );
    }
    if let Some(f) = cpu_busy_frac {
        println!("   machine busy during tcp 1 stream: {:.0} %", 100.0 * f);
    }
    let before = in_errors();
    let tcp4 = iperf::run(
        server,
        client,
        addr,
        Load::Tcp { streams: 4 },
        args.secs,
        dir,
        &format!("{key}-tcp4"),
    );
    report_iperf("tcp 4 streams", &tcp4);
    let errors_tcp4 = in_errors().since(before);
    report_in_errors(errors_tcp4);
    stop::check()?;
    let udp64 = iperf::run(
        server,
        client,
        addr,
        Load::Udp { payload: 64 },
        args.secs,
        dir,
        &format!("{key}-udp64"),
    );
    report_iperf("udp 64 B", &udp64);
    stop::check()?;
    Ok(PathResult {
        key,
        label,
        detail,
        ping,
        tcp1,
        tcp4,
        udp64,
        cpu_per_gb,
        cpu_busy_frac,
        udp_in_errors: (errors_tcp1, errors_tcp4),
    })
}

/// UDP `InErrors` of the namespace running the iperf3 client (sending the
/// data) and of the server's (receiving it).
#[derive(Debug, Clone, Copy)]
struct InErrors {
    client: u64,
    server: u64,
}

impl InErrors {
    fn since(self, before: InErrors) -> InErrors {
        InErrors {
            client: self.client.saturating_sub(before.client),
            server: self.server.saturating_sub(before.server),
        }
    }

    fn json(self) -> Value {
        json!({ "client": self.client, "server": self.server })
    }
}

fn report_in_errors(n: InErrors) {
    if n.client + n.server > 0 {
        println!(
            "   UDP datagrams dropped at a receiving socket (InErrors): {} at the sender's host, {} at the receiver's",
            n.client, n.server
        );
    }
}

fn report_ping(r: &Result<PingResult, String>) {
    match r {
        Ok(p) => println!(
            "   ping: {}/{} replies, avg {:.3} ms, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            p.received, p.sent, p.avg_ms, p.p50_ms, p.p99_ms, p.max_ms
        ),
        Err(e) => println!("   ping: FAILED: {e}"),
    }
}

fn report_iperf(what: &str, r: &Result<IperfResult, String>) {
    match r {
        Ok(r) if r.rx_pps > 0.0 || r.packets > 0 => println!(
            "   {what}: {:.0} packets/s received, {:.1} % lost ({:.3} Gbit/s)",
            r.rx_pps,
            r.lost_percent,
            r.bits_per_sec / 1e9
        ),
        Ok(r) => println!(
            "   {what}: {:.3} Gbit/s ({} retransmits)",
            r.bits_per_sec / 1e9,
            r.retransmits
        ),
        Err(e) => println!("   {what}: FAILED: {e}"),
    }
}

fn ping_once(ns: &Netns, to: IpAddr) -> bool {
    ns.exec("ping", &["-n", "-q", "-c", "1", "-W", "1", &to.to_string()])
        .status
        .success()
}

/// One extra TCP run (`--profile-streams` streams) on tapmesh path `key`
/// with `perf record` attached to the tapmesh processes, into
/// `DIR/perf-KEY.data`.
fn profile(topo: &Topology, pids: &[u32], key: &str, args: &Args) -> Result<(), String> {
    let Some(dir) = &args.profile else {
        return Ok(());
    };
    let secs = args.secs.max(8);
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let data = dir.join(format!("perf-{key}.data"));
    let pid_list: Vec<String> = pids.iter().map(u32::to_string).collect();
    let mut cmd = std::process::Command::new("perf");
    cmd.args(["record", "-e", "cpu-clock", "-F", "999", "-g", "-o"])
        .arg(&data)
        .args(["-p", &pid_list.join(",")])
        .args(["--", "sleep", &secs.saturating_sub(2).max(1).to_string()]);
    let mut perf = Process::spawn_command("perf", cmd, dir.join(format!("perf-record-{key}.log")));
    let streams = args.profile_streams;
    let r = iperf::run(
        topo.ns(2),
        topo.ns(1),
        overlay_v4(2).into(),
        Load::Tcp { streams },
        secs,
        topo.dir(),
        &format!("profile-{key}"),
    );
    // perf ends by itself when `sleep` does; the guard stops it otherwise.
    wait_until(Duration::from_secs(10), || perf.try_exit().is_some());
    drop(perf);
    report_iperf(&format!("tcp {streams} stream(s) (profiled)"), &r);
    println!(
        "   profile: perf report -i {} --no-children --sort dso,sym",
        data.display()
    );
    Ok(())
}

fn gbps(r: &Result<IperfResult, String>) -> Option<f64> {
    r.as_ref().ok().map(|r| r.bits_per_sec / 1e9)
}

fn pps(r: &Result<IperfResult, String>) -> Option<f64> {
    r.as_ref().ok().map(|r| r.rx_pps)
}

fn fmt_opt(v: Option<f64>, prec: usize) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.prec$}"))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// The figures compared across paths: (json key, table heading, getter).
type Getter = fn(&PathResult) -> Option<f64>;
const METRICS: &[(&str, &str, Getter)] = &[
    ("tcp_1_gbps", "TCP 1 Gbit/s", |p| gbps(&p.tcp1)),
    ("tcp_4_gbps", "TCP -P4 Gbit/s", |p| gbps(&p.tcp4)),
    ("udp64_rx_pps", "UDP 64B rx pps", |p| pps(&p.udp64)),
    ("udp64_loss_pct", "UDP loss %", |p| {
        p.udp64.as_ref().ok().map(|r| r.lost_percent)
    }),
    ("ping_avg_ms", "ping avg ms", |p| {
        p.ping.as_ref().ok().map(|r| r.avg_ms)
    }),
    ("ping_p99_ms", "ping p99 ms", |p| {
        p.ping.as_ref().ok().map(|r| r.p99_ms)
    }),
    ("cpu_s_per_gb_tapmesh", "CPU s/GB tapmesh", |p| {
        p.cpu_per_gb.and_then(|c| c.0)
    }),
    ("cpu_s_per_gb_machine", "CPU s/GB machine", |p| {
        p.cpu_per_gb.map(|c| c.1)
    }),
];

fn precision(key: &str) -> usize {
    match key {
        "udp64_rx_pps" => 0,
        "ping_avg_ms" | "ping_p99_ms" => 3,
        "udp64_loss_pct" => 1,
        _ => 2,
    }
}

fn print_table(paths: &[PathResult]) {
    let vxlan = paths.iter().find(|p| p.key == "vxlan");
    let mut head = format!("| {:<24} |", "path");
    let mut rule = format!("|{}|", "-".repeat(26));
    for (_, h, _) in METRICS {
        head += &format!(" {h:>16} |");
        rule += &format!("{}|", "-".repeat(18));
    }
    println!("\n{head}\n{rule}");
    for p in paths {
        let mut line = format!("| {:<24} |", p.label);
        for (k, _, get) in METRICS {
            line += &format!(" {:>16} |", fmt_opt(get(p), precision(k)));
        }
        println!("{line}");
    }
    if let Some(v) = vxlan {
        println!("\nratio to kernel VXLAN (same run):\n{head}\n{rule}");
        for p in paths {
            let mut line = format!("| {:<24} |", p.label);
            for (_, _, get) in METRICS {
                line += &format!(" {:>16} |", fmt_opt(ratio(get(p), get(v)), 2));
            }
            println!("{line}");
        }
    }
}

/// Issue #7's targets that this benchmark measures: (name, figure, target
/// text, met?).
/// How a target compares a figure: `Vxlan` divides it by kernel VXLAN's
/// (same run), `OneStream` divides `-P 4` by the same path's one stream,
/// `Absolute` takes it as it is.
#[derive(Clone, Copy)]
enum Against {
    Vxlan,
    OneStream,
    Absolute,
}

/// Issue #18's targets: (text, path, metric, compared against, limit,
/// whether the figure must be at least the limit).
const TARGETS: &[(&str, &str, &str, Against, f64, bool)] = &[
    (
        "central, TCP 1 stream >= 0.30x kernel VXLAN",
        "tapmesh_central",
        "tcp_1_gbps",
        Against::Vxlan,
        0.30,
        true,
    ),
    (
        "mesh, TCP 1 stream >= 0.5x kernel VXLAN",
        "tapmesh_mesh",
        "tcp_1_gbps",
        Against::Vxlan,
        0.5,
        true,
    ),
    (
        "central, TCP -P 4 no worse than 1 stream",
        "tapmesh_central",
        "tcp_4_gbps",
        Against::OneStream,
        1.0,
        true,
    ),
    (
        "mesh, TCP -P 4 no worse than 1 stream",
        "tapmesh_mesh",
        "tcp_4_gbps",
        Against::OneStream,
        1.0,
        true,
    ),
    (
        "central, whole-machine CPU s per GB <= 3.0",
        "tapmesh_central",
        "cpu_s_per_gb_machine",
        Against::Absolute,
        3.0,
        false,
    ),
    (
        "mesh, whole-machine CPU s per GB <= 2.2",
        "tapmesh_mesh",
        "cpu_s_per_gb_machine",
        Against::Absolute,
        2.2,
        false,
    ),
    (
        "central, 64-byte UDP rx packets/s >= 1x kernel VXLAN",
        "tapmesh_central",
        "udp64_rx_pps",
        Against::Vxlan,
        1.0,
        true,
    ),
    (
        "central, ping RTT (avg) <= 4x kernel VXLAN",
        "tapmesh_central",
        "ping_avg_ms",
        Against::Vxlan,
        4.0,
        false,
    ),
    (
        "mesh, ping RTT (avg) <= 3x kernel VXLAN",
        "tapmesh_mesh",
        "ping_avg_ms",
        Against::Vxlan,
        3.0,
        false,
    ),
];

fn targets(paths: &[PathResult]) -> Vec<Value> {
    let get = |key: &str, metric: &str| -> Option<f64> {
        let p = paths.iter().find(|p| p.key == key)?;
        let (_, _, f) = METRICS.iter().find(|(k, _, _)| *k == metric)?;
        f(p)
    };
    TARGETS
        .iter()
        .map(|&(name, path, metric, against, limit, at_least)| {
            let figure = get(path, metric);
            let value = match against {
                Against::Vxlan => ratio(figure, get("vxlan", metric)),
                Against::OneStream => ratio(figure, get(path, "tcp_1_gbps")),
                Against::Absolute => figure,
            };
            let met = value.map(|x| if at_least { x >= limit } else { x <= limit });
            json!({
                "target": name,
                "tapmesh": figure,
                "vxlan": get("vxlan", metric),
                "ratio": value,
                "met": met,
            })
        })
        .collect()
}

fn result_json(r: &Result<IperfResult, String>) -> Value {
    match r {
        Ok(r) => json!({
            "bits_per_second": r.bits_per_sec,
            "bytes": r.bytes,
            "seconds": r.seconds,
            "retransmits": r.retransmits,
            "rx_pps": r.rx_pps,
            "packets": r.packets,
            "lost_percent": r.lost_percent,
        }),
        Err(e) => json!({ "error": e }),
    }
}

fn path_json(p: &PathResult, vxlan: Option<&PathResult>) -> Value {
    let mut metrics = serde_json::Map::new();
    let mut ratios = serde_json::Map::new();
    for (k, _, get) in METRICS {
        metrics.insert((*k).into(), json!(get(p)));
        ratios.insert((*k).into(), json!(ratio(get(p), vxlan.and_then(get))));
    }
    json!({
        "key": p.key,
        "label": p.label,
        "setup": p.detail,
        "metrics": metrics,
        "ratio_to_vxlan": ratios,
        "tcp_1": result_json(&p.tcp1),
        "tcp_4": result_json(&p.tcp4),
        "udp_64": result_json(&p.udp64),
        "ping": match &p.ping {
            Ok(r) => json!({"sent": r.sent, "received": r.received, "avg_ms": r.avg_ms,
                "p50_ms": r.p50_ms, "p99_ms": r.p99_ms, "max_ms": r.max_ms}),
            Err(e) => json!({"error": e}),
        },
        "machine_busy_fraction_tcp_1": p.cpu_busy_frac,
        "udp_in_errors_tcp_1": p.udp_in_errors.0.json(),
        "udp_in_errors_tcp_4": p.udp_in_errors.1.json(),
        "errors": p.errors(),
    })
}

/// `date -u`, nproc, CPU model and kernel, for the record.
fn machine_json() -> Value {
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("")
        .trim()
        .to_string();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    json!({
        "date_utc": date,
        "nproc": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "cpu_model": model,
        "kernel": kernel,
    })
}

/// `workers = N` and `worker-opening = "..."` in both nodes' configs, as
/// `--workers` and `--worker-opening` say.
fn set_workers(topo: &mut Topology, args: &Args) {
    let mut extra = Vec::new();
    if let Some(w) = args.workers {
        extra.push(format!("workers = {w}"));
    }
    if let Some(o) = &args.worker_opening {
        extra.push(format!("worker-opening = \"{o}\""));
    }
    if !extra.is_empty() {
        for i in 1..=2 {
            topo.set_node_config_extra(i, &extra.join("\n"));
        }
    }
}

fn run(args: &Args) -> Result<Vec<PathResult>, String> {
    let mut paths = Vec::new();
    if args.wants("veth") || args.wants("vxlan") || args.wants("central") {
        run_central(args, &mut paths)?;
    }
    if args.wants("mesh") || args.wants("relayed") {
        run_mesh(args, &mut paths)?;
    }
    Ok(paths)
}

/// The underlay, kernel VXLAN and tapmesh central paths, as selected, on
/// one central topology.
fn run_central(args: &Args, paths: &mut Vec<PathResult>) -> Result<(), String> {
    let mut topo = Topology::central(2);
    let dir = topo.dir().to_path_buf();
    println!(
        "namespaces {}-{{sw,h1,h2}}; logs in {}",
        topo.prefix(),
        dir.display()
    );

    // (a) plain veth: h1 -> h2 across the switch namespace's bridge.
    let to: IpAddr = underlay_v4(2).into();
    if !wait_until(Duration::from_secs(5), || ping_once(topo.ns(1), to)) {
        return Err("underlay: h1 cannot ping h2".into());
    }
    if args.wants("veth") {
        paths.push(measure(
            "veth",
            "veth (underlay)",
            format!("h1 eth0 -> {to} over br0, MTU 1500"),
            topo.ns(1),
            topo.ns(2),
            to,
            &[],
            args,
            &dir,
        )?);
    }

    // (b) kernel VXLAN + bridge.
    if args.wants("vxlan") {
        vxlan::add(&topo);
        let to: IpAddr = vxlan::v4(2).into();
        if !wait_until(Duration::from_secs(10), || ping_once(topo.ns(1), to)) {
            return Err("kernel VXLAN: h1 cannot ping h2 over vx0".into());
        }
        paths.push(measure(
            "vxlan",
            "kernel VXLAN + bridge",
            format!("h1 brov -> {to}, vx0 VNI 42 over eth0, MTU 1450, unencrypted"),
            topo.ns(1),
            topo.ns(2),
            to,
            &[],
            args,
            &dir,
        )?);
        vxlan::remove(&topo);
    }

    // (c) tapmesh central.
    if !args.wants("central") {
        return Ok(());
    }
    stop::check()?;
    println!("starting tapmesh-switch and 2 tapmesh-node processes ...");
    set_workers(&mut topo, args);
    topo.start_all(Duration::from_secs(30));
    let to: IpAddr = overlay_v4(2).into();
    let pids = [topo.switch_pid(), topo.node_pid(1), topo.node_pid(2)];
    paths.push(measure(
        "tapmesh_central",
        "tapmesh central",
        format!(
            "h1 tapmesh0 -> {to} via tapmesh-switch (pid {}), nodes pid {} and {}, TAP MTU 1400",
            pids[0], pids[1], pids[2]
        ),
        topo.ns(1),
        topo.ns(2),
        to,
        &pids,
        args,
        &dir,
    )?);
    topo.assert_all_running();
    profile(&topo, &pids, "central", args)?;
    println!("tearing down {} ...", topo.prefix());
    Ok(())
}

/// The tapmesh mesh paths, direct and relayed, as selected, on one mesh
/// topology.
fn run_mesh(args: &Args, paths: &mut Vec<PathResult>) -> Result<(), String> {
    // (d) tapmesh mesh: direct node-to-node sessions.
    stop::check()?;
    let mut topo = Topology::mesh(2);
    set_workers(&mut topo, args);
    let dir = topo.dir().to_path_buf();
    println!(
        "starting a mesh-mode switch and 2 nodes in {}-{{sw,h1,h2}} ...",
        topo.prefix()
    );
    topo.start_all(Duration::from_secs(30));
    if !integration::bench::wait_for_path(&topo, "direct") {
        return Err("mesh: h1's path to h2 never became direct".into());
    }
    let to: IpAddr = overlay_v4(2).into();
    let pids = [topo.switch_pid(), topo.node_pid(1), topo.node_pid(2)];
    if args.wants("mesh") {
        paths.push(measure(
            "tapmesh_mesh",
            "tapmesh mesh",
            format!(
                "h1 tapmesh0 -> {to} direct (switch pid {} coordinates), nodes pid {} and {}, TAP MTU 1400",
                pids[0], pids[1], pids[2]
            ),
            topo.ns(1),
            topo.ns(2),
            to,
            &pids,
            args,
            &dir,
        )?);
        profile(&topo, &pids, "mesh", args)?;
    }
    // (e) tapmesh mesh, relayed: the same nodes with UDP between h1 and
    // h2 blocked, so their frames go through the switch.
    if args.wants("relayed") {
        stop::check()?;
        topo.ns(1).block_udp_with(underlay_v4(2));
        if !integration::bench::wait_for_path(&topo, "relayed") {
            return Err("mesh: h1's path to h2 never fell back to the relay".into());
        }
        paths.push(measure(
            "tapmesh_mesh_relayed",
            "tapmesh mesh relayed",
            format!(
                "h1 tapmesh0 -> {to} relayed by the switch (pid {}; UDP h1<->h2 blocked by nft), nodes pid {} and {}, TAP MTU 1400",
                pids[0], pids[1], pids[2]
            ),
            topo.ns(1),
            topo.ns(2),
            to,
            &pids,
            args,
            &dir,
        )?);
        profile(&topo, &pids, "relayed", args)?;
        topo.ns(1).unblock_udp();
    }
    topo.assert_all_running();
    println!("tearing down {} ...", topo.prefix());
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("tapmesh-bench: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = integration::bins::build_if_run_by_cargo(&["tapmesh-switch", "tapmesh-node"]) {
        eprintln!("tapmesh-bench: {e}");
        return ExitCode::from(1);
    }
    use integration::tools;
    tools::preflight(
        "tapmesh-bench",
        &[tools::IP, tools::BRIDGE, tools::PING, tools::IPERF3],
    );
    stop::install_handlers();
    let machine = machine_json();
    println!(
        "tapmesh-bench: {} s per iperf3 run, {} pings; machine {}",
        args.secs, args.pings, machine
    );
    let paths = match run(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("tapmesh-bench: {e}");
            return ExitCode::from(if stop::requested() { 130 } else { 1 });
        }
    };
    print_table(&paths);
    let targets = targets(&paths);
    println!("\nissue #18 targets (this run; CPU s per GB as measured, the rest as ratios):");
    for t in &targets {
        let met = match t["met"].as_bool() {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "n/a",
        };
        println!(
            "  {:<60} {:>6}  {met}",
            t["target"].as_str().unwrap_or(""),
            fmt_opt(t["ratio"].as_f64(), 2)
        );
    }
    let vxlan = paths.iter().find(|p| p.key == "vxlan");
    let path_values: Vec<Value> = paths.iter().map(|p| path_json(p, vxlan)).collect();
    let doc = json!({
        "tool": "tapmesh-bench",
        "machine": machine,
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "iperf3_seconds": args.secs,
        "pings": args.pings,
        "workers": args.workers,
        "worker_opening": args.worker_opening,
        "paths": path_values,
        "targets": targets,
    });
    println!();
    integration::bench::write_json("tapmesh-bench", &args.json, &doc);
    let errors: Vec<String> = paths.iter().flat_map(PathResult::errors).collect();
    let tapmesh_moved = paths
        .iter()
        .find(|p| p.key == "tapmesh_central")
        .and_then(|p| p.tcp1.as_ref().ok())
        .is_some_and(|r| r.bytes > 0);
    if !errors.is_empty() || (args.wants("central") && !tapmesh_moved) {
        eprintln!("tapmesh-bench: some measurements failed:");
        for e in &errors {
            eprintln!("  {e}");
        }
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
