//! [`OnPath`]: an attacker on one host's underlay link that injects a forged
//! handshake response ahead of every genuine one.
//!
//! ```text
//!   {prefix}-sw:    br0 ── vw{i}
//!                           ║ (veth)
//!   {prefix}-a{i}:        bridge ◄── userspace wire: forwards every frame,
//!                                    forges responses ──► vh{i}
//!                                                          ║ (veth)
//!   {prefix}-h{i}:                                        eth0 (unchanged)
//! ```
//!
//! [`OnPath::insert`] moves host `i`'s bridge port `vh{i}` out of the switch's
//! namespace into a namespace of its own, `{prefix}-a{i}`, and links that
//! namespace to the bridge with a new veth (`bridge`, bridge port `vw{i}`). A
//! thread forwards every frame between `vh{i}` and `bridge` unchanged (packet
//! sockets with virtio-net headers, so offloaded checksums and GSO batches
//! cross as they are), so it sees every datagram the host sends and gets.
//!
//! What it forges: for each IPv4 handshake initiation from the host to a
//! destination [`Forge`] selects, `n` handshake responses with the right
//! type and network, the initiation's sender index as receiver index (it
//! travels in clear) and a random rest, from the address the initiation went
//! to. How it wins the race every time: it writes the forgeries towards the
//! host first, then holds the initiation [`HOLD`] before passing it on, so
//! the genuine response (which cannot exist before the initiation arrives)
//! is behind every forgery in the host's queue, even when the receiving
//! side's softirq runs late on a busy machine. That hold is the only thing
//! it does to genuine traffic: nothing is dropped or changed.
use std::net::{SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use overlay_proto::vnet::{VNET_HDR_LEN, VnetHdr, internet_checksum};
use overlay_proto::wire::{HS_RESP_LEN, Header, MessageType};

use crate::traffic::Rng;
use crate::{Netns, Topology};

/// How long an initiation is held after its forgeries are written.
pub const HOLD: Duration = Duration::from_millis(20);

/// Which of the host's initiations get forged responses, by destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forge {
    /// None: the wire only forwards.
    Nothing,
    /// Those sent to this address (e.g. the switch).
    To(SocketAddr),
    /// Those sent anywhere but this address (e.g. mesh peers, not the switch).
    AllBut(SocketAddr),
}

impl Forge {
    fn applies(self, to: SocketAddr) -> bool {
        match self {
            Forge::Nothing => false,
            Forge::To(a) => to == a,
            Forge::AllBut(a) => to != a,
        }
    }
}

#[derive(Debug)]
struct Shared {
    stop: AtomicBool,
    forge: Mutex<Forge>,
    /// Handshake initiations from the host (forged for or not).
    initiations: AtomicU64,
    /// Forged responses written towards the host.
    forged: AtomicU64,
    /// Frames the kernel refused to send (either way).
    send_errors: AtomicU64,
}

/// The attacker on host `i`'s link; on drop its thread stops and its
/// namespace goes (the host is cut off from the bridge from then on).
#[derive(Debug)]
pub struct OnPath {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// Held for its drop, which deletes the namespace and both veths.
    _ns: Netns,
}

impl OnPath {
    /// Puts the wire between host `i` and the switch's bridge (before the
    /// host's node starts, so it sees every handshake), forging nothing
    /// until [`OnPath::forge`]; `per_initiation` responses are forged for
    /// each selected initiation.
    pub fn insert(topo: &Topology, i: usize, per_initiation: usize) -> OnPath {
        let ns = Netns::new(&format!("{}-a{i}", topo.prefix()));
        for key in ["all", "default"] {
            ns.exec_ok(
                "sysctl",
                &["-q", "-w", &format!("net.ipv6.conf.{key}.disable_ipv6=1")],
            );
        }
        let sw = topo.switch_ns();
        let port = format!("vh{i}");
        let bridge_port = format!("vw{i}");
        sw.ip(&["link", "set", &port, "nomaster"]);
        sw.ip(&["link", "set", &port, "netns", ns.name()]);
        sw.ip(&[
            "link",
            "add",
            &bridge_port,
            "type",
            "veth",
            "peer",
            "name",
            "bridge",
            "netns",
            ns.name(),
        ]);
        sw.ip(&["link", "set", &bridge_port, "master", "br0"]);
        sw.ip(&["link", "set", &bridge_port, "up"]);
        for dev in [port.as_str(), "bridge"] {
            ns.ip(&["link", "set", "dev", dev, "up", "promisc", "on"]);
        }
        let (host_side, bridge_side) = ns.enter(|| (open_wire_end(&port), open_wire_end("bridge")));
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            forge: Mutex::new(Forge::Nothing),
            initiations: AtomicU64::new(0),
            forged: AtomicU64::new(0),
            send_errors: AtomicU64::new(0),
        });
        let s = shared.clone();
        let thread = std::thread::spawn(move || {
            run(
                &host_side,
                &bridge_side,
                per_initiation,
                0xf0_96ed ^ i as u64,
                &s,
            )
        });
        OnPath {
            shared,
            thread: Some(thread),
            _ns: ns,
        }
    }

    /// Selects the initiations to forge responses for, from now on.
    pub fn forge(&self, which: Forge) {
        *self.shared.forge.lock().expect("forge lock") = which;
    }

    /// Forged responses written towards the host so far.
    pub fn forged(&self) -> u64 {
        self.shared.forged.load(Ordering::Relaxed)
    }

    /// Handshake initiations the host sent so far (forged for or not).
    pub fn initiations(&self) -> u64 {
        self.shared.initiations.load(Ordering::Relaxed)
    }

    /// Frames the kernel refused to send, either way (0 on a healthy wire).
    pub fn send_errors(&self) -> u64 {
        self.shared.send_errors.load(Ordering::Relaxed)
    }
}

