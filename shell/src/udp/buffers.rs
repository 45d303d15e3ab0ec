//! The underlay socket's kernel buffers.
//!
//! A burst of datagrams (a TCP window arriving at once, many nodes sending
//! together) waits in the socket's receive buffer until the daemon reads
//! it; what does not fit is dropped by the kernel and counted in UDP
//! `InErrors`/`RcvbufErrors`, where no tapmesh counter sees it. `SO_RCVBUF`
//! is capped by `net.core.rmem_max` (212,992 bytes on a stock Linux), so the
//! daemons ask with `SO_RCVBUFFORCE` (and `SO_SNDBUFFORCE`) first, which
//! passes the cap for a process with `CAP_NET_ADMIN`: the daemons have it
//! for the TAP device. wireguard-go does the same with 7 MiB
//! (`conn/controlfns_linux.go`). Without the capability the plain option is
//! used, capped, and the daemon says so once at start.
use std::io;
use std::os::fd::AsRawFd;

/// The buffer sizes a socket got, in bytes the caller may use (the kernel
/// reports twice that, the rest being its bookkeeping).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    pub receive: usize,
    pub send: usize,
}

/// Ask for `size` bytes of receive and send buffer on `socket`, past the
/// system's caps where the process may; returns what it got.
pub fn set(socket: &impl AsRawFd, size: usize) -> io::Result<Sizes> {
    let fd = socket.as_raw_fd();
    Ok(Sizes {
        receive: set_one(fd, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, size)?,
        send: set_one(fd, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, size)?,
    })
}

fn set_one(
    fd: libc::c_int,
    force: libc::c_int,
    plain: libc::c_int,
    size: usize,
) -> io::Result<usize> {
    let want = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
    if setsockopt(fd, force, want).is_err() {
        // No CAP_NET_ADMIN: the plain option, capped by net.core.[rw]mem_max.
        setsockopt(fd, plain, want)?;
    }
    Ok(getsockopt(fd, plain)? / 2)
}

fn setsockopt(fd: libc::c_int, opt: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `value` is a live c_int and its size is passed with it.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn getsockopt(fd: libc::c_int, opt: libc::c_int) -> io::Result<usize> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are live and `len` is `value`'s size.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&raw mut value).cast(),
            &raw mut len,
        )
    };
    if r == 0 {
        Ok(usize::try_from(value).unwrap_or(0))
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sysctl(name: &str) -> usize {
        let path = format!("/proc/sys/net/core/{name}");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        text.trim()
            .parse()
            .unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn may_force() -> bool {
        // CAP_NET_ADMIN is bit 12 of the effective set.
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .is_some_and(|caps| caps & (1 << 12) != 0)
    }

    #[test]
    fn buffers_pass_the_system_cap_with_cap_net_admin_and_stop_at_it_without() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let (rmem_max, wmem_max) = (sysctl("rmem_max"), sysctl("wmem_max"));
        // Twice the larger cap, so the plain option alone cannot give it.
        let want = 2 * rmem_max.max(wmem_max) + 4096;
        let got = set(&socket, want).expect("set buffers");
        if may_force() {
            assert!(
                got.receive >= want && got.send >= want,
                "{got:?}, asked {want}"
            );
        } else {
            assert_eq!(
                got,
                Sizes {
                    receive: rmem_max,
                    send: wmem_max
                },
                "asked {want}"
            );
        }
    }

    #[test]
    fn a_size_under_the_cap_is_what_the_socket_gets() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let want = 64 * 1024;
        let got = set(&socket, want).expect("set buffers");
        assert_eq!(
            got,
            Sizes {
                receive: want,
                send: want
            }
        );
    }
}
