//! Measurement helpers for the two benchmark binaries, `tapmesh-bench`
//! (veth, kernel VXLAN and tapmesh side by side, with iperf3 and ping) and
//! `tapmesh-loadgen` (one switch process against many simulated nodes).
//!
//! Why here and not in the binaries: both need the same CPU accounting from
//! `/proc`, the same Ctrl-C handling ([`crate::stop`]) and the same child-process discipline
//! (every child started by PID in its own process group, stopped by PID).
//! Numbers are printed, never asserted: the binaries exit non-zero only when a
//! topology did not come up or nothing was measured.
//!
//! # Layout
//! - [`cpu`]: per-process and whole-machine CPU time, resident memory.
//! - [`iperf`]: `iperf3` server and client runs, their JSON parsed.
//! - [`ping`]: `ping` runs with per-packet times, average and p99.
//! - [`hops`]: where a ping's round trip spends its time, per hop (tcpdump).
//! - [`histogram`]: a fixed-size latency histogram (1 µs buckets).
//! - [`udp_batch`]: `sendmmsg` / `recvmmsg` on a connected UDP socket.
//! - [`vxlan`]: the kernel VXLAN overlay the benchmarks compare with.

pub mod cpu;
pub mod histogram;
pub mod hops;
pub mod iperf;
pub mod ping;
pub mod udp_batch;
pub mod vxlan;

/// Pings h1 -> h2 until h1's status shows its mesh path to h2 as `want`
/// ("direct" or "relayed"); false after 15 s.
pub fn wait_for_path(topo: &crate::Topology, want: &str) -> bool {
    crate::wait_until(std::time::Duration::from_secs(15), || {
        topo.ping(1, crate::topology::overlay_v4(2));
        topo.node_status(1)["peers"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["path"] == want))
    })
}

/// The `p`-th percentile (0..=100) of `sorted` by nearest rank.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Writes a benchmark's JSON document `doc` to `path` (making its directory)
/// and says so on stdout, or why not on stderr as `tool: ...`. A failed
/// write does not end the run: the figures were printed already.
pub fn write_json(tool: &str, path: &std::path::Path, doc: &serde_json::Value) {
    if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    match std::fs::write(
        path,
        serde_json::to_string_pretty(doc).unwrap_or_default() + "\n",
    ) {
        Ok(()) => println!("wrote {}", path.display()),
        Err(e) => eprintln!("{tool}: cannot write {}: {e}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentile() {
        let v: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(percentile(&v, 99.0), Some(198.0));
        assert_eq!(percentile(&v, 50.0), Some(100.0));
        assert_eq!(percentile(&v, 100.0), Some(200.0));
        assert_eq!(percentile(&[], 99.0), None);
    }
}
