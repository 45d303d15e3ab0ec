//! Where a ping's round trip spends its time, hop by hop: `tcpdump` with
//! nanosecond timestamps on every interface along the path (the TAP or
//! overlay bridge in each host, each host's underlay veth, the switch's
//! bridge), pings 10 ms apart, and for each ping the time of its frame at
//! each point. A hop is the time between two consecutive points: a daemon's
//! wakeup and work (TAP read to UDP send, UDP receive to TAP write), the
//! underlay between two namespaces, the far kernel's echo reply. What the
//! captures cannot see (ping's own send and wakeup) is the ping's RTT minus
//! the span from the first point to the last.
//!
//! All namespaces share one kernel clock, so timestamps from different
//! captures compare directly. The captures are software timestamps taken
//! where the kernel hands a frame to the packet sockets (transmit: as the
//! device queues it; receive: as the stack takes it), so a daemon's hop
//! includes the kernel's TAP or socket wakeup of that daemon.
//!
//! Ping `i`'s frames are found by its ICMP sequence number on the overlay
//! points, and on the underlay as the first datagram between the right two
//! addresses after the previous point (captured with `greater 120`, which
//! leaves out keepalives and handshakes; pings are 10 ms apart, so nothing
//! else of that size is in flight).
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use crate::{Netns, Process, wait_until};

/// What one point of the path matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// The ICMP echo request with the ping's sequence number.
    Request,
    /// The ICMP echo reply with the ping's sequence number.
    Reply,
    /// The next UDP datagram from `src` to `dst` (port ignored).
    Udp(Ipv4Addr, Ipv4Addr),
}

/// One interface to capture on.
#[derive(Debug, Clone)]
pub struct Capture<'a> {
    /// The namespace it lives in.
    pub ns: &'a Netns,
    /// The interface.
    pub ifname: &'static str,
    /// The overlay (ICMP) or the underlay (large UDP datagrams).
    pub overlay: bool,
}

/// A point of the round trip: capture `capture` sees the frame `what`.
#[derive(Debug, Clone, Copy)]
pub struct Point {
    /// Index into the captures.
    pub capture: usize,
    /// Which frame.
    pub what: Match,
}

/// The path a ping takes: where to capture, the points in order, and a name
/// for each hop between consecutive points (`hops.len() == points.len() - 1`).
#[derive(Debug, Clone)]
pub struct PathSpec<'a> {
    /// The interfaces to capture on.
    pub captures: Vec<Capture<'a>>,
    /// The points, from the echo request leaving the pinging host to the
    /// reply arriving there.
    pub points: Vec<Point>,
    /// What each hop is.
    pub hops: Vec<&'static str>,
}

/// One frame seen by a capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// Kernel timestamp, nanoseconds since the epoch.
    pub t_ns: i64,
    /// Source and destination address.
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// For ICMP echo: (is a request, sequence number).
    pub echo: Option<(bool, u16)>,
}

/// Per hop: its name and the median and 90th percentile in microseconds.
#[derive(Debug, Clone)]
pub struct HopTimes {
    /// What the hop is.
    pub name: &'static str,
    /// Median over the pings, µs.
    pub median_us: f64,
    /// 90th percentile (nearest rank), µs.
    pub p90_us: f64,
}

/// The breakdown of one path.
#[derive(Debug, Clone)]
pub struct Breakdown {
    /// Pings whose every point was found.
    pub complete: usize,
    /// Pings sent.
    pub sent: usize,
    /// Each hop, in order.
    pub hops: Vec<HopTimes>,
    /// Median ping RTT as ping reported it, µs.
    pub rtt_median_us: f64,
    /// Median of (RTT - first point to last point): ping's own send and
    /// wakeup, which no capture sees, µs.
    pub outside_us: f64,
}

/// Parses one line of `tcpdump -n -tt --time-stamp-precision=nano`; `None`
/// for lines that are not an IPv4 packet (continuations, ARP, IPv6).
pub fn parse_line(line: &str) -> Option<Seen> {
    let mut words = line.split_whitespace();
    let t = words.next()?;
    let (secs, nanos) = t.split_once('.')?;
    let t_ns = secs.parse::<i64>().ok()? * 1_000_000_000 + nanos.parse::<i64>().ok()?;
    if words.next()? != "IP" {
        return None;
    }
    let src = addr(words.next()?)?;
    if words.next()? != ">" {
        return None;
    }
    let dst = addr(words.next()?.trim_end_matches(':'))?;
    let rest = line.split_once(": ")?.1;
    let echo = if let Some(r) = rest.strip_prefix("ICMP echo ") {
        let request = r.starts_with("request");
        let seq = r.split(", ").find_map(|f| f.strip_prefix("seq "))?;
        Some((request, seq.parse().ok()?))
    } else {
        None
    };
    Some(Seen {
        t_ns,
        src,
        dst,
        echo,
    })
}

/// `198.18.0.3` or `198.18.0.3.7777` (tcpdump's address.port).
fn addr(word: &str) -> Option<Ipv4Addr> {
    word.parse().ok().or_else(|| {
        let (a, _port) = word.rsplit_once('.')?;
        a.parse().ok()
    })
}

