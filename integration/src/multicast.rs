//! Multicast from inside the host namespaces: UDP sockets that join groups
//! on a host's TAP through the kernel's own IGMP/MLD, senders, counting what
//! a receiving socket got, and what a capture on a TAP saw of a group or of
//! the querier.
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::Topology;
use crate::capture::Frame;
use crate::topology::overlay_v4;
use crate::trunk::tap_index;

/// The UDP port receivers bind and senders send to.
pub const PORT: u16 = 5001;

/// A UDP socket in host `i` bound to `PORT`, joined to `group` on its TAP
/// (source-specific if `source` is given).
pub fn join_v4(topo: &Topology, i: usize, group: Ipv4Addr, source: Option<Ipv4Addr>) -> Socket {
    topo.ns(i).enter(move || {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).expect("socket");
        s.set_reuse_address(true).expect("SO_REUSEADDR");
        s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, PORT).into())
            .expect("bind");
        match source {
            None => s.join_multicast_v4(&group, &overlay_v4(i)),
            Some(src) => s.join_ssm_v4(&src, &group, &overlay_v4(i)),
        }
        .expect("join");
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        s
    })
}

/// A socket in host `i` that sends multicast out of its TAP, hop limit 1.
pub fn sender(topo: &Topology, i: usize, v6: bool) -> Socket {
    topo.ns(i).enter(move || {
        let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
        let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).expect("socket");
        if v6 {
            s.set_multicast_if_v6(tap_index())
                .expect("IPV6_MULTICAST_IF");
            s.set_multicast_hops_v6(1).expect("hops");
            s.set_multicast_loop_v6(false).expect("loop");
        } else {
            s.set_multicast_if_v4(&overlay_v4(i))
                .expect("IP_MULTICAST_IF");
            s.set_multicast_ttl_v4(1).expect("ttl");
            s.set_multicast_loop_v4(false).expect("loop");
        }
        s
    })
}

/// Sends `n` datagrams `"{tag} {seq}"` to `to`, 5 ms apart.
pub fn send(s: &Socket, to: IpAddr, tag: &str, n: usize) {
    let to: SockAddr = SocketAddr::new(to, PORT).into();
    for k in 0..n {
        s.send_to(format!("{tag} {k}").as_bytes(), &to)
            .unwrap_or_else(|e| panic!("send {tag} {k}: {e}"));
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Datagrams `s` holds whose text starts with `tag `, reading until it has
/// been quiet for 300 ms.
pub fn received(s: &Socket, tag: &str) -> usize {
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1500];
    let mut n = 0;
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_millis(300) {
        if let Ok(len) = s.recv(&mut buf) {
            // SAFETY: recv initialised the first `len` bytes.
            let data: Vec<u8> = buf[..len]
                .iter()
                .map(|b| unsafe { b.assume_init() })
                .collect();
            if data.starts_with(format!("{tag} ").as_bytes()) {
                n += 1;
            }
            quiet_since = Instant::now();
        }
    }
    n
}

/// Frames in `frames` that the TAP received (not sent) for the group's MAC.
pub fn group_frames(frames: &[Frame], group: IpAddr) -> usize {
    let mac = match group {
        IpAddr::V4(g) => {
            let o = g.octets();
            [1, 0, 0x5e, o[1] & 0x7f, o[2], o[3]]
        }
        IpAddr::V6(g) => {
            let o = g.octets();
            [0x33, 0x33, o[12], o[13], o[14], o[15]]
        }
    };
    let udp = |f: &Frame| match group {
        IpAddr::V4(_) => f.data.get(23) == Some(&17),
        IpAddr::V6(_) => f.data.get(20) == Some(&17),
    };
    frames
        .iter()
        .filter(|f| !f.outgoing && f.dst_mac() == Some(mac) && udp(f))
        .count()
}

/// The IGMP general queries a TAP received, by version (2 or 3, from the
/// message's length: 8 or at least 12 bytes).
pub fn igmp_general_queries(frames: &[Frame]) -> Vec<u8> {
    frames
        .iter()
        .filter(|f| !f.outgoing && f.ethertype() == Some(0x0800))
        .filter_map(|f| {
            let ip = f.data.get(14..)?;
            let ihl = usize::from(ip.first()? & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
            let igmp = ip.get(ihl..total)?;
            let general = igmp.get(4..8)? == [0, 0, 0, 0];
            (ip.get(9) == Some(&2) && igmp.first() == Some(&0x11) && general)
                .then_some(if igmp.len() >= 12 { 3 } else { 2 })
        })
        .collect()
}
