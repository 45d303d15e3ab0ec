//! What the hardening tests throw at the switch and the nodes: paced UDP
//! floods (also held on a switch while a test acts under the load),
//! handshake initiations an outsider can make, and the tapmesh datagrams
//! found in a capture (for replaying them).
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use overlay_proto::handshake::{Timestamp, initiate};
use overlay_proto::keys::{Psk, PublicKey, StaticSecret};
use overlay_proto::wire::HS_INIT_LEN;

use crate::traffic::Rng;
use crate::{Frame, Netns, Topology, wait_until};

/// What a flood achieved.
#[derive(Debug, Clone, Copy)]
pub struct FloodReport {
    /// Datagrams the kernel accepted for sending.
    pub sent: u64,
    /// How long the flood ran.
    pub elapsed: Duration,
}

impl FloodReport {
    /// Datagrams per second achieved.
    pub fn rate(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64()
    }
}

/// Sends `datagrams` round-robin from a UDP socket made in `from` to
/// `target`, paced at `rate` per second, until `stop` returns true (checked
/// every few hundred datagrams).
///
/// The calling thread runs at nice 19: on a small test machine the attacker
/// shares the CPUs with the system under test, which a real attacker on
/// another machine does not; the achieved rate is reported, so a machine too
/// small to reach `rate` shows.
pub fn paced_flood(
    from: &Netns,
    target: SocketAddr,
    datagrams: &[Vec<u8>],
    rate: u64,
    stop: impl Fn() -> bool,
) -> FloodReport {
    let bind: SocketAddr = if target.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let sock = from
        .enter(|| UdpSocket::bind(bind))
        .unwrap_or_else(|e| panic!("UDP bind in {}: {e}", from.name()));
    let fd = std::os::fd::AsRawFd::as_raw_fd(&sock);
    paced_send(fd, &socket2::SockAddr::from(target), datagrams, rate, stop)
}

/// A raw IPv4 socket (`IPPROTO_RAW`) made in a namespace: it sends packets
/// with any source address ([`spoofed_flood`]). Opened up front, so the
/// flooding thread borrows nothing else.
#[derive(Debug)]
pub struct RawSender(std::os::fd::OwnedFd);

impl RawSender {
    /// Opens the socket in `ns`.
    pub fn open(ns: &Netns) -> RawSender {
        use std::os::fd::FromRawFd;
        // SAFETY: a plain socket(2) call; the result is checked, then owned.
        let fd = ns.enter(|| unsafe {
            libc::socket(
                libc::AF_INET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::IPPROTO_RAW,
            )
        });
        assert!(
            fd >= 0,
            "raw socket in {}: {}",
            ns.name(),
            std::io::Error::last_os_error()
        );
        // SAFETY: `fd` was just opened and nothing else owns it.
        RawSender(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
    }
}

/// Like [`paced_flood`], but each datagram leaves with its own forged source
/// address: `sources[i % sources.len()]` (port 9) carries
/// `datagrams[i % datagrams.len()]`. Replies to the forged sources go
/// wherever the target's routes send them (a test routes them back to the
/// flooder's namespace, which drops them).
pub fn spoofed_flood(
    sock: &RawSender,
    target: SocketAddrV4,
    sources: &[Ipv4Addr],
    datagrams: &[Vec<u8>],
    rate: u64,
    stop: impl Fn() -> bool,
) -> FloodReport {
    let n = sources.len().max(datagrams.len());
    let packets: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let src = SocketAddrV4::new(sources[i % sources.len()], 9);
            ipv4_udp(src, target, &datagrams[i % datagrams.len()])
        })
        .collect();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&sock.0);
    let dst = socket2::SockAddr::from(SocketAddr::V4(target));
    paced_send(fd, &dst, &packets, rate, stop)
}

/// What [`flood_switch_under_load`] saw.
#[derive(Debug)]
pub struct SwitchFlood<T> {
    /// The flood's report, once it stopped.
    pub report: FloodReport,
    /// Whether the switch's status said `handshake_guard.under_load` within
    /// 5 s of the flood starting.
    pub under_load: bool,
    /// What the caller's `during` returned.
    pub during: T,
}

/// Floods the switch of `topo` in the background ([`spoofed_flood`] of
/// `datagrams` from `sources` through `sock`, at `rate` per second), waits
/// up to 5 s for its status to report `handshake_guard.under_load`, then
/// runs `during` with the topology and whether it did. The flood stops
/// when `during` returns.
pub fn flood_switch_under_load<T>(
    topo: &mut Topology,
    sock: &RawSender,
    target: SocketAddrV4,
    sources: &[Ipv4Addr],
    datagrams: &[Vec<u8>],
    rate: u64,
    during: impl FnOnce(&mut Topology, bool) -> T,
) -> SwitchFlood<T> {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let flood = s.spawn(|| {
            spoofed_flood(sock, target, sources, datagrams, rate, || {
                stop.load(Ordering::Relaxed)
            })
        });
        let under_load = wait_until(Duration::from_secs(5), || {
            topo.try_switch_status()
                .is_ok_and(|s| s["handshake_guard"]["under_load"] == true)
        });
        let during = during(topo, under_load);
        stop.store(true, Ordering::Relaxed);
        SwitchFlood {
            report: flood.join().expect("flood thread"),
            under_load,
            during,
        }
    })
}