/// Per ICMP sequence number, ping's RTT in µs, from `ping -n` output.
pub fn parse_ping(text: &str) -> Vec<(u16, f64)> {
    text.lines()
        .filter_map(|l| {
            let seq = l
                .split_whitespace()
                .find_map(|w| w.strip_prefix("icmp_seq="))?;
            let ms = l.split_whitespace().find_map(|w| w.strip_prefix("time="))?;
            Some((seq.parse().ok()?, ms.parse::<f64>().ok()? * 1000.0))
        })
        .collect()
}

/// The time of each point for ping `seq`, or `None` if one is missing.
/// `seen[c]` is capture `c`'s frames in time order.
pub fn trace(points: &[Point], seen: &[Vec<Seen>], seq: u16) -> Option<Vec<i64>> {
    /// A frame further than this from the first point belongs to another ping.
    const WINDOW_NS: i64 = 50_000_000;
    let mut times: Vec<i64> = Vec::with_capacity(points.len());
    for p in points {
        let after = times.last().copied().unwrap_or(i64::MIN);
        let limit = times.first().map_or(i64::MAX, |t0| t0 + WINDOW_NS);
        let s = seen[p.capture].iter().find(|s| {
            s.t_ns >= after
                && s.t_ns <= limit
                && match p.what {
                    Match::Request => s.echo == Some((true, seq)),
                    Match::Reply => s.echo == Some((false, seq)),
                    Match::Udp(src, dst) => s.echo.is_none() && s.src == src && s.dst == dst,
                }
        })?;
        times.push(s.t_ns);
    }
    Some(times)
}

