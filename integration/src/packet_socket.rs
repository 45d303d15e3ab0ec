//! `AF_PACKET` sockets on one interface of the current namespace (call
//! inside [`Netns::enter`](crate::Netns::enter)): how the capture, the trunk
//! port, the on-path relay and the frame injectors open theirs.
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// `ETH_P_ALL` in network order: every protocol.
pub(crate) const ALL_PROTOCOLS: u16 = (libc::ETH_P_ALL as u16).to_be();

/// Opens a raw `AF_PACKET` socket for `protocol` (network order; 0 receives
/// nothing), lets `configure` set its options, then binds it to `ifname`
/// for `bind_protocol` (network order; 0 keeps receiving nothing, for a
/// socket that only sends). Options set before the bind hold for the first
/// frame the socket receives. Panics if the interface is missing or a call
/// fails.
pub(crate) fn open(
    ifname: &str,
    protocol: u16,
    bind_protocol: u16,
    configure: impl FnOnce(&OwnedFd),
) -> OwnedFd {
    let cname = std::ffi::CString::new(ifname).expect("interface name without NUL");
    // SAFETY: plain syscalls on values we own; results are checked.
    unsafe {
        let fd = libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(protocol),
        );
        assert!(
            fd >= 0,
            "socket(AF_PACKET): {}",
            std::io::Error::last_os_error()
        );
        let fd = OwnedFd::from_raw_fd(fd);
        let index = libc::if_nametoindex(cname.as_ptr());
        assert!(index != 0, "no interface {ifname} in this namespace");
        configure(&fd);
        let mut addr: libc::sockaddr_ll = std::mem::zeroed();
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = bind_protocol;
        addr.sll_ifindex = index as libc::c_int;
        let rc = libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        );
        assert!(
            rc == 0,
            "bind(AF_PACKET, {ifname}): {}",
            std::io::Error::last_os_error()
        );
        fd
    }
}

/// Sets the integer socket option `level`/`name` to `value`.
pub(crate) fn set_int(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> std::io::Result<()> {
    set(fd, level, name, &value)
}

/// Makes a blocking receive on `fd` give up after `timeout`.
pub(crate) fn set_recv_timeout(fd: &OwnedFd, timeout: Duration) -> std::io::Result<()> {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    set(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)
}

/// Sets socket option `level`/`name` to `value` (a plain C value).
fn set<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: &T) -> std::io::Result<()> {
    // SAFETY: setsockopt on a socket we own, reading `size_of::<T>()` bytes
    // of a live value.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
