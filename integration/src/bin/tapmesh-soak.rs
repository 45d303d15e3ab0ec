//! `tapmesh-soak [--minutes N] [--csv PATH]`: a switch and four nodes in
//! namespaces (issue #8 item 6) carrying mixed traffic for N minutes
//! (default 120): TCP transfers between rotating pairs and pings (unicast),
//! pings to the overlay's broadcast address (broadcast), and a UDP stream to
//! 239.1.2.3 joined by three hosts (multicast). Every minute it prints, and
//! appends to the CSV (default `tapmesh-soak.csv`), each daemon's RSS and
//! open fds, ping latency and loss, and what each kind of traffic achieved.
//!
//! Exits 1 on growth (a daemon's RSS grows by more than 20 % + 5 MB, or its
//! fd count grows, between minute 2 and the end) or on broken traffic (a
//! failed transfer, a minute with total ping loss, a receiver that got no
//! multicast or a minute without broadcast). Needs root; finds the binaries
//! beside itself (or in `TAPMESH_BIN_DIR`). Ctrl-C stops early and still
//! judges what was recorded.
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use integration::attack::fds_and_rss;
use integration::status::counter;
use integration::topology::overlay_v4;
use integration::{Process, Topology, stop};

const HOSTS: usize = 4;
const GROUP: Ipv4Addr = Ipv4Addr::new(239, 1, 2, 3);
const GROUP_PORT: u16 = 5000;
/// RSS may grow by this fraction plus [`RSS_SLACK_KB`] (allocator arenas,
/// pools warming up to the traffic's peak) before it counts as growth.
const RSS_GROWTH: f64 = 0.20;
const RSS_SLACK_KB: u64 = 5 * 1024;
/// Bytes per unicast TCP transfer.
const TRANSFER: u64 = 8 << 20;

struct Args {
    minutes: u64,
    csv: String,
}