/// Hop times and the part outside the captures, from the traced pings and
/// ping's own RTTs.
pub fn breakdown(
    spec_hops: &[&'static str],
    traces: &[(u16, Vec<i64>)],
    rtts: &[(u16, f64)],
    sent: usize,
) -> Breakdown {
    let mut per_hop: Vec<Vec<f64>> = vec![Vec::new(); spec_hops.len()];
    let mut outside = Vec::new();
    for (seq, t) in traces {
        for (h, w) in t.windows(2).enumerate() {
            per_hop[h].push((w[1] - w[0]) as f64 / 1000.0);
        }
        if let (Some((_, rtt)), Some(first), Some(last)) =
            (rtts.iter().find(|(s, _)| s == seq), t.first(), t.last())
        {
            outside.push(rtt - (last - first) as f64 / 1000.0);
        }
    }
    let mut all_rtts: Vec<f64> = rtts.iter().map(|(_, r)| *r).collect();
    let hops = spec_hops
        .iter()
        .zip(per_hop)
        .map(|(name, mut v)| HopTimes {
            name,
            median_us: median(&mut v),
            p90_us: {
                v.sort_by(f64::total_cmp);
                super::percentile(&v, 90.0).unwrap_or(0.0)
            },
        })
        .collect();
    Breakdown {
        complete: traces.len(),
        sent,
        hops,
        rtt_median_us: median(&mut all_rtts),
        outside_us: median(&mut outside),
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    super::percentile(v, 50.0).unwrap_or(0.0)
}

/// Captures on every interface of `spec`, pings `to` from `from` `count`
/// times 10 ms apart, and breaks the round trips down. `dir` holds the
/// capture files.
pub fn measure(
    spec: &PathSpec<'_>,
    from: &Netns,
    to: IpAddr,
    count: u32,
    dir: &Path,
    key: &str,
) -> Result<Breakdown, String> {
    let mut dumps = Vec::new();
    let mut files = Vec::new();
    for (i, c) in spec.captures.iter().enumerate() {
        let file = dir.join(format!("hops-{key}-{i}-{}.txt", c.ifname));
        let _ = std::fs::remove_file(&file);
        let filter = if c.overlay {
            "icmp"
        } else {
            "udp and greater 120"
        };
        let mut cmd = c.ns.command("tcpdump");
        cmd.args(["-n", "-l", "-tt", "--time-stamp-precision=nano", "-i"])
            .arg(c.ifname)
            .arg(filter);
        dumps.push(Process::spawn_command("tcpdump", cmd, &file));
        files.push(file);
    }
    let listening = wait_until(Duration::from_secs(10), || {
        files
            .iter()
            .all(|f| std::fs::read_to_string(f).is_ok_and(|t| t.contains("listening on")))
    });
    if !listening {
        return Err(format!("{key}: tcpdump did not start on every interface"));
    }
    let deadline = (count / 100 + 20).to_string();
    let out = from.exec(
        "ping",
        &[
            "-n",
            "-c",
            &count.to_string(),
            "-i",
            "0.01",
            "-w",
            &deadline,
            &to.to_string(),
        ],
    );
    // Frames still in the captures' buffers are written out on exit.
    std::thread::sleep(Duration::from_millis(200));
    drop(dumps);
    let rtts = parse_ping(&String::from_utf8_lossy(&out.stdout));
    if rtts.is_empty() {
        return Err(format!("{key}: ping {to}: no replies"));
    }
    let seen: Vec<Vec<Seen>> = files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            let mut v: Vec<Seen> = text.lines().filter_map(parse_line).collect();
            v.sort_by_key(|s| s.t_ns);
            v
        })
        .collect();
    let traces: Vec<(u16, Vec<i64>)> = rtts
        .iter()
        .filter_map(|&(seq, _)| trace(&spec.points, &seen, seq).map(|t| (seq, t)))
        .collect();
    if traces.is_empty() {
        return Err(format!(
            "{key}: no ping was seen at every point (captures in {})",
            dir.display()
        ));
    }
    Ok(breakdown(&spec.hops, &traces, &rtts, count as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_icmp_and_udp_lines() {
        let icmp = "1765012345.000123456 IP 198.19.0.1 > 198.19.0.2: ICMP echo request, id 77, seq 12, length 64";
        let s = parse_line(icmp).expect("an ICMP line");
        assert_eq!(s.t_ns, 1_765_012_345_000_123_456);
        assert_eq!(s.src, Ipv4Addr::new(198, 19, 0, 1));
        assert_eq!(s.dst, Ipv4Addr::new(198, 19, 0, 2));
        assert_eq!(s.echo, Some((true, 12)));
        let reply = "1765012345.000200000 IP 198.19.0.2 > 198.19.0.1: ICMP echo reply, id 77, seq 12, length 64";
        assert_eq!(parse_line(reply).and_then(|s| s.echo), Some((false, 12)));
        let udp = "1765012345.000123999 IP 198.18.0.11.40000 > 198.18.0.3.7777: UDP, length 134";
        let s = parse_line(udp).expect("a UDP line");
        assert_eq!(s.src, Ipv4Addr::new(198, 18, 0, 11));
        assert_eq!(s.dst, Ipv4Addr::new(198, 18, 0, 3));
        assert_eq!(s.echo, None);
        assert_eq!(parse_line("listening on eth0, link-type EN10MB"), None);
        assert_eq!(
            parse_line("1765012345.1 ARP, Request who-has 198.19.0.2"),
            None
        );
    }

    #[test]
    fn traces_one_ping_through_its_points_and_breaks_it_down() {
        let (a, b) = (Ipv4Addr::new(198, 18, 0, 11), Ipv4Addr::new(198, 18, 0, 12));
        let (oa, ob) = (Ipv4Addr::new(198, 19, 0, 1), Ipv4Addr::new(198, 19, 0, 2));
        let icmp = |t, request, seq| Seen {
            t_ns: t,
            src: oa,
            dst: ob,
            echo: Some((request, seq)),
        };
        let udp = |t, src, dst| Seen {
            t_ns: t,
            src,
            dst,
            echo: None,
        };
        // Capture 0: host A's overlay; 1: the underlay. Ping 1 at 0, ping 2
        // at 10 ms; an older datagram of ping 1 must not be taken for ping 2's.
        let seen = vec![
            vec![
                icmp(0, true, 1),
                icmp(100_000, false, 1),
                icmp(10_000_000, true, 2),
                icmp(10_090_000, false, 2),
            ],
            vec![
                udp(20_000, a, b),
                udp(80_000, b, a),
                udp(10_030_000, a, b),
                udp(10_070_000, b, a),
            ],
        ];
        let points = [
            Point {
                capture: 0,
                what: Match::Request,
            },
            Point {
                capture: 1,
                what: Match::Udp(a, b),
            },
            Point {
                capture: 1,
                what: Match::Udp(b, a),
            },
            Point {
                capture: 0,
                what: Match::Reply,
            },
        ];
        assert_eq!(
            trace(&points, &seen, 1),
            Some(vec![0, 20_000, 80_000, 100_000])
        );
        assert_eq!(
            trace(&points, &seen, 2),
            Some(vec![10_000_000, 10_030_000, 10_070_000, 10_090_000])
        );
        assert_eq!(trace(&points, &seen, 3), None, "ping 3 was never seen");
        let traces = vec![
            (1, trace(&points, &seen, 1).unwrap()),
            (2, trace(&points, &seen, 2).unwrap()),
        ];
        let b = breakdown(
            &["out", "far", "back"],
            &traces,
            &[(1, 130.0), (2, 100.0)],
            2,
        );
        assert_eq!(b.complete, 2);
        // Hop 1: 20 and 30 µs; nearest-rank median of two is the lower.
        assert_eq!(b.hops[0].median_us, 20.0);
        assert_eq!(b.hops[0].p90_us, 30.0);
        assert_eq!(b.hops[1].median_us, 40.0);
        // Outside the captures: 130 - 100 and 100 - 90 µs.
        assert_eq!(b.outside_us, 10.0);
        assert_eq!(b.rtt_median_us, 100.0);
    }

    #[test]
    fn reads_ping_times_by_sequence() {
        let out = "64 bytes from 198.19.0.2: icmp_seq=1 ttl=64 time=0.412 ms\n\
                   64 bytes from 198.19.0.2: icmp_seq=2 ttl=64 time=0.38 ms\n";
        let r = parse_ping(out);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].0, 1);
        assert!((r[0].1 - 412.0).abs() < 1e-6);
    }
}