/// An IPv4 packet (header fields the kernel fills for `IPPROTO_RAW` left 0)
/// carrying `payload` in UDP from `src` to `dst`, without a UDP checksum
/// (optional over IPv4).
pub(crate) fn ipv4_udp(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let mut p = vec![0u8; 20 + udp_len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&((20 + udp_len) as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.ip().octets());
    p[16..20].copy_from_slice(&dst.ip().octets());
    p[20..22].copy_from_slice(&src.port().to_be_bytes());
    p[22..24].copy_from_slice(&dst.port().to_be_bytes());
    p[24..26].copy_from_slice(&(udp_len as u16).to_be_bytes());
    p[28..].copy_from_slice(payload);
    p
}

/// Sends `datagrams` round-robin on socket `fd` to `dst` at `rate` per
/// second until `stop` returns true, from a thread running at nice 19.
fn paced_send(
    fd: std::os::fd::RawFd,
    dst: &socket2::SockAddr,
    datagrams: &[Vec<u8>],
    rate: u64,
    stop: impl Fn() -> bool,
) -> FloodReport {
    // SAFETY: setpriority on this thread's own id; the result is not needed.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 19);
    }
    const CHUNK: usize = 250;
    let start = Instant::now();
    let mut sent = 0u64;
    let mut i = 0usize;
    while !stop() {
        // One sendmmsg per chunk: the attacker's syscall cost is not what
        // this measures.
        let mut iov: Vec<libc::iovec> = (0..CHUNK)
            .map(|k| {
                let d = &datagrams[(i + k) % datagrams.len()];
                libc::iovec {
                    iov_base: d.as_ptr() as *mut libc::c_void,
                    iov_len: d.len(),
                }
            })
            .collect();
        // SAFETY: every msghdr points at an iovec and the address, which
        // outlive the call; the kernel only reads them.
        let mut msgs: Vec<libc::mmsghdr> = iov
            .iter_mut()
            .map(|v| {
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_name = dst.as_ptr() as *mut libc::c_void;
                m.msg_hdr.msg_namelen = dst.len();
                m.msg_hdr.msg_iov = v;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        let n = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), CHUNK as u32, 0) };
        let n = n.max(0) as usize;
        sent += n as u64;
        i = (i + n.max(1)) % datagrams.len();
        // Pace: sleep until the schedule catches up (never busy-wait).
        let due = start + Duration::from_secs_f64(sent as f64 / rate as f64);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
    }
    FloodReport {
        sent,
        elapsed: start.elapsed(),
    }
}

/// Initiations with a valid `mac1` for the responder `switch_key` (the
/// switch, or a mesh node), from `n` random keys it never admitted (each
/// costs it a Diffie-Hellman unless it is under load).
pub fn unknown_key_initiations(switch_key: &PublicKey, n: usize) -> Vec<Vec<u8>> {
    let mut rng = rand::rng();
    (0..n)
        .map(|i| {
            let k = StaticSecret::generate(&mut rng);
            let mut out = [0u8; HS_INIT_LEN];
            initiate(
                &k,
                switch_key,
                &Psk::default(),
                0,
                i as u32,
                Timestamp::from_unix(1_700_000_000 + i as u64, 0),
                0,
                None,
                &mut out,
            )
            .expect("initiation");
            out.to_vec()
        })
        .collect()
}

/// Initiation-shaped garbage: the right type and length, a random body (a
/// forged key and MAC), and random datagrams of random length.
pub fn garbage(seed: u64, n: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| {
            if i % 2 == 0 {
                let mut d = rng.bytes(HS_INIT_LEN);
                d[..8].copy_from_slice(&[0x12, 0, 0, 0, 0, 0, 0, 0]);
                d
            } else {
                let len = 1 + rng.below(1400);
                rng.bytes(len)
            }
        })
        .collect()
}

/// The UDP datagrams in `frames` (IPv4 or IPv6, no extension headers) to or
/// from `port`: (source, destination, payload).
pub fn udp_datagrams(frames: &[Frame], port: u16) -> Vec<(SocketAddr, SocketAddr, Vec<u8>)> {
    frames
        .iter()
        .filter_map(|f| parse_udp(&f.data))
        .filter(|(s, d, _)| s.port() == port || d.port() == port)
        .collect()
}

