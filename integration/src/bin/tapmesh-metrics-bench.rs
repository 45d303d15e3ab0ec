//! `tapmesh-metrics-bench`: what exporting metrics costs (BENCHMARKS.md,
//! "Metrics overhead"). Two measurements: TCP throughput and tapmesh CPU per
//! MB with metrics off and on (Prometheus scraping every second), alternating;
//! and the switch CPU time one scrape costs. Needs root, iperf3 and Debian's
//! `prometheus`. Numbers are printed, not asserted.
use std::path::Path;
use std::time::Duration;

use integration::bench::cpu::process_cpu_secs;
use integration::monitoring::{
    node_metrics_addr, scrape, switch_metrics_addr, topology_with_metrics,
};
use integration::prometheus::{self, Job, Prometheus};
use integration::topology::overlay_v4;
use integration::{Topology, wait_until};

const UP: Duration = Duration::from_secs(20);

/// CPU seconds process `pid` has used (all its threads).
fn cpu_secs(pid: u32) -> f64 {
    process_cpu_secs(pid).expect("the daemon is running")
}

fn main() {
    use integration::tools;
    let needs = [
        tools::IP,
        tools::PING,
        tools::IPERF3,
        tools::PROMETHEUS,
        tools::PROMTOOL,
    ];
    tools::preflight("tapmesh-metrics-bench", &needs);
    metrics_scrape_cost_benchmark();
    metrics_overhead_benchmark();
}

/// The cost of metrics: iperf3 TCP h1 → h2 through the switch, alternating
/// runs without `metrics-listen` and with it on every daemon plus a
/// Prometheus scraping them every second. Prints the figures for
/// BENCHMARKS.md ("Metrics overhead").
fn metrics_overhead_benchmark() {
    prometheus::require_installed();
    const ROUNDS: usize = 6;
    const SECS: &str = "10";
    let mut topo = Topology::central(2);
    let mut off = Vec::new();
    let mut on = Vec::new();
    for round in 0..ROUNDS * 2 {
        let metrics = round % 2 == 1;
        if metrics {
            topo.set_switch_config_extra(&format!(
                "metrics-listen = \"{}\"",
                switch_metrics_addr()
            ));
            for i in 1..=2 {
                topo.set_node_config_extra(
                    i,
                    &format!("metrics-listen = \"{}\"", node_metrics_addr(i)),
                );
            }
        } else {
            topo.set_switch_config_extra("");
            for i in 1..=2 {
                topo.set_node_config_extra(i, "");
            }
        }
        topo.start_all(UP);
        let prom = metrics.then(|| {
            Prometheus::start(
                topo.switch_ns(),
                &topo.dir().join("prometheus"),
                &[Job {
                    name: "tapmesh".into(),
                    targets: vec![
                        switch_metrics_addr(),
                        node_metrics_addr(1),
                        node_metrics_addr(2),
                    ],
                }],
            )
        });
        if let Some(p) = &prom {
            assert!(p.wait_for("count(up == 1) == 3", Duration::from_secs(30)));
        }
        let server = integration::Process::spawn(
            "iperf3-server",
            topo.ns(2),
            Path::new("iperf3"),
            &["-s", "-1", "-B", &overlay_v4(2).to_string()],
            topo.dir().join(format!("iperf3-server.{round}.log")),
        );
        let listening = format!(":{:04X}", 5201);
        assert!(wait_until(Duration::from_secs(5), || topo
            .ns(2)
            .proc_net("tcp")
            .lines()
            .any(|l| l
                .split_whitespace()
                .nth(1)
                .is_some_and(|a| a.ends_with(&listening)))));
        let pids = [topo.switch_pid(), topo.node_pid(1), topo.node_pid(2)];
        let cpu_before: f64 = pids.iter().map(|&p| cpu_secs(p)).sum();
        let out = topo.ns(1).exec_ok(
            "iperf3",
            &["-c", &overlay_v4(2).to_string(), "-t", SECS, "-J"],
        );
        let cpu_used = pids.iter().map(|&p| cpu_secs(p)).sum::<f64>() - cpu_before;
        drop(server);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("iperf3 JSON");
        let received = &v["end"]["sum_received"];
        let bps = received["bits_per_second"]
            .as_f64()
            .expect("iperf3 received rate");
        let bytes = received["bytes"].as_f64().expect("iperf3 received bytes");
        // CPU of the switch and both nodes per MB carried: steadier than
        // throughput on a shared machine.
        let cpu_ms_per_mb = cpu_used * 1000.0 / (bytes / 1e6);
        eprintln!(
            "round {round}: metrics {} {:.0} Mbit/s, tapmesh CPU {cpu_ms_per_mb:.3} ms/MB",
            if metrics { "on " } else { "off" },
            bps / 1e6
        );
        if metrics { &mut on } else { &mut off }.push((bps, cpu_ms_per_mb));
        drop(prom);
        for i in 1..=2 {
            topo.stop_node(i);
        }
        topo.stop_switch();
    }
    let median = |v: &[(f64, f64)], f: fn(&(f64, f64)) -> f64| {
        let mut x: Vec<f64> = v.iter().map(f).collect();
        x.sort_by(f64::total_cmp);
        let n = x.len();
        if n % 2 == 1 {
            x[n / 2]
        } else {
            (x[n / 2 - 1] + x[n / 2]) / 2.0
        }
    };
    let (t_off, t_on) = (median(&off, |r| r.0), median(&on, |r| r.0));
    let (c_off, c_on) = (median(&off, |r| r.1), median(&on, |r| r.1));
    eprintln!(
        "metrics off: median {:.0} Mbit/s, {c_off:.3} CPU ms/MB; runs {:?}\n\
         metrics on (1 s scrapes): median {:.0} Mbit/s, {c_on:.3} CPU ms/MB; runs {:?}\n\
         throughput {:+.2} %, CPU per MB {:+.2} %",
        t_off / 1e6,
        off.iter().map(|r| (r.0 / 1e6).round()).collect::<Vec<_>>(),
        t_on / 1e6,
        on.iter().map(|r| (r.0 / 1e6).round()).collect::<Vec<_>>(),
        (t_on - t_off) / t_off * 100.0,
        (c_on - c_off) / c_off * 100.0
    );
}

/// What one scrape costs the daemon: CPU time of the switch process (main
/// task and exporter thread together) over 500 back-to-back `/metrics`
/// requests with 3 nodes connected. Run by hand, see BENCHMARKS.md.
fn metrics_scrape_cost_benchmark() {
    const SCRAPES: u32 = 500;
    let mut topo = topology_with_metrics(3);
    topo.start_all(UP);
    let pid = topo.switch_pid();
    let before = cpu_secs(pid);
    let started = std::time::Instant::now();
    let mut bytes = 0;
    for _ in 0..SCRAPES {
        bytes = scrape(topo.switch_ns(), switch_metrics_addr()).len();
    }
    let wall = started.elapsed();
    let cpu_ms = (cpu_secs(pid) - before) * 1000.0;
    eprintln!(
        "{SCRAPES} scrapes of {bytes} bytes in {wall:?}: switch CPU {:.3} ms per scrape",
        cpu_ms / f64::from(SCRAPES)
    );
}
