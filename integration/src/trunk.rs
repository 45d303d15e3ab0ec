//! A trunk port on a TAP without the 8021q module: tagged ARP out, and each
//! received frame's VLAN read back, for tests of VLAN tagging.
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::topology::TAP;
use crate::{Topology, packet_socket};

/// The index of the TAP in the current namespace (call inside
/// [`Netns::enter`](crate::Netns::enter)).
pub fn tap_index() -> u32 {
    let name = std::ffi::CString::new(TAP).expect("no NUL");
    // SAFETY: a NUL-terminated name; the call only reads it.
    let i = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert!(i != 0, "no {TAP} in this namespace");
    i
}

/// A raw packet socket on a TAP that stands in for kernel VLAN
/// sub-interfaces (the 8021q module is missing on some test machines, such
/// as VMs without modules): it sends tagged frames as they are, and reads
/// each frame's VLAN from `PACKET_AUXDATA` (the kernel moves a received tag
/// out of the data).
#[derive(Debug)]
pub struct TrunkPort {
    fd: std::os::fd::OwnedFd,
    mac: [u8; 6],
}

impl TrunkPort {
    /// Opens the port on host `i`'s TAP.
    pub fn open(topo: &Topology, i: usize) -> TrunkPort {
        let mac = crate::capture::parse_mac(&topo.tap_mac(i));
        let fd = topo.ns(i).enter(|| {
            let all = packet_socket::ALL_PROTOCOLS;
            packet_socket::open(TAP, all, all, |fd| {
                // Best effort, unchecked.
                let _ = packet_socket::set_int(fd, libc::SOL_PACKET, libc::PACKET_AUXDATA, 1);
                let _ = packet_socket::set_recv_timeout(fd, Duration::from_millis(100));
            })
        });
        TrunkPort { fd, mac }
    }

    /// Sends "who has `target`? tell `sender`" tagged with `vid`, broadcast.
    pub fn arp_request(&self, vid: u16, sender: Ipv4Addr, target: Ipv4Addr) {
        self.arp_request_to([0xff; 6], vid, sender, target);
    }

    /// Sends "who has `target`? tell `sender`" tagged with `vid`, to `dst`
    /// (unicast, as a host refreshing its neighbour entry does).
    pub fn arp_request_to(&self, dst: [u8; 6], vid: u16, sender: Ipv4Addr, target: Ipv4Addr) {
        use std::os::fd::AsRawFd;
        let mut f = dst.to_vec();
        f.extend_from_slice(&self.mac);
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&vid.to_be_bytes());
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&self.mac);
        f.extend_from_slice(&sender.octets());
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&target.octets());
        // SAFETY: sending our own buffer on our own socket.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), f.as_ptr().cast(), f.len(), 0) };
        assert!(
            n == f.len() as isize,
            "send: {}",
            std::io::Error::last_os_error()
        );
    }

    /// ARP replies received within `wait`: (VLAN, sender IP).
    pub fn arp_replies(&self, wait: Duration) -> Vec<(Option<u16>, Ipv4Addr)> {
        use std::os::fd::AsRawFd;
        let mut out = Vec::new();
        let end = Instant::now() + wait;
        while Instant::now() < end {
            let mut buf = [0u8; 2048];
            let mut cbuf = [0u64; 16];
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            // SAFETY: zeroed msghdr is valid; every buffer outlives the call.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = cbuf.as_mut_ptr().cast();
            msg.msg_controllen = size_of_val(&cbuf);
            let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, 0) };
            if n < 0 {
                continue;
            }
            let mut vid = None;
            // SAFETY: walking the control messages the kernel wrote.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(&msg);
                while !c.is_null() {
                    if (*c).cmsg_level == libc::SOL_PACKET && (*c).cmsg_type == libc::PACKET_AUXDATA
                    {
                        let aux: libc::tpacket_auxdata =
                            std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                        if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 {
                            vid = Some(aux.tp_vlan_tci & 0x0fff);
                        }
                    }
                    c = libc::CMSG_NXTHDR(&msg, c);
                }
            }
            let mut f = &buf[..n as usize];
            if f.len() >= 18 && f[12..14] == [0x81, 0x00] {
                vid = Some(u16::from_be_bytes([f[14], f[15]]) & 0x0fff);
                f = &f[4..];
            }
            if f.len() >= 42
                && f[12..14] == [0x08, 0x06]
                && f[20..22] == [0, 2]
                && f[..6] == self.mac
            {
                out.push((vid, Ipv4Addr::new(f[28], f[29], f[30], f[31])));
            }
        }
        out
    }
}