impl Drop for OnPath {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A packet socket on `ifname` that reads and writes frames behind a
/// virtio-net header and never reads back what it sent.
fn open_wire_end(ifname: &str) -> OwnedFd {
    let fd = crate::capture::open_bound(ifname);
    for opt in [libc::PACKET_VNET_HDR, libc::PACKET_IGNORE_OUTGOING] {
        crate::packet_socket::set_int(&fd, libc::SOL_PACKET, opt, 1)
            .unwrap_or_else(|e| panic!("setsockopt(SOL_PACKET, {opt}) on {ifname}: {e}"));
    }
    fd
}

/// The wire: frames from the host go to the bridge, each initiation
/// [`Forge`] selects after its forgeries and [`HOLD`]; frames from the
/// bridge go to the host. Until [`Shared::stop`].
fn run(host: &OwnedFd, bridge: &OwnedFd, per_initiation: usize, seed: u64, s: &Shared) {
    let mut rng = Rng::new(seed);
    let mut buf = vec![0u8; VNET_HDR_LEN + 70_000];
    while !s.stop.load(Ordering::Relaxed) {
        let mut fds = [host, bridge].map(|f| libc::pollfd {
            fd: f.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        // SAFETY: fds is a valid array of pollfd for the call's duration.
        unsafe { libc::poll(fds.as_mut_ptr(), 2, 50) };
        while let Some(n) = recv(host, &mut buf) {
            let packet = &buf[..n];
            if let Some((to, init)) = initiation(packet) {
                s.initiations.fetch_add(1, Ordering::Relaxed);
                let which = *s.forge.lock().expect("forge lock");
                if which.applies(SocketAddr::V4(to.dst)) {
                    for _ in 0..per_initiation {
                        let forged = forged_response(&to, &init, &mut rng);
                        if send(host, &forged, s) {
                            s.forged.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    std::thread::sleep(HOLD);
                }
            }
            send(bridge, packet, s);
        }
        while let Some(n) = recv(bridge, &mut buf) {
            send(host, &buf[..n], s);
        }
    }
}

/// One frame (with its virtio-net header) if one is queued.
fn recv(fd: &OwnedFd, buf: &mut [u8]) -> Option<usize> {
    // SAFETY: recv into a buffer we own, of its length.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    };
    (n > 0).then_some(n as usize)
}

/// Sends one frame (virtio-net header first), waiting out a full queue;
/// false (and counted) if the kernel refused it.
fn send(fd: &OwnedFd, packet: &[u8], s: &Shared) -> bool {
    for _ in 0..100 {
        // SAFETY: send from a buffer that outlives the call.
        let rc = unsafe { libc::send(fd.as_raw_fd(), packet.as_ptr().cast(), packet.len(), 0) };
        if rc >= 0 {
            return true;
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::ENOBUFS) {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    s.send_errors.fetch_add(1, Ordering::Relaxed);
    false
}

/// Where an initiation went, and the Ethernet addresses it went with.
struct Sent {
    src: SocketAddrV4,
    dst: SocketAddrV4,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
}

/// The addresses and tapmesh payload of `packet` if it is one IPv4
/// handshake initiation (not a GSO batch).
fn initiation(packet: &[u8]) -> Option<(Sent, Vec<u8>)> {
    let hdr = VnetHdr::parse(packet)?;
    if hdr.gso_type != 0 {
        return None;
    }
    let frame = &packet[VNET_HDR_LEN..];
    let (src, dst, payload) = crate::attack::parse_udp(frame)?;
    let h = Header::new_checked(&payload[..]).ok()?;
    if h.message_type() != MessageType::HandshakeInit {
        return None;
    }
    let (SocketAddr::V4(src), SocketAddr::V4(dst)) = (src, dst) else {
        return None;
    };
    let mac = |at: usize| -> [u8; 6] { frame[at..at + 6].try_into().expect("6 bytes") };
    Some((
        Sent {
            src,
            dst,
            src_mac: mac(6),
            dst_mac: mac(0),
        },
        payload,
    ))
}

/// A handshake response to `init` from where it went: right type and
/// network, `init`'s sender index as receiver index, random sender index
/// and Noise message; as a frame behind an empty virtio-net header.
fn forged_response(to: &Sent, init: &[u8], rng: &mut Rng) -> Vec<u8> {
    let init = Header::new_checked(init).expect("checked before");
    let mut resp = rng.bytes(HS_RESP_LEN);
    let mut h = Header::new_unchecked(&mut resp[..]);
    h.set_common(
        MessageType::HandshakeResp,
        init.flags(),
        init.hops(),
        init.network_id(),
    );
    h.set_handshake_indices(rng.next_u64() as u32, Some(init.sender_index()));
    let mut ip = crate::attack::ipv4_udp(to.dst, to.src, &resp);
    let sum = internet_checksum(&ip[..20]);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let mut packet = vec![0u8; VNET_HDR_LEN];
    packet.extend_from_slice(&to.src_mac);
    packet.extend_from_slice(&to.dst_mac);
    packet.extend_from_slice(&0x0800u16.to_be_bytes());
    packet.extend_from_slice(&ip);
    packet
}
