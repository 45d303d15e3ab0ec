//! Sending many small datagrams with one system call: `sendmmsg`.
//!
//! A core's transmit queue merges consecutive datagrams into one UDP GSO send
//! only when they go to the same place and have the same size. A switch
//! relaying 64-byte frames between many nodes queues datagrams that all go to
//! different places, one `sendmsg` each: the system call's entry and exit,
//! the socket lookup and the readiness check are paid per datagram.
//! [`SendBatch`] collects such single datagrams (copied into slots it owns,
//! so the core's queue can move on) and hands up to [`MAX_MESSAGES`] of them
//! to the kernel in one `sendmmsg`. A GSO batch (several segments) or a
//! datagram too large for a slot is sent as before, after everything
//! collected so far, so datagrams leave in the order they were queued.
use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv6Addr, SocketAddr};

use overlay_proto::transmit::Transmit;
use tokio::io::Interest;

use super::UdpLink;

/// Most datagrams per `sendmmsg` (the kernel caps a call at `UIO_MAXIOV`,
/// 1024; 64 matches the receive side's batch).
pub const MAX_MESSAGES: usize = 64;
/// Largest datagram a slot holds: a 1500-byte frame with its virtio header
/// and the tunnel's overhead. Larger ones are sent on their own.
pub const SLOT: usize = 2048;

/// How [`SendBatch::send`] handles one transmit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Copied into a slot, sent later with the others.
    Collect,
    /// Sent on its own (a GSO batch, or too large for a slot), after the
    /// collected datagrams.
    Alone,
}

/// What to do with a transmit of `len` bytes in segments of `segment_size`.
pub fn plan(len: usize, segment_size: Option<usize>) -> Plan {
    let single = segment_size.is_none_or(|s| len <= s);
    if single && len <= SLOT {
        Plan::Collect
    } else {
        Plan::Alone
    }
}

/// Single datagrams waiting for one `sendmmsg`, in buffers allocated once.
#[derive(Debug)]
pub struct SendBatch {
    /// `MAX_MESSAGES` slots of `SLOT` bytes.
    slots: Vec<u8>,
    lens: [usize; MAX_MESSAGES],
    destinations: [SocketAddr; MAX_MESSAGES],
    count: usize,
    /// `sendmmsg` calls made (what the tests check).
    calls: u64,
    /// Datagrams the kernel refused, dropped.
    failed: u64,
}

impl Default for SendBatch {
    fn default() -> Self {
        SendBatch {
            slots: vec![0u8; MAX_MESSAGES * SLOT],
            lens: [0; MAX_MESSAGES],
            destinations: [SocketAddr::from(([0, 0, 0, 0], 0)); MAX_MESSAGES],
            count: 0,
            calls: 0,
            failed: 0,
        }
    }
}

impl SendBatch {
    /// Datagrams collected and not yet sent.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True if nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// `sendmmsg` calls made so far.
    pub fn calls(&self) -> u64 {
        self.calls
    }

    /// Datagrams the kernel refused so far (each dropped).
    pub fn failed(&self) -> u64 {
        self.failed
    }

    /// Collect `t` if it is one small datagram (sending the batch once it is
    /// full); else send what was collected, then `t` on its own. A failed
    /// send is logged at debug level and the datagram dropped, as for
    /// [`UdpLink::send`].
    pub async fn send(&mut self, link: &UdpLink, t: &Transmit<'_>) {
        // HOT PATH
        match plan(t.contents.len(), t.segment_size) {
            Plan::Collect => {
                self.collect(t.destination, t.contents);
                if self.count == MAX_MESSAGES {
                    self.flush(link).await;
                }
            }
            Plan::Alone => {
                self.flush(link).await;
                if let Err(e) = link.send(t.destination, t.contents, t.segment_size).await {
                    tracing::debug!(error = %e, "send failed");
                    let segment = t.segment_size.unwrap_or(t.contents.len()).max(1);
                    self.failed += t.contents.len().div_ceil(segment).max(1) as u64;
                }
            }
        }
    }

    fn collect(&mut self, to: SocketAddr, datagram: &[u8]) {
        let i = self.count;
        self.slots[i * SLOT..i * SLOT + datagram.len()].copy_from_slice(datagram);
        self.lens[i] = datagram.len();
        self.destinations[i] = to;
        self.count += 1;
    }

    /// Send everything collected, with as few `sendmmsg` calls as the
    /// socket's buffer allows.
    pub async fn flush(&mut self, link: &UdpLink) {
        // One datagram: a plain send costs less than setting up a sendmmsg.
        if self.count == 1 {
            self.count = 0;
            let (to, len) = (self.destinations[0], self.lens[0]);
            if let Err(e) = link.send(to, &self.slots[..len], None).await {
                tracing::debug!(error = %e, "send failed");
                self.failed += 1;
            }
            return;
        }
        let mut at = 0;
        while at < self.count {
            let v6 = link.is_ipv6;
            let mut called = false;
            // tokio calls the closure only when it knows the socket writable.
            let r = link.io.try_io(Interest::WRITABLE, || {
                called = true;
                sendmmsg(link.raw_fd(), v6, self, at)
            });
            self.calls += u64::from(called);
            match r {
                Ok(sent) => at += sent.max(1),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(e) = link.io.writable().await {
                        tracing::debug!(error = %e, "send failed");
                        self.failed += (self.count - at) as u64;
                        break;
                    }
                }
                // The first datagram was refused (e.g. no route): drop it,
                // send the rest.
                Err(e) => {
                    tracing::debug!(error = %e, "send failed");
                    self.failed += 1;
                    at += 1;
                }
            }
        }
        self.count = 0;
    }
}

