//! `ping` with per-packet round-trip times: `ping -n -c COUNT -i INTERVAL`,
//! each reply line's `time=` parsed, then average and p99 computed here
//! (ping's own summary has no percentiles).
use std::net::IpAddr;

use crate::Netns;

/// Round-trip times of one ping run, in milliseconds.
#[derive(Debug, Clone, Default)]
pub struct PingResult {
    /// Echo requests sent.
    pub sent: u32,
    /// Replies received.
    pub received: u32,
    /// Mean RTT.
    pub avg_ms: f64,
    /// 50th percentile.
    pub p50_ms: f64,
    /// 99th percentile (nearest rank).
    pub p99_ms: f64,
    /// Largest RTT.
    pub max_ms: f64,
}

/// Pings `to` from `ns` `count` times, `interval_ms` apart (below 200 ms
/// needs root). Fails if no reply came back.
pub fn run(ns: &Netns, to: IpAddr, count: u32, interval_ms: u32) -> Result<PingResult, String> {
    let interval = format!("{}", f64::from(interval_ms) / 1000.0);
    let deadline = (count * interval_ms / 1000 + 20).to_string();
    let to_s = to.to_string();
    let out = ns.exec(
        "ping",
        &[
            "-n",
            "-c",
            &count.to_string(),
            "-i",
            &interval,
            "-w",
            &deadline,
            &to_s,
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut times = parse_times(&text);
    if times.is_empty() {
        return Err(format!(
            "ping {to_s}: no replies ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    times.sort_by(f64::total_cmp);
    let avg = times.iter().sum::<f64>() / times.len() as f64;
    Ok(PingResult {
        sent: count,
        received: times.len() as u32,
        avg_ms: avg,
        p50_ms: super::percentile(&times, 50.0).unwrap_or(0.0),
        p99_ms: super::percentile(&times, 99.0).unwrap_or(0.0),
        max_ms: *times.last().unwrap_or(&0.0),
    })
}

/// The `time=X ms` values of ping's reply lines.
pub fn parse_times(text: &str) -> Vec<f64> {
    text.lines()
        .filter_map(|l| {
            let t = l.split("time=").nth(1)?;
            t.split_whitespace().next()?.parse().ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_reply_lines_only() {
        let text = "PING 198.19.0.2 (198.19.0.2) 56(84) bytes of data.\n\
                    64 bytes from 198.19.0.2: icmp_seq=1 ttl=64 time=0.215 ms\n\
                    64 bytes from 198.19.0.2: icmp_seq=2 ttl=64 time=1.05 ms\n\n\
                    --- 198.19.0.2 ping statistics ---\n\
                    rtt min/avg/max/mdev = 0.215/0.632/1.050/0.417 ms\n";
        assert_eq!(parse_times(text), vec![0.215, 1.05]);
    }
}
