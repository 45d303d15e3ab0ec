//! An `AF_PACKET` capture on one interface inside a namespace.
//!
//! Used to show what a host's TAP does *not* see (unicast between two other
//! hosts, frames from an unadmitted node). Such a check passes trivially if
//! the capture is broken, so tests pair it with a window in which the same
//! capture must see something.
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::{Netns, packet_socket};

/// One captured Ethernet frame.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The frame from the destination MAC on (no FCS).
    pub data: Vec<u8>,
    /// Whether the host sent it (`PACKET_OUTGOING`) rather than received it.
    pub outgoing: bool,
}

impl Frame {
    /// The destination MAC.
    pub fn dst_mac(&self) -> Option<[u8; 6]> {
        self.data.get(0..6).map(|b| b.try_into().expect("6 bytes"))
    }

    /// The source MAC.
    pub fn src_mac(&self) -> Option<[u8; 6]> {
        self.data.get(6..12).map(|b| b.try_into().expect("6 bytes"))
    }

    /// The EtherType (no VLAN tags are used in these tests).
    pub fn ethertype(&self) -> Option<u16> {
        self.data
            .get(12..14)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    /// Whether it is an ARP frame.
    pub fn is_arp(&self) -> bool {
        self.ethertype() == Some(0x0806)
    }

    /// Whether the destination is the broadcast MAC.
    pub fn is_broadcast(&self) -> bool {
        self.dst_mac() == Some([0xff; 6])
    }

    /// Source and destination of an IPv4 ICMP packet.
    pub fn icmp4(&self) -> Option<(Ipv4Addr, Ipv4Addr)> {
        if self.ethertype()? != 0x0800 {
            return None;
        }
        let ip = self.data.get(14..34)?;
        if ip[9] != 1 {
            return None;
        }
        let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
        let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
        Some((src, dst))
    }

    /// Whether it is IPv4 ICMP between `a` and `b`, either way.
    pub fn is_icmp4_between(&self, a: Ipv4Addr, b: Ipv4Addr) -> bool {
        matches!(self.icmp4(), Some((s, d)) if (s, d) == (a, b) || (s, d) == (b, a))
    }
}

/// Parses `aa:bb:cc:dd:ee:ff` (by the daemons' rules).
pub fn parse_mac(s: &str) -> [u8; 6] {
    let m: overlay_proto::ethernet::MacAddr = s.parse().unwrap_or_else(|e| panic!("{s:?} {e}"));
    m.0
}

/// A running capture; collects every frame on the interface until
/// [`Capture::finish`]. Frames already queued when the socket is bound are
/// never lost: the socket is bound before [`Capture::start`] returns.
#[derive(Debug)]
pub struct Capture {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<Frame>>>,
}

impl Capture {
    /// Opens a packet socket in `ns`, bound to `ifname` for all protocols,
    /// and starts collecting frames on a background thread.
    pub fn start(ns: &Netns, ifname: &str) -> Capture {
        let ifname = ifname.to_string();
        let sock = ns.enter(move || open_bound(&ifname));
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || read_frames(sock, &stop2));
        Capture {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops, drains what the kernel still queued, and returns every frame.
    pub fn finish(mut self) -> Vec<Frame> {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take().expect("capture finished twice");
        thread
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Creates the socket with protocol 0 (receives nothing) and only then binds
/// it to the interface with `ETH_P_ALL`, so no frame of another interface can
/// slip in between.
pub(crate) fn open_bound(ifname: &str) -> OwnedFd {
    packet_socket::open(ifname, 0, packet_socket::ALL_PROTOCOLS, |fd| {
        // Best effort, unchecked.
        let _ = packet_socket::set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 8 << 20);
        let _ = packet_socket::set_recv_timeout(fd, Duration::from_millis(50));
    })
}

fn read_frames(sock: OwnedFd, stop: &AtomicBool) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        // After stop, drain without blocking until the queue is empty.
        let stopping = stop.load(Ordering::Relaxed);
        let flags = if stopping { libc::MSG_DONTWAIT } else { 0 };
        // SAFETY: zeroed sockaddr_ll is valid; buf and addr outlive the call.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        let n = unsafe {
            libc::recvfrom(
                sock.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                flags,
                (&mut addr as *mut libc::sockaddr_ll).cast(),
                &mut len,
            )
        };
        if n >= 0 {
            frames.push(Frame {
                data: buf[..n as usize].to_vec(),
                outgoing: addr.sll_pkttype == libc::PACKET_OUTGOING,
            });
            continue;
        }
        let err = std::io::Error::last_os_error();
        match err.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut if stopping => {
                return frames;
            }
            std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::Interrupted => {}
            // The interface went away (its namespace or TAP was removed).
            _ => return frames,
        }
    }
}