fn parse_args() -> Args {
    let mut args = Args {
        minutes: 120,
        csv: "tapmesh-soak.csv".to_string(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let value = it.next();
        match (a.as_str(), value) {
            ("--minutes", Some(v)) => {
                args.minutes = v
                    .parse()
                    .unwrap_or_else(|_| usage(&format!("bad minutes {v}")))
            }
            ("--csv", Some(v)) => args.csv = v,
            _ => usage(&format!("unexpected argument {a}")),
        }
    }
    args
}

fn usage(err: &str) -> ! {
    eprintln!("tapmesh-soak: {err}\nusage: tapmesh-soak [--minutes N] [--csv PATH]");
    std::process::exit(2);
}

/// One minute's record.
#[derive(Debug, Clone)]
struct Sample {
    minute: u64,
    /// (fds, RSS kB) of the switch, then h1..h4.
    procs: Vec<(usize, u64)>,
    ping_avg_ms: f64,
    ping_max_ms: f64,
    ping_loss_pct: f64,
    transfers_ok: u64,
    transfers_failed: u64,
    /// Multicast datagrams each receiver (h2..h4) got this minute.
    mcast: Vec<u64>,
    /// Broadcast frames the switch forwarded this minute.
    broadcast: u64,
}

/// `ping -c 40 -i 0.05` from h2 to h4: (avg ms, max ms, loss %).
fn ping_latency(topo: &Topology) -> (f64, f64, f64) {
    let out = topo.ns(2).exec(
        "ping",
        &[
            "-n",
            "-q",
            "-c",
            "40",
            "-i",
            "0.05",
            "-W",
            "1",
            &overlay_v4(4).to_string(),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let loss = text
        .split(',')
        .find_map(|p| p.trim().strip_suffix("% packet loss"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(100.0);
    // rtt min/avg/max/mdev = 0.1/0.2/0.3/0.0 ms
    let rtt: Vec<f64> = text
        .lines()
        .find(|l| l.starts_with("rtt"))
        .and_then(|l| l.split('=').nth(1))
        .map(|v| {
            v.trim()
                .trim_end_matches(" ms")
                .split('/')
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    (
        rtt.get(1).copied().unwrap_or(f64::NAN),
        rtt.get(2).copied().unwrap_or(f64::NAN),
        loss,
    )
}

fn main() {
    let args = parse_args();
    use integration::tools;
    tools::preflight("tapmesh-soak", &[tools::IP, tools::PING, tools::SYSCTL]);
    stop::install_handlers();
    let mut topo = Topology::central(HOSTS);
    topo.start_all(Duration::from_secs(60));
    println!(
        "tapmesh-soak: switch + {HOSTS} nodes up ({}); {} minutes, CSV {}",
        topo.prefix(),
        args.minutes,
        args.csv
    );
    let mut csv = std::fs::File::create(&args.csv)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", args.csv));
    writeln!(
        csv,
        "minute,switch_fds,switch_rss_kb,h1_fds,h1_rss_kb,h2_fds,h2_rss_kb,h3_fds,h3_rss_kb,\
         h4_fds,h4_rss_kb,ping_avg_ms,ping_max_ms,ping_loss_pct,transfers_ok,transfers_failed,\
         mcast_h2,mcast_h3,mcast_h4,broadcast_forwarded"
    )
    .expect("CSV write");

    // Broadcast: h1 pings 198.19.0.255 and everyone answers.
    for i in 1..=HOSTS {
        topo.ns(i).exec_ok(
            "sysctl",
            &["-q", "-w", "net.ipv4.icmp_echo_ignore_broadcasts=0"],
        );
    }
    let _broadcast = Process::spawn_command(
        "ping-broadcast",
        {
            let mut c = topo.ns(1).command("ping");
            c.args(["-n", "-q", "-b", "-i", "0.2", "198.19.0.255"]);
            c
        },
        topo.dir().join("ping-broadcast.log"),
    );

    let stop = Arc::new(AtomicBool::new(false));
    let transfers_ok = Arc::new(AtomicU64::new(0));
    let transfers_failed = Arc::new(AtomicU64::new(0));
    let mcast: Vec<Arc<AtomicU64>> = (0..3).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let start = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    std::thread::scope(|s| {
        // Multicast receivers on h2..h4.
        for (k, got) in mcast.iter().enumerate() {
            let i = k + 2;
            let sock = topo.ns(i).enter(|| {
                let sock = UdpSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, GROUP_PORT)))?;
                sock.join_multicast_v4(&GROUP, &overlay_v4(i))?;
                sock.set_read_timeout(Some(Duration::from_millis(200)))?;
                Ok::<_, std::io::Error>(sock)
            });
            let sock = sock.unwrap_or_else(|e| panic!("multicast receiver in h{i}: {e}"));
            let (stop, got) = (&stop, got.clone());
            s.spawn(move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    if sock.recv(&mut buf).is_ok() {
                        got.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        // Multicast sender on h1: 20 datagrams a second.
        let sender = topo
            .ns(1)
            .enter(|| {
                let sock = UdpSocket::bind(SocketAddr::from((overlay_v4(1), 0)))?;
                socket2::SockRef::from(&sock).set_multicast_if_v4(&overlay_v4(1))?;
                sock.set_multicast_ttl_v4(1)?;
                Ok::<_, std::io::Error>(sock)
            })
            .unwrap_or_else(|e| panic!("multicast sender in h1: {e}"));
        let stop_ref = &stop;
        s.spawn(move || {
            let stop = stop_ref;
            let payload = [0x5au8; 200];
            while !stop.load(Ordering::Relaxed) {
                let _ = sender.send_to(&payload, (GROUP, GROUP_PORT));
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        // Unicast TCP between rotating pairs.
        s.spawn(|| {
            let pairs = [(1, 2), (3, 4), (2, 3), (4, 1), (1, 3), (2, 4)];
            let mut k = 0;
            while !stop.load(Ordering::Relaxed) {
                let (a, b) = pairs[k % pairs.len()];
                k += 1;
                match topo.tcp_transfer(a, b, overlay_v4(b), TRANSFER) {
                    Ok(_) => transfers_ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("tapmesh-soak: transfer h{a}->h{b} failed: {e}");
                        transfers_failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
                std::thread::sleep(Duration::from_millis(500));
            }
        });

        let mut last_bcast = counter(&topo.switch_status(), &["forwarded", "broadcast"]);
        for minute in 1..=args.minutes {
            let due = start + Duration::from_secs(60 * minute);
            while Instant::now() < due && !stop::requested() {
                std::thread::sleep(Duration::from_millis(200));
            }
            if stop::requested() {
                break;
            }
            let mut procs = vec![fds_and_rss(topo.switch_pid())];
            procs.extend((1..=HOSTS).map(|i| fds_and_rss(topo.node_pid(i))));
            let (avg, max, loss) = ping_latency(&topo);
            let bcast = counter(&topo.switch_status(), &["forwarded", "broadcast"]);
            let sample = Sample {
                minute,
                procs,
                ping_avg_ms: avg,
                ping_max_ms: max,
                ping_loss_pct: loss,
                transfers_ok: transfers_ok.swap(0, Ordering::Relaxed),
                transfers_failed: transfers_failed.swap(0, Ordering::Relaxed),
                mcast: mcast.iter().map(|m| m.swap(0, Ordering::Relaxed)).collect(),
                broadcast: bcast - last_bcast,
            };
            last_bcast = bcast;
            let procs: Vec<String> = sample
                .procs
                .iter()
                .flat_map(|(f, r)| [f.to_string(), r.to_string()])
                .collect();
            writeln!(
                csv,
                "{},{},{:.3},{:.3},{},{},{},{},{}",
                minute,
                procs.join(","),
                sample.ping_avg_ms,
                sample.ping_max_ms,
                sample.ping_loss_pct,
                sample.transfers_ok,
                sample.transfers_failed,
                sample
                    .mcast
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                sample.broadcast
            )
            .expect("CSV write");
            println!(
                "minute {minute}: (fds, RSS kB) switch {:?} nodes {:?}; ping h2->h4 avg {avg:.3} \
                 max {max:.3} ms loss {loss}%; transfers {} ok {} failed; multicast h2..h4 {:?}; \
                 broadcast forwarded {}",
                sample.procs[0],
                &sample.procs[1..],
                sample.transfers_ok,
                sample.transfers_failed,
                sample.mcast,
                sample.broadcast
            );
            // A dead daemon has no /proc entry with fds (a zombie has none).
            let dead = sample.procs.iter().any(|&(f, _)| f == 0);
            samples.push(sample);
            if dead {
                eprintln!("tapmesh-soak: a daemon died");
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
    });

    let mut problems = judge(&samples);
    for (k, &(f, _)) in samples
        .last()
        .map_or(&[][..], |s| &s.procs[..])
        .iter()
        .enumerate()
    {
        if f == 0 {
            problems.push(format!(
                "{}: exited during the soak",
                ["switch", "h1", "h2", "h3", "h4"][k]
            ));
        }
    }
    if problems.is_empty() {
        println!(
            "tapmesh-soak: PASS after {} minutes ({} samples)",
            start.elapsed().as_secs() / 60,
            samples.len()
        );
    } else {
        println!("tapmesh-soak: FAIL\n{}", problems.join("\n"));
        drop(topo);
        std::process::exit(1);
    }
}

/// What went wrong, if anything: growth between minute 2 (the first sample
/// if fewer) and the last, and broken traffic in any minute.
fn judge(samples: &[Sample]) -> Vec<String> {
    let mut problems = Vec::new();
    let (Some(base), Some(last)) = (samples.get(1).or(samples.first()), samples.last()) else {
        return vec!["no samples recorded".to_string()];
    };
    let names = ["switch", "h1", "h2", "h3", "h4"];
    for (k, name) in names.iter().enumerate() {
        let (f0, r0) = base.procs[k];
        let (f1, r1) = last.procs[k];
        if r1 as f64 > r0 as f64 * (1.0 + RSS_GROWTH) + RSS_SLACK_KB as f64 {
            problems.push(format!(
                "{name}: RSS grew {r0} -> {r1} kB (minute {} -> {})",
                base.minute, last.minute
            ));
        }
        if f1 > f0 {
            problems.push(format!(
                "{name}: fds grew {f0} -> {f1} (minute {} -> {})",
                base.minute, last.minute
            ));
        }
    }
    for s in samples {
        if s.transfers_failed > 0 {
            problems.push(format!(
                "minute {}: {} transfers failed",
                s.minute, s.transfers_failed
            ));
        }
        if s.ping_loss_pct >= 100.0 {
            problems.push(format!("minute {}: every ping lost", s.minute));
        }
        if s.mcast.contains(&0) {
            problems.push(format!(
                "minute {}: a receiver got no multicast {:?}",
                s.minute, s.mcast
            ));
        }
        if s.broadcast == 0 {
            problems.push(format!("minute {}: no broadcast forwarded", s.minute));
        }
    }
    problems
}