pub(crate) fn parse_udp(f: &[u8]) -> Option<(SocketAddr, SocketAddr, Vec<u8>)> {
    let ethertype = u16::from_be_bytes([*f.get(12)?, *f.get(13)?]);
    let (src, dst, l4) = match ethertype {
        0x0800 => {
            let ip = f.get(14..)?;
            let ihl = usize::from(ip.first()? & 0x0f) * 4;
            if ip.get(9) != Some(&17) || ip.len() < ihl {
                return None;
            }
            let s: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
            let d: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
            (
                IpAddr::from(Ipv4Addr::from(s)),
                IpAddr::from(Ipv4Addr::from(d)),
                &ip[ihl..],
            )
        }
        0x86dd => {
            let ip = f.get(14..)?;
            if ip.get(6) != Some(&17) {
                return None;
            }
            let s: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            let d: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            (IpAddr::from(s), IpAddr::from(d), ip.get(40..)?)
        }
        _ => return None,
    };
    let sport = u16::from_be_bytes([*l4.first()?, *l4.get(1)?]);
    let dport = u16::from_be_bytes([*l4.get(2)?, *l4.get(3)?]);
    let len = usize::from(u16::from_be_bytes([*l4.get(4)?, *l4.get(5)?]));
    let payload = l4.get(8..len.max(8))?.to_vec();
    Some((
        SocketAddr::new(src, sport),
        SocketAddr::new(dst, dport),
        payload,
    ))
}

/// A process's open file descriptors and resident memory (kB), from /proc.
pub fn fds_and_rss(pid: u32) -> (usize, u64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0);
    (fds, rss)
}

/// What a MAC flood wrote.
#[derive(Debug, Clone, Copy)]
pub struct MacFloodReport {
    /// Frames the kernel accepted from the packet socket.
    pub sent: u64,
    /// Distinct source MACs among them.
    pub sources: u64,
}

/// Writes `n` Ethernet frames, each from a new random locally administered
/// unicast source MAC (first byte `0x02 | r & 0xfc`), to `dst`, through an
/// `AF_PACKET` socket bound to `ifname` in `ns`. Written to a TAP, the
/// kernel hands them to the TAP's reader (the node), which sends them to
/// the switch. Paced in bursts of `burst` frames with a 2 ms pause, so the
/// TAP's queue (500 frames) is not what drops them; a full queue
/// (`ENOBUFS`) is waited out.
pub fn mac_flood(ns: &Netns, ifname: &str, dst: [u8; 6], n: u64, burst: u64) -> MacFloodReport {
    let fd = ns.enter(|| open_send_only(ifname));
    let mut rng = Rng::new(0x3ac_f100d);
    let mut frame = [0u8; 60];
    frame[..6].copy_from_slice(&dst);
    // IEEE 802 local experimental EtherType: no host stack reacts to it.
    frame[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    let mut seen = std::collections::HashSet::new();
    let mut sent = 0;
    let mut tries = 0;
    while sent < n {
        let r = rng.next_u64().to_le_bytes();
        let src = [0x02 | (r[0] & 0xfc), r[1], r[2], r[3], r[4], r[5]];
        frame[6..12].copy_from_slice(&src);
        frame[14..22].copy_from_slice(&sent.to_be_bytes());
        send_waiting(&fd, ifname, &frame, &mut tries);
        seen.insert(src);
        sent += 1;
        if sent % burst == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    MacFloodReport {
        sent,
        sources: seen.len() as u64,
    }
}

/// Writes `frames` (whole Ethernet frames) out of `ifname` in `ns`, as
/// [`mac_flood`] does: bursts of `burst` with a 2 ms pause, a full queue
/// waited out. Returns how many were written.
pub fn inject_frames(ns: &Netns, ifname: &str, frames: &[Vec<u8>], burst: usize) -> usize {
    let fd = ns.enter(|| open_send_only(ifname));
    let mut tries = 0;
    for (i, f) in frames.iter().enumerate() {
        send_waiting(&fd, ifname, f, &mut tries);
        if (i + 1) % burst.max(1) == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    frames.len()
}

/// Sends one frame, retrying while the interface's queue is full
/// (`ENOBUFS`); `tries` counts retries over a whole run, which panics after
/// 10,000 of them.
fn send_waiting(fd: &std::os::fd::OwnedFd, ifname: &str, frame: &[u8], tries: &mut u32) {
    loop {
        // SAFETY: send on a socket we own, from a buffer that outlives it.
        let rc = unsafe {
            libc::send(
                std::os::fd::AsRawFd::as_raw_fd(fd),
                frame.as_ptr().cast(),
                frame.len(),
                0,
            )
        };
        if rc >= 0 {
            return;
        }
        *tries += 1;
        assert!(
            *tries < 10_000,
            "AF_PACKET send on {ifname}: {}",
            std::io::Error::last_os_error()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// An `AF_PACKET` socket bound to `ifname` with protocol 0: it can send
/// frames out of the interface and receives none.
fn open_send_only(ifname: &str) -> std::os::fd::OwnedFd {
    crate::packet_socket::open(ifname, 0, 0, |_| {})
}
