//! Traffic made in Rust inside namespaces: TCP transfers checked byte for byte
//! (with their longest stall, watched from another thread if need be), UDP
//! sprays of arbitrary datagrams, and pings running in the background.
use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::Netns;

/// Deterministic pseudo-random bytes addressed by offset, so sender and
/// receiver agree on every byte whatever their read and write sizes.
#[derive(Debug, Clone, Copy)]
pub struct Pattern {
    seed: u64,
}

impl Pattern {
    /// A pattern for `seed`.
    pub const fn new(seed: u64) -> Pattern {
        Pattern { seed }
    }

    /// Fills `buf` with the bytes at `offset..offset + buf.len()`.
    pub fn fill(&self, offset: u64, buf: &mut [u8]) {
        let mut pos = offset;
        let mut i = 0;
        while i < buf.len() {
            let block = splitmix64(self.seed ^ (pos / 8)).to_le_bytes();
            let start = (pos % 8) as usize;
            let n = (8 - start).min(buf.len() - i);
            buf[i..i + n].copy_from_slice(&block[start..start + n]);
            i += n;
            pos += n as u64;
        }
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): good enough mixing for test data.
pub const fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A small deterministic generator for fuzz inputs.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub const fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(1);
        splitmix64(self.0)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        Pattern::new(self.next_u64()).fill(0, &mut v);
        v
    }
}

/// What a successful transfer measured.
#[derive(Debug, Clone, Copy)]
pub struct TransferReport {
    /// Bytes received and verified.
    pub bytes: u64,
    /// From connect to the receiver seeing end of stream.
    pub elapsed: Duration,
    /// The longest time the receiver waited between two reads that
    /// returned data (from its first byte on): how long the stream stalled.
    pub longest_stall: Duration,
}

/// How many bytes a transfer's receiver has verified so far, for a watcher
/// on another thread ([`tcp_transfer_watched`]).
#[derive(Debug, Clone, Default)]
pub struct Progress(Arc<AtomicU64>);

