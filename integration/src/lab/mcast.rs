//! A multicast sender and receiver for lab scripts (`tapmesh-lab mcast send`
//! and `mcast recv`), run inside a host with `ip netns exec`: the receiver
//! joins a group on the TAP (the kernel sends the IGMP or MLD report the
//! switch snoops) and counts what arrives; the sender sends numbered
//! datagrams out of the TAP. Only groups in 239.0.0.0/8 (administratively
//! scoped) and ff1x::/16 (transient), so a lab script never sends to a
//! group anyone has been assigned.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};

/// What every datagram starts with, so a receiver counts only the lab's.
const MAGIC: &[u8] = b"tapmesh-lab ";

/// Checks `group:port` is in 239.0.0.0/8 or ff1x::/16 (`[ff15::1]:5000`).
pub fn parse_group(s: &str) -> Result<SocketAddr, String> {
    let a: SocketAddr = s
        .parse()
        .map_err(|_| format!("{s:?}: want GROUP:PORT, e.g. 239.1.2.3:5000 or [ff15::1]:5000"))?;
    let ok = match a.ip() {
        IpAddr::V4(v) => v.octets()[0] == 239,
        IpAddr::V6(v) => v.segments()[0] & 0xfff0 == 0xff10,
    };
    if ok {
        Ok(a)
    } else {
        Err(format!(
            "{s:?}: the group must be in 239.0.0.0/8 or ff1x::/16"
        ))
    }
}

fn ifindex(dev: &str) -> Result<u32, String> {
    let name = std::ffi::CString::new(dev).map_err(|_| format!("bad device name {dev:?}"))?;
    // SAFETY: `name` is a valid NUL-terminated string for the whole call.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => Err(format!("no device {dev} here")),
        i => Ok(i),
    }
}

/// How often a receiver looks at the stop flag while no datagram arrives.
const STOP_POLL: Duration = Duration::from_millis(100);

/// Joins `group` on `dev`, calls `on_joined`, counts the lab's datagrams to
/// it for `wait` or until SIGINT/SIGTERM (so a script can end it as soon as
/// its senders are done, see [`crate::stop`]), and returns the count.
pub fn receive(
    group: SocketAddr,
    dev: &str,
    wait: Duration,
    on_joined: impl FnOnce(),
) -> Result<u64, String> {
    let e = |what: &'static str| move |err: std::io::Error| format!("{what}: {err}");
    let index = ifindex(dev)?;
    let s = Socket::new(Domain::for_address(group), Type::DGRAM, Some(Protocol::UDP))
        .map_err(e("socket"))?;
    s.set_reuse_address(true).map_err(e("SO_REUSEADDR"))?;
    match group.ip() {
        IpAddr::V4(g) => {
            s.bind(&group.into()).map_err(e("bind"))?;
            s.join_multicast_v4_n(&g, &InterfaceIndexOrAddress::Index(index))
                .map_err(e("join"))?;
        }
        IpAddr::V6(g) => {
            s.set_only_v6(true).map_err(e("IPV6_V6ONLY"))?;
            let any = SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), group.port());
            s.bind(&any.into()).map_err(e("bind"))?;
            s.join_multicast_v6(&g, index).map_err(e("join"))?;
        }
    }
    let socket: std::net::UdpSocket = s.into();
    on_joined();
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 1500];
    let mut count = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || crate::stop::requested() {
            return Ok(count);
        }
        socket
            .set_read_timeout(Some(left.min(STOP_POLL)))
            .map_err(e("SO_RCVTIMEO"))?;
        match socket.recv(&mut buf) {
            Ok(n) if buf[..n].starts_with(MAGIC) => count += 1,
            Ok(_) => {}
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(err) => return Err(format!("recv: {err}")),
        }
    }
}

/// Sends `count` datagrams to `group` out of `dev`, `interval` apart (TTL
/// or hop limit 1: they never leave the segment).
pub fn send(group: SocketAddr, dev: &str, count: u64, interval: Duration) -> Result<(), String> {
    let e = |what: &'static str| move |err: std::io::Error| format!("{what}: {err}");
    let index = ifindex(dev)?;
    let s = Socket::new(Domain::for_address(group), Type::DGRAM, Some(Protocol::UDP))
        .map_err(e("socket"))?;
    s.bind_device(Some(dev.as_bytes()))
        .map_err(e("SO_BINDTODEVICE"))?;
    let mut to = group;
    match &mut to {
        SocketAddr::V4(_) => {
            s.set_multicast_if_v4(&Ipv4Addr::UNSPECIFIED)
                .map_err(e("IP_MULTICAST_IF"))?;
            s.set_multicast_ttl_v4(1).map_err(e("IP_MULTICAST_TTL"))?;
            s.set_multicast_loop_v4(false)
                .map_err(e("IP_MULTICAST_LOOP"))?;
        }
        SocketAddr::V6(v6) => {
            s.set_multicast_if_v6(index)
                .map_err(e("IPV6_MULTICAST_IF"))?;
            s.set_multicast_hops_v6(1)
                .map_err(e("IPV6_MULTICAST_HOPS"))?;
            s.set_multicast_loop_v6(false)
                .map_err(e("IPV6_MULTICAST_LOOP"))?;
            v6.set_scope_id(index);
        }
    }
    let to = to.into();
    for n in 0..count {
        let msg = format!("tapmesh-lab {n}");
        s.send_to(msg.as_bytes(), &to).map_err(e("send"))?;
        std::thread::sleep(interval);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_administratively_scoped_groups() {
        assert!(parse_group("239.1.2.3:5000").is_ok());
        assert!(parse_group("[ff15::1234]:5000").is_ok());
        for bad in [
            "224.0.0.1:5000",
            "198.19.0.1:5000",
            "239.1.2.3",
            "x",
            "[ff05::2]:5000",
            "[fd00:19::1]:5000",
        ] {
            assert!(parse_group(bad).is_err(), "{bad} accepted");
        }
    }
}
