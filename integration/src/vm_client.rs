//! A stand-in for a VM's network card on a node's VM port, for tests that
//! check the port itself (framing, reconnects, permissions) without booting
//! QEMU: it speaks QEMU's `-netdev stream` framing (4-byte big-endian length,
//! then the frame) or `-netdev dgram` (one frame per datagram), and builds
//! and answers the few frames a host needs to be pinged: ARP and ICMP echo.
//! The QEMU tests (`tests/qemu_vms.rs`) use real VMs instead.
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use overlay_proto::vnet::internet_checksum;

/// How a [`VmClient`] is connected.
#[derive(Debug)]
enum Link {
    Stream(UnixStream),
    Dgram { sock: UnixDatagram, node: PathBuf },
}

/// One fake VM: a MAC, an IPv4 address, and a connection to a VM port.
#[derive(Debug)]
pub struct VmClient {
    link: Link,
    /// Its MAC.
    pub mac: [u8; 6],
    /// Its address.
    pub ip: Ipv4Addr,
    rx: Vec<u8>,
}

impl VmClient {
    /// Connect to a `stream` VM port at `path`, retrying for a few seconds
    /// (as QEMU's `reconnect-ms` would).
    pub fn stream(path: &Path, mac: [u8; 6], ip: Ipv4Addr) -> VmClient {
        let deadline = Instant::now() + Duration::from_secs(10);
        let s = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => {
                    panic!("cannot connect to {}: {e}", path.display())
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        };
        VmClient {
            link: Link::Stream(s),
            mac,
            ip,
            rx: Vec::new(),
        }
    }

    /// Wait (up to `timeout`) for the node to connect to `listener` (a
    /// `connect = true` port; the test plays QEMU with `server=on`).
    pub fn accept(
        listener: &std::os::unix::net::UnixListener,
        timeout: Duration,
        mac: [u8; 6],
        ip: Ipv4Addr,
    ) -> Option<VmClient> {
        listener.set_nonblocking(true).ok()?;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok((s, _)) = listener.accept() {
                s.set_nonblocking(false).ok()?;
                return Some(VmClient {
                    link: Link::Stream(s),
                    mac,
                    ip,
                    rx: Vec::new(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Bind `own` and send to the `dgram` VM port at `node` (QEMU's
    /// `local.path` and `remote.path`).
    pub fn dgram(node: &Path, own: &Path, mac: [u8; 6], ip: Ipv4Addr) -> VmClient {
        let _ = std::fs::remove_file(own);
        let sock = UnixDatagram::bind(own)
            .unwrap_or_else(|e| panic!("cannot bind {}: {e}", own.display()));
        VmClient {
            link: Link::Dgram {
                sock,
                node: node.to_owned(),
            },
            mac,
            ip,
            rx: Vec::new(),
        }
    }

    /// Send raw bytes on a stream link (to test garbage), no framing added.
    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match &mut self.link {
            Link::Stream(s) => s.write_all(bytes),
            Link::Dgram { sock, node } => sock.send_to(bytes, node).map(|_| ()),
        }
    }

    /// Send one frame.
    pub fn send(&mut self, frame: &[u8]) -> std::io::Result<()> {
        match &mut self.link {
            Link::Stream(s) => {
                let mut v = (frame.len() as u32).to_be_bytes().to_vec();
                v.extend_from_slice(frame);
                s.write_all(&v)
            }
            Link::Dgram { sock, node } => sock.send_to(frame, node).map(|_| ()),
        }
    }

    /// The next frame, or `None` after `timeout` (or at EOF). ARP requests
    /// for our address and pings to it are answered on the way and not
    /// returned.
    pub fn recv(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        loop {
            let f = self.recv_raw(deadline)?;
            if let Some(sender) = arp_request_for(&f, self.ip) {
                let reply = arp(self.mac, self.ip, sender.0, sender.1, false);
                let _ = self.send(&reply);
                continue;
            }
            if let Some(reply) = echo_reply(&f, self.ip) {
                let _ = self.send(&reply);
                continue;
            }
            return Some(f);
        }
    }

    /// Answer ARP and pings for `duration` (while something else pings us).
    pub fn answer_for(&mut self, duration: Duration) {
        let deadline = Instant::now() + duration;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            self.recv(left);
        }
    }

    fn recv_raw(&mut self, deadline: Instant) -> Option<Vec<u8>> {
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let left = left.max(Duration::from_millis(1));
            match &mut self.link {
                Link::Dgram { sock, .. } => {
                    sock.set_read_timeout(Some(left)).ok()?;
                    let mut b = vec![0u8; 65536];
                    let n = sock.recv(&mut b).ok()?;
                    b.truncate(n);
                    return Some(b);
                }
                Link::Stream(s) => {
                    if self.rx.len() >= 4 {
                        let len = u32::from_be_bytes(self.rx[..4].try_into().ok()?) as usize;
                        if self.rx.len() >= 4 + len {
                            let f = self.rx[4..4 + len].to_vec();
                            self.rx.drain(..4 + len);
                            return Some(f);
                        }
                    }
                    s.set_read_timeout(Some(left)).ok()?;
                    let mut b = [0u8; 65536];
                    match s.read(&mut b) {
                        Ok(0) => return None,
                        Ok(n) => self.rx.extend_from_slice(&b[..n]),
                        Err(_) => return None,
                    }
                }
            }
        }
    }

    /// Whether the node closed a stream connection (EOF within `timeout`).
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        let Link::Stream(s) = &mut self.link else {
            return false;
        };
        let deadline = Instant::now() + timeout;
        let mut b = [0u8; 4096];
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let _ = s.set_read_timeout(Some(left.max(Duration::from_millis(1))));
            match s.read(&mut b) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
                Err(_) => return true,
            }
        }
        false
    }