impl Progress {
    /// Bytes received and verified so far.
    pub fn bytes(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl TransferReport {
    /// Throughput in Mbit/s.
    pub fn mbit_per_sec(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.elapsed.as_secs_f64() / 1e6
    }
}

/// Sends `bytes` bytes of [`Pattern`] data over TCP from a socket in `from` to
/// a listener in `to` bound to `to_ip`, and checks that exactly those bytes
/// arrive, in order. `idle` bounds every single connect, read and write.
pub fn tcp_transfer(
    from: &Netns,
    to: &Netns,
    to_ip: IpAddr,
    bytes: u64,
    idle: Duration,
) -> Result<TransferReport, String> {
    tcp_transfer_watched(from, to, to_ip, bytes, idle, &Progress::default())
}

/// [`tcp_transfer`], the receiver counting what it verified in `progress`
/// as it goes (so another thread can act mid-transfer).
pub fn tcp_transfer_watched(
    from: &Netns,
    to: &Netns,
    to_ip: IpAddr,
    bytes: u64,
    idle: Duration,
    progress: &Progress,
) -> Result<TransferReport, String> {
    let pattern = Pattern::new(0x7a9_3e5b ^ bytes);
    let listener = to
        .enter(|| TcpListener::bind(SocketAddr::new(to_ip, 0)))
        .map_err(|e| format!("bind {to_ip} in {}: {e}", to.name()))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let progress = progress.clone();
    let receiver = std::thread::spawn(move || receive(listener, pattern, bytes, idle, progress));

    let start = Instant::now();
    let sent = from
        .enter(|| TcpStream::connect_timeout(&addr, idle))
        .map_err(|e| format!("connect {addr} from {}: {e}", from.name()))
        .and_then(|stream| send(stream, pattern, bytes, idle));
    if let Err(e) = sent {
        // The receiver is waiting in accept or read; it ends at its timeout.
        let _ = receiver.join();
        return Err(e);
    }
    let (received, longest_stall) = receiver
        .join()
        .map_err(|_| "receiver thread panicked".to_string())??;
    Ok(TransferReport {
        bytes: received,
        elapsed: start.elapsed(),
        longest_stall,
    })
}

fn send(mut stream: TcpStream, pattern: Pattern, bytes: u64, idle: Duration) -> Result<(), String> {
    stream
        .set_write_timeout(Some(idle))
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut offset = 0u64;
    while offset < bytes {
        let n = (bytes - offset).min(buf.len() as u64) as usize;
        pattern.fill(offset, &mut buf[..n]);
        stream
            .write_all(&buf[..n])
            .map_err(|e| format!("write at offset {offset}: {e}"))?;
        offset += n as u64;
    }
    stream
        .shutdown(Shutdown::Write)
        .map_err(|e| format!("shutdown: {e}"))
}

fn receive(
    listener: TcpListener,
    pattern: Pattern,
    bytes: u64,
    idle: Duration,
    progress: Progress,
) -> Result<(u64, Duration), String> {
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + idle;
    let mut stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err("no connection arrived".into());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(format!("accept: {e}")),
        }
    };
    stream.set_nonblocking(false).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(idle))
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut expected = vec![0u8; 64 * 1024];
    let mut offset = 0u64;
    let mut last_data: Option<Instant> = None;
    let mut longest_stall = Duration::ZERO;
    loop {
        let n = stream
            .read(&mut buf)
            .map_err(|e| format!("read at offset {offset}: {e}"))?;
        if n == 0 {
            break;
        }
        let now = Instant::now();
        if let Some(last) = last_data {
            longest_stall = longest_stall.max(now - last);
        }
        last_data = Some(now);
        if offset + n as u64 > bytes {
            return Err(format!("received more than {bytes} bytes"));
        }
        pattern.fill(offset, &mut expected[..n]);
        if let Some(i) = (0..n).find(|&i| buf[i] != expected[i]) {
            return Err(format!("byte {} differs", offset + i as u64));
        }
        offset += n as u64;
        progress.0.store(offset, Ordering::Relaxed);
    }
    if offset != bytes {
        return Err(format!("stream ended after {offset} of {bytes} bytes"));
    }
    Ok((offset, longest_stall))
}