/// The socket address the kernel wants for `to` on a socket of the given
/// family (an IPv4 destination on an IPv6 socket as a v4-mapped address).
fn socket_address(to: SocketAddr, v6_socket: bool) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all zeros is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let to = match to {
        SocketAddr::V4(a) if v6_socket => SocketAddr::new(a.ip().to_ipv6_mapped().into(), a.port()),
        other => other,
    };
    let len = match to {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&raw mut storage).cast::<libc::sockaddr_in>(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: Ipv6Addr::octets(a.ip()),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&raw mut storage).cast::<libc::sockaddr_in6>(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// One `sendmmsg` of the collected datagrams from index `from` on; returns
/// how many the kernel took.
fn sendmmsg(
    fd: std::os::fd::RawFd,
    v6_socket: bool,
    batch: &SendBatch,
    from: usize,
) -> io::Result<usize> {
    // HOT PATH: everything on the stack; only the `n` entries used are written.
    let n = batch.count - from;
    let mut names = [const { MaybeUninit::<libc::sockaddr_storage>::uninit() }; MAX_MESSAGES];
    let mut iovs = [const { MaybeUninit::<libc::iovec>::uninit() }; MAX_MESSAGES];
    let mut hdrs = [const { MaybeUninit::<libc::mmsghdr>::uninit() }; MAX_MESSAGES];
    for k in 0..n {
        let i = from + k;
        let (name, name_len) = socket_address(batch.destinations[i], v6_socket);
        let name = names[k].write(name);
        let iov = iovs[k].write(libc::iovec {
            // The kernel only reads the buffer (sendmmsg).
            iov_base: batch.slots[i * SLOT..].as_ptr() as *mut libc::c_void,
            iov_len: batch.lens[i],
        });
        // SAFETY: mmsghdr is plain old data; all zeros is a valid value.
        let hdr = hdrs[k].write(unsafe { std::mem::zeroed() });
        hdr.msg_hdr.msg_name = (name as *mut libc::sockaddr_storage).cast();
        hdr.msg_hdr.msg_namelen = name_len;
        hdr.msg_hdr.msg_iov = iov;
        hdr.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: the first `n` headers are initialised and point at `names`,
    // `iovs` and the batch's slots, all alive and unmoved for the call; the
    // kernel reads no further than `n`; the socket is non-blocking.
    let r = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr().cast(), n as libc::c_uint, 0) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_single_datagrams_are_collected() {
        assert_eq!(plan(84, None), Plan::Collect);
        assert_eq!(plan(SLOT, None), Plan::Collect);
        // A "batch" of one segment is one datagram.
        assert_eq!(plan(84, Some(84)), Plan::Collect);
        assert_eq!(plan(84, Some(1500)), Plan::Collect);
        // Empty datagrams (a probe) too.
        assert_eq!(plan(0, None), Plan::Collect);
    }

    #[test]
    fn gso_batches_and_large_datagrams_go_alone() {
        assert_eq!(plan(168, Some(84)), Plan::Alone);
        assert_eq!(plan(SLOT + 1, None), Plan::Alone);
        assert_eq!(plan(9000, Some(9000)), Plan::Alone);
    }

    #[test]
    fn collected_datagrams_keep_their_bytes_and_destinations() {
        let mut b = SendBatch::default();
        let a: SocketAddr = "198.18.0.1:7777".parse().unwrap();
        let c: SocketAddr = "[fd00::2]:7777".parse().unwrap();
        b.collect(a, &[1, 2, 3]);
        b.collect(c, &[4; 84]);
        assert_eq!(b.len(), 2);
        assert_eq!(
            (&b.slots[..3], b.lens[0], b.destinations[0]),
            (&[1u8, 2, 3][..], 3, a)
        );
        assert_eq!(
            (&b.slots[SLOT..SLOT + 84], b.lens[1], b.destinations[1]),
            (&[4u8; 84][..], 84, c)
        );
    }

    #[test]
    fn socket_addresses_match_the_socket_family() {
        let v4: SocketAddr = "198.18.0.1:7777".parse().unwrap();
        let (s, len) = socket_address(v4, false);
        assert_eq!(len as usize, std::mem::size_of::<libc::sockaddr_in>());
        // SAFETY: written as a sockaddr_in above.
        let sin = unsafe { *(&raw const s).cast::<libc::sockaddr_in>() };
        assert_eq!(sin.sin_family, libc::AF_INET as libc::sa_family_t);
        assert_eq!(u16::from_be(sin.sin_port), 7777);
        assert_eq!(sin.sin_addr.s_addr.to_ne_bytes(), [198, 18, 0, 1]);

        // On an IPv6 socket an IPv4 destination is v4-mapped.
        let (s, len) = socket_address(v4, true);
        assert_eq!(len as usize, std::mem::size_of::<libc::sockaddr_in6>());
        // SAFETY: written as a sockaddr_in6 above.
        let sin6 = unsafe { *(&raw const s).cast::<libc::sockaddr_in6>() };
        assert_eq!(sin6.sin6_family, libc::AF_INET6 as libc::sa_family_t);
        assert_eq!(u16::from_be(sin6.sin6_port), 7777);
        assert_eq!(
            Ipv6Addr::from(sin6.sin6_addr.s6_addr),
            "::ffff:198.18.0.1".parse::<Ipv6Addr>().unwrap()
        );
    }
}