    /// Resolve `to` with ARP and ping it once (ICMP echo, id 0x7a70,
    /// sequence `seq`); true if the reply came within `timeout`.
    pub fn ping(&mut self, to: Ipv4Addr, seq: u16, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let Some(mac) = self.resolve(to, deadline) else {
            return false;
        };
        let req = icmp_echo(self.mac, mac, self.ip, to, seq, false);
        if self.send(&req).is_err() {
            return false;
        }
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Some(f) = self.recv(left) else {
                return false;
            };
            if is_echo_reply(&f, to, self.ip, seq) {
                return true;
            }
        }
        false
    }

    /// Ping until one answer comes or `timeout` passes.
    pub fn ping_within(&mut self, to: Ipv4Addr, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut seq = 0u16;
        while Instant::now() < deadline {
            seq = seq.wrapping_add(1);
            if self.ping(to, seq, Duration::from_millis(700)) {
                return true;
            }
        }
        false
    }

    fn resolve(&mut self, ip: Ipv4Addr, deadline: Instant) -> Option<[u8; 6]> {
        while Instant::now() < deadline {
            let req = arp(self.mac, self.ip, [0xff; 6], ip, true);
            self.send(&req).ok()?;
            let until = (Instant::now() + Duration::from_millis(500)).min(deadline);
            while let Some(left) = until.checked_duration_since(Instant::now()) {
                let f = self.recv(left)?;
                if let Some(mac) = arp_reply_from(&f, ip) {
                    return Some(mac);
                }
            }
        }
        None
    }
}

/// An ARP request (`request`) or reply from `src_mac`/`src_ip` to
/// `dst_mac`/`dst_ip` (a request goes to broadcast).
pub fn arp(
    src_mac: [u8; 6],
    src_ip: Ipv4Addr,
    dst_mac: [u8; 6],
    dst_ip: Ipv4Addr,
    request: bool,
) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(if request { &[0xff; 6] } else { &dst_mac });
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[
        0x08,
        0x06,
        0,
        1,
        0x08,
        0x00,
        6,
        4,
        0,
        if request { 1 } else { 2 },
    ]);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&src_ip.octets());
    f.extend_from_slice(if request { &[0; 6] } else { &dst_mac });
    f.extend_from_slice(&dst_ip.octets());
    f.resize(60, 0);
    f
}

fn arp_fields(f: &[u8]) -> Option<(u16, [u8; 6], Ipv4Addr, Ipv4Addr)> {
    if f.len() < 42 || f[12..14] != [0x08, 0x06] {
        return None;
    }
    let op = u16::from_be_bytes([f[20], f[21]]);
    let sha: [u8; 6] = f[22..28].try_into().ok()?;
    let spa = Ipv4Addr::new(f[28], f[29], f[30], f[31]);
    let tpa = Ipv4Addr::new(f[38], f[39], f[40], f[41]);
    Some((op, sha, spa, tpa))
}

/// The sender of an ARP request asking for `ip`.
fn arp_request_for(f: &[u8], ip: Ipv4Addr) -> Option<([u8; 6], Ipv4Addr)> {
    let (op, sha, spa, tpa) = arp_fields(f)?;
    (op == 1 && tpa == ip).then_some((sha, spa))
}

/// The MAC in an ARP reply from `ip`.
fn arp_reply_from(f: &[u8], ip: Ipv4Addr) -> Option<[u8; 6]> {
    let (op, sha, spa, _) = arp_fields(f)?;
    (op == 2 && spa == ip).then_some(sha)
}

/// An ICMP echo request (or reply) with 56 bytes of payload.
pub fn icmp_echo(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    seq: u16,
    reply: bool,
) -> Vec<u8> {
    let mut icmp = vec![if reply { 0 } else { 8 }, 0, 0, 0, 0x7a, 0x70];
    icmp.extend_from_slice(&seq.to_be_bytes());
    icmp.extend((0..56u8).map(|i| i.wrapping_mul(7)));
    let c = internet_checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let total = (20 + icmp.len()) as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 1, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let c = internet_checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut f = Vec::with_capacity(14 + total as usize);
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&icmp);
    f
}

/// The answer to an ICMP echo request for `ip` (IPv4 without options), if
/// `f` is one: addresses swapped, type 0, same identifier, sequence and data.
fn echo_reply(f: &[u8], ip: Ipv4Addr) -> Option<Vec<u8>> {
    if f.len() < 42 || f[12..14] != [0x08, 0x00] || f[14] != 0x45 || f[23] != 1 || f[34] != 8 {
        return None;
    }
    if f[30..34] != ip.octets() {
        return None;
    }
    let mut r = f.to_vec();
    r[..6].copy_from_slice(&f[6..12]);
    r[6..12].copy_from_slice(&f[..6]);
    r[26..30].copy_from_slice(&f[30..34]);
    r[30..34].copy_from_slice(&f[26..30]);
    r[34] = 0;
    r[36..38].fill(0);
    let c = internet_checksum(&r[34..]);
    r[36..38].copy_from_slice(&c.to_be_bytes());
    Some(r)
}

fn is_echo_reply(f: &[u8], from: Ipv4Addr, to: Ipv4Addr, seq: u16) -> bool {
    f.len() >= 42
        && f[12..14] == [0x08, 0x00]
        && f[23] == 1
        && f[26..30] == from.octets()
        && f[30..34] == to.octets()
        && f[34] == 0
        && f[40..42] == seq.to_be_bytes()
}