/// Sends each datagram from a UDP socket made in `from` to `target`, pausing
/// briefly after every `burst` datagrams so the receiver's socket buffer is
/// not the thing under test. Returns how many the kernel accepted for sending.
pub fn udp_spray(from: &Netns, target: SocketAddr, datagrams: &[Vec<u8>], burst: usize) -> usize {
    let bind: SocketAddr = if target.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let sock = from
        .enter(|| UdpSocket::bind(bind))
        .unwrap_or_else(|e| panic!("UDP bind in {}: {e}", from.name()));
    let mut sent = 0;
    for (i, d) in datagrams.iter().enumerate() {
        if sock.send_to(d, target).is_ok() {
            sent += 1;
        }
        if burst > 0 && (i + 1) % burst == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    sent
}

/// UDP receive-side errors of a namespace (`InErrors` of `/proc/net/snmp`,
/// which includes `RcvbufErrors`): datagrams the kernel dropped before any
/// socket could read them.
pub fn udp_in_errors(ns: &Netns) -> u64 {
    snmp_udp_field(&ns.proc_net("snmp"), "InErrors")
}

fn snmp_udp_field(snmp: &str, field: &str) -> u64 {
    snmp_field(snmp, "Udp: ", field).unwrap_or(0)
}

/// TCP segments a namespace retransmitted (`RetransSegs` of
/// `/proc/net/snmp`); panics if the kernel does not report them.
pub fn tcp_retrans_segs(ns: &Netns) -> u64 {
    let snmp = ns.proc_net("snmp");
    snmp_field(&snmp, "Tcp: ", "RetransSegs").unwrap_or_else(|| {
        panic!(
            "no Tcp RetransSegs in {}'s /proc/net/snmp: {snmp}",
            ns.name()
        )
    })
}

/// Field `field` of the `prefix` lines (names, then values) of
/// `/proc/net/snmp`.
fn snmp_field(snmp: &str, prefix: &str, field: &str) -> Option<u64> {
    let mut lines = snmp.lines().filter(|l| l.starts_with(prefix));
    let (names, values) = (lines.next()?, lines.next()?);
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == field)
        .and_then(|(_, v)| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_is_the_same_whatever_the_chunking() {
        let p = Pattern::new(42);
        let mut whole = vec![0u8; 1000];
        p.fill(0, &mut whole);
        let mut pieces = vec![0u8; 1000];
        let mut off = 0;
        for len in [1, 7, 8, 9, 100, 3, 872] {
            p.fill(off as u64, &mut pieces[off..off + len]);
            off += len;
        }
        assert_eq!(off, 1000);
        assert_eq!(whole, pieces);
        assert_ne!(whole[..8], whole[8..16]);
    }

    #[test]
    fn snmp_udp_in_errors_is_parsed() {
        let snmp = "Ip: Forwarding\nIp: 1\nUdp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors\nUdp: 10 2 7 4 5\nUdpLite: InDatagrams\nUdpLite: 0\n";
        assert_eq!(snmp_udp_field(snmp, "InErrors"), 7);
        assert_eq!(snmp_udp_field(snmp, "RcvbufErrors"), 5);
        assert_eq!(snmp_udp_field(snmp, "Nope"), 0);
    }

    #[test]
    fn snmp_tcp_retrans_segs_is_parsed() {
        let snmp =
            "Tcp: RtoAlgorithm InSegs RetransSegs\nTcp: 1 900 42\nUdp: RetransSegs\nUdp: 3\n";
        assert_eq!(snmp_field(snmp, "Tcp: ", "RetransSegs"), Some(42));
        assert_eq!(snmp_field(snmp, "Ip: ", "RetransSegs"), None);
    }
}

/// A `ping` running in the background ([`ping_in_background`]); killed and
/// reaped when dropped, also on panic.
#[derive(Debug)]
pub struct BackgroundPing(Option<Child>);

/// Starts `ping -n -q -i interval -W 1 -c count to` in `ns`.
pub fn ping_in_background(ns: &Netns, to: IpAddr, interval: &str, count: u32) -> BackgroundPing {
    let child = ns
        .command("ping")
        .args(["-n", "-q", "-i", interval, "-W", "1", "-c"])
        .arg(count.to_string())
        .arg(to.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ping");
    BackgroundPing(Some(child))
}

/// What a finished [`BackgroundPing`] counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingSummary {
    /// Echo requests sent.
    pub transmitted: u32,
    /// Distinct replies received.
    pub received: u32,
    /// Replies received more than once (ping's `DUP!`).
    pub duplicates: u32,
}

impl BackgroundPing {
    /// Waits for it to finish: (transmitted, received) from its summary.
    pub fn result(self) -> (u32, u32) {
        let s = self.summary();
        (s.transmitted, s.received)
    }

    /// Waits for it to finish and reads its summary line, e.g. `20 packets
    /// transmitted, 20 received, +2 duplicates, 0% packet loss`.
    pub fn summary(mut self) -> PingSummary {
        let child = self.0.take().expect("ping child");
        let out = child.wait_with_output().expect("ping output");
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.contains("transmitted"))
            .unwrap_or_else(|| panic!("no ping summary in {text}"));
        let number = |part: &str| -> Option<u32> {
            line.split(',')
                .find(|p| p.contains(part))?
                .split(|c: char| !c.is_ascii_digit())
                .find_map(|w| w.parse().ok())
        };
        PingSummary {
            transmitted: number("transmitted").unwrap_or(0),
            received: number("received").unwrap_or(0),
            duplicates: number("duplicates").unwrap_or(0),
        }
    }
}

impl Drop for BackgroundPing {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
